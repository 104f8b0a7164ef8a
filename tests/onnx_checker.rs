//! The reference `onnx.checker` (PyPI onnx==1.23.2) with full_check accepts every model bertopt exports.

mod common;

use std::path::Path;
use std::process::Command;

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

fn check_with_onnx(path: &Path) {
    let script = "import sys, onnx\nm = onnx.load(sys.argv[1])\nonnx.checker.check_model(m, full_check=True)\n\
                  assert m.opset_import[0].version >= 17\n\
                  assert [i.name for i in m.graph.input] == ['input_ids', 'attention_mask', 'token_type_ids']\n\
                  assert any(n.op_type == 'LayerNormalization' for n in m.graph.node)\nprint('ok')";
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let o =
        Command::new(&py).arg("-c").arg(script).arg(path).output().unwrap_or_else(|e| panic!("cannot start {py}: {e}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("No module named 'onnx'"),
        "the onnx Python package is missing: `pip install onnx==1.23.2` (the README's test command does this)"
    );
    assert!(o.status.success() && o.stdout.starts_with(b"ok"), "onnx.checker rejected {}: {err}", path.display());
}

#[test]
fn checker_accepts_every_scheme_and_minilm() {
    let d = tempfile::tempdir().unwrap();
    for (name, scheme, labels) in
        [("bare", Scheme::Bare, 0), ("bert", Scheme::Bert, 2), ("roberta", Scheme::Roberta, 3)]
    {
        let dir = d.path().join(name);
        write_tiny_model(&dir, &TinySpec { scheme, labels, ..TinySpec::default() }).unwrap();
        let out = d.path().join(format!("{name}.onnx"));
        bertopt::export::export(&dir, "", &out).unwrap();
        check_with_onnx(&out);
    }
    let out = d.path().join("minilm.onnx");
    bertopt::export::export(&common::minilm(), "", &out).unwrap();
    check_with_onnx(&out);
}
