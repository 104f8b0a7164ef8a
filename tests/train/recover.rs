//! `optimize recover`: fine-tuning under what a pipeline removes (units for `heads`/`ffn`, weight entries for
//! the tile-family passes). The saved checkpoint has those zeroed, so exporting it with the same pipeline cuts
//! exactly them: the pruned ONNX equals the recovered dense checkpoint.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bertopt::run::{self, RunnerOptions, Runtime};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Dataset;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small JSON-lines slice of the UCI data (the `skip`-th example onwards).
fn slice(path: &Path, skip: usize, n: usize) -> Dataset {
    let all = Dataset::read(&root().join("models/data/uci-sentiment/yelp.json")).unwrap();
    let lines: Vec<String> = all.examples[skip..skip + n]
        .iter()
        .map(|e| serde_json::json!({"text": e.text, "label": all.labels[e.label]}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
    Dataset::read(path).unwrap()
}

/// Recover the bundled model under `pipeline` (one short epoch), export the checkpoint with the same pipeline,
/// and check the pruned ONNX computes what the recovered dense checkpoint computes, in both runtimes. Returns
/// the training record and the export report for the caller's own checks.
fn recover_and_strip(pipeline: &str) -> (serde_json::Value, bertopt::export::ExportReport) {
    recover_in_stages_and_strip(pipeline, None, pipeline, &[]).1
}

/// `recover_and_strip` with `--schedule` (when given): the checkpoint is exported with `last`, the final
/// stage's pipeline. Also returns the temporary folder, which holds `recovered/stages/<i>`.
fn recover_in_stages_and_strip(
    pipeline: &str,
    schedule: Option<&str>,
    last: &str,
    extra: &[&str],
) -> (tempfile::TempDir, (serde_json::Value, bertopt::export::ExportReport)) {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let (train, eval) = (d.path().join("train.jsonl"), d.path().join("eval.jsonl"));
    slice(&train, 0, 96);
    let eval_set = slice(&eval, 900, 32);
    let model = root().join("models/bundled/uci-sentiment-tiny");
    let out = d.path().join("recovered");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["recover", model.to_str().unwrap(), "--pass", pipeline, "--data", train.to_str().unwrap()])
        .args(schedule.map(|s| ["--schedule", s]).into_iter().flatten())
        .args(extra)
        .args([
            "--eval",
            eval.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch",
            "16",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(record["metadata"]["pruning"], last);

    let onnx = d.path().join("pruned.onnx");
    let report = bertopt::export::export(&out, last, &onnx).unwrap();
    let mut dense = BertClassifier::from_pretrained(&out, eval_set.labels.clone(), 0).unwrap();
    // A dense checkpoint cannot skip a layer: the record says which ones the recovered model skips.
    if let Some(dropped) = record["metadata"]["layers_dropped"].as_str() {
        let dropped: Vec<usize> = serde_json::from_str(dropped).unwrap();
        let layers = dense.config.num_hidden_layers;
        dense.set_layer_gate((0..layers).map(|l| !dropped.contains(&l)).collect()).unwrap();
    }
    // Nor normalise over fewer features: the record says which ones the recovered model removed.
    if let Some(removed) = record["metadata"]["hidden_removed"].as_str() {
        let removed: Vec<usize> = serde_json::from_str(removed).unwrap();
        let d = dense.config.hidden_size;
        dense.set_hidden_gate((0..d).map(|i| !removed.contains(&i)).collect()).unwrap();
    }
    let mut enc = TextEncoder::from_file(&out.join("tokenizer.json")).unwrap();
    let texts: Vec<&str> = eval_set.examples.iter().map(|e| e.text.as_str()).collect();
    let b = enc.encode(&texts, 64, None).unwrap();
    let want = dense.forward(&b, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for rt in [Runtime::Tract, Runtime::Ort] {
        let got = run::load(rt, &onnx, RunnerOptions::default()).unwrap().run(&b).unwrap();
        let logits = &common::output(&got, "logits").data;
        let diff = want.iter().zip(logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-4, "{last}, {rt}: pruned ONNX vs recovered dense checkpoint: {diff}");
    }
    (d, (record, report))
}

#[test]
fn recovered_checkpoint_strips_to_itself() {
    let (record, report) = recover_and_strip("heads(ratio=0.5),ffn(ratio=0.5)");
    assert_eq!(record["metadata"]["ffn_neurons_kept"], "[256,256]");
    assert_eq!(report.passes[0].changed["heads removed"], 4);
    assert_eq!(report.passes[1].changed["neurons removed"], 512);
}

#[test]
fn distilled_recovery_records_its_teacher_and_strips_to_itself() {
    let model = root().join("models/bundled/uci-sentiment-tiny");
    let teacher = ["--teacher", model.to_str().unwrap(), "--kd-alpha", "0.7", "--kd-temperature", "3"];
    let (_, (record, report)) = recover_in_stages_and_strip("ffn(ratio=0.5)", None, "ffn(ratio=0.5)", &teacher);
    assert_eq!(record["metadata"]["distilled_from"], "uci-sentiment-tiny (alpha 0.7, temperature 3)");
    assert_eq!(record["config"]["kd_alpha"], 0.7);
    assert_eq!(report.passes[0].changed["neurons removed"], 512);
}

#[test]
fn recovery_under_a_layer_cut_trains_the_model_that_skips_them() {
    let (record, report) = recover_and_strip("heads(ratio=0.5),layers(drop=0)");
    assert_eq!(record["metadata"]["layers_dropped"], "[0]");
    assert_eq!(report.passes[1].changed["layers dropped"], 1);
}

#[test]
fn recovery_under_a_hidden_cut_trains_the_masked_model_and_strips_to_it() {
    let (record, report) = recover_and_strip("heads(ratio=0.5),hidden(ratio=0.25),layers(drop=1)");
    let removed: Vec<usize> = serde_json::from_str(record["metadata"]["hidden_removed"].as_str().unwrap()).unwrap();
    assert_eq!(removed.len(), 32, "a quarter of the bundled model's 128 features");
    // The re-export of the recovered checkpoint removes the same number, and (by the parity above) the same ones.
    assert_eq!(report.passes[1].changed["hidden features removed"], 32);
    assert_eq!(record["metadata"]["layers_dropped"], "[1]");
}

#[test]
fn recovery_under_entry_passes_keeps_the_cut_entries_zero() {
    // qkv cuts Q/K/V rows, tile (type 8) the output projection and the FFN; the re-export must cut the same.
    let (record, report) = recover_and_strip("qkv(sparsity=0.25),tile(sparsity=0.5,g=32,n=true)");
    let masked = record["metadata"]["weights_masked"].as_str().unwrap();
    assert!(masked.ends_with("in 12 tensors"), "2 layers x (Q, K, V, O, FFN in, FFN out): {masked}");
    assert!(report.passes[0].changed["input features removed"] > 0);
    assert!(report.passes[1].changed["output columns removed"] > 0);
}

#[test]
fn recovery_under_head_size_keeps_the_removed_dimensions_zero() {
    let (record, report) = recover_and_strip("head-size(sparsity=0.5),ffn(ratio=0.25)");
    let masked = record["metadata"]["weights_masked"].as_str().unwrap();
    // 2 layers x (Q, K, V weight and bias, output weight); half of every 32-dim head of a 128-dim layer.
    assert!(masked.ends_with("in 14 tensors"), "{masked}");
    assert_eq!(report.passes[0].changed["head dimensions removed"], 2 * 16);
}

#[test]
fn the_iterative_schedule_prunes_further_at_each_stage() {
    let (d, (_, report)) =
        recover_in_stages_and_strip("tile(sparsity={s},g=32)", Some("0.25,0.5"), "tile(sparsity=0.5,g=32)", &[]);
    let stage0 = d.path().join("recovered/stages/0");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stage0.join("training.json")).unwrap()).unwrap();
    assert_eq!(record["metadata"]["pruning"], "tile(sparsity=0.25,g=32)");
    assert!(record["metadata"]["start"].as_str().unwrap().contains("uci-sentiment-tiny"));
    // The second stage starts from the first, whose cut entries are zero: they are cut again, and more.
    let first = bertopt::export::export(&stage0, "tile(sparsity=0.25,g=32)", &d.path().join("s0.onnx")).unwrap();
    let (a, b) = (first.passes[0].changed["row segments removed"], report.passes[0].changed["row segments removed"]);
    assert!(b > a && a > 0, "stage 1 removed {a}, stage 2 {b}");
}

#[test]
fn recover_refuses_passes_it_cannot_train_under() {
    let d = tempfile::tempdir().unwrap();
    let model = root().join("models/bundled/uci-sentiment-tiny");
    let data = root().join("models/data/uci-sentiment/yelp.json");
    let out = d.path().join("r");
    for (pipeline, want) in [
        ("ebert(ratio=0.5)", "`ebert` is not supported"),
        ("heads(ratio=0.5),head-size(sparsity=0.5)", "in one run"),
        ("heads(ratio=0.5),tile(sparsity=0.5)", "not both in one run"),
        ("layers(drop=0),ffn(ratio=0.5)", "must come last among the unit cuts"),
        ("hidden(ratio=0.25),ffn(ratio=0.5)", "put `hidden` after the other unit cuts"),
        ("tile(sparsity={s})", "no --schedule gives its values"),
        ("prune(x=1)", "unknown pass `prune`"),
        ("", "expected a pass name"),
        ("ffn(ratio=2)", "2 is not in [0, 1]"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args(["recover", model.to_str().unwrap(), "--pass", pipeline, "--data", data.to_str().unwrap()])
            .args(["-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{pipeline}: {err}");
        assert!(err.contains(want), "{pipeline}: {err}");
        assert!(!out.exists());
    }
    // A teacher must be a classifier with the model's labels and vocabulary.
    let base = d.path().join("encoder-only");
    let spec = bertopt_models::testing::TinySpec { labels: 0, ..Default::default() };
    bertopt_models::testing::write_tiny_model(&base, &spec).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["recover", model.to_str().unwrap(), "--pass", "ffn(ratio=0.5)", "--data", data.to_str().unwrap()])
        .args(["--teacher", base.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("encoder-only: not a fine-tuned classifier"), "{err}");
    assert!(!out.exists());
}
