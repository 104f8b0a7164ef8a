//! EBERT end to end on a small random model with predictors: what the `ebert` pass reports, and for every
//! input the logits of the candle model with the same top-k choices applied as masks equal those of the IR
//! interpreter and of the fused ONNX in tract and ONNX Runtime, at batch 1 and batch 8; training moves the
//! expected FLOPs toward the target.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bertopt::run::{self, RunnerOptions, Runtime};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::arch::ebert::{ebert_forward, GateMode};
use bertopt_models::batch::Batch;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::rng::Rng;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_passes::{PassContext, Pipeline};

const SENTENCES: [&str; 8] = [
    "i loved it",
    "the movie was terrible",
    "not very good and boring",
    "great fun !",
    "the plot was bad but the acting was great",
    "a film",
    "it is not bad",
    "boring , boring , boring",
];

fn labels() -> Vec<String> {
    (0..3).map(|i| format!("LABEL_{i}")).collect()
}

/// A 3-layer, 3-label classifier with predictors (4 FFN groups of 16) whose weights and BatchNorm statistics are
/// random and large enough that different inputs choose different heads and groups.
fn ebert_model(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    write_tiny_model(&base, &TinySpec { layers: 3, labels: 3, ..TinySpec::default() }).unwrap();
    let mut m = BertClassifier::from_pretrained(&base, labels(), 1).unwrap();
    m.add_predictors(4, 5).unwrap();
    let mut rng = Rng::new(9);
    for (name, v) in &m.params {
        if !name.starts_with("ebert.") {
            continue;
        }
        let n = v.elem_count();
        let vals: Vec<f32> = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            (0..n).map(|_| 0.5 + rng.uniform()).collect()
        } else if name.contains(".fc") || name.ends_with("running_mean") || name.ends_with("bn.bias") {
            (0..n).map(|_| rng.normal() * if name.contains("fc1") { 1.0 } else { 0.5 }).collect()
        } else {
            continue;
        };
        v.set(&candle_core::Tensor::from_vec(vals, v.dims(), &candle_core::Device::Cpu).unwrap()).unwrap();
    }
    let out = dir.join("ebert");
    m.save(&out, &base.join("tokenizer.json"), &Default::default()).unwrap();
    out
}

fn encode(model: &Path, texts: &[&str]) -> Batch {
    TextEncoder::from_file(&model.join("tokenizer.json")).unwrap().encode(texts, 16, None).unwrap()
}

/// The pass's IR is checked by `passes/filetests/ebert/ratio.ir`; here, on a model loaded from its checkpoint,
/// what it reports and that its text form parses back.
#[test]
fn ebert_pass_counts_and_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let model = ebert_model(d.path());
    let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
    let reports = Pipeline::parse("ebert(ratio=0.5)")
        .unwrap()
        .run(&mut g, &mut PassContext { flops_seq: 128, ..Default::default() })
        .unwrap();
    let after = bertopt_ir::print(&g);
    assert_eq!(bertopt_ir::print(&bertopt_ir::parse(&after).unwrap()), after);
    // 2 of 4 heads and 2 of 4 groups per layer: the FLOPs fall, predictors included.
    let r = &reports[0];
    assert_eq!(r.changed["heads kept"], 6);
    assert_eq!(r.changed["groups kept"], 6);
    assert!(r.after.flops < r.before.flops, "{} -> {}", r.before.flops, r.after.flops);
}

