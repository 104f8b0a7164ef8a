//! int8 linears: what the `quant` pass writes and what the ONNX lowering and the interpreter compute.
//!
//! A parameter group `P` (a `linear`, or an attention projection) is quantized when the weight `P.weight_scale:
//! f32[N]` exists. Then `P.weight: f32[K, N]` holds whole numbers in [-127, 127] (emitted as ONNX int8), and
//! `y = x·W + b` becomes, with ONNX's `DynamicQuantizeLinear` semantics for the activations (asymmetric uint8,
//! one scale and zero point for the whole tensor, computed per call):
//!
//! ```text
//! (xq, xs, xz) = dynamic_quantize(x)
//! y[.., n] = f32(Σ_k (xq[.., k] - xz) · W[k, n]) * (xs * scale[n]) + b[n]
//! ```
//!
//! The integer sum is exact (i64 here, int32 in ONNX Runtime and tract), so the interpreter and the runtimes
//! differ only by f32 rounding in the rescale and by activations that sit on a rounding boundary.
//!
//! With static activations (`quant(activations=static)`) the group also holds `P.input_qparams: f32[2]`, the
//! scale and zero point calibrated on training inputs (`crate::calibrate`), and x is quantized with them
//! (`static_quantize`, ONNX's `QuantizeLinear`) instead of per call; values outside the calibrated range saturate.
//!
//! A tiled group is quantized tile by tile: tile `t` is the group `P.tile{t}` (its `weight: [r, n_t]` int8, its
//! `weight_scale: [n_t]`), and x is quantized once for all tiles, before any tile gathers its rows (`qtiles`), so
//! every tile's integers share one activation scale and zero point.

use candle_core::{Device, Tensor};

/// The per-output-channel scale of a quantized group `P`.
pub fn scale_name(p: &str) -> String {
    format!("{p}.weight_scale")
}

/// The per-row scale of a quantized embedding table `table` (a full weight name).
pub fn row_scale_name(table: &str) -> String {
    format!("{table}_row_scale")
}

/// The suffix of a group's static activation parameters.
const INPUT_PARAMS: &str = ".input_qparams";

/// The static activation parameters `[scale, zero point]` of a quantized group `P` (absent: dynamic).
pub fn input_params_name(p: &str) -> String {
    format!("{p}{INPUT_PARAMS}")
}

/// The group `P` whose static activation parameters weight `name` is, if it is one.
pub fn input_params_group(name: &str) -> Option<&str> {
    name.strip_suffix(INPUT_PARAMS)
}

/// How a quantized group's input becomes uint8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `DynamicQuantizeLinear`: the tensor's own range, per call.
    Dynamic,
    /// `QuantizeLinear` with calibrated constants.
    Static { scale: f32, zero: u8 },
}

impl Activation {
    /// The activation parameters of group `p` as its weights hold them (`[scale, zero]` when static).
    pub fn of(params: Option<&Tensor>) -> candle_core::Result<Self> {
        let Some(t) = params else { return Ok(Activation::Dynamic) };
        let v = t.to_vec1::<f32>()?;
        match v[..] {
            [scale, zero] => Ok(Activation::Static { scale, zero: zero as u8 }),
            _ => candle_core::bail!("input_qparams holds {} values, want [scale, zero point]", v.len()),
        }
    }

    /// `(xq, scale, zero)` of the values `x`.
    pub fn quantize(self, x: &[f32]) -> (Vec<u8>, f32, u8) {
        match self {
            Activation::Dynamic => dynamic_quantize(x),
            Activation::Static { scale, zero } => (static_quantize(x, scale, zero), scale, zero),
        }
    }
}

/// Whether group `p` is quantized (by the presence of its scale, as `ops::tile_count` tells tiles).
pub fn is_quantized(has: impl Fn(&str) -> bool, p: &str) -> bool {
    has(&scale_name(p))
}

/// Largest magnitude of a symmetric int8 weight.
pub const QMAX: f32 = 127.0;

