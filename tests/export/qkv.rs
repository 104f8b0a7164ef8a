//! `--qkv fused`: each layer's Q, K and V projections as one linear over the three weights and a `Split`. It
//! computes what three projections compute (tract and ONNX Runtime, <= 1e-4) for dense, pruned and early-exit
//! graphs, batched and as rows, passes `onnx.checker`, and really replaces three MatMul + Add by one and a Split;
//! tiled and int8 projections are left as they are (the file is byte for byte the separate one).

use crate::common;

use bertopt::run::Batch;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

fn batches(vocab: usize) -> [Batch; 2] {
    let (b, s) = (2, 6);
    let ids: Vec<i64> = (0..b * s).map(|i| ((i * 7 + 2) % vocab) as i64).collect();
    let mask: Vec<i64> = (0..b * s).map(|i| i64::from(i % s < [6, 3][i / s])).collect();
    let two = Batch { batch: b, seq: s, input_ids: ids, attention_mask: mask, token_type_ids: vec![0; b * s] };
    let one =
        Batch { batch: 1, seq: 4, input_ids: vec![1, 8, 3, 2], attention_mask: vec![1; 4], token_type_ids: vec![0; 4] };
    [two, one]
}

#[test]
fn fused_qkv_computes_what_three_projections_compute() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let spec = TinySpec { scheme: Scheme::Bert, layers: 2, labels: 3, ..TinySpec::default() };
    let m = d.path().join("m");
    write_tiny_model(&m, &spec).unwrap();
    let mut checked = vec![];
    for (i, p) in ["", "heads(ratio=0.5),ffn(ratio=0.5)"].iter().enumerate() {
        for stream in ["batched", "rows"] {
            let what = format!("`{p}` {stream}");
            let (sep, fused) =
                (d.path().join(format!("s{i}{stream}.onnx")), d.path().join(format!("f{i}{stream}.onnx")));
            common::export_ok(&m, p, &sep, &["--stream", stream]);
            common::export_ok(&m, p, &fused, &["--stream", stream, "--qkv", "fused"]);
            for b in batches(spec.vocab) {
                common::assert_same_outputs(&sep, &fused, &b, &what);
            }
            let (os, of) = (common::op_counts(&sep), common::op_counts(&fused));
            let linear = if stream == "rows" { "Gemm" } else { "MatMul" };
            assert_eq!(of.get("Split"), Some(&spec.layers), "{what}: {of:?}");
            assert_eq!(of[linear] + 2 * spec.layers, os[linear], "{what}: {os:?} -> {of:?}");
            checked.push(fused);
        }
    }
    // Tiled and int8 projections stay three.
    for p in ["tile(sparsity=0.5)", "quant"] {
        let (sep, fused) = (d.path().join("s.onnx"), d.path().join("f.onnx"));
        common::export_ok(&m, p, &sep, &[]);
        common::export_ok(&m, p, &fused, &["--qkv", "fused"]);
        assert!(std::fs::read(&sep).unwrap() == std::fs::read(&fused).unwrap(), "{p}: --qkv fused changed the file");
    }
    // Inside early-exit branches.
    let e = common::exit_model(d.path());
    let (sep, fused) = (d.path().join("es.onnx"), d.path().join("ef.onnx"));
    common::export_ok(&e, "exit(threshold=0.3)", &sep, &[]);
    common::export_ok(&e, "exit(threshold=0.3)", &fused, &["--qkv", "fused"]);
    assert!(std::fs::read(&sep).unwrap() != std::fs::read(&fused).unwrap(), "the branches' projections are fused");
    for b in batches(TinySpec::default().vocab) {
        common::assert_same_outputs(&sep, &fused, &b, "exit");
    }
    checked.push(fused);
    common::onnx_check_parts(&checked);
}
