//! Every unit cut's `Pass::keep` names exactly what the pass removes: on seeded graphs, the pruned graph's
//! matrices are the dense ones' columns of the kept units, in order. Recovery training gates what `keep` names,
//! so a difference here would train one model and export another.

mod common;

use bertopt_ir::ops;
use bertopt_ir::{parse, Graph, Op};
use bertopt_passes::{registry, Keep, PassContext, Pipeline, Recovery};
use common::with_data;

/// Columns `cols` of the [K, N] weight `name` of `g`.
fn columns(g: &Graph, name: &str, cols: &[usize]) -> Vec<Vec<f32>> {
    let w = g.weights.tensor(name).unwrap().to_vec2::<f32>().unwrap();
    w.iter().map(|row| cols.iter().map(|&c| row[c]).collect()).collect()
}

fn all(g: &Graph, name: &str) -> Vec<Vec<f32>> {
    g.weights.tensor(name).unwrap().to_vec2::<f32>().unwrap()
}

fn kept(k: &[bool]) -> Vec<usize> {
    (0..k.len()).filter(|&i| k[i]).collect()
}

/// (pipeline, fixture) for every unit cut; the test fails when a new one is registered without a case here.
const CASES: &[(&str, &str)] = &[
    ("heads(ratio=0.5)", "two_attention_layers.ir"),
    ("ffn(ratio=0.25)", "two_ffns.ir"),
    ("head-size(sparsity=0.5)", "two_attention_layers.ir"),
    ("layers(drop=1)", "three_layers.ir"),
    ("hidden(ratio=0.25)", "three_layers.ir"),
];

