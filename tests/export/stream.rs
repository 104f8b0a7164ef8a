//! `--stream rows`: hidden states as `[batch·seq, D]` and one `Gemm` per linear. The rows form computes what the
//! batched form computes (tract and ONNX Runtime, <= 1e-4 at non-padding positions) for dense, pruned, tiled,
//! int8 and early-exit graphs, passes `onnx.checker`, and really replaces every linear's MatMul + Add by a Gemm;
//! segmented exports, which hand hidden states between files, are unchanged by it.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bertopt::run::Batch;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

/// Three rows of up to seven tokens, the shorter ones padded, and a single row.
fn batches(vocab: usize) -> [Batch; 2] {
    let (b, s) = (3, 7);
    let ids: Vec<i64> = (0..b * s).map(|i| ((i * 5 + 3) % vocab) as i64).collect();
    let lens = [7, 4, 2];
    let mask: Vec<i64> = (0..b * s).map(|i| i64::from(i % s < lens[i / s])).collect();
    let three = Batch { batch: b, seq: s, input_ids: ids, attention_mask: mask, token_type_ids: vec![0; b * s] };
    let one = Batch {
        batch: 1,
        seq: 5,
        input_ids: vec![1, 6, 9, 4, 2],
        attention_mask: vec![1; 5],
        token_type_ids: vec![0; 5],
    };
    [three, one]
}

fn model(dir: &Path, scheme: Scheme, labels: usize) -> (PathBuf, TinySpec) {
    let spec = TinySpec { scheme, layers: 2, labels, ..TinySpec::default() };
    let path = dir.join(format!("{scheme:?}"));
    write_tiny_model(&path, &spec).unwrap();
    (path, spec)
}

#[test]
fn rows_compute_what_batched_computes_for_every_graph_form() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let mut checked = vec![];
    let models =
        [model(d.path(), Scheme::Bert, 3), model(d.path(), Scheme::Roberta, 2), model(d.path(), Scheme::Bare, 0)];
    let pipelines = [
        "",
        "heads(ratio=0.5),ffn(ratio=0.5)",
        "tile(sparsity=0.5)",
        "tile(sparsity=0.5,n=true)",
        "quant",
        "heads(ratio=0.5),ffn(ratio=0.5),quant",
    ];
    for (m, spec) in &models {
        for (i, p) in pipelines.iter().enumerate() {
            let what = format!("{:?} `{p}`", spec.scheme);
            let (batched, rows) =
                (d.path().join(format!("b{i}.onnx")), d.path().join(format!("{:?}-r{i}.onnx", spec.scheme)));
            common::export_ok(m, p, &batched, &[]);
            common::export_ok(m, p, &rows, &["--stream", "rows"]);
            for b in batches(spec.vocab) {
                common::assert_same_outputs(&batched, &rows, &b, &what);
            }
            let (ob, or) = (common::op_counts(&batched), common::op_counts(&rows));
            assert_eq!(ob.get("Gemm"), None, "{what}: the batched form has no Gemm");
            if i < 2 {
                // Every linear (six per layer, the pooler, the classifier) is one Gemm; what is left of MatMul
                // is the two attention products per layer; every bias Add went into a Gemm.
                let gemms = ob["MatMul"] - 2 * spec.layers;
                assert_eq!(or.get("Gemm"), Some(&gemms), "{what}: {or:?}");
                assert!(gemms > 6 * spec.layers, "{what}: {gemms} linears");
                assert_eq!(or.get("MatMul"), Some(&(2 * spec.layers)), "{what}: {or:?}");
                assert_eq!(or["Add"] + gemms, ob["Add"], "{what}: {ob:?} -> {or:?}");
            }
            checked.push(rows);
        }
    }
    common::onnx_check_parts(&checked);
}

#[test]
fn rows_keep_early_exits_and_leave_segmented_exports_alone() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let m = common::exit_model(d.path());
    let vocab = TinySpec::default().vocab;
    let mut checked = vec![];
    for (i, p) in
        ["exit(threshold=0.3)", "exit(criterion=patience,patience=1)", "exit(threshold=0.3),quant"].iter().enumerate()
    {
        let (batched, rows) = (d.path().join(format!("b{i}.onnx")), d.path().join(format!("r{i}.onnx")));
        common::export_ok(&m, p, &batched, &[]);
        common::export_ok(&m, p, &rows, &["--stream", "rows"]);
        for b in batches(vocab) {
            // Logits and the exit layer.
            common::assert_same_outputs(&batched, &rows, &b, p);
        }
        checked.push(rows);
    }
    common::onnx_check_parts(&checked);

    let (a, b) = (d.path().join("seg-batched"), d.path().join("seg-rows"));
    common::export_ok(&m, "exit(threshold=0.3)", &a, &["--segmented"]);
    common::export_ok(&m, "exit(threshold=0.3)", &b, &["--segmented", "--stream", "rows"]);
    let files = |p: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|f| (f.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f).unwrap()))
            .collect()
    };
    let (fa, fb) = (files(&a), files(&b));
    assert!(fa.len() >= 2, "a manifest and stage files: {:?}", fa.keys());
    assert!(fa == fb, "--stream rows changed a segmented export");
}
