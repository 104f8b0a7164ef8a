//! `layers` end to end: the exported graph computes what candle's forward pass computes when it skips the same
//! layers (an independent implementation), in tract, ONNX Runtime and the interpreter; it composes with
//! `heads,ffn`, early exits and `quant`; orders and arguments that cannot work fail without writing a file.

use crate::common;

use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use common::{export_json as export, must_fail, s};

#[test]
fn dropped_layers_equal_candle_skipping_them() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path()); // four layers
    let labels: Vec<String> = (0..3).map(|i| format!("LABEL_{i}")).collect();
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    for (pipeline, keep, dropped) in [
        ("layers(drop=1+2)", [true, false, false, true], 2),
        ("layers(keep=2)", [true, true, false, false], 2),
        ("layers(drop=0)", [false, true, true, true], 1),
    ] {
        let onnx = d.path().join("l.onnx");
        let report = export(&model, pipeline, &onnx);
        assert_eq!(report["passes"][0]["changed"]["layers dropped"], dropped, "{report}");
        common::onnx_check(&onnx);
        let mut skipping = BertClassifier::from_pretrained(&model, labels.clone(), 0).unwrap();
        skipping.set_layer_gate(keep.to_vec()).unwrap();
        common::equals_candle_in_all_runners(&model, pipeline, &onnx, &skipping, &mut enc);
    }
}

#[test]
fn layers_compose_with_heads_ffn_exits_and_quant() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let exit = "exit(criterion=entropy,threshold=0.5)";
    common::composes_in_both_runtimes(
        &model,
        d.path(),
        &[
            ("heads(ratio=0.5),ffn(ratio=0.5),layers(drop=2)", 1e-4),
            (&format!("layers(drop=1),{exit}") as &str, 1e-4),
            (&format!("heads(ratio=0.5),layers(keep=3),{exit},quant"), 1e-3),
        ],
    );
}

#[test]
fn bad_layer_cuts_fail_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let out = d.path().join("x.onnx");
    let exit = "exit(criterion=entropy,threshold=0.5)";
    for (pipeline, want) in [
        ("layers(drop=4)", "no layer 4: the model has layers 0..3"),
        ("layers(drop=a)", "cannot read `a` as a layer index"),
        ("layers(keep=0)", "must be at least 1"),
        ("layers", "give the layers to keep"),
        (&format!("{exit},layers(drop=1)") as &str, "drop layers before `exit`"),
    ] {
        let err = must_fail(&[s(&model), "--pass", pipeline, "-o", s(&out)], &out);
        assert!(err.contains(want), "{pipeline}: {err}");
    }
}
