//! `optimize auto` end to end on a tiny trained classifier: the whole search writes its model, report and plot;
//! the chosen model is what plain `optimize` makes from its checkpoint and pipeline; test labels never move a
//! choice; a run killed mid-stage resumes to the candidates an uninterrupted run finds; other settings in the
//! same folder are refused; with no budget, nothing worse than dense is accepted.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bertopt_models::load::checkpoint::Scheme;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use common::{optimize, s};

/// A tiny 2-layer classifier trained briefly on the sentiment sentences (better than chance, so cuts matter), the
/// data file, and a separate test file (`--eval`) whose labels the tests may flip.
fn setup(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let base = d.join("base");
    write_tiny_model(&base, &TinySpec { scheme: Scheme::Bert, labels: 2, ..TinySpec::default() }).unwrap();
    let data = d.join("data.jsonl");
    common::write_sentiment_jsonl(&data, 80, 11);
    let test = d.join("test.jsonl");
    common::write_sentiment_jsonl(&test, 30, 12);
    let model = d.join("model");
    let mut args = vec!["train", "--from", s(&base), "--data", s(&data), "--eval", s(&test), "--train-size", "60"];
    args.extend(["--val-size", "20"]);
    args.extend(["--epochs", "2", "--batch", "8", "--max-len", "16", "--lr", "5e-3", "--json", "-o", s(&model)]);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (model, data, test)
}

fn auto_args<'a>(model: &'a Path, data: &'a Path, test: &'a Path, out: &'a Path, max_drop: &'a str) -> Vec<&'a str> {
    let mut a = vec!["auto", s(model), "--data", s(data), "--eval", s(test), "--train-size", "60", "--val-size", "20"];
    a.extend(["--schedule", "0.25,0.5", "--epochs", "1", "--train-batch", "8", "--max-len", "16", "--lr", "5e-3"]);
    a.extend(["--max-drop", max_drop, "--layers", "--json", "-o", s(out)]);
    a
}

fn run(args: &[&str]) -> serde_json::Value {
    let o = optimize(args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What the search found, independent of where it ran: each candidate's name, pipeline (with the run's folder
/// taken out), validation accuracy and per-row answers.
fn found(r: &serde_json::Value, out: &Path) -> Vec<(String, String, String, String)> {
    r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let pipeline = c["pipeline"].as_str().unwrap().replace(s(out), "OUT");
            (c["name"].as_str().unwrap().into(), pipeline, c["val_accuracy"].to_string(), c["val_right"].to_string())
        })
        .collect()
}

fn flip(file: &Path, to: &Path) {
    let lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["label"] = (1 - v["label"].as_i64().unwrap()).into();
            v.to_string()
        })
        .collect();
    std::fs::write(to, lines.join("\n")).unwrap();
}

