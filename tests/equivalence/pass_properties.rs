//! Properties of the pruning passes on random small models (proptest): every pass leaves a graph the verifier
//! accepts; the physically pruned graph (`heads`, `ffn`, `tile`, `head-size`, `type0`, `qkv`) computes what the dense graph computes with the
//! same units zeroed (<= 1e-5 in the interpreter), where the zeroed units are read back from the pruned graph's
//! own weights; the zeros-only passes (`vw`, `bw`) zero exactly what their rule says; sparsity 0 is the
//! identity; and the exported ONNX agrees with the interpreter in tract (<= 1e-4) and passes `onnx.checker`.

use crate::common;

use std::path::{Path, PathBuf};

use bertopt::run::{Batch, Runtime};
use bertopt_ir::{interp, ops::tile_names, Graph};
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;
use candle_core::{Device, Tensor};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A random model: scheme, layers, heads, head size, FFN width, labels, weights seed.
fn spec() -> impl Strategy<Value = TinySpec> {
    (0..3u8, 1..=3usize, 1..=4usize, prop::sample::select(vec![2usize, 4, 8]), 1..=6usize, 2..=3usize, any::<u64>())
        .prop_map(|(scheme, layers, heads, head_dim, inter8, labels, seed)| {
            let (scheme, labels) = match scheme {
                0 => (Scheme::Bare, 0),
                1 => (Scheme::Bert, labels),
                _ => (Scheme::Roberta, labels),
            };
            TinySpec {
                scheme,
                layers,
                hidden: heads * head_dim,
                heads,
                intermediate: inter8 * 8,
                max_positions: 16,
                labels,
                seed,
                ..TinySpec::default()
            }
        })
}

/// Two rows of six tokens, the last position of the second padded.
fn batch(vocab: usize, seed: u64) -> Batch {
    let ids: Vec<i64> = (0..12).map(|i| ((seed as usize + i * 7) % vocab) as i64).collect();
    let mut mask = vec![1; 12];
    mask[11] = 0;
    Batch { batch: 2, seq: 6, input_ids: ids, attention_mask: mask, token_type_ids: vec![0; 12] }
}

fn the_output(g: &Graph, b: &Batch) -> (String, Vec<usize>, Vec<f32>) {
    let out = interp::run(g, &common::ir_inputs(b)).expect("the interpreter runs the graph");
    let (name, t) = out.into_iter().next().unwrap();
    (name, t.dims().to_vec(), common::flat(&t))
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// What every case checks, given the dense graph with the pruned units zeroed (`masked`).
struct Case<'a> {
    dir: &'a Path,
    spec: &'a TinySpec,
    pipeline: String,
}

