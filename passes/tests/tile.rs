//! The `tile` pass (TileSparsity types 2 and 7) on a two-layer FFN graph: the text
//! form round-trip of `tiled_linear`, equality with the dense graph whose removed row segments are zeroed, on
//! many random weight sets and sparsities, with the kept segments computed here independently; 0 % is the
//! identity; argument errors.

mod common;

use bertopt_ir::ops;
use bertopt_ir::{interp, parse, print, verify, Graph, Op};
use bertopt_passes::{PassContext, Pipeline};
use candle_core::{Device, Tensor};
use common::*;

const TWO_FFNS: &str = include_str!("fixtures/two_ffns.ir");

fn run(g: &mut Graph, pipeline: &str) -> Vec<bertopt_passes::PassReport> {
    Pipeline::parse(pipeline).unwrap().run(g, &mut PassContext::default()).unwrap()
}

/// Per-token linears of the graph in order: (name, K, N).
fn linears(g: &Graph) -> Vec<(String, usize, usize)> {
    g.topo_order()
        .unwrap()
        .into_iter()
        .filter_map(|n| match &g.dag[n].op {
            Op::Linear(ops::Linear { w, k, n: nn }) if g.dag[n].ty.rank() == 3 => Some((w.clone(), *k, *nn)),
            _ => None,
        })
        .collect()
}

/// The kept segments by the documented rule, with plain loops: score = mean of squares over the tile's columns;
/// each tile's best row is exempt; the `floor(S * all rows)` lowest go (global) or `floor(S * K)` per tile.
fn expected_keep(g: &Graph, s: f64, width: usize, global: bool) -> Vec<Vec<Vec<bool>>> {
    let mut keep = vec![];
    let mut cands: Vec<(f32, usize, usize, usize)> = vec![];
    let mut total = 0;
    for (m, (w, k, n)) in linears(g).into_iter().enumerate() {
        let wt = g.weights.tensor(&format!("{w}.weight")).unwrap().to_vec2::<f32>().unwrap();
        let mut tiles = vec![];
        let mut local = vec![];
        for (t, c0) in (0..n).step_by(width).enumerate() {
            let c1 = (c0 + width).min(n);
            let score: Vec<f32> =
                (0..k).map(|r| (c0..c1).map(|c| wt[r][c] * wt[r][c]).sum::<f32>() / (c1 - c0) as f32).collect();
            let mut best = 0;
            for r in 0..k {
                if score[r] >= score[best] {
                    best = r; // the last maximum: ties keep the later row, as the pass does
                }
            }
            let mut here: Vec<_> = (0..k).filter(|&r| r != best).map(|r| (score[r], m, t, r)).collect();
            total += k;
            if global {
                cands.append(&mut here);
            } else {
                local.push((here, (k as f64 * s) as usize));
            }
            tiles.push(vec![true; k]);
        }
        keep.push(tiles);
        for (mut here, remove) in local {
            here.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then((b.1, b.2, b.3).cmp(&(a.1, a.2, a.3))));
            for &(_, m, t, r) in &here[..remove.min(here.len())] {
                keep[m][t][r] = false;
            }
        }
    }
    if global {
        cands.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then((b.1, b.2, b.3).cmp(&(a.1, a.2, a.3))));
        let remove = ((total as f64 * s) as usize).min(cands.len());
        for &(_, m, t, r) in &cands[..remove] {
            keep[m][t][r] = false;
        }
    }
    keep
}