/// Round half to even, as ONNX's quantize ops do.
pub fn round_even(x: f32) -> f32 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// The asymmetric uint8 scale and zero point of the range `[min(lo, 0), max(hi, 0)]`, as
/// `DynamicQuantizeLinear` computes them (scale 0 for an all-zero range).
pub fn range_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = (hi - lo) / 255.0;
    if scale == 0.0 {
        return (0.0, 0);
    }
    (scale, round_even((-lo / scale).clamp(0.0, 255.0)) as u8)
}

/// ONNX `QuantizeLinear` to uint8: `saturate(round(x / scale) + zero)`.
pub fn static_quantize(x: &[f32], scale: f32, zero: u8) -> Vec<u8> {
    if scale == 0.0 {
        return vec![zero; x.len()];
    }
    x.iter().map(|&v| (round_even(v / scale) + zero as f32).clamp(0.0, 255.0) as u8).collect()
}

/// ONNX `DynamicQuantizeLinear` of a whole tensor: (uint8 values, scale, zero point).
pub fn dynamic_quantize(x: &[f32]) -> (Vec<u8>, f32, u8) {
    let lo = x.iter().copied().fold(0f32, f32::min);
    let hi = x.iter().copied().fold(0f32, f32::max);
    let (scale, zero) = range_params(lo, hi);
    if scale == 0.0 {
        return (vec![0; x.len()], 0.0, 0);
    }
    (static_quantize(x, scale, zero), scale, zero)
}

/// Symmetric int8 quantization of `w: [K, N]`: per output column (`per_channel`) or one scale for all. Returns
/// the whole-number weights (as f32) and the scales `[N]`. An all-zero column gets scale 1.
pub fn quantize_weight(w: &Tensor, per_channel: bool) -> candle_core::Result<(Tensor, Tensor)> {
    let (k, n) = w.dims2()?;
    let v = w.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut max = vec![0f32; n];
    for (i, x) in v.iter().enumerate() {
        max[i % n] = max[i % n].max(x.abs());
    }
    if !per_channel {
        let all = max.iter().copied().fold(0f32, f32::max);
        max.iter_mut().for_each(|m| *m = all);
    }
    let scale: Vec<f32> = max.iter().map(|&m| if m > 0.0 { m / QMAX } else { 1.0 }).collect();
    let q: Vec<f32> = v.iter().enumerate().map(|(i, &x)| round_even(x / scale[i % n]).clamp(-QMAX, QMAX)).collect();
    Ok((Tensor::from_vec(q, (k, n), &Device::Cpu)?, Tensor::from_vec(scale, n, &Device::Cpu)?))
}

/// Symmetric int8 quantization of an embedding table `[V, D]`, one scale per row (per token), so a lookup
/// dequantizes with one multiply: `table[id] = q[id] * scale[id]`.
pub fn quantize_rows(w: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let (q, s) = quantize_weight(&w.t()?.contiguous()?, true)?;
    Ok((q.t()?.contiguous()?, s))
}

/// The f32 table a quantized embedding looks up: `q * scale` per row, as the ONNX lowering computes it.
pub fn dequantize_rows(q: &Tensor, scale: &Tensor) -> candle_core::Result<Tensor> {
    q.broadcast_mul(&scale.unsqueeze(1)?)
}

/// `x·W + b` of a quantized group, exactly as the ONNX lowering computes it (see the module doc); `extra`
/// multiplies the scales and the bias (the attention score scale folded into the query projection).
pub fn qlinear(
    x: &Tensor,
    wq: &Tensor,
    scale: &Tensor,
    b: &Tensor,
    extra: f32,
    act: Activation,
) -> candle_core::Result<Tensor> {
    let k = wq.dim(0)?;
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let rows: Vec<usize> = (0..k).collect();
    let y = int8_matmul(&act.quantize(&xv), &xv, x.dims(), &rows, wq, scale, extra)?;
    y.broadcast_add(&(b * extra as f64)?)
}