impl Case<'_> {
    /// Prune, verify, compare with `masked(dense, pruned)`, export, compare tract with the interpreter.
    /// Returns the exported file for the checker.
    fn check(&self, masked: impl Fn(&Graph, &Graph) -> Graph) -> Result<PathBuf, TestCaseError> {
        let model = self.dir.join(format!("m{}", self.spec.seed));
        write_tiny_model(&model, self.spec).unwrap();
        let (dense, _) = bertopt_models::load_graph(&model).unwrap();
        let mut pruned = dense.clone();
        bertopt_passes::Pipeline::parse(&self.pipeline)
            .and_then(|p| p.run(&mut pruned, &mut Default::default()))
            .map_err(|e| fail(format!("{}: {e}", self.pipeline)))?;
        bertopt_ir::verify(&pruned).map_err(|e| fail(format!("verifier after {}: {e}", self.pipeline)))?;

        let b = batch(self.spec.vocab, self.spec.seed);
        let (name, shape, got) = the_output(&pruned, &b);
        let (_, _, want) = the_output(&masked(&dense, &pruned), &b);
        let d = common::max_diff(&name, &b, &shape, &got, &want);
        prop_assert!(d <= 1e-5, "{}: pruned differs from masked dense by {d}", self.pipeline);

        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let onnx = self.dir.join(format!("{}.onnx", FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        bertopt::export::export(&model, &self.pipeline, &onnx).map_err(|e| fail(format!("export: {e:#}")))?;
        let outs = bertopt::run::load(Runtime::Tract, &onnx, Default::default()).unwrap().run(&b).unwrap();
        let t = common::output(&outs, &name);
        let d = common::max_diff(&name, &b, &shape, &t.data, &got);
        prop_assert!(d <= 1e-4, "{}: tract differs from the interpreter by {d}", self.pipeline);
        Ok(onnx)
    }
}

/// Run `cases` random cases of `property`, then `onnx.checker` on every file they exported (one Python call).
fn run_property(
    cases: u32,
    strategy: impl Strategy<Value = (TinySpec, f64, u64)>,
    property: impl Fn(&Case, f64, u64) -> Result<PathBuf, TestCaseError>,
) {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let files = std::cell::RefCell::new(vec![]);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(spec, x, k)| {
            let case = Case { dir: d.path(), spec: &spec, pipeline: String::new() };
            files.borrow_mut().push(property(&case, x, k)?);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    common::onnx_check_parts(&files.borrow());
}

fn weight(g: &Graph, name: &str) -> Tensor {
    g.weights.tensor(name).unwrap_or_else(|| panic!("no weight {name}")).clone()
}

/// Zero, in `g`, the columns of `{p}.weight` (K x N) and entries of `{p}.bias` where `keep` is false.
fn zero_columns(g: &mut Graph, p: &str, keep: &[bool]) {
    let m = Tensor::new(keep.iter().map(|&k| if k { 1f32 } else { 0.0 }).collect::<Vec<_>>().as_slice(), &Device::Cpu)
        .unwrap();
    for part in ["weight", "bias"] {
        let name = format!("{p}.{part}");
        let t = weight(g, &name).broadcast_mul(&m).unwrap();
        g.weights.insert(name, t);
    }
}

fn columns(t: &Tensor) -> Vec<Vec<f32>> {
    let rows = t.to_vec2::<f32>().unwrap();
    (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c]).collect()).collect()
}

/// Which of the dense matrix's columns survive in the pruned one (each pruned column equals a dense one).
fn surviving_columns(dense: &Tensor, pruned: Option<&Tensor>) -> Vec<bool> {
    let dense_cols = columns(dense);
    let mut keep = vec![false; dense_cols.len()];
    if let Some(p) = pruned {
        for col in columns(p) {
            let j = dense_cols.iter().position(|d| *d == col).expect("a pruned column is a dense column");
            keep[j] = true;
        }
    }
    keep
}

#[test]
fn heads_pruned_equals_the_mask_applied_to_the_dense_graph() {
    let s = (spec(), Just(0.0), any::<u64>());
    run_property(12, s, |case, _, bits| {
        let keep: Vec<Vec<bool>> = (0..case.spec.layers)
            .map(|l| (0..case.spec.heads).map(|h| (bits >> ((l * case.spec.heads + h) % 64)) & 1 == 1).collect())
            .collect();
        let mask = case.dir.join(format!("mask{}.json", case.spec.seed));
        std::fs::write(&mask, bertopt_passes::mask::HeadMask { keep: keep.clone() }.to_json()).unwrap();
        let case = Case { pipeline: format!("heads(mask={})", mask.display()), ..*case };
        let head_dim = case.spec.hidden / case.spec.heads;
        case.check(|dense, _| {
            // A removed head's value columns zeroed: its context is zero, as if its probabilities were masked.
            let mut g = dense.clone();
            for (l, k) in keep.iter().enumerate() {
                let cols: Vec<bool> = k.iter().flat_map(|&x| std::iter::repeat_n(x, head_dim)).collect();
                zero_columns(&mut g, &format!("encoder.layer.{l}.attention.self.value"), &cols);
            }
            g
        })
    });
}

