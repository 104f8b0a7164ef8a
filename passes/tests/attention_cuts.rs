//! The passes that cut attention projections other than by whole heads: `head-size` (type 1), `type0`, `qkv`
//! (type 3) and `tile` on Q/K/V/O. equality with the masked dense graph, and the
//! order rules (a projection that is already tiled cannot be cut by heads again).

mod common;

use bertopt_ir::{interp, parse, print, verify, Graph};
use bertopt_passes::{PassContext, Pipeline};
use candle_core::{Device, Tensor};
use common::*;

/// `heads.rs`'s two attention layers with 2 heads of 4 (so that head-size and head-dim blocks have room).
fn two_layers() -> String {
    include_str!("fixtures/two_attention_layers.ir").replace("heads: 4, head_dim: 2", "heads: 2, head_dim: 4")
}

fn run(g: &mut Graph, pipeline: &str) -> Result<(), String> {
    Pipeline::parse(pipeline).and_then(|p| p.run(g, &mut PassContext::default())).map(|_| ()).map_err(|e| e.to_string())
}

fn pruned(pipeline: &str) -> (Graph, Graph) {
    let dense = with_data(parse(&two_layers()).unwrap());
    let mut g = dense.clone();
    run(&mut g, pipeline).unwrap();
    verify(&g).unwrap();
    (dense, g)
}

/// `dense` with weight `name` multiplied elementwise by `mask` (same shape).
fn masked(mut dense: Graph, name: &str, mask: Vec<f32>) -> Graph {
    let w = dense.weights.tensor(name).unwrap();
    let m = Tensor::from_vec(mask, w.dims(), &Device::Cpu).unwrap();
    let t = (w * m).unwrap();
    dense.weights.insert(name.to_string(), t);
    dense
}

fn assert_same_output(a: &Graph, b: &Graph) {
    let x = inputs(2, 5, 20);
    let (ya, yb) = (interp::run(a, &x).unwrap(), interp::run(b, &x).unwrap());
    let d = max_abs_diff(&ya[0].1, &yb[0].1);
    assert!(d <= 1e-5, "differs from the masked dense graph by {d}");
}

#[test]
fn head_size_shrinks_every_head_and_keeps_the_attention_scale() {
    let (dense, g) = pruned("head-size(sparsity=0.5)");
    let text = print(&g);
    assert!(text.contains("{heads: 2, head_dim: 2, query: @l0.q"), "{text}");
    assert!(text.contains("@l0.o.weight: f32[4, 8]"), "{text}");
    // The kept dimensions, read from the value matrix (copied unscaled): zero the others' Q/K/V columns.
    let mut want = dense.clone();
    for l in ["l0", "l1"] {
        let dv = dense.weights.tensor(&format!("{l}.v.weight")).unwrap().to_vec2::<f32>().unwrap();
        let pv = g.weights.tensor(&format!("{l}.v.weight")).unwrap().to_vec2::<f32>().unwrap();
        let kept: Vec<bool> = (0..8).map(|c| (0..4).any(|j| (0..8).all(|r| dv[r][c] == pv[r][j]))).collect();
        assert_eq!(kept.iter().filter(|k| **k).count(), 4, "{l}: two of four dimensions in each of two heads");
        assert_eq!(kept[..4], kept[4..], "{l}: both heads keep the same dimensions");
        for m in ["q", "k", "v"] {
            let cols: Vec<f32> = (0..64).map(|i| if kept[i % 8] { 1.0 } else { 0.0 }).collect();
            want = masked(want, &format!("{l}.{m}.weight"), cols);
            let bias: Vec<f32> = kept.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            want = masked(want, &format!("{l}.{m}.bias"), bias);
        }
    }
    assert_same_output(&want, &g);
}

/// `dense` with the rows of each tiled projection that its single tile does not read zeroed.
fn rows_zeroed(dense: &Graph, g: &Graph, projections: &[&str]) -> Graph {
    let mut want = dense.clone();
    for p in projections {
        let rows = g.weights.tensor(&format!("{p}.tile0.rows")).unwrap().to_vec1::<i64>().unwrap();
        let mask: Vec<f32> = (0..64).map(|i| if rows.contains(&(i as i64 / 8)) { 1.0 } else { 0.0 }).collect();
        want = masked(want, &format!("{p}.weight"), mask);
    }
    want
}