#[test]
fn keep_names_exactly_the_units_each_unit_cut_removes() {
    let units = registry::unit_cuts();
    for u in &units {
        assert!(CASES.iter().any(|(p, _)| p.starts_with(&format!("{u}("))), "no keep() case for unit cut `{u}`");
    }
    for (pipeline, fixture) in CASES {
        let text = std::fs::read_to_string(format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // head-size needs heads of more than one dimension to cut: 2 heads of 4.
        let text = if pipeline.starts_with("head-size") {
            text.replace("heads: 4, head_dim: 2", "heads: 2, head_dim: 4")
        } else {
            text
        };
        let dense = with_data(parse(&text).unwrap());
        let spec = &bertopt_passes::parse_pipeline(pipeline).unwrap()[0];
        let keep = registry::build(spec).unwrap().keep(&dense).unwrap().expect("a unit cut names what it keeps");
        let declared = registry::info(&spec.name).unwrap().recovery;
        assert_eq!(keep.recovery(), declared, "{pipeline}: keep() names other units than INFO declares");
        let mut pruned = dense.clone();
        Pipeline::parse(pipeline).unwrap().run(&mut pruned, &mut PassContext::default()).unwrap();
        let ops: Vec<Op> = dense.topo_order().unwrap().iter().map(|n| dense.dag[*n].op.clone()).collect();
        match keep {
            Keep::Heads(k) => {
                let attns: Vec<_> = ops
                    .iter()
                    .filter_map(|o| {
                        if let Op::Attention(ops::Attention { head_dim, value, .. }) = o {
                            Some((*head_dim, value.clone()))
                        } else {
                            None
                        }
                    })
                    .collect();
                assert_eq!(k.len(), attns.len(), "{pipeline}: one row per attention");
                for ((d, v), k) in attns.iter().zip(&k) {
                    let cols: Vec<usize> = kept(k).iter().flat_map(|h| h * d..(h + 1) * d).collect();
                    assert_eq!(
                        all(&pruned, &format!("{v}.weight")),
                        columns(&dense, &format!("{v}.weight"), &cols),
                        "{pipeline}: {v}"
                    );
                }
            }
            Keep::Neurons(k) => {
                let ins: Vec<String> = ops
                    .iter()
                    .filter_map(
                        |o| if let Op::Linear(ops::Linear { w, n: 16, .. }) = o { Some(w.clone()) } else { None },
                    )
                    .collect();
                assert_eq!(k.len(), ins.len(), "{pipeline}: one row per FFN block");
                for (w, k) in ins.iter().zip(&k) {
                    assert_eq!(
                        all(&pruned, &format!("{w}.weight")),
                        columns(&dense, &format!("{w}.weight"), &kept(k)),
                        "{pipeline}: {w}"
                    );
                }
            }
            Keep::Layers(k) => {
                assert_eq!(k, [true, false, true], "{pipeline}");
                // The kept layers' weights stay as they were; the dropped one's are gone.
                for (name, w) in &dense.weights.0 {
                    let layer = name.strip_prefix("encoder.layer.").and_then(|r| r.split('.').next());
                    let dropped = layer.and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| !k[l]);
                    match pruned.weights.tensor(name) {
                        Some(p) => {
                            assert!(!dropped, "{pipeline}: {name} of a dropped layer is still there");
                            let (a, b) = (w.data.as_ref().unwrap(), p);
                            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                            assert_eq!(diff, 0.0, "{pipeline}: {name} changed");
                        }
                        None => assert!(dropped, "{pipeline}: {name} of a kept layer is gone"),
                    }
                }
            }
            Keep::Hidden(k) => {
                assert_eq!(k.iter().filter(|x| !**x).count(), 2, "{pipeline}: a quarter of 8 features");
                let rows = |g: &Graph, name: &str, idx: &[usize]| -> Vec<Vec<f32>> {
                    let w = all(g, name);
                    idx.iter().map(|&i| w[i].clone()).collect()
                };
                let k = kept(&k);
                // Readers lose rows, writers and embedding tables columns, LayerNorms entries: the kept ones stay.
                for l in 0..3 {
                    let fc_in = format!("encoder.layer.{l}.intermediate.dense.weight");
                    assert_eq!(all(&pruned, &fc_in), rows(&dense, &fc_in, &k), "{pipeline}: {fc_in}");
                    let fc_out = format!("encoder.layer.{l}.output.dense.weight");
                    assert_eq!(all(&pruned, &fc_out), columns(&dense, &fc_out, &k), "{pipeline}: {fc_out}");
                }
                let word = "embeddings.word_embeddings.weight";
                assert_eq!(all(&pruned, word), columns(&dense, word, &k), "{pipeline}: {word}");
                let ln = "encoder.layer.1.output.LayerNorm.weight";
                let (a, b) = (dense.weights.tensor(ln).unwrap(), pruned.weights.tensor(ln).unwrap());
                let a = a.to_vec1::<f32>().unwrap();
                assert_eq!(b.to_vec1::<f32>().unwrap(), k.iter().map(|&i| a[i]).collect::<Vec<_>>(), "{pipeline}");
            }
            Keep::Entries(_) => panic!("{pipeline}: a unit cut named entries"),
            Keep::HeadDims(k) => {
                let attns: Vec<_> = ops
                    .iter()
                    .filter_map(|o| {
                        if let Op::Attention(ops::Attention { heads, head_dim, value, .. }) = o {
                            Some((*heads, *head_dim, value.clone()))
                        } else {
                            None
                        }
                    })
                    .collect();
                for ((h, d, v), k) in attns.iter().zip(&k) {
                    assert_eq!(k.len(), *d);
                    let cols: Vec<usize> =
                        (0..*h).flat_map(|hh| kept(k).into_iter().map(move |j| hh * d + j)).collect();
                    assert_eq!(
                        all(&pruned, &format!("{v}.weight")),
                        columns(&dense, &format!("{v}.weight"), &cols),
                        "{pipeline}: {v}"
                    );
                }
            }
        }
    }
}

#[test]
fn only_cuts_name_what_they_keep() {
    let dense = with_data(parse(include_str!("fixtures/two_ffns.ir")).unwrap());
    for p in registry::passes() {
        let pass = (p.build)(&bertopt_passes::args::Args::bare(p.name, Default::default()));
        let Ok(pass) = pass else { continue }; // passes whose arguments have no default (truncate)
        let named = pass.keep(&dense).map(|k| k.map(|k| k.recovery())).unwrap_or(Some(p.recovery));
        let cut = matches!(p.recovery, Recovery::Units(_) | Recovery::Entries);
        assert_eq!(named, cut.then_some(p.recovery), "`{}`: keep() and the recovery kind disagree", p.name);
    }
}

