//! Early exit end to end on a small random model with off-ramps: the `exit` pass's text form, and for every
//! input the same logits and exit layer from the candle model with the same rule, the IR interpreter, and the
//! exported nested-`If` ONNX in tract and ONNX Runtime (batch 1), for the entropy and patience rules.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use bertopt::run::{self, Plans, RunnerOptions, Runtime};
use bertopt_ir::exit::{batch_exit, entropy, row_exits, ExitRule};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::batch::Batch;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::train::exits::exit_logits;
use bertopt_passes::{PassContext, Pipeline};
use candle_core::Device;
use common::SENTENCES;

fn labels() -> Vec<String> {
    (0..3).map(|i| format!("LABEL_{i}")).collect()
}

fn encode(model: &Path, text: &str) -> Batch {
    TextEncoder::from_file(&model.join("tokenizer.json")).unwrap().encode(&[text], 16, None).unwrap()
}

/// The candle model's answer with `rule`: (logits, layers run) for one input.
fn reference(m: &BertClassifier, b: &Batch, rule: ExitRule) -> (Vec<f32>, i64) {
    let exits = exit_logits(m, b).unwrap();
    let j = batch_exit(rule, &exits);
    let points = bertopt_models::train::exits::exit_points(m);
    (exits[j][0].clone(), points[j] as i64)
}