#[test]
fn type0_drops_blocks_of_input_rows_from_each_matrix_on_its_own() {
    let (dense, g) = pruned("type0(sparsity=0.5)");
    let text = print(&g);
    // Blocks of head_dim = 4 rows: one of two goes from each of Q, K, V; the output projection stays dense.
    for p in ["l0.q", "l0.k", "l0.v", "l1.q", "l1.k", "l1.v"] {
        assert!(text.contains(&format!("@{p}.tile0.weight: f32[4, 8]")), "{p}: {text}");
        let rows = g.weights.tensor(&format!("{p}.tile0.rows")).unwrap().to_vec1::<i64>().unwrap();
        assert!(rows == [0, 1, 2, 3] || rows == [4, 5, 6, 7], "{p}: a whole block, got {rows:?}");
    }
    assert!(text.contains("@l0.o.weight: f32[8, 8]"), "{text}");
    let all = ["l0.q", "l0.k", "l0.v", "l1.q", "l1.k", "l1.v"];
    assert_same_output(&rows_zeroed(&dense, &g, &all), &g);
}

#[test]
fn qkv_drops_the_same_features_from_q_k_and_v() {
    let (dense, g) = pruned("qkv(sparsity=0.25)");
    for l in ["l0", "l1"] {
        let rows: Vec<Vec<i64>> = ["q", "k", "v"]
            .iter()
            .map(|m| g.weights.tensor(&format!("{l}.{m}.tile0.rows")).unwrap().to_vec1::<i64>().unwrap())
            .collect();
        assert_eq!(rows[0].len(), 6, "{l}: int(8 * 0.25) = 2 features go");
        assert!(rows[0] == rows[1] && rows[1] == rows[2], "{l}: {rows:?}");
    }
    let all = ["l0.q", "l0.k", "l0.v", "l1.q", "l1.k", "l1.v"];
    assert_same_output(&rows_zeroed(&dense, &g, &all), &g);
}

#[test]
fn tile_reaches_the_attention_projections_unless_told_not_to() {
    let (_, g) = pruned("tile(sparsity=0.5,g=4)");
    let text = print(&g);
    for p in ["l0.q", "l0.k", "l0.v", "l0.o"] {
        assert!(text.contains(&format!("@{p}.tile1.rows")), "{p}: {text}");
        assert!(!text.contains(&format!("@{p}.weight")), "{p}: {text}");
    }
    // kgran (type 2): the same cut, every tile losing the same number of row segments (8 * 0.5 of 8 rows).
    let (_, g) = pruned("kgran(sparsity=0.5,g=4)");
    let text = print(&g);
    for t in 0..2 {
        assert!(text.contains(&format!("@l1.o.tile{t}.rows: i64[4]")), "{text}");
    }
    let (dense, g) = pruned("tile(sparsity=0.5,g=4,attention=false)");
    assert_eq!(print(&g), print(&dense), "no per-token linear outside attention: nothing to tile");
}

#[test]
fn passes_that_need_dense_projections_refuse_tiled_ones() {
    for (first, then) in [("qkv", "heads(ratio=0.5)"), ("tile", "head-size"), ("type0", "qkv"), ("tile", "type0")] {
        let mut g = with_data(parse(&two_layers()).unwrap());
        let err = run(&mut g, &format!("{first},{then}")).unwrap_err();
        assert!(err.contains("@l0.q is already tiled") && err.contains("before the pass that tiled it"), "{err}");
    }
}

#[test]
fn heads_then_head_size_then_qkv_compose() {
    let (_, g) = pruned("heads(ratio=0.5),head-size(sparsity=0.5),qkv(sparsity=0.5)");
    let text = print(&g);
    assert!(text.contains("{heads: 1, head_dim: 2, query: @l0.q"), "{text}");
    assert!(text.contains("@l0.q.tile0.weight: f32[4, 2]"), "{text}");
}