/// `f32(Σ_{k in rows} (xq[.., k] - xz) · W[i, c]) * (xs * (scale[c] * extra))` for the quantized `(xq, xs, xz)` of
/// `x` (values `xv`, shape `dims`) and an int8 weight `wq: [rows.len(), n]` reading input features `rows`.
fn int8_matmul(
    (xq, xs, xz): &(Vec<u8>, f32, u8),
    xv: &[f32],
    dims: &[usize],
    rows: &[usize],
    wq: &Tensor,
    scale: &Tensor,
    extra: f32,
) -> candle_core::Result<Tensor> {
    let k = *dims.last().unwrap_or(&1);
    let (r, n) = wq.dims2()?;
    if r != rows.len() {
        candle_core::bail!("an int8 weight has {r} rows but reads {} input features", rows.len());
    }
    let w: Vec<i64> = wq.flatten_all()?.to_vec1::<f32>()?.iter().map(|&v| v as i64).collect();
    let s: Vec<f32> = scale.to_vec1::<f32>()?.iter().map(|&v| xs * (v * extra)).collect();
    let tokens = xv.len() / k.max(1);
    let mut y = vec![0f32; tokens * n];
    for t in 0..tokens {
        let a = &xq[t * k..(t + 1) * k];
        for (c, o) in y[t * n..(t + 1) * n].iter_mut().enumerate() {
            let acc: i64 = rows.iter().enumerate().map(|(i, &row)| (a[row] as i64 - *xz as i64) * w[i * n + c]).sum();
            *o = acc as f32 * s[c];
        }
    }
    let mut out = dims.to_vec();
    *out.last_mut().expect("rank >= 1") = n;
    Tensor::from_vec(y, out, &Device::Cpu)
}

