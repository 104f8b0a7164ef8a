//! `optimize check`: structural validation and tract-vs-ORT agreement for ONNX files from bertopt and from
//! elsewhere (written here with the `onnx` Python package's helpers), and clear failures for broken ones.

use crate::common;

use std::path::Path;

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;
use common::{optimize, s};

/// Write ONNX models with onnx.helper: `good` (MatMul, Add, Softmax over a symbolic batch `N`), `unordered`
/// (the same nodes in the wrong order), `unknown_op` (a well-formed graph with an op no runtime has).
fn write_foreign_models(dir: &Path) {
    let script = r#"
import sys, numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
d = sys.argv[1]
x = h.make_tensor_value_info("x", T.FLOAT, ["N", 4])
y = h.make_tensor_value_info("y", T.FLOAT, ["N", 3])
w = nh.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
b = nh.from_array(np.array([0.1, -0.2, 0.3], dtype=np.float32), "b")
nodes = [h.make_node("MatMul", ["x", "w"], ["xw"], name="mm"), h.make_node("Add", ["xw", "b"], ["z"], name="add"),
         h.make_node("Softmax", ["z"], ["y"], name="sm", axis=-1)]
def save(name, nodes):
    m = h.make_model(h.make_graph(nodes, "g", [x], [y], [w, b]), opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, f"{d}/{name}.onnx")
save("good", nodes)
onnx.checker.check_model(onnx.load(f"{d}/good.onnx"), full_check=True)
save("unordered", [nodes[1], nodes[0], nodes[2]])
save("unknown_op", [nodes[0], h.make_node("FancyAdd", ["xw", "b"], ["z"], name="fancy"), nodes[2]])
"#;
    let o = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "writing the test models needs the onnx Python package: run `scripts/test`, which installs onnx==1.23.2 \
         into .cache/venv and sets $PYTHON: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn a_bertopt_export_passes_with_the_shapes_asked_for() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec { scheme: Scheme::Bert, labels: 3, ..TinySpec::default() }).unwrap();
    let onnx = d.path().join("m.onnx");
    assert!(optimize(&[s(&model), "-o", s(&onnx)]).status.success());
    let o = optimize(&["check", s(&onnx), "--batch", "3", "--seq", "5", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json_of(&o);
    assert_eq!((r["valid"].as_bool(), r["ok"].as_bool()), (Some(true), Some(true)), "{r}");
    let inputs = r["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 3);
    assert!(inputs.iter().all(|i| i["shape"] == serde_json::json!([3, 5])), "{r}");
    let out = &r["outputs"][0];
    assert_eq!((out["name"].as_str(), &out["shape"]), (Some("logits"), &serde_json::json!([3, 3])));
    assert!(out["max_abs_diff"].as_f64().unwrap() <= 1e-4, "{r}");
    assert!(out["max_abs"].as_f64().unwrap() > 0.0, "random inputs give non-zero logits: {r}");
}

#[test]
fn a_foreign_model_is_checked_with_named_dimensions() {
    let d = tempfile::tempdir().unwrap();
    write_foreign_models(d.path());
    let o = optimize(&["check", s(&d.path().join("good.onnx")), "--dim", "N=7", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json_of(&o);
    assert_eq!(r["inputs"][0]["shape"], serde_json::json!([7, 4]));
    assert_eq!(r["outputs"][0]["shape"], serde_json::json!([7, 3]));
    assert_eq!((r["nodes"].as_u64(), r["initializers"].as_u64(), r["opset"].as_i64()), (Some(3), Some(2), Some(17)));
    // Softmax rows sum to 1, so the scale is at most 1.
    assert!(r["outputs"][0]["max_abs"].as_f64().unwrap() <= 1.0 + 1e-6);
}

#[test]
fn broken_files_fail_with_the_problem_named() {
    let d = tempfile::tempdir().unwrap();
    write_foreign_models(d.path());

    let o = optimize(&["check", s(&d.path().join("unordered.onnx"))]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("node `add` (Add) reads `xw`, which nothing defines before it"), "{out}");
    assert!(out.contains("check FAILED"), "{out}");

    let o = optimize(&["check", s(&d.path().join("unknown_op.onnx")), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let r = json_of(&o);
    assert_eq!((r["valid"].as_bool(), r["ok"].as_bool()), (Some(true), Some(false)), "structurally fine: {r}");
    let e = r["error"].as_str().unwrap();
    assert!(e.contains("tract") && e.contains("ONNX Runtime") && e.contains("FancyAdd"), "{e}");

    let garbage = d.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x0a\xff\xff\xff\xff\x0fnot protobuf").unwrap();
    let o = optimize(&["check", s(&garbage)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("garbage.onnx is not an ONNX model"), "{err}");
}

#[test]
fn an_int8_export_is_checked_against_the_rounding_tolerance_and_on_real_sentences() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec { scheme: Scheme::Bert, labels: 2, ..TinySpec::default() }).unwrap();
    let (f32_onnx, int8_onnx) = (d.path().join("f32.onnx"), d.path().join("int8.onnx"));
    assert!(optimize(&[s(&model), "-o", s(&f32_onnx)]).status.success());
    assert!(optimize(&[s(&model), "--pass", "quant", "-o", s(&int8_onnx)]).status.success());
    // Sentences of known length: [CLS] + words + [SEP].
    let text = d.path().join("text.jsonl");
    let rows = ["the movie was good", "bad", "i loved it , very fun !", "the plot was not very good but fun"];
    let lines: Vec<String> = rows.iter().map(|t| serde_json::json!({"text": t, "label": 1}).to_string()).collect();
    std::fs::write(&text, lines.join("\n")).unwrap();
    let words: usize = rows.iter().map(|t| t.split(' ').count() + 2).sum();

    let r = json_of(&optimize(&["check", s(&f32_onnx), "--text", s(&text), "--json"]));
    assert_eq!((r["ok"].as_bool(), r["tolerance"].as_f64()), (Some(true), Some(1e-4)), "{r}");
    assert_eq!(r["rounding_ops"], serde_json::json!([]));
    let t = &r["text"];
    assert_eq!((t["rows"].as_u64(), t["disagreements"].as_u64()), (Some(4), Some(0)), "{r}");
    assert!((t["mean_tokens"].as_f64().unwrap() - words as f64 / 4.0).abs() < 1e-9, "{r}");
    assert!(t["max_abs_diff"].as_f64().unwrap() <= 1e-4 && t["worst_row"].as_u64().unwrap() < 4, "{r}");

    // --rows caps the sentences read.
    let r = json_of(&optimize(&["check", s(&int8_onnx), "--text", s(&text), "--rows", "2", "--json"]));
    assert_eq!(r["rounding_ops"], serde_json::json!(["DynamicQuantizeLinear"]), "{r}");
    assert_eq!((r["ok"].as_bool(), r["tolerance"].as_f64()), (Some(true), Some(0.5)), "{r}");
    assert_eq!(r["text"]["rows"].as_u64(), Some(2), "{r}");
    // --tol still wins: a tolerance no rounding graph can meet on non-zero logits fails it only if they differ.
    let o = optimize(&["check", s(&int8_onnx), "--tol", "0", "--json"]);
    let r = json_of(&o);
    assert_eq!(r["tolerance"].as_f64(), Some(0.0), "{r}");
    assert_eq!(o.status.success(), r["outputs"][0]["max_abs_diff"].as_f64() == Some(0.0), "{r}");

    // A file of sentences that is not there, and a model without a tokenizer, are named.
    let o = optimize(&["check", s(&f32_onnx), "--text", s(&d.path().join("missing.jsonl"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"), "{}", String::from_utf8_lossy(&o.stderr));
    write_foreign_models(d.path());
    let o = optimize(&["check", s(&d.path().join("good.onnx")), "--text", s(&text)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--text needs a bertopt export with its tokenizer") && err.contains("good.onnx"), "{err}");
}