#[test]
fn auto_runs_end_to_end_and_test_labels_change_no_choice() {
    let d = tempfile::tempdir().unwrap();
    let (model, data, test) = setup(d.path());
    let out = d.path().join("a");
    let r = run(&auto_args(&model, &data, &test, &out, "5"));

    // The files a user gets.
    let best = PathBuf::from(r["best"].as_str().unwrap());
    for f in ["report.json", "report.md", "pareto.svg", "state.json", "dense.onnx"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(best.exists());
    let stages = r["stages"].as_object().unwrap();
    for st in ["baseline", "scores", "cut-0.25", "exits", "layers", "quant", "measure"] {
        assert!(stages.contains_key(st), "stage {st} missing: {stages:?}");
    }
    let cands = r["candidates"].as_array().unwrap();
    // --layers: the kept cut with its top layer (of two) dropped, and its int8 twin.
    let layers = cands.iter().find(|c| c["name"].as_str().unwrap().ends_with("-layers")).expect("a layers candidate");
    assert!(layers["pipeline"].as_str().unwrap().ends_with("layers(keep=1)"), "{layers}");
    let twin = format!("{}-int8", layers["name"].as_str().unwrap());
    assert!(cands.iter().any(|c| c["name"] == twin.as_str()), "{twin}");
    assert_eq!(cands[0]["name"], "dense");
    assert!(cands.iter().any(|c| c["name"].as_str().unwrap().ends_with("-int8")), "int8 twins");
    // For tract (the default runtime) the int8 twins calibrate their activation ranges.
    for c in cands.iter().filter(|c| c["name"].as_str().unwrap().ends_with("-int8")) {
        assert!(c["pipeline"].as_str().unwrap().ends_with("quant(activations=static)"), "{c}");
    }
    assert!(cands.iter().all(|c| c["val_mean_ms"].as_f64().unwrap() > 0.0), "every candidate timed");
    // The chosen one is within budget on validation, and the test figures compare it with dense on the same rows.
    let chosen = cands.iter().find(|c| c["name"] == r["chosen"]).unwrap();
    let drop = cands[0]["val_accuracy"].as_f64().unwrap() - chosen["val_accuracy"].as_f64().unwrap();
    assert!(drop * 100.0 <= 5.0 + 1e-9, "{drop}");
    assert_eq!(r["dense_test"]["examples"], 30);
    let bt = &r["best_test"];
    let diff = bt["diff_vs_dense"]["diff"].as_f64().unwrap();
    let want = bt["accuracy"].as_f64().unwrap() - r["dense_test"]["accuracy"].as_f64().unwrap();
    assert!((diff - want).abs() < 1e-9, "{diff} vs {want}");
    for k in ["tract b1", "tract b8", "ort b1", "ort b8"] {
        assert!(bt["latency_ms"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    // Plain `optimize` with the chosen checkpoint and pipeline makes the same file.
    if best.is_file() {
        let again = d.path().join("again.onnx");
        let mut args = vec![chosen["checkpoint"].as_str().unwrap()];
        let pipeline = chosen["pipeline"].as_str().unwrap();
        if !pipeline.is_empty() {
            args.extend(["--pass", pipeline]);
        }
        if pipeline.contains("activations=static") {
            // Static int8 (the int8 twins for tract) calibrates on the same split's training rows.
            args.extend(["--data", s(&data), "--eval", s(&test), "--train-size", "60", "--val-size", "20"]);
        }
        args.extend(["-o", s(&again)]);
        assert!(optimize(&args).status.success());
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&best).unwrap(), "same bytes");
    }
    let stopped = r["stopped"].as_str().unwrap();
    assert!(["accuracy: ", "time: ", "the schedule: "].iter().any(|p| stopped.starts_with(p)), "{stopped}");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains(stopped), "the report says it");
    let cmds = r["commands"].as_array().unwrap();
    assert!(cmds.last().unwrap().as_str().unwrap().starts_with("optimize "), "{cmds:?}");

    // Every test label flipped: the same candidates with the same validation answers; the test figure turns into
    // its complement, so the flip reached the rows that are reported.
    let flipped = d.path().join("flipped.jsonl");
    flip(&test, &flipped);
    let out_b = d.path().join("b");
    let rb = run(&auto_args(&model, &data, &flipped, &out_b, "5"));
    assert_eq!(found(&r, &out), found(&rb, &out_b));
    let (ta, tb) = (r["dense_test"]["accuracy"].as_f64().unwrap(), rb["dense_test"]["accuracy"].as_f64().unwrap());
    assert!((ta + tb - 1.0).abs() < 1e-9, "{ta} + {tb}");
}

#[test]
fn a_killed_run_resumes_to_what_an_uninterrupted_run_finds() {
    let d = tempfile::tempdir().unwrap();
    let (model, data, test) = setup(d.path());
    let whole = d.path().join("whole");
    let r = run(&auto_args(&model, &data, &test, &whole, "5"));

    // Kill a second run once it has finished a stage and started the next.
    let out = d.path().join("killed");
    common::ensure_ort();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(auto_args(&model, &data, &test, &out, "5"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let state = std::fs::read_to_string(out.join("state.json")).unwrap_or_default();
        if state.contains("\"scores\"") || t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("report.json").exists(), "killed before the end");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("state.json")).unwrap()).unwrap();
    assert!(state["stages"]["scores"].is_object(), "the finished stages are recorded: {state}");

    // The same command again: finished stages are skipped, the rest run, and the search finds what it finds
    // uninterrupted.
    let mut args = auto_args(&model, &data, &test, &out, "5");
    args.retain(|a| *a != "--json");
    let o = optimize(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("[auto 1/") && err.contains("baseline] done before; skipped"), "{err}");
    let resumed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(found(&resumed, &out), found(&r, &whole));

    // Other settings in the same folder are refused, naming both.
    let o = optimize(&auto_args(&model, &data, &test, &out, "2"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("other settings") && err.contains("max_drop=5") && err.contains("max_drop=2"), "{err}");
}

#[test]
fn with_no_budget_nothing_worse_than_dense_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let (model, data, test) = setup(d.path());
    let out = d.path().join("a");
    let mut args = auto_args(&model, &data, &test, &out, "0");
    args.extend(["--no-exits"]);
    let r = run(&args);
    let cands = r["candidates"].as_array().unwrap();
    let dense = cands[0]["val_accuracy"].as_f64().unwrap();
    let chosen = cands.iter().find(|c| c["name"] == r["chosen"]).unwrap();
    assert!(chosen["val_accuracy"].as_f64().unwrap() >= dense - 1e-12, "{chosen}");
    for (name, st) in r["stages"].as_object().unwrap() {
        if name.starts_with("cut-") && st["accepted"] == true {
            assert!(st["candidates"][0]["val_accuracy"].as_f64().unwrap() >= dense - 1e-12, "{st}");
        }
    }
    if r["chosen"] == "dense" {
        assert!(r["why"].as_str().unwrap().contains("dense is kept"), "{}", r["why"]);
    }
}

#[test]
fn a_spent_time_budget_starts_no_training_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let (model, data, test) = setup(d.path());
    let out = d.path().join("a");
    let mut args = auto_args(&model, &data, &test, &out, "1");
    args.extend(["--time-budget", "0s"]);
    let r = run(&args);
    let stages = r["stages"].as_object().unwrap();
    for st in ["scores", "cut-0.25", "cut-0.5", "exits", "layers"] {
        assert!(!stages.contains_key(st), "{st} ran with no time left");
    }
    let names: Vec<&str> = r["candidates"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dense", "dense-int8"]);
    let stopped = r["stopped"].as_str().unwrap();
    assert!(stopped.starts_with("time: ") && stopped.contains("scores"), "{stopped}");
}