/// The pre-bias outputs `[.., n_t]` of the int8 tiles `(rows, weight, scale)` of one group on `x: [.., K]`: x
/// quantized once, then per tile `f32(Σ_{k in rows} (xq[.., k] - xz) · W_t[k, c]) * (xs * scale_t[c])`.
pub fn qtiles(x: &Tensor, tiles: &[(&Tensor, &Tensor, &Tensor)], act: Activation) -> candle_core::Result<Vec<Tensor>> {
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let q = act.quantize(&xv);
    let mut out = vec![];
    for (rows, wq, scale) in tiles {
        let rows: Vec<usize> = rows.to_vec1::<i64>()?.iter().map(|&r| r as usize).collect();
        out.push(int8_matmul(&q, &xv, x.dims(), &rows, wq, scale, 1.0)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even_like_onnx() {
        let got: Vec<f32> = [0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6].iter().map(|&x| round_even(x)).collect();
        assert_eq!(got, [0.0, 2.0, 2.0, -0.0, -2.0, 2.0, -3.0]);
    }

    #[test]
    fn dynamic_quantize_follows_the_onnx_definition() {
        // The ONNX operator's documented example: x = [0, 2, -3, -2.5, 1.34, 0.5].
        let (q, s, z) = dynamic_quantize(&[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
        assert!((s - 0.019_607_844).abs() < 1e-9, "{s}");
        assert_eq!(z, 153);
        assert_eq!(q, [153, 255, 0, 26, 221, 179]);
    }

    #[test]
    fn static_quantize_follows_the_onnx_definition() {
        // The ONNX QuantizeLinear example: x = [0, 2, 3, 1000, -254, -1000], scale 2, zero point 128.
        assert_eq!(static_quantize(&[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0], 2.0, 128), [128, 129, 130, 255, 1, 0]);
        // Calibrated on a range wider than the input, the same values land on a coarser grid; narrower saturates.
        let x = [0.0, 2.0, -3.0, -2.5, 1.34, 0.5];
        let (s, z) = range_params(-6.0, 4.0);
        assert_eq!((s, z), (10.0 / 255.0, 153));
        assert_eq!(static_quantize(&x, s, z), [153, 204, 77, 89, 187, 166]);
        let (s, z) = range_params(-1.0, 1.0);
        assert_eq!(static_quantize(&x, s, z)[..3], [z, 255, 0]);
    }

    #[test]
    fn per_channel_weights_round_trip_within_half_a_step() {
        let w = Tensor::from_vec(vec![0.5f32, -2.0, 0.25, 1.0, -0.1, 0.0], (3, 2), &Device::Cpu).unwrap();
        let (q, s) = quantize_weight(&w, true).unwrap();
        let s = s.to_vec1::<f32>().unwrap();
        assert_eq!(s, [0.5 / 127.0, 2.0 / 127.0]);
        let q = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(q[0], 127.0);
        assert_eq!(q[1], -127.0);
        for (i, (&qv, &wv)) in q.iter().zip(w.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter()).enumerate() {
            assert!((qv * s[i % 2] - wv).abs() <= s[i % 2] / 2.0 + 1e-7, "{i}");
        }
        let (_, st) = quantize_weight(&w, false).unwrap();
        assert_eq!(st.to_vec1::<f32>().unwrap(), [2.0 / 127.0, 2.0 / 127.0]);
    }

    #[test]
    fn qlinear_is_close_to_the_float_linear() {
        let x = Tensor::from_vec((0..12).map(|i| (i as f32 * 0.37).sin()).collect(), (2, 2, 3), &Device::Cpu).unwrap();
        let w = Tensor::from_vec((0..12).map(|i| (i as f32 * 0.71).cos()).collect(), (3, 4), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![0.1f32, -0.2, 0.3, 0.0], 4, &Device::Cpu).unwrap();
        let (q, s) = quantize_weight(&w, true).unwrap();
        let got = qlinear(&x, &q, &s, &b, 1.0, Activation::Dynamic).unwrap();
        let want = crate::interp::linear(&x, &w, &b).unwrap();
        assert_eq!(got.dims(), [2, 2, 4]);
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // Activation step ~2/255, weight step ~1/127 of each column's max: a few hundredths at K = 3.
        assert!(d < 0.03, "{d}");
    }

    #[test]
    fn int8_tiles_equal_qlinear_on_the_rows_they_keep() {
        // Two tiles of a [4, 3] matrix: tile 0 (columns 0-1) keeps rows 0, 2, 3; tile 1 (column 2) all four. With
        // the rows a tile drops zeroed, each tile is the whole-matrix int8 linear restricted to its columns, since
        // both quantize the same x once.
        let x = Tensor::from_vec((0..8).map(|i| (i as f32 * 0.53).sin()).collect(), (2, 4), &Device::Cpu).unwrap();
        let w: Vec<f32> = (0..12).map(|i| (i as f32 * 0.29).cos()).collect();
        let full = Tensor::from_vec(w.clone(), (4, 3), &Device::Cpu).unwrap();
        let (q, s) = quantize_weight(&full, true).unwrap();
        let qv = q.to_vec2::<f32>().unwrap();
        let rows0 = Tensor::new(&[0i64, 2, 3], &Device::Cpu).unwrap();
        let w0: Vec<f32> = [0, 2, 3].iter().flat_map(|&r| qv[r][..2].to_vec()).collect();
        let w0 = Tensor::from_vec(w0, (3, 2), &Device::Cpu).unwrap();
        let rows1 = Tensor::new(&[0i64, 1, 2, 3], &Device::Cpu).unwrap();
        let w1 = Tensor::from_vec(qv.iter().map(|r| r[2]).collect::<Vec<_>>(), (4, 1), &Device::Cpu).unwrap();
        let sv = s.to_vec1::<f32>().unwrap();
        let (s0, s1) = (Tensor::new(&sv[..2], &Device::Cpu).unwrap(), Tensor::new(&sv[2..], &Device::Cpu).unwrap());
        let got = qtiles(&x, &[(&rows0, &w0, &s0), (&rows1, &w1, &s1)], Activation::Dynamic).unwrap();
        let mut masked = qv.clone();
        masked[1][0] = 0.0;
        masked[1][1] = 0.0;
        let masked = Tensor::from_vec(masked.concat(), (4, 3), &Device::Cpu).unwrap();
        let zeros = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let want = qlinear(&x, &masked, &s, &zeros, 1.0, Activation::Dynamic).unwrap().to_vec2::<f32>().unwrap();
        let got: Vec<Vec<f32>> = (0..2)
            .map(|t| {
                let (a, b) = (got[0].to_vec2::<f32>().unwrap(), got[1].to_vec2::<f32>().unwrap());
                vec![a[t][0], a[t][1], b[t][0]]
            })
            .collect();
        assert_eq!(got, want);
    }
}