fn export(model: &Path, pipeline: &str, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([model.to_str().unwrap(), "--pass", pipeline, "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The pass's IR is checked by `passes/filetests/exit/entropy.ir`; here, on a model loaded from its checkpoint,
/// that the text form of early_exit (a rule and a list attribute) parses back to the same graph.
#[test]
fn exit_pass_text_form_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
    Pipeline::parse("exit(threshold=0.25,layers=2+3)").unwrap().run(&mut g, &mut PassContext::default()).unwrap();
    let after = bertopt_ir::print(&g);
    assert!(after.contains("early_exit("), "{after}");
    assert_eq!(bertopt_ir::print(&bertopt_ir::parse(&after).unwrap()), after);
}

#[test]
fn exits_agree_with_candle_in_interpreter_tract_and_ort() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let m = BertClassifier::from_pretrained(&model, labels(), 1).unwrap();
    // The entropy threshold is the median first-exit entropy over the inputs, so some leave at layer 1 and
    // some go on: the test sees both paths.
    let mut first: Vec<f32> =
        SENTENCES.iter().map(|s| entropy(&exit_logits(&m, &encode(&model, s)).unwrap()[0][0])).collect();
    first.sort_by(f32::total_cmp);
    let threshold = (first[4] + first[5]) / 2.0;
    let rules = [
        (ExitRule::Entropy { threshold }, format!("exit(criterion=entropy,threshold={threshold})")),
        (ExitRule::Patience { patience: 1 }, "exit(criterion=patience,patience=1)".to_string()),
    ];
    for (rule, pipeline) in rules {
        let onnx = d.path().join("exit.onnx");
        export(&model, &pipeline, &onnx);
        common::onnx_check(&onnx);
        let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
        Pipeline::parse(&pipeline).unwrap().run(&mut g, &mut PassContext::default()).unwrap();
        let mut runners: Vec<(Runtime, Box<dyn run::Runner>)> = [Runtime::Tract, Runtime::Ort]
            .into_iter()
            .map(|rt| (rt, run::load(rt, &onnx, RunnerOptions::default()).unwrap()))
            .collect();
        let mut layers_seen = std::collections::BTreeSet::new();
        for s in SENTENCES {
            let b = encode(&model, s);
            let (want, want_layer) = reference(&m, &b, rule);
            layers_seen.insert(want_layer);
            let outs: HashMap<String, candle_core::Tensor> =
                bertopt_ir::interp::run(&g, &common::ir_inputs(&b)).unwrap().into_iter().collect();
            let got = outs["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                common::max_abs_diff(&got, &want) <= 1e-4,
                "{rule}: interpreter logits {got:?} vs candle {want:?} for {s:?}"
            );
            assert_eq!(outs["exit_layer"].to_vec1::<i64>().unwrap(), vec![want_layer], "{rule}: interpreter, {s:?}");
            for (rt, r) in runners.iter_mut() {
                let o = r.run(&b).unwrap();
                let logits = &common::output(&o, "logits").data;
                let layer = common::output(&o, "exit_layer").data[0] as i64;
                assert!(
                    common::max_abs_diff(logits, &want) <= 1e-4,
                    "{rule} {rt}: logits {logits:?} vs candle {want:?} for {s:?}"
                );
                assert_eq!(layer, want_layer, "{rule} {rt}: exit layer for {s:?}");
            }
        }
        eprintln!("{rule}: exit layers seen {layers_seen:?}");
        if matches!(rule, ExitRule::Entropy { .. }) {
            assert!(layers_seen.len() >= 2, "the inputs should leave at different layers: {layers_seen:?}");
        }
    }
}

/// The segmented export and its driver: at batch 8, every row leaves where the candle model with the same rule,
/// applied per row, says, with that exit's logits, in tract and ONNX Runtime.
#[test]
fn segmented_driver_exits_per_row_at_batch_8() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let m = BertClassifier::from_pretrained(&model, labels(), 1).unwrap();
    let b = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap().encode(&SENTENCES[..8], 16, None).unwrap();
    assert_eq!(b.batch, 8);
    let exits = exit_logits(&m, &b).unwrap();
    let points = bertopt_models::train::exits::exit_points(&m);
    let mut first: Vec<f32> = exits[0].iter().map(|r| entropy(r)).collect();
    first.sort_by(f32::total_cmp);
    let threshold = (first[3] + first[4]) / 2.0;
    let rules = [
        (ExitRule::Entropy { threshold }, format!("exit(criterion=entropy,threshold={threshold})")),
        (ExitRule::Patience { patience: 1 }, "exit(criterion=patience,patience=1)".to_string()),
    ];
    for (rule, pipeline) in rules {
        let want_exit = row_exits(rule, &exits);
        let out = d.path().join("segmented");
        let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args([model.to_str().unwrap(), "--pass", &pipeline, "--segmented", "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("segments.json")).unwrap()).unwrap();
        assert_eq!(manifest["stages"].as_array().unwrap().len(), 4, "{manifest}");
        for j in 0..4 {
            common::onnx_check_part(&out.join(format!("stage{j}.onnx")));
        }
        let distinct: std::collections::BTreeSet<usize> = want_exit.iter().copied().collect();
        if matches!(rule, ExitRule::Entropy { .. }) {
            assert!(distinct.len() >= 2, "rows of the batch should leave at different exits: {want_exit:?}");
        }
        for rt in [Runtime::Tract, Runtime::Ort] {
            for plans in [Plans::PerBatch, Plans::Symbolic, Plans::PerShape(8, b.seq)] {
                let opts = RunnerOptions { plans, threads: 1 };
                let o = run::load(rt, &out, opts).unwrap().run(&b).unwrap();
                let logits = &common::output(&o, "logits").data;
                let layer = &common::output(&o, "exit_layer").data;
                for r in 0..8 {
                    let j = want_exit[r];
                    let got = &logits[r * 3..(r + 1) * 3];
                    assert!(
                        common::max_abs_diff(got, &exits[j][r]) <= 1e-4,
                        "{rule} {rt} row {r}: {got:?} vs {:?}",
                        exits[j][r]
                    );
                    assert_eq!(layer[r] as usize, points[j], "{rule} {rt} row {r}: exit layer");
                }
            }
        }
        eprintln!("{rule}: per-row exits {want_exit:?}");
    }
}

#[test]
fn segmented_export_needs_an_exit_and_a_fresh_folder() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let out = d.path().join("seg");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([model.to_str().unwrap(), "--pass", "dce", "--segmented", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("needs an early exit"), "{err}");
    assert!(!out.exists());
    // A folder that holds something else is not overwritten.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([model.to_str().unwrap(), "--pass", "exit", "--segmented", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not a segmented model"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // No temporary folders are left beside it.
    let names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".bertopt")), "{names:?}");
}

