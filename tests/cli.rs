//! The `optimize` binary end to end: the main job, `run`, `bench --json`, and bad input that must give a clear
//! error, a non-zero exit and no output file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

fn optimize(args: &[&str]) -> Output {
    common::ensure_ort();
    Command::new(env!("CARGO_BIN_EXE_optimize")).args(args).output().expect("binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run a command that must fail: returns stderr, and checks the exit code and that `out` was not created.
fn must_fail(args: &[&str], out: &Path) -> String {
    let o = optimize(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "exit code for {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!out.exists(), "{} was created despite the error", out.display());
    if let Some(dir) = out.parent().filter(|d| d.is_dir()) {
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
    err
}

fn tiny_classifier(dir: &Path) {
    write_tiny_model(dir, &TinySpec { scheme: Scheme::Bert, labels: 2, ..TinySpec::default() }).unwrap();
}

#[test]
fn export_then_run_prints_a_label_in_both_runtimes() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let onnx = d.path().join("m.onnx");
    let o = optimize(&[s(&model), "-o", s(&onnx), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["onnx_bytes"].as_u64().unwrap(), std::fs::metadata(&onnx).unwrap().len());
    assert!(report["params"].as_u64().unwrap() > 0);

    let mut labels = vec![];
    for rt in ["tract", "ort"] {
        let o = optimize(&[
            "run",
            s(&onnx),
            "--runtime",
            rt,
            "--json",
            "--text",
            "the movie was great",
            "--text",
            "boring plot",
        ]);
        assert!(o.status.success(), "{rt}: {}", String::from_utf8_lossy(&o.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for r in rows {
            let l = r["label"].as_str().unwrap().to_string();
            assert!(l == "class_0" || l == "class_1", "{l}");
            assert_eq!(r["logits"].as_array().unwrap().len(), 2);
            labels.push(l);
        }
    }
    assert_eq!(labels[..2], labels[2..], "tract and ORT agree on the labels");
}

#[test]
fn bench_json_has_percentiles_and_speedups() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec::default()).unwrap();
    let onnx = d.path().join("m.onnx");
    assert!(optimize(&[s(&model), "-o", s(&onnx)]).status.success());
    let vw = d.path().join("vw.onnx");
    assert!(optimize(&[s(&model), "--pass", "vw(sparsity=0.75)", "-o", s(&vw)]).status.success());
    for rt in ["tract", "ort"] {
        let o = optimize(&[
            "bench",
            s(&onnx),
            s(&vw),
            "--runtime",
            rt,
            "--batch",
            "2",
            "--seq",
            "16",
            "--iters",
            "5",
            "--warmup",
            "1",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["runtime"], rt);
        assert_eq!(r["batch"], 2);
        assert_eq!(r["seq"], 16);
        assert!(r["cores"].as_u64().unwrap() >= 1);
        let models = r["models"].as_array().unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0]["speedup_vs_first"], 1.0);
        for m in models {
            let (p50, p90, p99) =
                (m["p50_ms"].as_f64().unwrap(), m["p90_ms"].as_f64().unwrap(), m["p99_ms"].as_f64().unwrap());
            assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99, "{m}");
        }
        assert_eq!(
            (models[0]["pipeline"].as_str(), models[1]["pipeline"].as_str()),
            (Some(""), Some("vw(sparsity=0.75)"))
        );
        assert!(models[0].get("notes").is_none());
        assert!(models[1]["notes"][0].as_str().unwrap().contains("a dense runtime runs no faster"), "{}", models[1]);
    }
    // The table says it too.
    let o = optimize(&["bench", s(&onnx), s(&vw), "--seq", "8", "--iters", "2", "--warmup", "0"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("note: ") && o.status.success());
}

#[test]
fn bad_safetensors_give_clear_errors_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let out = d.path().join("out.onnx");
    let st = model.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();

    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("model.safetensors is not a valid safetensors file"), "{e}");

    std::fs::write(&st, vec![0xAB; 4096]).unwrap();
    let e = must_fail(&[s(&st), "-o", s(&out)], &out);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn bad_configs_give_clear_errors_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let out = d.path().join("out.onnx");
    let cfg_path = model.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();

    std::fs::write(&cfg_path, cfg.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3")).unwrap();
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("num_attention_heads = 3 does not divide hidden_size = 32"), "{e}");

    std::fs::write(&cfg_path, cfg.replace("\"intermediate_size\": 64", "\"intermediate_size\": 128")).unwrap();
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("intermediate.dense.weight` has shape [64, 32], but config.json implies [128, 32]"), "{e}");

    std::fs::remove_file(&cfg_path).unwrap();
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("config.json is missing"), "{e}");
}

#[test]
fn bad_output_paths_and_pipelines_fail_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let nowhere = d.path().join("no/such/dir/out.onnx");
    let e = must_fail(&[s(&model), "-o", s(&nowhere)], &nowhere);
    assert!(e.contains("output directory") && e.contains("does not exist"), "{e}");

    let out = d.path().join("out.onnx");
    let e = must_fail(&[s(&model), "--pass", "dce,shrink", "-o", s(&out)], &out);
    assert!(e.contains("unknown pass `shrink` (passes: dce, fold"), "{e}");
    let e = must_fail(&[s(&model), "--pass", "fold(level=3)", "-o", s(&out)], &out);
    assert!(e.contains("pass `fold` has no argument `level`"), "{e}");
    let e = must_fail(&[s(&d.path().join("absent")), "-o", s(&out)], &out);
    assert!(e.contains("absent") && e.contains("missing"), "{e}");
}

#[test]
fn a_failed_export_keeps_the_previous_file() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let out = d.path().join("out.onnx");
    assert!(optimize(&[s(&model), "-o", s(&out)]).status.success());
    let before = std::fs::read(&out).unwrap();
    std::fs::write(model.join("model.safetensors"), b"garbage").unwrap();
    let o = optimize(&[s(&model), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), before, "the old output is untouched");
}

#[test]
fn list_passes_needs_no_model_and_names_arguments() {
    let o = optimize(&["--list-passes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["dce", "fold", "heads", "ffn"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{out}");
    }
    assert!(out.contains("(args: mask, ratio, count, scores)"), "{out}");
    let o = optimize(&[]);
    assert_eq!(o.status.code(), Some(2), "a missing model is a usage error");
}

#[test]
fn print_ir_shows_the_graph_after_the_pipeline() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec::default()).unwrap();
    let mask = d.path().join("mask.json");
    std::fs::write(&mask, "[[true, false, false, true], [false, false, false, false]]").unwrap();
    let out = d.path().join("m.onnx");
    let o = optimize(&[s(&model), "--pass", &format!("heads(mask={})", s(&mask)), "--print-ir", "-o", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // stdout is the IR, then one summary line per pass and the `wrote` line
    let ir = &text[..text.find("\npass ").expect("pass summary line") + 1];
    let graph = bertopt_ir::parse(ir).expect("what --print-ir prints parses");
    bertopt_ir::verify(&graph).unwrap();
    let printed = bertopt_ir::print(&graph);
    assert_eq!(printed.matches("= attention(").count(), 1, "layer 1 lost its attention: {printed}");
    assert!(printed.contains("{heads: 2, head_dim: 8,"), "layer 0 kept 2 heads: {printed}");
}
