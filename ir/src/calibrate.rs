//! Calibration for static int8 activations: the range of every parameter group's input over a set of inputs,
//! recorded while the interpreter runs the (f32) graph. `quant(activations=static)` turns each range into the
//! constant scale and zero point its group's input is quantized with (`quant::range_params`): the extremes over
//! all inputs (`Statistic::MinMax`, ONNX Runtime's default calibrator) or the mean of each input's extremes
//! (`Statistic::Mean`, the moving-average observer of quantization-aware training), which gives up the rare
//! outlier for a finer step on the common values.
//!
//! The extremes come from `observe`, which the interpreter's group evaluation reports each input to.

use std::collections::{BTreeMap, HashMap};

use candle_core::Tensor;

use crate::interp::{self, InterpError};
use crate::Graph;

/// How a group's range is made from the extremes of its input on each calibration input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistic {
    /// The smallest min and largest max over all inputs.
    MinMax,
    /// The mean of the inputs' mins and of their maxes.
    Mean,
}

impl Statistic {
    fn reduce(self, seen: &[(f32, f32)]) -> (f32, f32) {
        match self {
            Statistic::MinMax => seen.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &(a, b)| (lo.min(a), hi.max(b))),
            Statistic::Mean => {
                let n = seen.len().max(1) as f32;
                (seen.iter().map(|s| s.0).sum::<f32>() / n, seen.iter().map(|s| s.1).sum::<f32>() / n)
            }
        }
    }
}

/// The range `(min, max)` of the input of every parameter group (by its name `P`) the graph evaluates, made by
/// `stat` from its extremes on each of `batches` (each a map of the graph's inputs, as `interp::run` takes them).
/// Run it on inputs of their own length: padded positions would widen the ranges with states no real input has.
pub fn ranges(
    g: &Graph,
    batches: &[HashMap<String, Tensor>],
    stat: Statistic,
) -> Result<BTreeMap<String, (f32, f32)>, InterpError> {
    let seen = crate::observe::recording(|| batches.iter().try_for_each(|b| interp::run(g, b).map(drop)))?;
    Ok(seen.into_iter().map(|(p, s)| (p, stat.reduce(&s))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Embeddings, then a linear `@a` and, after GELU, a linear `@b`; the embeddings are also an output.
    const GRAPH: &str = "graph g(%input_ids: i64[batch, sequence], %token_type_ids: i64[batch, sequence]) {
  %0: f32[batch, sequence, 8] = embed(%input_ids, %token_type_ids) {word: @w, position: @p, token_type: @t, ln: @ln, eps: 1e-12, position_offset: 0}
  %1: f32[batch, sequence, 6] = linear(%0) {w: @a, k: 8, n: 6}
  %2: f32[batch, sequence, 6] = gelu(%1)
  %3: f32[batch, sequence, 4] = linear(%2) {w: @b, k: 6, n: 4}
  return embedded = %0, hidden = %2, out = %3
}
weights {
  @a.bias: f32[6] = seeded(0)
  @a.weight: f32[8, 6] = seeded(1)
  @b.bias: f32[4] = seeded(2)
  @b.weight: f32[6, 4] = seeded(3)
  @ln.bias: f32[8] = seeded(4)
  @ln.weight: f32[8] = seeded(5)
  @p: f32[16, 8] = seeded(6)
  @t: f32[2, 8] = seeded(7)
  @w: f32[20, 8] = seeded(8)
}
";

    fn batch(ids: &[i64]) -> HashMap<String, Tensor> {
        let dev = &candle_core::Device::Cpu;
        let n = ids.len();
        HashMap::from([
            ("input_ids".to_string(), Tensor::from_slice(ids, (1, n), dev).unwrap()),
            ("token_type_ids".to_string(), Tensor::zeros((1, n), candle_core::DType::I64, dev).unwrap()),
        ])
    }

    fn min_max(ts: &[Tensor]) -> (f32, f32) {
        let v: Vec<f32> = ts.iter().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
        (v.iter().copied().fold(f32::MAX, f32::min), v.iter().copied().fold(f32::MIN, f32::max))
    }

    #[test]
    fn ranges_are_the_extremes_of_each_groups_input_over_all_batches() {
        let g = crate::parse(GRAPH).unwrap();
        let batches = [batch(&[1, 5, 7]), batch(&[19, 3, 3, 2, 11])];
        let got = ranges(&g, &batches, Statistic::MinMax).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["a", "b"]);
        // What each group reads, taken from the graph's own outputs.
        let outs: Vec<Vec<(String, Tensor)>> = batches.iter().map(|b| interp::run(&g, b).unwrap()).collect();
        let of =
            |name: &str| outs.iter().map(|o| o.iter().find(|(n, _)| n == name).unwrap().1.clone()).collect::<Vec<_>>();
        assert_eq!(got["a"], min_max(&of("embedded")));
        assert_eq!(got["b"], min_max(&of("hidden")));
        // The mean statistic: the average of each batch's own extremes.
        let mean = ranges(&g, &batches, Statistic::Mean).unwrap();
        for (group, output) in [("a", "embedded"), ("b", "hidden")] {
            let each: Vec<(f32, f32)> = of(output).iter().map(|t| min_max(std::slice::from_ref(t))).collect();
            let want = ((each[0].0 + each[1].0) / 2.0, (each[0].1 + each[1].1) / 2.0);
            assert!((mean[group].0 - want.0).abs() < 1e-6 && (mean[group].1 - want.1).abs() < 1e-6, "{group}");
            assert!(mean[group].0 >= got[group].0 && mean[group].1 <= got[group].1, "{group}: inside min-max");
        }
        // Recording ends with `ranges`, also when a run fails (a batch without the token types).
        assert!(!crate::observe::is_recording());
        let mut bad = batch(&[1]);
        bad.remove("token_type_ids");
        assert!(ranges(&g, &[bad], Statistic::MinMax).is_err());
        assert!(!crate::observe::is_recording());
    }

    #[test]
    fn recording_inputs_keeps_each_groups_whole_input_in_evaluation_order() {
        let g = crate::parse(GRAPH).unwrap();
        let b = batch(&[4, 2, 9]);
        let mut outs = vec![];
        let got = crate::observe::recording_inputs(|| interp::run(&g, &b).map(|o| outs = o)).unwrap();
        let of = |name: &str| outs.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let names: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        for ((_, x), output) in got.iter().zip(["embedded", "hidden"]) {
            let want = of(output).flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want, "{output}");
        }
        assert!(!crate::observe::is_recording());
    }
}
