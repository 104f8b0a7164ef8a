//! The `ffn` pass on a two-layer FFN graph: equality with the dense graph whose
//! removed neurons are masked (their FFN-out rows zeroed), neurons chosen by magnitude as computed here, the
//! `multiple=` rounding, the fully removed block, and argument errors.

mod common;

use bertopt_ir::{interp, parse, print, verify, Graph};
use bertopt_passes::{PassContext, Pipeline};
use candle_core::{Device, Tensor};
use common::*;

const TWO_FFNS: &str = include_str!("fixtures/two_ffns.ir");

fn dense() -> Graph {
    let g = with_data(parse(TWO_FFNS).unwrap());
    verify(&g).unwrap();
    g
}

fn run(g: &mut Graph, pipeline: &str) -> Result<Vec<bertopt_passes::PassReport>, bertopt_passes::PassError> {
    Pipeline::parse(pipeline)?.run(g, &mut PassContext::default())
}

/// The neurons the magnitude rule keeps, computed here with plain loops: the `remove` of lowest
/// Σ W_in[:, j]² + Σ W_out[j, :]² go (ties: higher index first).
fn expected_keep(g: &Graph, layer: usize, remove: usize) -> Vec<bool> {
    let wi = g.weights.tensor(&format!("l{layer}.in.weight")).unwrap().to_vec2::<f32>().unwrap();
    let wo = g.weights.tensor(&format!("l{layer}.out.weight")).unwrap().to_vec2::<f32>().unwrap();
    let score: Vec<f32> = (0..16)
        .map(|j| wi.iter().map(|r| r[j] * r[j]).sum::<f32>() + wo[j].iter().map(|x| x * x).sum::<f32>())
        .collect();
    let mut order: Vec<usize> = (0..16).collect();
    order.sort_by(|&a, &b| score[a].partial_cmp(&score[b]).unwrap().then(b.cmp(&a)));
    let mut keep = vec![true; 16];
    for &j in &order[..remove] {
        keep[j] = false;
    }
    keep
}

/// The dense graph with neurons `keep[layer][j] == false` masked: zero FFN-out rows contribute nothing.
fn masked_dense(g: &Graph, keep: &[Vec<bool>]) -> Graph {
    let mut g = g.clone();
    for (layer, keep) in keep.iter().enumerate() {
        let rows: Vec<f32> = keep.iter().map(|&k| k as u8 as f32).collect();
        let m = Tensor::from_vec(rows, (16, 1), &Device::Cpu).unwrap();
        let name = format!("l{layer}.out.weight");
        let t = g.weights.tensor(&name).unwrap().broadcast_mul(&m).unwrap();
        g.weights.insert(name, t);
    }
    g
}

fn assert_equal(want: &Graph, got: &Graph) {
    let x = inputs(2, 5, 20);
    let (a, b) = (interp::run(want, &x).unwrap(), interp::run(got, &x).unwrap());
    let d = max_abs_diff(&a[0].1, &b[0].1);
    assert!(d <= 1e-5, "pruned differs from masked dense by {d}");
}

#[test]
fn ratio_removes_lowest_magnitude_neurons_and_equals_masked_dense() {
    let dense = dense();
    let mut g = dense.clone();
    let r = run(&mut g, "ffn(ratio=0.25)").unwrap();
    assert_eq!(r[0].changed["neurons removed"], 8);
    // Per layer 4 neurons: 8 weights + 1 bias in, 8 weights out.
    assert_eq!(r[0].before.params - r[0].after.params, 2 * 4 * (8 + 1 + 8));
    // FLOPs at seq 128: each neuron costs 2 * 128 * 8 in each of the two matmuls.
    assert_eq!(r[0].before.flops - r[0].after.flops, 8 * 2 * 2 * 128 * 8);
    let after = print(&g);
    assert!(after.contains("@l0.in.weight: f32[8, 12]") && after.contains("@l1.out.weight: f32[12, 8]"), "{after}");
    assert!(after.contains("f32[batch, sequence, 12] = gelu"), "{after}");
    let keep = vec![expected_keep(&dense, 0, 4), expected_keep(&dense, 1, 4)];
    assert_equal(&masked_dense(&dense, &keep), &g);
}

#[test]
fn no_argument_removes_half_of_every_layer() {
    let (mut a, mut b) = (dense(), dense());
    let r = run(&mut a, "ffn").unwrap();
    assert_eq!(r[0].changed["neurons removed"], 16, "half of 2 layers x 16 neurons");
    run(&mut b, "ffn(ratio=0.5)").unwrap();
    assert_eq!(print(&a), print(&b));
}

#[test]
fn multiple_rounds_the_kept_width_up() {
    let mut g = dense();
    let r = run(&mut g, "ffn(count=7,multiple=4)").unwrap();
    // 16 - 7 = 9 kept rounds up to 12: 4 removed per layer.
    assert_eq!(r[0].changed["neurons removed"], 8);
    assert!(print(&g).contains("@l0.in.weight: f32[8, 12]"));
}

#[test]
fn removing_every_neuron_leaves_the_bias_and_norm() {
    let dense = dense();
    let mut g = dense.clone();
    let r = run(&mut g, "ffn(ratio=1.0)").unwrap();
    assert_eq!(r[0].changed["ffn blocks removed"], 2);
    let after = print(&g);
    assert!(!after.contains("gelu") && !after.contains("@l0.in.weight"), "{after}");
    assert_equal(&masked_dense(&dense, &[vec![false; 16], vec![false; 16]]), &g);
}

#[test]
fn bad_ffn_arguments_are_named() {
    for (pipeline, want) in [
        ("ffn(ratio=0.5,count=3)", "at most one of ratio"),
        ("ffn(ratio=1.5)", "1.5 is not in [0, 1]"),
        ("ffn(count=3,multiple=0)", "at least 1"),
        ("ffn(ratio=x)", "cannot read `x`"),
        ("ffn(width=3)", "no argument `width`"),
    ] {
        let e = Pipeline::parse(pipeline).err().unwrap_or_else(|| panic!("{pipeline} parsed")).to_string();
        assert!(e.contains("ffn") && e.contains(want), "{pipeline}: {e}");
    }
}
