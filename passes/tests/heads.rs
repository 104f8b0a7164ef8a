//! The `heads` pass on a two-layer graph: equality with the dense graph whose removed
//! heads are masked, the all-heads-removed layer, magnitude selection, and mask shape errors.

mod common;

use bertopt_ir::ops;
use bertopt_ir::{interp, parse, print, verify, Graph, Op};
use bertopt_passes::{PassContext, Pipeline};
use common::*;

const TWO_LAYERS: &str = include_str!("fixtures/two_attention_layers.ir");

fn run_mask(g: &mut Graph, keep: &[Vec<bool>]) -> Result<Vec<bertopt_passes::PassReport>, bertopt_passes::PassError> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("mask.json");
    std::fs::write(&p, bertopt_passes::mask::HeadMask { keep: keep.to_vec() }.to_json()).unwrap();
    Pipeline::parse(&format!("heads(mask={})", p.display()))?.run(g, &mut PassContext::default())
}

fn assert_equal_to_masked_dense(dense: &Graph, pruned: &Graph, keep: &[Vec<bool>]) {
    let x = inputs(2, 5, 20);
    let want = interp::run(&mask_heads_dense(dense, keep), &x).unwrap();
    let got = interp::run(pruned, &x).unwrap();
    let d = max_abs_diff(&want[0].1, &got[0].1);
    assert!(d <= 1e-5, "pruned differs from masked dense by {d}");
}

#[test]
fn mask_strips_heads_and_equals_masked_dense() {
    let dense = with_data(parse(TWO_LAYERS).unwrap());
    verify(&dense).unwrap();
    let keep = vec![vec![true, false, true, false], vec![false, false, false, true]];
    let mut g = dense.clone();
    let r = run_mask(&mut g, &keep).unwrap();
    assert_eq!(r[0].changed["heads removed"], 5);
    assert_eq!(r[0].changed["attention blocks removed"], 0);
    // Q, K, V lose 2 (layer 0) and 3 (layer 1) heads of 2 columns, O as many rows: 8 * 4 + ... parameters
    let removed_params = (8 * 4 + 4) * 3 + 4 * 8 + (8 * 6 + 6) * 3 + 6 * 8;
    assert_eq!(r[0].before.params - r[0].after.params, removed_params);
    assert!(r[0].after.flops < r[0].before.flops);
    let after = print(&g);
    assert!(after.contains("{heads: 2, head_dim: 2, query: @l0.q"), "{after}");
    assert!(after.contains("{heads: 1, head_dim: 2, query: @l1.q"), "{after}");
    assert!(after.contains("@l1.o.weight: f32[2, 8]"), "{after}");
    assert_equal_to_masked_dense(&dense, &g, &keep);
}

#[test]
fn a_layer_with_no_heads_left_loses_its_attention_block() {
    let dense = with_data(parse(TWO_LAYERS).unwrap());
    let keep = vec![vec![false; 4], vec![true, true, false, true]];
    let mut g = dense.clone();
    let r = run_mask(&mut g, &keep).unwrap();
    assert_eq!(r[0].changed["attention blocks removed"], 1);
    let after = print(&g);
    assert_eq!(after.matches("= attention(").count(), 1, "{after}");
    assert!(after.contains("add_bias(%0) {bias: @l0.o.bias}"), "the output bias stays: {after}");
    assert!(after.contains("layer_norm("), "{after}");
    assert!(!after.contains("@l0.q.weight"), "dead weights are gone: {after}");
    assert_equal_to_masked_dense(&dense, &g, &keep);
}

#[test]
fn ratio_removes_the_lowest_magnitude_heads_per_layer() {
    let mut g = with_data(parse(TWO_LAYERS).unwrap());
    let r = Pipeline::parse("heads(ratio=0.5)").unwrap().run(&mut g, &mut PassContext::default()).unwrap();
    assert_eq!(r[0].changed["heads removed"], 4);
    for n in g.dag.node_weights() {
        if let Op::Attention(ops::Attention { heads, .. }) = n.op {
            assert_eq!(heads, 2);
        }
    }
    let mut g2 = with_data(parse(TWO_LAYERS).unwrap());
    let r = Pipeline::parse("heads(count=3)").unwrap().run(&mut g2, &mut PassContext::default()).unwrap();
    assert_eq!(r[0].changed["heads removed"], 6);
    // No argument: half of every layer's heads, the very cut of ratio=0.5.
    let mut g3 = with_data(parse(TWO_LAYERS).unwrap());
    Pipeline::parse("heads").unwrap().run(&mut g3, &mut PassContext::default()).unwrap();
    assert_eq!(print(&g3), print(&g));
}

#[test]
fn a_mask_of_the_wrong_shape_names_both_shapes() {
    let mut g = with_data(parse(TWO_LAYERS).unwrap());
    let e = run_mask(&mut g, &[vec![true; 4], vec![true; 4], vec![true; 4]]).unwrap_err().to_string();
    assert!(e.contains("is [3, 4] (layers x heads) but the model is [2, 4]"), "{e}");
    let e = run_mask(&mut g, &[vec![true; 3], vec![true; 3]]).unwrap_err().to_string();
    assert!(e.contains("is [2, 3] (layers x heads) but the model is [2, 4]"), "{e}");
    let e = Pipeline::parse("heads(ratio=0.5,count=2)").err().unwrap().to_string();
    assert!(e.contains("at most one of"), "{e}");
    let e = Pipeline::parse("heads(ratio=1.5)").err().unwrap().to_string();
    assert!(e.contains("not in [0, 1]"), "{e}");
}