#[test]
fn ffn_pruned_equals_the_dense_graph_with_those_neurons_zeroed() {
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75, 1.0]), Just(0));
    run_property(12, s, |case, ratio, _| {
        let case = Case { pipeline: format!("ffn(ratio={ratio})"), ..*case };
        case.check(|dense, pruned| {
            let mut g = dense.clone();
            for l in 0..case.spec.layers {
                let p = format!("encoder.layer.{l}.intermediate.dense");
                let w = format!("{p}.weight");
                let keep = surviving_columns(&weight(dense, &w), pruned.weights.tensor(&w));
                let removed = keep.iter().filter(|k| !**k).count();
                assert_eq!(removed, (ratio * case.spec.intermediate as f64).round() as usize, "layer {l}");
                zero_columns(&mut g, &p, &keep);
            }
            g
        })
    });
}

#[test]
fn tiled_equals_the_dense_graph_with_the_dropped_row_segments_and_columns_zeroed() {
    // The low bit of the third value picks type 8 (n=true), the rest the tile width.
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75]), prop::sample::select(vec![4u64, 5, 8, 9, 16, 17]));
    run_property(14, s, |case, sparsity, bits| {
        let (g_width, n) = ((bits / 2) as usize, bits % 2 == 1);
        let case = Case { pipeline: format!("tile(sparsity={sparsity},g={g_width},n={n})"), ..*case };
        case.check(|dense, pruned| {
            // Every tiled group: the FFN's tiled linears and the attention projections tiled in place.
            let mut g = dense.clone();
            let groups: Vec<String> =
                pruned.weights.0.keys().filter_map(|n| n.strip_suffix(".tile0.rows").map(str::to_string)).collect();
            for w in groups {
                let name = format!("{w}.weight");
                let (k, cols) = weight(dense, &name).dims2().unwrap();
                // Type 8 lists the columns the tiles compute; the others keep only their bias.
                let computed: Vec<usize> = match pruned.weights.tensor(&bertopt_ir::ops::cols_name(&w)) {
                    Some(t) => t.to_vec1::<i64>().unwrap().into_iter().map(|c| c as usize).collect(),
                    None => (0..cols).collect(),
                };
                let mut m = vec![0f32; k * cols];
                for (t, tile_cols) in computed.chunks(g_width).enumerate() {
                    let rows = pruned.weights.tensor(&tile_names(&w, t).0).unwrap().to_vec1::<i64>().unwrap();
                    for r in rows {
                        for &c in tile_cols {
                            m[r as usize * cols + c] = 1.0;
                        }
                    }
                }
                let mask = Tensor::from_vec(m, (k, cols), &Device::Cpu).unwrap();
                g.weights.insert(name.clone(), (weight(dense, &name) * mask).unwrap());
            }
            g
        })
    });
}

/// Zero, in `g`, the rows of `{p}.weight` (input features) that `pruned` no longer reads: those missing from
/// its single tile's kept rows. Returns the kept rows (all of them when `pruned` left `p` dense).
fn zero_unread_rows(g: &mut Graph, pruned: &Graph, p: &str) -> Vec<i64> {
    let name = format!("{p}.weight");
    let (k, n) = weight(g, &name).dims2().unwrap();
    let Some(rows) = pruned.weights.tensor(&tile_names(p, 0).0) else { return (0..k as i64).collect() };
    assert!(!pruned.weights.0.contains_key(&tile_names(p, 1).1), "{p}: one tile");
    let rows = rows.to_vec1::<i64>().unwrap();
    let mut m = vec![0f32; k * n];
    for &r in &rows {
        m[r as usize * n..(r as usize + 1) * n].fill(1.0);
    }
    let mask = Tensor::from_vec(m, (k, n), &Device::Cpu).unwrap();
    g.weights.insert(name.clone(), (weight(g, &name) * mask).unwrap());
    rows
}

fn projections(l: usize) -> [String; 3] {
    ["query", "key", "value"].map(|x| format!("encoder.layer.{l}.attention.self.{x}"))
}

