//! `hidden` end to end: the exported graph, whose stream is narrower, computes what candle's dense model computes
//! when every LayerNorm normalises over the kept features only (`set_hidden_gate`, an independent implementation
//! on the full-width tensors), in tract, ONNX Runtime and the interpreter; it composes with `heads,ffn`,
//! `layers`, early exits and `quant`; orders and arguments that cannot work fail without writing a file.

use crate::common;

use std::path::Path;

use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_passes::{parse_pipeline, registry, Keep};
use common::{export_json as export, must_fail, s};

/// The features `pass` (one `hidden(...)`) keeps on the unpruned model.
fn kept(model: &Path, pass: &str) -> Vec<bool> {
    let (g, _) = bertopt_models::load_graph(model).unwrap();
    let built = registry::build_all(&parse_pipeline(pass).unwrap()).unwrap();
    match built[0].keep(&g).unwrap() {
        Some(Keep::Hidden(k)) => k,
        other => panic!("{pass}: {other:?}"),
    }
}

#[test]
fn removed_features_equal_candle_with_masked_layer_norms() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let labels: Vec<String> = (0..3).map(|i| format!("LABEL_{i}")).collect();
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let dense = BertClassifier::from_pretrained(&model, labels.clone(), 0).unwrap();
    let width = dense.config.hidden_size;
    assert_eq!(width, 32, "the removed counts below assume the tiny model's width");
    // count=13 keeps 19, rounded up to a multiple of 4: 20 kept, 12 removed.
    for (pipeline, removed) in [("hidden(ratio=0.25)", 8), ("hidden(count=13,multiple=4)", 12)] {
        let keep = kept(&model, pipeline);
        assert_eq!(keep.iter().filter(|k| !**k).count(), removed, "{pipeline}");
        let onnx = d.path().join("h.onnx");
        let report = export(&model, pipeline, &onnx);
        assert_eq!(report["passes"][0]["changed"]["hidden features removed"], removed, "{report}");
        common::onnx_check(&onnx);
        let mut masked = BertClassifier::from_pretrained(&model, labels.clone(), 0).unwrap();
        masked.set_hidden_gate(keep).unwrap();
        common::equals_candle_in_all_runners(&model, pipeline, &onnx, &masked, &mut enc);
    }
}

#[test]
fn hidden_composes_with_heads_ffn_layers_exits_and_quant() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let exit = "exit(criterion=entropy,threshold=0.5)";
    common::composes_in_both_runtimes(
        &model,
        d.path(),
        &[
            ("heads(ratio=0.5),ffn(ratio=0.5),hidden(ratio=0.25),layers(drop=2)", 1e-4),
            (&format!("layers(drop=1),{exit},hidden(ratio=0.5)") as &str, 1e-4),
            (&format!("heads(ratio=0.5),{exit},hidden(ratio=0.25),quant"), 1e-3),
        ],
    );
}

#[test]
fn bad_hidden_cuts_fail_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let out = d.path().join("x.onnx");
    let exit = "exit(criterion=entropy,threshold=0.5)";
    for (pipeline, want) in [
        (&format!("hidden(ratio=0.25),{exit}") as &str, "run `exit` before `hidden`"),
        ("tile(sparsity=0.5),hidden(ratio=0.25)", "run `hidden` before the pass that tiled it"),
        ("quant,hidden(ratio=0.25)", "already quantized"),
        ("hidden(ratio=0.5,count=3)", "give at most one of ratio=FRACTION or count=N"),
        ("hidden(multiple=0)", "must be at least 1"),
    ] {
        let err = must_fail(&[s(&model), "--pass", pipeline, "-o", s(&out)], &out);
        assert!(err.contains(want), "{pipeline}: {err}");
    }
}