#[test]
fn exit_without_off_ramps_is_an_error_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec { layers: 2, labels: 2, ..TinySpec::default() }).unwrap();
    let out = d.path().join("x.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([base.to_str().unwrap(), "--pass", "exit", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no off-ramps") && err.contains("train-exits"), "{err}");
    assert!(!out.exists());
    let model = common::exit_model(d.path());
    for (pipeline, needle) in [
        ("exit(layers=4)", "before the last layer"),
        ("exit(criterion=speed)", "not entropy or patience"),
        ("exit(threshold=0.3,patience=2)", "only for criterion=patience"),
        ("exit(layers=3-1)", "runs backwards"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args([model.to_str().unwrap(), "--pass", pipeline, "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{pipeline}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn truncate_classifies_with_the_off_ramp_and_drops_later_layers() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let m = BertClassifier::from_pretrained(&model, labels(), 1).unwrap();
    let onnx = d.path().join("trunc.onnx");
    export(&model, "truncate(layers=2)", &onnx);
    let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
    Pipeline::parse("truncate(layers=2)").unwrap().run(&mut g, &mut PassContext::default()).unwrap();
    let layers_left: Vec<usize> = bertopt_passes::exit::layer_outputs(&g).into_keys().collect();
    assert_eq!(layers_left, vec![0, 1]);
    let r = run::load(Runtime::Tract, &onnx, RunnerOptions::default()).unwrap();
    for s in SENTENCES {
        let b = encode(&model, s);
        let want = &exit_logits(&m, &b).unwrap()[1][0];
        let outs = r.run(&b).unwrap();
        let got = &common::output(&outs, "logits").data;
        assert!(common::max_abs_diff(got, want) <= 1e-4, "{s:?}: {got:?} vs off-ramp 2 {want:?}");
    }
}

#[test]
fn calibrate_sweeps_settings_and_chooses_within_the_budget() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let data = d.path().join("data.jsonl");
    let lines: Vec<String> = SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({"text": s, "label": format!("LABEL_{}", i % 3)}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = d.path().join("calib");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["calibrate", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train-size", "2"])
        .args(["--values", "0,0.01,5", "--latency-samples", "3", "--max-drop", "100", "--json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = c["settings"].as_array().unwrap();
    assert_eq!(s.len(), 3);
    // Threshold 0 exits nobody (entropy is never negative): all layers, the final classifier's accuracy.
    assert_eq!(s[0]["avg_layers"], 4.0);
    assert_eq!(s[0]["accuracy"], c["dense_accuracy"]);
    // Threshold 5 exceeds ln 3 (the largest entropy of 3 labels): everybody leaves at the first off-ramp.
    assert_eq!(s[2]["avg_layers"], 1.0);
    assert_eq!(s[2]["histogram"][0], serde_json::json!([1, 1.0]));
    // With any accuracy loss allowed, the choice is the fastest setting.
    let fastest =
        (0..3).min_by(|&a, &b| s[a]["mean_ms"].as_f64().unwrap().total_cmp(&s[b]["mean_ms"].as_f64().unwrap()));
    assert_eq!(c["chosen"].as_u64().map(|x| x as usize), fastest);
    let svg = std::fs::read_to_string(out.join("calibration.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("average layers run"));
    assert!(out.join("calibration.json").exists());
}

/// At batch > 1 calibrate times segmented models; `eval` on one of them, driven per row, reproduces the
/// accuracy and average layers calibrate computed from the candle model's exits.
#[test]
fn calibrate_at_batch_3_and_eval_of_the_segmented_model_agree() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let data = d.path().join("data.jsonl");
    let lines: Vec<String> = SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({"text": s, "label": format!("LABEL_{}", (i * 7) % 3)}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = d.path().join("calib");
    // Calibration chooses on the 8 validation rows (a pool of 9, its last 8); eval --split val reads the same rows.
    let split = ["--data", data.to_str().unwrap(), "--train-size", "9", "--val-size", "8", "--max-len", "16"];
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["calibrate", model.to_str().unwrap()])
        .args(split)
        .args(["--values", "0.0005,0.002", "--batch", "3", "--latency-samples", "2", "--max-drop", "100", "--json"])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["batch"], 3);
    let mixed = c["settings"].as_array().unwrap().iter().any(|s| {
        let l = s["avg_layers"].as_f64().unwrap();
        l > 1.0 && l < 4.0
    });
    assert!(mixed, "some setting should send inputs out at different layers: {c}");
    for (v, s) in ["0.0005", "0.002"].iter().zip(c["settings"].as_array().unwrap()) {
        let seg = out.join(format!("entropy-{v}.segments"));
        assert!(seg.join("segments.json").is_file(), "{}", seg.display());
        for rt in ["tract", "ort"] {
            let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
                .args(["eval", seg.to_str().unwrap(), "--runtime", rt, "--batch", "4", "--split", "val", "--json"])
                .args(split)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(e["examples"], 8);
            let (acc, layers) = (e["accuracy"].as_f64().unwrap(), e["avg_layers"].as_f64().unwrap());
            assert!((acc - s["accuracy"].as_f64().unwrap()).abs() < 1e-9, "{v} {rt}: eval {e} vs calibrate {s}");
            assert!((layers - s["avg_layers"].as_f64().unwrap()).abs() < 1e-9, "{v} {rt}: eval {e} vs calibrate {s}");
        }
    }
}

/// DeeBERT's second stage trains only the off-ramps: the backbone and final classifier come back bit for bit.
/// `--pooling mean` names the off-ramps' poolers `mean_pooler`; ElasticBERT then trains the backbone too, keeping
/// that pooling; asking for another pooling than the model's off-ramps have is refused.
#[test]
fn deebert_trains_only_the_off_ramps_and_elastic_the_backbone_too() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    bertopt_models::testing::write_tiny_model(
        &base,
        &bertopt_models::testing::TinySpec { layers: 3, labels: 2, ..Default::default() },
    )
    .unwrap();
    let data = d.path().join("train.jsonl");
    common::write_class_jsonl(&data, 96, 1);
    let train = |from: &Path, method: &str, extra: &[&str], out: &Path| {
        let mut args = vec!["train-exits", common::s(from), "--method", method, "--data", common::s(&data)];
        args.extend(["--train-size", "64", "--epochs", "3", "--batch", "16", "--max-len", "16", "--lr", "5e-3"]);
        args.extend(extra);
        args.extend(["--json", "-o", common::s(out)]);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: &[String]| {
        let o = common::optimize(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    // Saved folders name the encoder `bert.*` (the tiny base does not): compare by the name without it.
    let load = |dir: &Path| -> HashMap<String, candle_core::Tensor> {
        let t = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        t.into_iter().map(|(k, v)| (k.strip_prefix("bert.").map_or(k.clone(), String::from), v)).collect()
    };
    let deebert = d.path().join("deebert");
    let r = run(&train(&base, "deebert", &["--pooling", "mean"], &deebert));
    assert_eq!(r["pooling"], serde_json::json!([[1, "mean"], [2, "mean"]]));
    let losses: Vec<f64> = r["epochs"].as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect();
    assert!(losses[2] < losses[0], "the off-ramps learn: summed loss per epoch {losses:?}");
    let (before, after) = (load(&base), load(&deebert));
    for (name, w) in &before {
        let diff = (w - &after[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "DeeBERT changed the frozen {name}");
    }
    let mut ramps: Vec<&str> = after.keys().filter(|k| k.starts_with("exits.")).map(String::as_str).collect();
    ramps.sort();
    assert_eq!(ramps.len(), 8, "{ramps:?}");
    assert!(ramps.iter().all(|k| k.contains(".mean_pooler.dense.") || k.contains(".classifier.")), "{ramps:?}");

    let refused = d.path().join("refused");
    let args = train(&deebert, "elastic", &["--pooling", "cls"], &refused);
    let err = common::must_fail(&args.iter().map(String::as_str).collect::<Vec<_>>(), &refused);
    assert!(err.contains("has `mean` pooling, not `cls`"), "{err}");

    let elastic = d.path().join("elastic");
    let r = run(&train(&deebert, "elastic", &[], &elastic));
    assert_eq!(r["pooling"], serde_json::json!([[1, "mean"], [2, "mean"]]));
    let tuned = load(&elastic);
    let moved = before
        .iter()
        .filter(|(n, w)| (*w - &tuned[*n]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0)
        .count();
    assert!(moved * 2 > before.len(), "ElasticBERT trains the backbone: {moved} of {} tensors moved", before.len());
}
