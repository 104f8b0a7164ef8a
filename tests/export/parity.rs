//! Numerical parity of the four implementations: candle-transformers' BertModel (independent), bertopt's IR
//! interpreter, tract and ONNX Runtime on the exported file. Tolerance 1e-4 absolute, at non-padding positions.

use crate::common;

use std::path::Path;

use bertopt::run::{self, Batch, RunnerOptions, Runtime};
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;
use common::*;

const TOL: f32 = 1e-4;

/// Export `dir`, run all available implementations on `batch`, and compare every output.
fn check(dir: &Path, batch: &Batch, with_reference: bool) -> Vec<(String, String, f32)> {
    ensure_ort();
    let out = tempfile::tempdir().unwrap();
    let onnx = out.path().join("model.onnx");
    bertopt::export::export(dir, "", &onnx).unwrap();

    let (g, _) = bertopt_models::load_graph(dir).unwrap();
    let ir = bertopt_ir::interp::run(&g, &ir_inputs(batch)).unwrap();
    let mut results = vec![];
    let reference = if with_reference { Some(reference(dir, batch)) } else { None };
    for rt in [Runtime::Tract, Runtime::Ort] {
        let outs = run::load(rt, &onnx, RunnerOptions::default()).unwrap().run(batch).unwrap();
        for (name, t) in &ir {
            let o = output(&outs, name);
            assert_eq!(o.shape, t.dims(), "{rt} {name} shape");
            let d = max_diff(name, batch, &o.shape, &flat(t), &o.data);
            results.push((format!("ir vs {rt}"), name.clone(), d));
        }
    }
    if let Some(r) = reference {
        for (name, t) in &ir {
            let want = r.get(name).unwrap_or_else(|| panic!("reference lacks {name}"));
            assert_eq!(want.dims(), t.dims());
            let d = max_diff(name, batch, t.dims(), &flat(want), &flat(t));
            results.push(("candle-transformers vs ir".into(), name.clone(), d));
        }
    }
    for (pair, name, d) in &results {
        eprintln!("{pair:<28} {name:<18} max |diff| = {d:.2e}");
        assert!(*d <= TOL, "{pair}: {name} differs by {d} > {TOL}");
    }
    results
}

#[test]
fn tiny_encoder_four_way_parity_with_padding() {
    let d = tempfile::tempdir().unwrap();
    write_tiny_model(d.path(), &TinySpec::default()).unwrap();
    let batch = Batch::synthetic(3, 11, 32, 5);
    assert!(batch.attention_mask.contains(&0), "the batch must exercise padding");
    let r = check(d.path(), &batch, true);
    assert_eq!(r.len(), 6, "2 outputs x (tract, ort, reference)");
}

#[test]
fn tiny_bert_classifier_four_way_parity() {
    let d = tempfile::tempdir().unwrap();
    write_tiny_model(d.path(), &TinySpec { scheme: Scheme::Bert, labels: 3, seed: 11, ..TinySpec::default() }).unwrap();
    check(d.path(), &Batch::synthetic(4, 7, 32, 9), true);
    check(d.path(), &Batch::synthetic(1, 5, 32, 3), true);
}

#[test]
fn tiny_roberta_classifier_parity() {
    // candle-transformers has no RoBERTa classifier: interpreter vs tract vs ONNX Runtime only. The position
    // offset (padding_idx + 1) is checked through the lowering's IR in models/tests/load.rs.
    let d = tempfile::tempdir().unwrap();
    write_tiny_model(d.path(), &TinySpec { scheme: Scheme::Roberta, labels: 2, seed: 3, ..TinySpec::default() })
        .unwrap();
    check(d.path(), &Batch::synthetic(2, 9, 32, 1), false);
}

#[test]
fn minilm_four_way_parity_on_real_sentences() {
    let dir = minilm();
    let mut enc = bertopt::tokenize::TextEncoder::from_file(&dir.join("tokenizer.json")).unwrap();
    let texts = [
        "The food was great and the staff were friendly.",
        "I would not recommend this phone to anyone.",
        "Worst movie I have seen in years; the plot made no sense at all and the acting was wooden.",
        "ok",
        "The battery lasts two days, which is better than I expected from such a small device.",
        "Service was slow.",
        "An absolute joy from start to finish!",
        "It broke after a week and support never answered my emails.",
    ];
    let batch = enc.encode(&texts, 128, None).unwrap();
    assert_eq!(batch.batch, 8);
    assert!(batch.attention_mask.contains(&0));
    // the tokenizer's own padding to 128 is overridden: rows pad to the longest sentence only
    assert!(batch.seq < 40, "seq {}", batch.seq);
    let r = check(&dir, &batch, true);
    assert_eq!(r.len(), 6);
}
