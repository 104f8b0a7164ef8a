//! The reference `onnx.checker` (PyPI onnx==1.23.2) with full_check accepts every model bertopt exports.

use crate::common;

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

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
        common::onnx_check(&out);
    }
    // Every structured pass, alone and together, on the classifier.
    let dir = d.path().join("bert");
    for (i, pipeline) in [
        "heads(ratio=0.5)",
        "ffn(ratio=0.5)",
        "tile(sparsity=0.5,g=8)",
        "tile(sparsity=0.7,g=8,scope=tile)",
        "heads(ratio=0.5),ffn(ratio=0.25,multiple=8),tile(sparsity=0.5,g=16)",
    ]
    .iter()
    .enumerate()
    {
        let out = d.path().join(format!("pruned{i}.onnx"));
        bertopt::export::export(&dir, pipeline, &out).unwrap();
        common::onnx_check(&out);
    }
    let out = d.path().join("minilm.onnx");
    bertopt::export::export(&common::minilm(), "", &out).unwrap();
    common::onnx_check(&out);
}