#[test]
fn fused_graph_equals_masked_candle_at_batch_1_and_8() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = ebert_model(d.path());
    let m = BertClassifier::from_pretrained(&model, labels(), 1).unwrap();
    for (pipeline, kh, kg) in [("ebert(ratio=0.5)", 2, 2), ("ebert(heads=3,groups=1)", 3, 1)] {
        let onnx = d.path().join("ebert.onnx");
        let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args([model.to_str().unwrap(), "--pass", pipeline, "-o", onnx.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The report tells the user where EBERT stops paying.
        let report = String::from_utf8_lossy(&o.stdout);
        assert!(report.contains("note: each input's chosen weights are copied") && report.contains("64"), "{report}");
        common::onnx_check(&onnx);
        let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
        Pipeline::parse(pipeline).unwrap().run(&mut g, &mut PassContext::default()).unwrap();
        let mut runners: Vec<(Runtime, Box<dyn run::Runner>)> = [Runtime::Tract, Runtime::Ort]
            .into_iter()
            .map(|rt| (rt, run::load(rt, &onnx, RunnerOptions::default()).unwrap()))
            .collect();
        let mode = GateMode::TopK { heads: kh, groups: kg };
        let mut batches: Vec<Batch> = SENTENCES.iter().map(|s| encode(&model, &[s])).collect();
        batches.push(encode(&model, &SENTENCES));
        let mut choices = std::collections::BTreeSet::new();
        for b in &batches {
            let (want, gates) = ebert_forward(&m, b, mode).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for row in gates.head_kept[1].to_vec2::<f32>().unwrap() {
                choices.insert(format!("{row:?}"));
            }
            let outs: HashMap<String, candle_core::Tensor> =
                bertopt_ir::interp::run(&g, &common::ir_inputs(b)).unwrap().into_iter().collect();
            let got = outs["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                common::max_abs_diff(&got, &want) <= 1e-4,
                "{pipeline} batch {}: interpreter {got:?} vs candle {want:?}",
                b.batch
            );
            for (rt, r) in runners.iter_mut() {
                let outs = r.run(b).unwrap();
                let got = &common::output(&outs, "logits").data;
                assert!(
                    common::max_abs_diff(got, &want) <= 1e-4,
                    "{pipeline} {rt} batch {}: {got:?} vs candle {want:?}",
                    b.batch
                );
            }
        }
        // Different inputs chose different heads: the per-input choice, not one fixed mask, was tested.
        assert!(choices.len() >= 2, "{pipeline}: every input chose the same heads of layer 2: {choices:?}");
    }
}

#[test]
fn ebert_without_predictors_or_after_head_pruning_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec { layers: 2, labels: 2, ..TinySpec::default() }).unwrap();
    let out = d.path().join("x.onnx");
    let run = |model: &Path, pipeline: &str| {
        Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args([model.to_str().unwrap(), "--pass", pipeline, "-o", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run(&base, "ebert");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no EBERT predictors") && err.contains("train-ebert"), "{err}");
    assert!(!out.exists());
    let model = ebert_model(d.path());
    for (pipeline, needle) in [
        ("heads(count=1),ebert", "run `ebert` before `heads`"),
        ("ebert(ratio=1.5)", "not in (0, 1]"),
        ("ebert(heads=9)", "keeping 9 heads of the 4"),
    ] {
        let o = run(&model, pipeline);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{pipeline}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn training_pushes_the_expected_flops_toward_the_target_then_trains_under_top_k() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec { layers: 2, labels: 2, ..TinySpec::default() }).unwrap();
    let data = d.path().join("train.jsonl");
    common::write_class_jsonl(&data, 96, 1);
    let out = d.path().join("ebert");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["train-ebert", base.to_str().unwrap(), "--data", data.to_str().unwrap(), "--train-size", "64"])
        .args(["--val-size", "16"])
        .args(["--target", "0.5", "--group-size", "16", "--epochs", "3", "--batch", "16", "--max-len", "16"])
        .args(["--lambda", "20", "--json", "-o", out.to_str().unwrap()])
        // One more epoch under the fused graph's top-k decisions, distilled from the starting model.
        .args(["--top-k-epochs", "1", "--teacher", base.to_str().unwrap(), "--kd-alpha", "0.3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let epochs = r["epochs"].as_array().unwrap();
    let phases: Vec<&str> = epochs.iter().map(|e| e["gates"].as_str().unwrap()).collect();
    assert_eq!(phases, ["gumbel", "gumbel", "gumbel", "top-k"]);
    assert_eq!(r["config"]["teacher"], "base (alpha 0.3, temperature 2)", "named as train and recover name it");
    // The epoch saved is the one with the best validation top-k accuracy (checked on the export below).
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    let accuracy = |e: &serde_json::Value| e["top_k_accuracy"].as_f64().unwrap();
    assert_eq!(epochs[best - 1]["top_k_accuracy"], r["top_k"]["accuracy"]);
    assert!(epochs.iter().all(|e| accuracy(e) <= accuracy(&epochs[best - 1])), "{epochs:?}");
    let first = epochs[0]["expected_flops_ratio"].as_f64().unwrap();
    let last = epochs[2]["expected_flops_ratio"].as_f64().unwrap();
    // The predictors start keeping ~88 % of the units (fc2 bias 2); the sparsity loss pulls toward 0.5.
    eprintln!("epochs {epochs:?}; top-k {}; threshold {}", r["top_k"], r["threshold"]);
    assert!(last < first && last < 0.8, "expected FLOPs ratio per epoch: {epochs:?}");
    assert_eq!(r["groups"], 4);
    // The folder reloads with its predictors and exports fused.
    assert!(out.join("ebert.json").is_file());
    let onnx = d.path().join("e.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([out.to_str().unwrap(), "--pass", "ebert(ratio=0.5)", "-o", onnx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The saved model, fused, scores what the report says on the same validation rows.
    let o = common::optimize(&[
        "eval",
        common::s(&onnx),
        "--data",
        common::s(&data),
        "--train-size",
        "64",
        "--val-size",
        "16",
        "--split",
        "val",
        "--max-len",
        "16",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["accuracy"], r["top_k"]["accuracy"], "eval {e}; training's top-k {}", r["top_k"]);
}
