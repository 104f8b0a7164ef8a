//! Deterministic weight data named in the text form: `@w: f32[8, 16] = seeded(3)`. A file test's result is then
//! fixed by the file alone, with no random generator whose stream could change under a dependency update.
//!
//! Value `k` (row-major) of seed `s` is `((7k + 3s) mod 11 / 11 - 1/2) * (1 + k mod 3)`: eleven levels in
//! [-1.5, 1.36], so rows and columns differ in magnitude (magnitude cuts have something to rank) and no two
//! seeds of one graph give the same tensor.

use candle_core::{DType, Device, Tensor};

/// The tensor of `seed` with shape `dims`: the values above for f32; for i8 (whole numbers held as f32) and i64,
/// the values times 50, rounded.
pub fn seeded(dims: &[usize], seed: usize, dtype: crate::DType) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|k| value(k, seed)).collect();
    let t = Tensor::from_vec(v, dims, &Device::Cpu).expect("shape matches the element count");
    let whole = || (t.clone() * 50.0).and_then(|t| t.round()).expect("f32 arithmetic on a CPU tensor");
    match dtype {
        crate::DType::F32 => t,
        crate::DType::I8 => whole(),
        crate::DType::I64 => whole().to_dtype(DType::I64).expect("f32 converts to i64"),
    }
}

/// Value `k` of seed `seed`.
pub fn value(k: usize, seed: usize) -> f32 {
    (((k * 7 + seed * 3) % 11) as f32 / 11.0 - 0.5) * (1.0 + (k % 3) as f32)
}

/// Give every weight of `g` that has no data the data of `seeded(i)`, `i` its position in name order: what a
/// test needs to run a graph parsed from a fixture that declares types only.
pub fn seed_all(g: &mut crate::Graph) {
    for (i, w) in g.weights.0.values_mut().enumerate() {
        if w.data.is_none() {
            let dims = w.ty.known_dims().expect("weights have known shapes (the parser checks)");
            w.data = Some(seeded(&dims, i, w.ty.dtype));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_documented_formula() {
        // k = 0, s = 0: (0/11 - 0.5) * 1; k = 1, s = 0: (7/11 - 0.5) * 2; k = 2, s = 1: (17 mod 11 = 6) -> (6/11 - 0.5) * 3
        assert_eq!(value(0, 0), -0.5);
        assert!((value(1, 0) - (7.0 / 11.0 - 0.5) * 2.0).abs() < 1e-7);
        assert!((value(2, 1) - (6.0 / 11.0 - 0.5) * 3.0).abs() < 1e-7);
        let t = seeded(&[2, 3], 1, crate::DType::F32).to_vec2::<f32>().unwrap();
        assert_eq!(t[1][0], value(3, 1));
        let f = |s| seeded(&[4], s, crate::DType::F32).to_vec1::<f32>().unwrap();
        assert_ne!(f(0), f(1));
        let q = seeded(&[3], 0, crate::DType::I8).to_vec1::<f32>().unwrap();
        assert_eq!(q[..2], [-25.0, 14.0]); // -0.5 * 50; (7/11 - 0.5) * 2 * 50 = 13.6
    }
}