/// (pipeline, fixture) for every entry cut, with small tiles, runs and blocks so the 8- and 16-wide fixtures
/// have several of each.
const ENTRY_CASES: &[(&str, &str)] = &[
    ("type0(sparsity=0.5)", "two_attention_layers.ir"),
    ("qkv(sparsity=0.25)", "two_attention_layers.ir"),
    ("tile(sparsity=0.5,g=4,n=true)", "two_attention_layers.ir"),
    ("tile(sparsity=0.5,g=4)", "two_ffns.ir"),
    ("kgran(sparsity=0.5,g=4)", "two_ffns.ir"),
    ("vw(sparsity=0.5,v=4)", "two_ffns.ir"),
    ("bw(sparsity=0.5,g=4)", "two_ffns.ir"),
];

/// The entries of dense group `p` ([k, n]) the pruned graph still reads, with the value it reads for each: the
/// non-zero entries of a same-shape matrix, or the tiles' (tile t holds the next columns of `P.cols`, or of all
/// n, and its `rows`).
fn read(pruned: &Graph, p: &str, k: usize, n: usize) -> Vec<Option<f32>> {
    let mut out = vec![None; k * n];
    if let Some(w) = pruned.weights.tensor(&format!("{p}.weight")) {
        for (i, x) in w.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().enumerate() {
            out[i] = (x != 0.0).then_some(x);
        }
        return out;
    }
    let cols: Vec<usize> = match pruned.weights.tensor(&format!("{p}.cols")) {
        Some(c) => c.to_vec1::<i64>().unwrap().into_iter().map(|c| c as usize).collect(),
        None => (0..n).collect(),
    };
    let mut next = 0;
    for t in 0.. {
        let Some(w) = pruned.weights.tensor(&format!("{p}.tile{t}.weight")) else { break };
        let rows = pruned.weights.tensor(&format!("{p}.tile{t}.rows")).unwrap().to_vec1::<i64>().unwrap();
        let w = w.to_vec2::<f32>().unwrap();
        let width = w[0].len();
        for (i, &r) in rows.iter().enumerate() {
            for (j, &col) in cols[next..next + width].iter().enumerate() {
                out[r as usize * n + col] = Some(w[i][j]);
            }
        }
        next += width;
    }
    out
}

#[test]
fn keep_names_exactly_the_entries_each_entry_cut_removes() {
    for e in registry::with_recovery(Recovery::Entries) {
        assert!(ENTRY_CASES.iter().any(|(p, _)| p.starts_with(&format!("{e}("))), "no keep() case for entry cut `{e}`");
    }
    for (pipeline, fixture) in ENTRY_CASES {
        let text = std::fs::read_to_string(format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let dense = with_data(parse(&text).unwrap());
        let spec = &bertopt_passes::parse_pipeline(pipeline).unwrap()[0];
        let Some(Keep::Entries(matrices)) = registry::build(spec).unwrap().keep(&dense).unwrap() else {
            panic!("{pipeline}: an entry cut names the entries it keeps");
        };
        let mut pruned = dense.clone();
        Pipeline::parse(pipeline).unwrap().run(&mut pruned, &mut PassContext::default()).unwrap();
        assert!(matrices.iter().any(|m| m.keep.contains(&false)), "{pipeline}: the case removes nothing");
        for m in &matrices {
            let w = all(&dense, &format!("{}.weight", m.group)).concat();
            let want: Vec<Option<f32>> = m.keep.iter().zip(&w).map(|(k, x)| k.then_some(*x)).collect();
            assert_eq!(read(&pruned, &m.group, m.k, m.n), want, "{pipeline}: @{}", m.group);
        }
        // Nothing else changed: every other matrix is still there, as it was.
        for (name, w) in &dense.weights.0 {
            let Some(p) = name.strip_suffix(".weight") else { continue };
            if matrices.iter().any(|m| m.group == p && m.keep.contains(&false)) || w.ty.rank() != 2 {
                continue;
            }
            assert_eq!(all(&pruned, name), all(&dense, name), "{pipeline}: {name} changed but keep() does not name it");
        }
    }
}
