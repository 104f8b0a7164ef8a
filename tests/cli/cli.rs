//! The `optimize` binary end to end: the main job, `run`, `bench --json`, and bad input that must give a clear
//! error, a non-zero exit and no output file.

use crate::common;

use common::{must_fail, optimize, s};

use std::path::{Path, PathBuf};

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

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
fn bench_json_holds_the_grid_the_machine_and_every_measure() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let mut onnx = vec![];
    for (name, pipeline) in [("dense", ""), ("heads", "heads(ratio=0.5)"), ("vw", "vw(sparsity=0.75)")] {
        let out = d.path().join(format!("{name}.onnx"));
        assert!(optimize(&[s(&model), "--pass", pipeline, "-o", s(&out)]).status.success());
        onnx.push(out);
    }
    let data = d.path().join("data.jsonl");
    common::write_class_jsonl(&data, 30, 3);
    let svg = d.path().join("pareto.svg");
    let mut args = vec!["bench"];
    args.extend(onnx.iter().map(|p| s(p)));
    args.extend(["--runtime", "tract,ort", "--batch", "1,2", "--seq", "8", "--iters", "4", "--warmup", "1"]);
    args.extend(["--data", s(&data), "--train-size", "10", "--max-len", "16", "--svg", s(&svg), "--json"]);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    assert!(!r["machine"]["cpu"].as_str().unwrap().is_empty() && r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(r["machine"]["os"].as_str().unwrap().starts_with("linux"), "{}", r["machine"]);
    assert_eq!((r["iters"].as_u64(), r["warmup"].as_u64()), (Some(4), Some(1)));

    // Per model: pipeline, parameters, FLOPs polynomial, accuracy on the 20 held-out examples, notes.
    let models = r["models"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    let pipelines: Vec<&str> = models.iter().map(|m| m["pipeline"].as_str().unwrap()).collect();
    assert_eq!(pipelines, ["", "heads(ratio=0.5)", "vw(sparsity=0.75)"]);
    let params: Vec<u64> = models.iter().map(|m| m["params"].as_u64().unwrap()).collect();
    assert!(params[1] < params[0] && params[2] == params[0], "{params:?}");
    for m in models {
        assert_eq!(m["examples"].as_u64(), Some(20), "{m}");
        let acc = m["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && (acc * 20.0 - (acc * 20.0).round()).abs() < 1e-9, "{m}");
    }
    assert!(models[0].get("notes").is_none());
    assert!(models[2]["notes"][0].as_str().unwrap().contains("a dense runtime runs no faster"), "{}", models[2]);

    // The FLOPs the bench reports are the IR cost model's, computed here independently of the file.
    let (dense_graph, _) = bertopt_models::load_graph(&model).unwrap();
    let ir_flops = bertopt_passes::cost(&dense_graph, 8).flops as f64;

    // One cell per runtime x batch, in order; speedups and FLOPs ratios against the first model of the cell.
    let cells = r["cells"].as_array().unwrap();
    let grid: Vec<(String, u64, u64)> = cells
        .iter()
        .map(|c| (c["runtime"].as_str().unwrap().to_string(), c["batch"].as_u64().unwrap(), c["seq"].as_u64().unwrap()))
        .collect();
    let want: Vec<(String, u64, u64)> =
        [("tract", 1), ("tract", 2), ("ort", 1), ("ort", 2)].iter().map(|(rt, b)| (rt.to_string(), *b, 8)).collect();
    assert_eq!(grid, want);
    for c in cells {
        let rt = c["runtime"].as_str().unwrap();
        let version = c["runtime_version"].as_str().unwrap();
        assert!(version.contains(if rt == "tract" { "tract-onnx" } else { "onnxruntime" }), "{version}");
        assert_eq!(c["threads"].as_u64(), Some(1));
        let batch = c["batch"].as_f64().unwrap();
        let ms = c["models"].as_array().unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0]["speedup_vs_first"], 1.0);
        let f0 = ms[0]["flops"].as_f64().unwrap();
        assert!((f0 - batch * ir_flops).abs() <= 1e-6 * f0, "{f0} vs {}", batch * ir_flops);
        assert!(ms[1]["flops_ratio_vs_first"].as_f64().unwrap() > 1.0, "heads pruning lowers FLOPs");
        for m in ms {
            let (p50, p90, p99) =
                (m["p50_ms"].as_f64().unwrap(), m["p90_ms"].as_f64().unwrap(), m["p99_ms"].as_f64().unwrap());
            assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99, "{m}");
            let tput = m["throughput"].as_f64().unwrap();
            assert!((tput - batch * 1e3 / p50).abs() <= 1e-6 * tput, "{m}");
            assert!(m["peak_rss_mib"].as_f64().unwrap() > 1.0, "{m}");
        }
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("heads") && plot.contains("ort batch 2, synthetic 8 tokens"),
        "{plot}"
    );
    assert!(plot.contains("(baseline, square)") && plot.contains("1 point below it"), "{plot}");

    // The table says it too, notes included.
    let o = optimize(&["bench", s(&onnx[0]), s(&onnx[2]), "--seq", "8", "--iters", "2", "--warmup", "0"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && table.contains("note: ") && table.contains("p50 ms"), "{table}");
}

