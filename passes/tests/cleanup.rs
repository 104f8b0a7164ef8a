//! The cleanup passes beyond their file tests (`passes/filetests/{dce,fold}`): what they report, and that
//! folding keeps the values.

use std::collections::BTreeMap;

mod common;

use bertopt_ir::{interp, parse, print, verify};
use bertopt_passes::{PassContext, Pipeline};
use candle_core::{Device, Tensor};
use common::with_data;

const DEAD: &str = "graph dead(%input_ids: i64[batch, sequence], %attention_mask: i64[batch, sequence], %token_type_ids: i64[batch, sequence]) {
  %0: f32[batch, sequence, 4] = embed(%input_ids, %token_type_ids) {word: @w, position: @p, token_type: @t, ln: @ln, eps: 1e-12, position_offset: 0}
  %1: f32[batch, sequence, 6] = linear(%0) {w: @unused, k: 4, n: 6}
  %2: f32[batch, sequence, 6] = gelu(%1)
  %3: f32[batch, 4] = take_cls(%0)
  return pooled = %3
}
weights {
  @ln.bias: f32[4]
  @ln.weight: f32[4]
  @p: f32[16, 4]
  @t: f32[2, 4]
  @unused.bias: f32[6]
  @unused.weight: f32[4, 6]
  @w: f32[10, 4]
}
";

#[test]
fn dce_removes_dead_values_and_their_weights_but_keeps_inputs() {
    let mut g = parse(DEAD).unwrap();
    verify(&g).unwrap();
    let reports = Pipeline::parse("dce").unwrap().run(&mut g, &mut PassContext::default()).unwrap();
    let after = print(&g);
    assert!(!after.contains("linear") && !after.contains("@unused"), "{after}");
    assert!(after.contains("%attention_mask: i64[batch, sequence]"), "inputs stay even when unused: {after}");
    assert_eq!(reports[0].changed["nodes removed"], 2);
    assert_eq!(reports[0].changed["weights removed"], 2);
    assert_eq!(reports[0].before.params - reports[0].after.params, 4 * 6 + 6);
}

const CONSTS: &str = "graph consts(%input_ids: i64[batch, sequence], %attention_mask: i64[batch, sequence], %token_type_ids: i64[batch, sequence]) {
  %0: f32[batch, sequence, 4] = embed(%input_ids, %token_type_ids) {word: @w, position: @p, token_type: @t, ln: @ln, eps: 1e-12, position_offset: 0}
  %1: f32[3, 4] = const() {value: @a}
  %2: f32[3, 4] = const() {value: @b}
  %3: f32[3, 4] = add(%1, %2)
  %4: f32[3, 4] = tanh(%3)
  %5: f32[3, 6] = linear(%4) {w: @l, k: 4, n: 6}
  return hidden = %0, folded = %5
}
weights {
  @a: f32[3, 4]
  @b: f32[3, 4]
  @l.bias: f32[6]
  @l.weight: f32[4, 6]
  @ln.bias: f32[4]
  @ln.weight: f32[4]
  @p: f32[16, 4]
  @t: f32[2, 4]
  @w: f32[10, 4]
}
";

#[test]
fn fold_evaluates_constant_subgraphs_to_the_same_values() {
    let g0 = with_data(parse(CONSTS).unwrap());
    verify(&g0).unwrap();
    let inputs: std::collections::HashMap<String, Tensor> = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| (n.to_string(), Tensor::zeros((1, 3), candle_core::DType::I64, &Device::Cpu).unwrap()))
        .collect();
    let expected = interp::run(&g0, &inputs).unwrap();

    let mut g = g0.clone();
    let reports = Pipeline::parse("fold,dce").unwrap().run(&mut g, &mut PassContext::default()).unwrap();
    assert_eq!(reports[0].changed["values folded"], 3, "add, tanh and linear fold");
    let after = print(&g);
    assert!(!after.contains("tanh") && !after.contains("@a:") && !after.contains("@l.weight"), "{after}");
    let got = interp::run(&g, &inputs).unwrap();
    for ((n, a), (_, b)) in expected.iter().zip(&got) {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d == 0.0, "{n} differs by {d} after folding");
    }
}

#[test]
fn fold_skips_consts_without_data() {
    let mut g = parse(CONSTS).unwrap();
    let mut changed = BTreeMap::new();
    use bertopt_passes::Pass;
    bertopt_passes::fold::Fold.run(&mut g, &mut PassContext::default(), &mut changed).unwrap();
    assert_eq!(changed["values folded"], 0);
}