#[test]
fn type0_equals_the_dense_graph_with_whole_row_blocks_zeroed() {
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75]), prop::sample::select(vec![0u64, 2, 3]));
    run_property(10, s, |case, sparsity, block| {
        let block_arg = if block == 0 { String::new() } else { format!(",block={block}") };
        let case = Case { pipeline: format!("type0(sparsity={sparsity}{block_arg})"), ..*case };
        let b = if block == 0 { case.spec.hidden / case.spec.heads } else { block as usize };
        let blocks = case.spec.hidden.div_ceil(b);
        let removed_blocks = ((blocks as f64 * sparsity) as usize).min(blocks - 1);
        case.check(|dense, pruned| {
            let mut g = dense.clone();
            for l in 0..case.spec.layers {
                for p in projections(l) {
                    let rows = zero_unread_rows(&mut g, pruned, &p);
                    // Whole blocks go, exactly int(blocks * sparsity) of them per matrix.
                    let kept: std::collections::BTreeSet<usize> = rows.iter().map(|&r| r as usize / b).collect();
                    assert_eq!(blocks - kept.len(), removed_blocks, "{p}: blocks removed");
                    for &k in &kept {
                        let full = (k * b..((k + 1) * b).min(case.spec.hidden)).all(|r| rows.contains(&(r as i64)));
                        assert!(full, "{p}: block {k} is partly kept: {rows:?}");
                    }
                }
            }
            g
        })
    });
}

#[test]
fn qkv_drops_the_same_input_features_from_q_k_and_v() {
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75]), Just(0));
    run_property(10, s, |case, sparsity, _| {
        let case = Case { pipeline: format!("qkv(sparsity={sparsity})"), ..*case };
        let removed = ((case.spec.hidden as f64 * sparsity) as usize).min(case.spec.hidden - 1);
        case.check(|dense, pruned| {
            let mut g = dense.clone();
            for l in 0..case.spec.layers {
                let rows: Vec<Vec<i64>> = projections(l).iter().map(|p| zero_unread_rows(&mut g, pruned, p)).collect();
                assert!(rows[0] == rows[1] && rows[1] == rows[2], "layer {l}: Q, K, V read different features");
                assert_eq!(case.spec.hidden - rows[0].len(), removed, "layer {l}: features removed");
            }
            g
        })
    });
}

#[test]
fn head_size_equals_the_dense_graph_with_those_head_dimensions_zeroed() {
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75]), Just(0));
    run_property(10, s, |case, sparsity, _| {
        let case = Case { pipeline: format!("head-size(sparsity={sparsity})"), ..*case };
        let (heads, d) = (case.spec.heads, case.spec.hidden / case.spec.heads);
        let removed = ((d as f64 * sparsity) as usize).min(d - 1);
        case.check(|dense, pruned| {
            // Value columns are copied unscaled, so they identify the kept dimensions; the query's are rescaled.
            let mut g = dense.clone();
            for l in 0..case.spec.layers {
                let [q, k, v] = projections(l);
                let w = format!("{v}.weight");
                let keep = surviving_columns(&weight(dense, &w), pruned.weights.tensor(&w));
                let dims: Vec<bool> = keep[..d].to_vec();
                for h in 0..heads {
                    assert_eq!(keep[h * d..(h + 1) * d], dims[..], "layer {l}: head {h} keeps other dimensions");
                }
                assert_eq!(dims.iter().filter(|k| !**k).count(), removed, "layer {l}: dimensions removed");
                for p in [&q, &k, &v] {
                    zero_columns(&mut g, p, &keep);
                }
            }
            g
        })
    });
}

type Matrix = Vec<Vec<f32>>;

/// The matrices the zeros-only passes touch, as (name, dense K x N, pruned K x N).
fn zeroed_matrices(dense: &Graph, pruned: &Graph) -> Vec<(String, Matrix, Matrix)> {
    bertopt_passes::sites::encoder_matrices(dense, "test", true)
        .unwrap()
        .into_iter()
        .map(|m| format!("{}.weight", m.group))
        .map(|n| (n.clone(), weight(dense, &n).to_vec2().unwrap(), weight(pruned, &n).to_vec2().unwrap()))
        .collect()
}

