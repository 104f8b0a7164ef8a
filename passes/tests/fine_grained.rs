//! `vw` (type 4) and `bw` (type 5): zeros in place, shapes unchanged, the pattern exactly as specified (checked
//! here element by element on every encoder matrix, attention projections included), 0 % is the identity, and
//! the report says that a dense runtime gains nothing.

mod common;

use bertopt_ir::{parse, print, verify, Graph};
use bertopt_passes::{PassContext, Pipeline};
use common::*;

const ONE_LAYER: &str = include_str!("fixtures/one_layer.ir");
const MATRICES: [&str; 6] = ["in.weight", "k.weight", "o.weight", "out.weight", "q.weight", "v.weight"];

fn graph() -> Graph {
    let g = with_data(parse(ONE_LAYER).unwrap());
    verify(&g).unwrap();
    g
}

fn run(g: &mut Graph, p: &str) -> bertopt_passes::PassReport {
    Pipeline::parse(p).unwrap().run(g, &mut PassContext::default()).unwrap().remove(0)
}

fn matrix(g: &Graph, name: &str) -> Vec<Vec<f32>> {
    g.weights.tensor(name).unwrap().to_vec2::<f32>().unwrap()
}

#[test]
fn vw_keeps_the_top_entries_of_every_run_of_16() {
    let dense = graph();
    let mut g = dense.clone();
    let r = run(&mut g, "vw(sparsity=0.75)");
    assert_eq!(r.note, Some("zeros only: shapes unchanged, a dense runtime runs no faster"));
    assert_eq!(r.before, r.after, "params and FLOPs unchanged");
    let mut zeroed = 0;
    for name in MATRICES {
        let (w0, w) = (matrix(&dense, name), matrix(&g, name));
        assert_eq!((w.len(), w[0].len()), (w0.len(), w0[0].len()), "{name}");
        for col in 0..w[0].len() {
            for start in (0..w.len()).step_by(16) {
                let run: Vec<usize> = (start..(start + 16).min(w.len())).collect();
                let kept: Vec<usize> = run.iter().copied().filter(|&r| w[r][col] != 0.0).collect();
                assert_eq!(kept.len(), 4, "{name} column {col} run at {start}");
                // The kept entries are the largest |w| of the run, unchanged.
                let min_kept = kept.iter().map(|&r| w0[r][col].abs()).fold(f32::MAX, f32::min);
                for &r in &run {
                    if w[r][col] == 0.0 {
                        assert!(w0[r][col].abs() <= min_kept, "{name}[{r}, {col}] was zeroed but outranks a kept one");
                        zeroed += 1;
                    } else {
                        assert_eq!(w[r][col], w0[r][col]);
                    }
                }
            }
        }
    }
    assert_eq!(r.changed["weights zeroed"], zeroed);
}

#[test]
fn bw_zeroes_the_weakest_blocks_of_each_matrix() {
    let dense = graph();
    let mut g = dense.clone();
    let r = run(&mut g, "bw(sparsity=0.5,g=16)");
    assert!(r.note.is_some());
    let mut blocks = 0;
    for name in MATRICES {
        let (w0, w) = (matrix(&dense, name), matrix(&g, name));
        let (k, n) = (w.len(), w[0].len());
        let mut zero = vec![];
        let mut kept = vec![];
        for r0 in (0..k).step_by(16) {
            for c0 in (0..n).step_by(16) {
                let cells: Vec<(usize, usize)> =
                    (r0..(r0 + 16).min(k)).flat_map(|r| (c0..(c0 + 16).min(n)).map(move |c| (r, c))).collect();
                let fro = cells.iter().map(|&(r, c)| w0[r][c].powi(4)).sum::<f32>().sqrt();
                if cells.iter().all(|&(r, c)| w[r][c] == 0.0) {
                    zero.push(fro);
                } else {
                    assert!(cells.iter().all(|&(r, c)| w[r][c] == w0[r][c]), "{name}: a block is half zeroed");
                    kept.push(fro);
                }
            }
        }
        let total = zero.len() + kept.len();
        assert_eq!(zero.len(), total / 2, "{name}: {total} blocks");
        let max_zero = zero.iter().copied().fold(f32::MIN, f32::max);
        let min_kept = kept.iter().copied().fold(f32::MAX, f32::min);
        assert!(max_zero <= min_kept, "{name}: a zeroed block outranks a kept one");
        blocks += zero.len();
    }
    assert_eq!(r.changed["blocks zeroed"], blocks);
}

#[test]
fn zero_sparsity_is_the_identity_and_bad_arguments_are_named() {
    let dense = graph();
    for p in ["vw(sparsity=0)", "bw(sparsity=0)"] {
        let mut g = dense.clone();
        run(&mut g, p);
        assert_eq!(print(&g), print(&dense), "{p}");
        for name in MATRICES {
            assert_eq!(matrix(&g, name), matrix(&dense, name), "{p}: {name}");
        }
    }
    for (p, want) in [("vw(v=0)", "at least 1"), ("bw(sparsity=1)", "not in [0, 1)"), ("bw(g=0)", "at least 1")] {
        let e = Pipeline::parse(p).err().unwrap().to_string();
        assert!(e.contains(want), "{p}: {e}");
    }
}