#[test]
fn heads_and_tile_run_with_their_defaults_on_the_safetensors_file() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let onnx = d.path().join("p.onnx");
    let o = optimize(&[s(&model.join("model.safetensors")), "--pass", "heads,tile", "-o", s(&onnx), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let passes = r["passes"].as_array().unwrap();
    // The tiny model: 2 layers of 4 heads (hidden 32, head size 8, FFN 64). `heads` removes half of each layer's.
    assert_eq!(passes[0]["changed"]["heads removed"], 4, "{}", passes[0]);
    // `tile` (g=128, wider than every matrix: one tile each) then sees per layer Q, K, V with 32 input rows, O
    // with the 16 left by the heads, FFN-in 32 and FFN-out 64: 208 row segments, 416 in all; 50 % go.
    assert_eq!(passes[1]["changed"]["matrices tiled"], 12, "{}", passes[1]);
    assert_eq!(passes[1]["changed"]["row segments removed"], 208, "{}", passes[1]);
    for p in passes {
        assert!(p["params_after"].as_u64() < p["params_before"].as_u64(), "{p}");
    }
    let o = optimize(&["run", s(&onnx), "--text", "a good movie", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A tiny classifier's folder, its dense export and a tiled export (gathers and a concatenation per tiled matrix).
fn dense_and_tiled(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("m");
    tiny_classifier(&model);
    let (dense, tiled) = (dir.join("dense.onnx"), dir.join("tile.onnx"));
    assert!(optimize(&[s(&model), "-o", s(&dense)]).status.success());
    assert!(optimize(&[s(&model), "--pass", "tile(sparsity=0.5,g=8)", "-o", s(&tiled)]).status.success());
    (model, dense, tiled)
}

#[test]
fn profile_splits_tract_time_by_operator_kind() {
    let d = tempfile::tempdir().unwrap();
    let (model, dense, tiled) = dense_and_tiled(d.path());
    let o = optimize(&["profile", s(&dense), s(&tiled), "--seq", "16", "--iters", "3", "--warmup", "1", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = r.as_array().unwrap();
    assert_eq!(r.len(), 2);
    let kinds = |p: &serde_json::Value, op: &str| {
        p["ops"].as_array().unwrap().iter().find(|o| o["op"] == op).map_or(0, |o| o["nodes"].as_u64().unwrap())
    };
    for p in r {
        assert_eq!((p["batch"].as_u64(), p["seq"].as_u64(), p["iters"].as_u64()), (Some(1), Some(16), Some(3)));
        let ops = p["ops"].as_array().unwrap();
        let ms: Vec<f64> = ops.iter().map(|o| o["ms"].as_f64().unwrap()).collect();
        assert!(ms.windows(2).all(|w| w[0] >= w[1]), "most time first: {ms:?}");
        let total = p["total_ms"].as_f64().unwrap();
        assert!(total > 0.0 && (ms.iter().sum::<f64>() - total).abs() <= 1e-9 * total, "{p}");
        let shares: f64 = ops.iter().map(|o| o["share"].as_f64().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{shares}");
        assert!(kinds(p, "OptMatMul") > 0, "the linears run as tract's matmul: {p}");
        let nodes = p["nodes"].as_array().unwrap();
        let node_ms: f64 = nodes.iter().map(|n| n["ms"].as_f64().unwrap()).sum();
        assert!((node_ms - total).abs() <= 1e-9 * total, "the nodes add up to the total: {node_ms} vs {total}");
    }
    // The tiled lowering's per-tile gathers and the concatenation of the tiles show up as operators of their own.
    assert!(kinds(&r[1], "Gather") > kinds(&r[0], "Gather"), "{}", serde_json::Value::from(r.clone()));
    assert!(kinds(&r[1], "Concat") > 0 && kinds(&r[0], "Concat") == 0);

    let o = optimize(&["profile", s(&dense), s(&tiled), "--seq", "16", "--iters", "1", "--warmup", "0"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && table.contains("OptMatMul") && table.contains("speedup vs first"), "{table}");
    let err = String::from_utf8_lossy(&optimize(&["profile", s(&model)]).stderr).to_string();
    assert!(err.contains("profile takes one ONNX file"), "{err}");

    // --plan: over a symbolic batch tract leaves the residual additions as plain `Add` nodes; with the batch
    // known (per-batch, exact) it fuses them into the matrix products.
    let adds = |plan: &str| {
        let o =
            optimize(&["profile", s(&dense), "--seq", "16", "--iters", "1", "--warmup", "0", "--plan", plan, "--json"]);
        assert!(o.status.success(), "{plan}: {}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        kinds(&r[0], "Add")
    };
    let (exact, per_batch, symbolic) = (adds("exact"), adds("per-batch"), adds("symbolic"));
    assert!(symbolic > exact && symbolic > per_batch, "plain Adds: {exact} {per_batch} {symbolic}");
    let o = optimize(&["profile", s(&dense), "--runtime", "ort", "--plan", "symbolic"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("ONNX Runtime plans on its own"), "{err}");
}

/// `profile --runtime ort` reads ONNX Runtime's own trace: per-kind and per-node times add up, the linears appear
/// under ONNX Runtime's kernel names, and the tiled model's gathers show.
#[test]
fn profile_in_onnx_runtime_sums_its_kernels() {
    let d = tempfile::tempdir().unwrap();
    let (_, dense, tiled) = dense_and_tiled(d.path());
    let mut args = vec!["profile", s(&dense), s(&tiled), "--runtime", "ort", "--seq", "16", "--iters", "3"];
    args.extend(["--warmup", "1", "--json"]);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = r.as_array().unwrap();
    let kinds = |p: &serde_json::Value, op: &str| {
        p["ops"].as_array().unwrap().iter().find(|o| o["op"] == op).map_or(0, |o| o["nodes"].as_u64().unwrap())
    };
    for p in r {
        assert_eq!(p["runtime"], "ort");
        let ops = p["ops"].as_array().unwrap();
        let total = p["total_ms"].as_f64().unwrap();
        let ms: f64 = ops.iter().map(|o| o["ms"].as_f64().unwrap()).sum();
        assert!(total > 0.0 && (ms - total).abs() <= 1e-9 * total, "{p}");
        let node_ms: f64 = p["nodes"].as_array().unwrap().iter().map(|n| n["ms"].as_f64().unwrap()).sum();
        assert!((node_ms - total).abs() <= 1e-9 * total, "{node_ms} vs {total}");
        assert!(["MatMul", "FusedMatMul", "Gemm"].iter().any(|k| kinds(p, k) > 0), "the linears: {p}");
    }
    assert!(kinds(&r[1], "Gather") > kinds(&r[0], "Gather"), "{}", serde_json::Value::from(r.clone()));
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

/// Rewrite a safetensors file's JSON header with `edit`, keeping its data.
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn lying_safetensors_headers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let st = model.join("model.safetensors");
    let good = std::fs::read(&st).unwrap();
    let out = d.path().join("out.onnx");
    let tensor = "bert.encoder.layer.0.intermediate.dense.weight";

    // A header length far past the end of the file.
    let mut b = good.clone();
    b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&st, &b).unwrap();
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("model.safetensors is not a valid safetensors file"), "{e}");

    // A tensor whose shape claims more data than its offsets hold.
    std::fs::write(&st, &good).unwrap();
    edit_header(&st, |h| h[tensor]["shape"] = serde_json::json!([64, 64]));
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("not a valid safetensors file"), "{e}");

    // Offsets past the end of the data.
    std::fs::write(&st, &good).unwrap();
    edit_header(&st, |h| {
        let end = h[tensor]["data_offsets"][1].as_u64().unwrap();
        h[tensor]["data_offsets"][1] = serde_json::json!(end + 1_000_000);
    });
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("not a valid safetensors file"), "{e}");

    // A shape whose element count overflows.
    std::fs::write(&st, &good).unwrap();
    edit_header(&st, |h| h[tensor]["shape"] = serde_json::json!([1u64 << 62, 1u64 << 62]));
    let e = must_fail(&[s(&model), "-o", s(&out)], &out);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn unwritable_output_paths_are_refused_and_nothing_is_left() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    // A directory where nothing can be created (procfs).
    let proc_out = Path::new("/proc/bertopt-test.onnx");
    let e = must_fail(&[s(&model), "-o", s(proc_out)], proc_out);
    assert!(e.contains("/proc/bertopt-test.onnx") || e.contains("/proc"), "{e}");
    // A parent that is a file, not a directory.
    let file = d.path().join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("out.onnx");
    let e = must_fail(&[s(&model), "-o", s(&under_file)], &under_file);
    assert!(e.contains("plain.txt") && e.contains("does not exist"), "{e}");
    // An existing directory as the output file.
    let dir_out = d.path().join("adir");
    std::fs::create_dir(&dir_out).unwrap();
    let o = optimize(&[s(&model), "-o", s(&dir_out)]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("adir is a directory; give a file name"), "{e}");
    assert_eq!(std::fs::read_dir(&dir_out).unwrap().count(), 0, "nothing written into it");
}

/// An export killed (SIGKILL) while it writes leaves the previous file untouched: the bytes go to a hidden
/// temporary file that is renamed over the target only when complete.
#[test]
fn an_export_killed_while_writing_leaves_the_old_file() {
    common::ensure_ort();
    let model = common::minilm();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("minilm.onnx");
    let old = b"the previous model".to_vec();
    for _attempt in 0..5 {
        std::fs::write(&out, &old).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args([s(&model), "-o", s(&out)])
            .spawn()
            .unwrap();
        let temp_seen = loop {
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            let writing = std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".bertopt-"));
            if writing {
                child.kill().unwrap();
                child.wait().unwrap();
                break true;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        };
        if temp_seen {
            assert_eq!(std::fs::read(&out).unwrap(), old, "the old file must survive an interrupted write");
            return;
        }
    }
    panic!("the export finished five times before it could be interrupted; the test could not interrupt it");
}

/// A tiny classifier and 40 labelled rows for budget mode, in a temporary folder.
fn budget_model_and_data() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let (model, data) = (d.path().join("m"), d.path().join("data.jsonl"));
    tiny_classifier(&model);
    common::write_class_jsonl(&data, 40, 5);
    (d, model, data)
}

/// Budget mode: every candidate is timed beside dense; those within the budget get an accuracy, and the most
/// accurate of them is written (the faster on a tie). An impossible budget fails and writes nothing.
#[test]
fn latency_budget_writes_the_most_accurate_pipeline_within_the_budget() {
    let (d, model, data) = budget_model_and_data();
    let out = d.path().join("best.onnx");
    let search = ["--search", "heads=0,0.5;ffn=0,0.5;tile=0", "--data", s(&data), "--train-size", "20", "--seq", "16"];
    let mut args = vec![s(&model), "--latency-budget", "1.5", "--iters", "3", "--json", "-o", s(&out)];
    args.extend(search);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cands = r["candidates"].as_array().unwrap();
    let pipelines: Vec<&str> = cands.iter().map(|c| c["pipeline"].as_str().unwrap()).collect();
    assert_eq!(pipelines, ["", "ffn(ratio=0.5)", "heads(ratio=0.5)", "heads(ratio=0.5),ffn(ratio=0.5)"]);
    let mut best: Option<(f64, f64, &str)> = None;
    for c in cands {
        let ratio = c["latency_ratio"].as_f64().unwrap();
        assert!(ratio > 0.0, "{c}");
        match c["accuracy"].as_f64() {
            Some(acc) => {
                assert!(ratio <= 1.5, "only candidates within the budget are evaluated: {c}");
                let p = c["pipeline"].as_str().unwrap();
                if best.is_none_or(|(a, r, _)| acc > a || (acc == a && ratio < r)) {
                    best = Some((acc, ratio, p));
                }
            }
            None => assert!(ratio > 1.5, "a candidate within the budget must be evaluated: {c}"),
        }
    }
    let (_, _, want) = best.expect("some candidate is within 1.5x of dense");
    assert_eq!(r["best"].as_str(), Some(want));
    let meta = bertopt::onnx::read_metadata(&out).unwrap();
    let written = meta.iter().find(|(k, _)| k == bertopt::export::META_PIPELINE).map(|(_, v)| v.as_str());
    assert_eq!(written, Some(want), "the file written is the chosen pipeline");

    let none = d.path().join("none.onnx");
    let mut args = vec![s(&model), "--latency-budget", "0.001", "--iters", "2", "-o", s(&none)];
    args.extend(search);
    let e = must_fail(&args, &none);
    assert!(e.contains("no setting meets the latency budget 0.001"), "{e}");
}

/// Budget search varies every cut the registry marks searchable, type0 and qkv included; a combination the passes
/// refuse (two cuts that both tile the attention projections) is listed as skipped with the passes' own reason,
/// and the search goes on.
#[test]
fn latency_budget_searches_every_cut_and_skips_combinations_the_passes_refuse() {
    let (d, model, data) = budget_model_and_data();
    let out = d.path().join("best.onnx");
    let grid = "heads=0;ffn=0;tile=0,0.5;type0=0,0.5;qkv=0,0.5;vw=0,0.5";
    let args = [s(&model), "--latency-budget", "100", "--iters", "1", "--json", "-o", s(&out), "--search", grid];
    let o = optimize(&[&args[..], &["--data", s(&data), "--train-size", "20", "--seq", "16"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let timed: Vec<&str> =
        r["candidates"].as_array().unwrap().iter().map(|c| c["pipeline"].as_str().unwrap()).collect();
    let skipped: Vec<(&str, &str)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["pipeline"].as_str().unwrap(), c["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(timed.len() + skipped.len(), 16, "2^4 pipelines: {timed:?} {skipped:?}");
    for p in ["type0(sparsity=0.5)", "qkv(sparsity=0.5)", "vw(sparsity=0.5),tile(sparsity=0.5)"] {
        assert!(timed.contains(&p), "{p} must be timed: {timed:?} {skipped:?}");
    }
    assert!(skipped.iter().any(|(p, _)| *p == "type0(sparsity=0.5),qkv(sparsity=0.5)"), "{skipped:?}");
    // tile, type0 and qkv each tile the attention projections, so only two of them together are refused.
    let tiling = |p: &str| ["tile(", "type0(", "qkv("].iter().filter(|t| p.contains(*t)).count();
    for (p, why) in &skipped {
        assert!(tiling(p) >= 2 && why.contains("already tiled"), "{p}: {why}");
    }
    assert!(timed.iter().all(|p| tiling(p) <= 1), "{timed:?}");
}

/// `bench --inputs`: real sentences at their own length. Every model tokenizes the rows with its own tokenizer,
/// batches are padded only to their longest row, and the mean tokens per row it reports is the one computed
/// here from the data and the tokenizer; one cell per runtime x batch (x tract plan), speedups against the first
/// model. With --data, accuracy carries its Wilson interval and the paired difference against the first model.
#[test]
fn bench_on_real_lengths_reports_the_data_s_own_token_counts_and_paired_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let mut onnx = vec![];
    for (name, pipeline) in [("dense", ""), ("heads", "heads(ratio=0.5)")] {
        let out = d.path().join(format!("{name}.onnx"));
        assert!(optimize(&[s(&model), "--pass", pipeline, "-o", s(&out)]).status.success());
        onnx.push(out);
    }
    let data = d.path().join("data.jsonl");
    common::write_class_jsonl(&data, 25, 4);
    let mut args = vec!["bench", s(&onnx[0]), s(&onnx[1]), "--inputs", s(&data), "--split", "all"];
    args.extend([
        "--runtime",
        "tract,ort",
        "--batch",
        "1,4",
        "--tract-plans",
        "per-batch,symbolic,per-length,buckets",
        "--warmup",
        "1",
    ]);
    // Turns of 3 batches: 25 batches of 1 end in a turn of 1; every batch must still be timed once per model.
    args.extend(["--bucket", "8", "--block", "3"]);
    args.extend(["--data", s(&data), "--train-size", "15", "--val-size", "5", "--json"]);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["cells"].as_array().unwrap().is_empty(), "no synthetic cells unless --seq is given");

    // Mean real tokens per row, and per row after padding each batch of 4 to its longest, computed here.
    let texts: Vec<String> =
        bertopt_models::data::Dataset::read(&data).unwrap().examples.into_iter().map(|e| e.text).collect();
    let mut enc = bertopt_models::data::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let lens: Vec<usize> = texts
        .iter()
        .map(|t| enc.encode(&[t.as_str()], 128, None).unwrap().attention_mask.iter().filter(|m| **m == 1).count())
        .collect();
    let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    let padded4 = lens.chunks(4).map(|c| c.len() * c.iter().max().unwrap()).sum::<usize>() as f64 / lens.len() as f64;
    assert!(padded4 > mean, "the data has rows of different lengths: {lens:?}");
    // With 8-token buckets each batch is padded to its longest row rounded up to a multiple of 8, and there is one
    // plan per distinct padded shape (rows x length; the last batch may be shorter).
    let bucketed = |b: usize| {
        let shapes: Vec<(usize, usize)> =
            lens.chunks(b).map(|c| (c.len(), c.iter().max().unwrap().div_ceil(8) * 8)).collect();
        let padded = shapes.iter().map(|(r, l)| r * l).sum::<usize>() as f64 / lens.len() as f64;
        (padded, shapes.iter().collect::<std::collections::HashSet<_>>().len() as u64)
    };

    let real = r["real"].as_array().unwrap();
    let grid: Vec<(String, u64, Option<String>)> = real
        .iter()
        .map(|c| {
            let plans = c["tract_plans"].as_str().map(str::to_string);
            (c["runtime"].as_str().unwrap().to_string(), c["batch"].as_u64().unwrap(), plans)
        })
        .collect();
    let t = |b: u64, p: &str| ("tract".to_string(), b, Some(p.to_string()));
    let want = vec![
        t(1, "per-batch"),
        t(1, "symbolic"),
        t(1, "per-length"),
        t(1, "buckets"),
        t(4, "per-batch"),
        t(4, "symbolic"),
        t(4, "per-length"),
        t(4, "buckets"),
        ("ort".into(), 1, None),
        ("ort".into(), 4, None),
    ];
    assert_eq!(grid, want);
    for c in real {
        let batch = c["batch"].as_u64().unwrap();
        assert_eq!(c["rows"].as_u64(), Some(25));
        assert_eq!(c["block"].as_u64(), Some(3));
        assert_eq!(c["batches"].as_u64(), Some(25u64.div_ceil(batch)));
        let ms = c["models"].as_array().unwrap();
        assert_eq!((ms[0]["speedup_mean"].as_f64(), ms[0]["speedup_p50"].as_f64()), (Some(1.0), Some(1.0)));
        for m in ms {
            assert!((m["mean_tokens"].as_f64().unwrap() - mean).abs() < 1e-9, "{m} vs {mean}");
            let mut want_padded = if batch == 1 { mean } else { padded4 };
            if c["tract_plans"] == "buckets" {
                let (padded, plans) = bucketed(batch as usize);
                want_padded = padded;
                assert_eq!(m["plans"].as_u64(), Some(plans), "{m}");
            }
            assert!((m["mean_padded_tokens"].as_f64().unwrap() - want_padded).abs() < 1e-9, "{m}");
            let (p50, p90, p99) =
                (m["p50_ms"].as_f64().unwrap(), m["p90_ms"].as_f64().unwrap(), m["p99_ms"].as_f64().unwrap());
            assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99, "{m}");
            let (mean_ms, sps) = (m["mean_ms"].as_f64().unwrap(), m["sentences_per_s"].as_f64().unwrap());
            // 25 rows in ceil(25 / batch) batches of mean_ms each.
            let want_sps = 25.0 / (mean_ms * 25u64.div_ceil(batch) as f64 / 1e3);
            assert!((sps - want_sps).abs() <= 1e-6 * sps, "{m}");
        }
        let v = c["runtime_version"].as_str().unwrap();
        if c["runtime"] == "ort" {
            // The version of the library loaded: the fetched wheel is 1.31.1.
            assert!(v.starts_with("onnxruntime 1.31"), "{v}");
        }
    }
    // Accuracy on the 10 test rows (25 rows, a pool of 15) with its interval; the second model's paired difference matches the accuracies.
    let models = r["models"].as_array().unwrap();
    for m in models {
        assert_eq!(m["examples"].as_u64(), Some(10));
        let (acc, ci) = (m["accuracy"].as_f64().unwrap(), &m["ci95"]);
        let (k, n) = ((acc * 10.0).round() as usize, 10);
        let (lo, hi) = bertopt::measure::stats::wilson(k, n);
        assert_eq!((ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap()), (lo, hi));
    }
    assert!(models[0].get("diff_vs_first").is_none());
    let diff = &models[1]["diff_vs_first"];
    let (a0, a1) = (models[0]["accuracy"].as_f64().unwrap(), models[1]["accuracy"].as_f64().unwrap());
    assert!((diff["diff"].as_f64().unwrap() - (a1 - a0)).abs() < 1e-12, "{diff}");
    let (ao, bo) = (diff["a_only"].as_i64().unwrap(), diff["b_only"].as_i64().unwrap());
    assert_eq!(bo - ao, ((a1 - a0) * 10.0).round() as i64);
}

/// Test rows cannot leak into a choice: with every test label flipped, training picks the same epochs with the
/// same validation accuracies and budget mode sees the same validation accuracy for every candidate, while the
/// reported test accuracy turns into its complement (so the flip did reach the test rows).
#[test]
fn flipping_every_test_label_changes_no_choice() {
    use bertopt::split::SplitArgs;
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let data = d.path().join("data.jsonl");
    common::write_sentiment_jsonl(&data, 60, 11);
    let split = SplitArgs { data: vec![data.clone()], train_size: Some(40), val_size: Some(10), ..Default::default() };
    let parts = split.splits().unwrap();
    let test: std::collections::HashSet<String> = parts.test.examples.iter().map(|e| e.text.clone()).collect();
    let pool: std::collections::HashSet<String> =
        parts.train.examples.iter().chain(&parts.val.examples).map(|e| e.text.clone()).collect();
    assert!(test.is_disjoint(&pool), "texts are unique, so flipping by text flips test rows only");
    let flipped = d.path().join("flipped.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if test.contains(v["text"].as_str().unwrap()) {
                v["label"] = (1 - v["label"].as_i64().unwrap()).into();
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&flipped, lines.join("\n")).unwrap();

    let mut runs = vec![];
    for (name, file) in [("a", &data), ("b", &flipped)] {
        let out = d.path().join(format!("t{name}"));
        let mut args = vec!["train", "--from", s(&model), "--data", s(file), "--train-size", "40", "--val-size", "10"];
        args.extend(["--epochs", "3", "--batch", "8", "--max-len", "16", "--lr", "5e-3", "--json", "-o", s(&out)]);
        let o = optimize(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let onnx = d.path().join(format!("t{name}.onnx"));
        assert!(optimize(&[s(&out), "-o", s(&onnx)]).status.success());
        let o = optimize(&["eval", s(&onnx), "--data", s(file), "--train-size", "40", "--val-size", "10", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let budget = d.path().join(format!("best{name}.onnx"));
        let mut args = vec![s(&out), "--latency-budget", "100", "--iters", "1", "--json", "-o", s(&budget)];
        args.extend(["--search", "heads=0,0.5;ffn=0,0.5;tile=0", "--data", s(file), "--train-size", "40"]);
        args.extend(["--val-size", "10", "--seq", "8"]);
        let o = optimize(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let b: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        runs.push((r, e, b));
    }
    let ((ra, ea, ba), (rb, eb, bb)) = (&runs[0], &runs[1]);
    assert_eq!(ra["best_epoch"], rb["best_epoch"]);
    let per_epoch = |r: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        r["epochs"].as_array().unwrap().iter().map(|e| (e["train_loss"].clone(), e["val_accuracy"].clone())).collect()
    };
    assert_eq!(per_epoch(ra), per_epoch(rb), "losses and validation accuracies per epoch are unchanged");
    assert_eq!(ea["examples"].as_u64(), Some(20), "60 rows, a pool of 40");
    let (ta, tb) = (ea["accuracy"].as_f64().unwrap(), eb["accuracy"].as_f64().unwrap());
    assert!((ta + tb - 1.0).abs() < 1e-12, "the same model's test accuracy on flipped labels is 1 - {ta}: {tb}");
    let val_acc = |b: &serde_json::Value| -> Vec<serde_json::Value> {
        b["candidates"].as_array().unwrap().iter().map(|c| c["accuracy"].clone()).collect()
    };
    assert_eq!(val_acc(ba), val_acc(bb), "every candidate's validation accuracy is unchanged");
    assert_eq!(ba["dense_accuracy"], bb["dense_accuracy"]);
    let (da, db) =
        (ba["test"]["dense"]["accuracy"].as_f64().unwrap(), bb["test"]["dense"]["accuracy"].as_f64().unwrap());
    assert!((da + db - 1.0).abs() < 1e-12, "budget mode's test figure is on the flipped rows: {da} {db}");
}

/// A model records the split it was trained on; `eval` refuses to call rows "test" that this split trained on,
/// naming both splits, and evaluates a file the model never saw (`--split all`).
#[test]
fn eval_refuses_test_rows_of_another_split_of_the_training_data() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    let data = d.path().join("data.jsonl");
    common::write_sentiment_jsonl(&data, 30, 5);
    let other = d.path().join("other.jsonl");
    common::write_sentiment_jsonl(&other, 12, 6);
    let out = d.path().join("t");
    let mut args = vec!["train", "--from", s(&model), "--data", s(&data), "--train-size", "20", "--epochs", "1"];
    args.extend(["--max-len", "16", "--json", "-o", s(&out)]);
    assert!(optimize(&args).status.success());
    let onnx = d.path().join("t.onnx");
    assert!(optimize(&[s(&out), "-o", s(&onnx)]).status.success());
    let ok = optimize(&["eval", s(&onnx), "--data", s(&data), "--train-size", "20"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let line = String::from_utf8_lossy(&ok.stdout);
    assert!(line.contains("test accuracy") && line.contains("(") && line.contains("of 10)"), "{line}");
    let e = optimize(&["eval", s(&onnx), "--data", s(&data), "--train-size", "20", "--seed", "7"]);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains("refusing to report test accuracy") && msg.contains("seed 42") && msg.contains("seed 7"),
        "{msg}"
    );
    let e = optimize(&["eval", s(&onnx), "--data", s(&data), "--split", "all"]);
    assert!(!e.status.success(), "all rows of the training file are not a test");
    let o = optimize(&["eval", s(&onnx), "--data", s(&other), "--split", "all", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["examples"].as_u64(), r["split"].as_str()), (Some(12), Some("all")));
    // --against: the other model on the same rows, and the paired difference of the two accuracies.
    let base = d.path().join("base.onnx");
    assert!(optimize(&[s(&out), "--pass", "heads(ratio=0.5)", "-o", s(&base)]).status.success());
    let o = optimize(&["eval", s(&onnx), "--data", s(&other), "--split", "all", "--against", s(&base), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (mine, theirs) = (r["accuracy"].as_f64().unwrap(), r["against"]["accuracy"]["accuracy"].as_f64().unwrap());
    let diff = &r["against"]["diff"];
    assert!((diff["diff"].as_f64().unwrap() - (mine - theirs)).abs() < 1e-12, "{r}");
    assert_eq!(r["against"]["accuracy"]["rows"].as_u64(), Some(12));
}

/// A label the model does not have is named as the file writes it, not by the class number it was given.
#[test]
fn eval_names_an_unknown_label_as_written() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    // Labels "0" and "1", as `optimize train` writes them for 0/1 data.
    let cfg = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(model.join("config.json"), cfg.replace("class_", "")).unwrap();
    let onnx = d.path().join("m.onnx");
    assert!(optimize(&[s(&model), "-o", s(&onnx)]).status.success());
    let data = d.path().join("bad.jsonl");
    let rows: Vec<String> = (0..10)
        .map(|i| format!("{{\"text\": \"good movie {i}\", \"label\": {}}}", if i == 3 { 7 } else { i % 2 }))
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let e = optimize(&["eval", s(&onnx), "--data", s(&data), "--split", "all"]);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains("label \"7\""), "{msg}");
}

/// A tokenizer.json that does not parse is refused at export, naming the file, with no output written (before,
/// the export succeeded and `run` failed later).
#[test]
fn export_refuses_a_tokenizer_that_does_not_parse() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    tiny_classifier(&model);
    std::fs::write(model.join("tokenizer.json"), "{\"model\": {\"type\": \"NoSuchModel\"}}").unwrap();
    let onnx = d.path().join("m.onnx");
    let e = must_fail(&[s(&model), "-o", s(&onnx)], &onnx);
    assert!(e.contains("tokenizer.json") && e.contains("not a tokenizer"), "{e}");
}

#[test]
fn opt_runs_a_pipeline_on_ir_text_as_the_file_tests_expect() {
    // What `opt` prints for a file test's pipeline is that file's expectation, byte for byte.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("passes/filetests/ffn/ratio.ir");
    let text = std::fs::read_to_string(&case).unwrap();
    let expect: String = text[text.find("; expect:\n").unwrap() + 10..]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("; ").unwrap_or(l.trim_start_matches(';'))))
        .collect();
    let o = optimize(&["opt", s(&case), "--pass", "ffn(ratio=0.25)"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), expect);
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass ffn"), "reports go to stderr");
    // -o writes the same text to a file.
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.ir");
    assert!(optimize(&["opt", s(&case), "--pass", "ffn(ratio=0.25)", "-o", s(&out)]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expect);
}

#[test]
fn opt_names_the_file_and_line_of_bad_ir_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.ir");
    std::fs::write(&bad, "graph g(%x: f32[2]) {\n  %0: f32[2] = frobnicate(%x)\n  return y = %0\n}\n").unwrap();
    let out = d.path().join("out.ir");
    let err = must_fail(&["opt", s(&bad), "-o", s(&out)], &out);
    assert!(err.contains("bad.ir") && err.contains("line 2"), "{err}");
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("passes/filetests/dce/dead_values.ir");
    let err = must_fail(&["opt", s(&case), "--pass", "nonesuch", "-o", s(&out)], &out);
    assert!(err.contains("nonesuch"), "{err}");
}