#[test]
fn vector_wise_keeps_the_largest_entries_of_every_run() {
    let s = (spec(), prop::sample::select(vec![0.5, 0.75]), prop::sample::select(vec![2u64, 4, 8]));
    run_property(10, s, |case, sparsity, v| {
        let v = v as usize;
        let case = Case { pipeline: format!("vw(sparsity={sparsity},v={v})"), ..*case };
        let keep = ((1.0 - sparsity) * v as f64) as usize;
        case.check(|dense, pruned| {
            for (name, d, p) in zeroed_matrices(dense, pruned) {
                for c in 0..d[0].len() {
                    for start in (0..d.len()).step_by(v) {
                        let run: Vec<(f32, f32)> =
                            (start..(start + v).min(d.len())).map(|r| (d[r][c], p[r][c])).collect();
                        let kept: Vec<f32> = run.iter().filter(|(_, p)| *p != 0.0).map(|(d, _)| d.abs()).collect();
                        let gone: Vec<f32> = run.iter().filter(|(_, p)| *p == 0.0).map(|(d, _)| d.abs()).collect();
                        assert!(run.iter().all(|(d, p)| *p == 0.0 || p == d), "{name}: kept entries are unchanged");
                        assert_eq!(kept.len(), keep.min(run.len()), "{name} column {c} run at {start}");
                        let (lo, hi) =
                            (kept.iter().cloned().fold(f32::MAX, f32::min), gone.iter().cloned().fold(0f32, f32::max));
                        assert!(kept.is_empty() || lo >= hi, "{name}: a removed entry is larger than a kept one");
                    }
                }
            }
            pruned.clone() // zeros only: the pruned graph is its own masked dense
        })
    });
}

#[test]
fn block_wise_zeroes_whole_blocks_and_their_number_follows_the_sparsity() {
    let s = (spec(), prop::sample::select(vec![0.25, 0.5, 0.75]), prop::sample::select(vec![2u64, 4]));
    run_property(10, s, |case, sparsity, bsize| {
        let g = bsize as usize;
        let case = Case { pipeline: format!("bw(sparsity={sparsity},g={g})"), ..*case };
        case.check(|dense, pruned| {
            for (name, d, p) in zeroed_matrices(dense, pruned) {
                let (k, n) = (d.len(), d[0].len());
                let (mut blocks, mut zero_blocks) = (0, 0);
                for r0 in (0..k).step_by(g) {
                    for c0 in (0..n).step_by(g) {
                        let cells: Vec<(usize, usize)> =
                            (r0..(r0 + g).min(k)).flat_map(|r| (c0..(c0 + g).min(n)).map(move |c| (r, c))).collect();
                        let zeroed = cells.iter().filter(|&&(r, c)| p[r][c] == 0.0).count();
                        assert!(zeroed == 0 || zeroed == cells.len(), "{name}: block ({r0}, {c0}) is partly zeroed");
                        assert!(cells.iter().all(|&(r, c)| p[r][c] == 0.0 || p[r][c] == d[r][c]));
                        blocks += 1;
                        zero_blocks += usize::from(zeroed > 0);
                    }
                }
                assert_eq!(zero_blocks, (blocks as f64 * sparsity) as usize, "{name}: {blocks} blocks");
            }
            pruned.clone()
        })
    });
}

#[test]
fn zero_sparsity_is_the_identity_for_every_pass() {
    let s = (spec(), Just(0.0), Just(0));
    run_property(6, s, |case, _, _| {
        let mut last = None;
        for p in [
            "heads(ratio=0)",
            "ffn(ratio=0)",
            "tile(sparsity=0,g=4)",
            "kgran(sparsity=0,g=4)",
            "head-size(sparsity=0)",
            "type0(sparsity=0)",
            "qkv(sparsity=0)",
            "vw(sparsity=0,v=4)",
            "bw(sparsity=0,g=4)",
        ] {
            let case = Case { pipeline: p.into(), ..*case };
            last = Some(case.check(|dense, pruned| {
                assert_eq!(bertopt_ir::print(pruned), bertopt_ir::print(dense), "{p} changed the graph");
                for (name, w) in &dense.weights.0 {
                    let (a, b) = (w.data.as_ref().unwrap(), pruned.weights.tensor(name).unwrap());
                    assert_eq!(common::flat(a), common::flat(b), "{p} changed {name}");
                }
                dense.clone()
            })?);
        }
        Ok(last.unwrap())
    });
}