/// The dense graph with every removed segment (row r of tile t) zeroed.
fn masked_dense(g: &Graph, keep: &[Vec<Vec<bool>>], width: usize) -> Graph {
    let mut g = g.clone();
    for ((w, k, n), tiles) in linears(&g).into_iter().zip(keep) {
        let name = format!("{w}.weight");
        let mut m = vec![1f32; k * n];
        for (t, rows) in tiles.iter().enumerate() {
            for (r, kept) in rows.iter().enumerate() {
                for c in t * width..((t + 1) * width).min(n) {
                    if !kept {
                        m[r * n + c] = 0.0;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(m, (k, n), &Device::Cpu).unwrap();
        let t = (g.weights.tensor(&name).unwrap() * mask).unwrap();
        g.weights.insert(name, t);
    }
    g
}

/// A copy of `g` with fresh pseudo-random weights from `seed`.
fn reseeded(g: &Graph, seed: u64) -> Graph {
    let mut g = g.clone();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (_, w) in g.weights.0.iter_mut() {
        let dims = w.ty.known_dims().unwrap();
        let v: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        w.data = Some(Tensor::from_vec(v, dims.as_slice(), &Device::Cpu).unwrap());
    }
    g
}

#[test]
fn global_tiling_counts_and_text_round_trip() {
    let dense = with_data(parse(TWO_FFNS).unwrap());
    verify(&dense).unwrap();
    let mut g = dense.clone();
    let r = run(&mut g, "tile(sparsity=0.5,g=8)");
    // FFN-in: K 8, N 16 -> 2 tiles; FFN-out: K 16, N 8 -> 1 tile; 2 layers: 8+8+16 rows per layer = 64 segments.
    assert_eq!(r[0].changed["row segments removed"], 32);
    assert_eq!(r[0].changed["matrices tiled"], 4);
    assert!(r[0].after.flops < r[0].before.flops);
    // Half of 2 * (8*16 + 16*8) weights go; each tile adds its kept row indices (i64).
    let indices = 2 * (2 * 4 + 8);
    assert_eq!(r[0].before.params - r[0].after.params, 2 * (8 * 16 + 16 * 8) / 2 - indices);
    let text = print(&g);
    assert!(text.contains("tiled_linear(%0) {w: @l0.in, k: 8, n: 16, tiles: 2}"), "{text}");
    assert!(text.contains("@l0.in.tile1.rows: i64["), "{text}");
    // The text form holds a tiled graph exactly (weights by declaration).
    assert_eq!(print(&parse(&text).unwrap()), text);
}

#[test]
fn pruned_equals_masked_dense_on_random_weights() {
    let base = parse(TWO_FFNS).unwrap();
    let x = inputs(2, 5, 20);
    let mut cases = 0;
    for seed in 1..=12u64 {
        let dense = reseeded(&base, seed);
        for (s, width, global) in [(0.25, 8, true), (0.5, 4, true), (0.75, 8, false), (0.6, 5, false), (0.9, 16, true)]
        {
            let scope = if global { "global" } else { "tile" };
            let mut g = dense.clone();
            run(&mut g, &format!("tile(sparsity={s},g={width},scope={scope})"));
            verify(&g).unwrap();
            let want = interp::run(&masked_dense(&dense, &expected_keep(&dense, s, width, global), width), &x).unwrap();
            let got = interp::run(&g, &x).unwrap();
            let d = max_abs_diff(&want[0].1, &got[0].1);
            assert!(d <= 1e-5, "seed {seed}, sparsity {s}, g {width}, {scope}: differs by {d}");
            cases += 1;
        }
    }
    assert_eq!(cases, 60);
}

#[test]
fn per_tile_scope_removes_the_same_fraction_everywhere() {
    let mut g = with_data(parse(TWO_FFNS).unwrap());
    run(&mut g, "tile(sparsity=0.5,g=8,scope=tile)");
    for (name, w) in &g.weights.0 {
        if name.ends_with(".rows") {
            let k = if name.contains(".in.") { 8 } else { 16 };
            assert_eq!(w.ty.known_dims().unwrap(), vec![k - k / 2], "{name}");
        }
    }
}

#[test]
fn zero_sparsity_is_the_identity() {
    let dense = with_data(parse(TWO_FFNS).unwrap());
    let mut g = dense.clone();
    let r = run(&mut g, "tile(sparsity=0)");
    assert_eq!(r[0].changed["row segments removed"], 0);
    assert_eq!(print(&g), print(&dense));
}

#[test]
fn bad_tile_arguments_are_named() {
    for (pipeline, want) in [
        ("tile(sparsity=1)", "1 is not in [0, 1)"),
        ("tile(g=0)", "at least 1"),
        ("tile(scope=row)", "use global (type 7) or tile (type 2)"),
        ("tile(n=maybe)", "cannot read `maybe`"),
    ] {
        let e = Pipeline::parse(pipeline).err().unwrap_or_else(|| panic!("{pipeline} parsed")).to_string();
        assert!(e.contains("tile") && e.contains(want), "{pipeline}: {e}");
    }
}

/// Type 8's column cut by the documented rule, with plain loops: score = mean of squares over K; each matrix's
/// best column is exempt; the `floor(S * all columns)` lowest go.
fn expected_columns(g: &Graph, s: f64) -> Vec<Vec<usize>> {
    let mut cands: Vec<(f32, usize, usize)> = vec![];
    let mut total = 0;
    let lin = linears(g);
    for (m, (w, k, n)) in lin.iter().enumerate() {
        let wt = g.weights.tensor(&format!("{w}.weight")).unwrap().to_vec2::<f32>().unwrap();
        let score: Vec<f32> = (0..*n).map(|c| (0..*k).map(|r| wt[r][c] * wt[r][c]).sum::<f32>() / *k as f32).collect();
        let mut best = 0; // the highest score, the lowest index among equals
        for c in 0..*n {
            if score[c] > score[best] {
                best = c;
            }
        }
        cands.extend((0..*n).filter(|&c| c != best).map(|c| (score[c], m, c)));
        total += n;
    }
    cands.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then((b.1, b.2).cmp(&(a.1, a.2))));
    let remove = ((total as f64 * s) as usize).min(cands.len());
    let mut keep: Vec<Vec<bool>> = lin.iter().map(|(_, _, n)| vec![true; *n]).collect();
    for &(_, m, c) in &cands[..remove] {
        keep[m][c] = false;
    }
    keep.iter().map(|k| (0..k.len()).filter(|&c| k[c]).collect()).collect()
}

#[test]
fn type8_removes_whole_columns_then_tiles_the_survivors() {
    for seed in 1..=6u64 {
        let dense = reseeded(&parse(TWO_FFNS).unwrap(), seed);
        let mut g = dense.clone();
        let r = run(&mut g, "tile(sparsity=0.5,g=4,n=true)");
        verify(&g).unwrap();
        let want_cols = expected_columns(&dense, 0.5);
        let mut masked = dense.clone();
        let mut cols_removed = 0;
        for ((w, k, n), cols) in linears(&dense).into_iter().zip(&want_cols) {
            let got: Vec<usize> = match g.weights.tensor(&format!("{w}.cols")) {
                Some(t) => t.to_vec1::<i64>().unwrap().into_iter().map(|c| c as usize).collect(),
                None => (0..n).collect(),
            };
            assert_eq!(&got, cols, "seed {seed}: columns of {w}");
            cols_removed += n - cols.len();
            let mut m = vec![0f32; k * n];
            for (t, tile_cols) in cols.chunks(4).enumerate() {
                let rows = g.weights.tensor(&format!("{w}.tile{t}.rows")).unwrap().to_vec1::<i64>().unwrap();
                for r in rows {
                    for &c in tile_cols {
                        m[r as usize * n + c] = 1.0;
                    }
                }
            }
            let name = format!("{w}.weight");
            let mask = Tensor::from_vec(m, (k, n), &Device::Cpu).unwrap();
            let t = (dense.weights.tensor(&name).unwrap() * mask).unwrap();
            masked.weights.insert(name, t);
        }
        assert_eq!(r[0].changed["output columns removed"], cols_removed);
        let x = inputs(2, 5, 20);
        let d = max_abs_diff(&interp::run(&masked, &x).unwrap()[0].1, &interp::run(&g, &x).unwrap()[0].1);
        assert!(d <= 1e-5, "seed {seed}: differs from the masked dense graph by {d}");
        if seed == 1 {
            let text = print(&g);
            assert!(text.contains("@l0.in.cols: i64["), "{text}");
            assert_eq!(print(&parse(&text).unwrap()), text);
        }
    }
}
