//! SMP masks through the whole tool: MiniLM with the 50 % fixture mask stripped equals the dense MiniLM with those
//! heads masked, in tract and ONNX Runtime, and the exported matrices are physically smaller.

use crate::common;
use crate::pass_common;

use std::path::{Path, PathBuf};

use bertopt::run::Batch;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_passes::mask::HeadMask;
use onnx_protobuf::Message;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("passes/tests/fixtures/smp").join(name)
}

/// Export `model` pruned by `mask` through the CLI's path, and the dense model with the same heads masked.
fn export_pair(model: &Path, mask: &Path, keep: &[Vec<bool>], dir: &Path) -> (PathBuf, PathBuf) {
    let pruned = dir.join("pruned.onnx");
    bertopt::export::export(model, &format!("heads(mask={})", mask.display()), &pruned).unwrap();
    let (g, _) = bertopt_models::load_graph(model).unwrap();
    let masked = pass_common::mask_heads_dense(&g, keep);
    let proto = bertopt::onnx::emit(&masked, &bertopt::onnx::EmitOptions::default()).unwrap();
    let dense = dir.join("masked_dense.onnx");
    bertopt::onnx::write_model(&proto, &dense).unwrap();
    (pruned, dense)
}

fn initializer_dims(path: &Path) -> std::collections::HashMap<String, Vec<i64>> {
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    m.graph.initializer.iter().map(|t| (t.name.clone(), t.dims.clone())).collect()
}

#[test]
fn minilm_stripped_by_the_smp_fixture_equals_masked_dense() {
    let model = common::minilm();
    let mask_path = fixture("head_mask_minilm_l6_h12_ratio0.5.np2.bin");
    let mask = HeadMask::read(&mask_path).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (pruned, dense) = export_pair(&model, &mask_path, &mask.keep, d.path());

    let mut enc = bertopt::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let batch = enc
        .encode(
            &[
                "The pasta was cold and the waiter ignored us.",
                "Great value for the price, I would buy it again.",
                "A slow, confusing film with one good scene.",
            ],
            128,
            None,
        )
        .unwrap();
    common::assert_same_outputs(&pruned, &dense, &batch, "stripped vs masked dense");

    let dims = initializer_dims(&pruned);
    for l in 0..6 {
        let kept = mask.keep[l].iter().filter(|k| **k).count() as i64;
        let p = format!("encoder.layer.{l}.attention");
        assert_eq!(dims[&format!("{p}.self.key.weight")], vec![384, kept * 32], "layer {l}");
        assert_eq!(dims[&format!("{p}.self.value.weight")], vec![384, kept * 32], "layer {l}");
        assert_eq!(dims[&format!("{p}.self.query.weight_scaled")], vec![384, kept * 32], "layer {l}");
        assert_eq!(dims[&format!("{p}.output.dense.weight")], vec![kept * 32, 384], "layer {l}");
    }
    // Each removed head takes 32 columns of Q, K, V (weights and biases) and 32 rows of O out of the file.
    let removed_heads = (6 * 12 - mask.kept()) as u64;
    let removed_bytes = removed_heads * 32 * (3 * 384 + 3 + 384) * 4;
    let weight_bytes = |p: &Path| -> u64 {
        let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(p).unwrap()).unwrap();
        m.graph.initializer.iter().map(|t| t.raw_data.len() as u64).sum()
    };
    assert_eq!(weight_bytes(&dense) - weight_bytes(&pruned), removed_bytes);
}

#[test]
fn a_layer_with_every_head_removed_matches_in_both_runtimes() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("tiny");
    write_tiny_model(&model, &TinySpec::default()).unwrap();
    let keep = vec![vec![false; 4], vec![true, false, false, true]];
    let mask = d.path().join("mask.json");
    std::fs::write(&mask, HeadMask { keep: keep.clone() }.to_json()).unwrap();
    let (pruned, dense) = export_pair(&model, &mask, &keep, d.path());
    common::assert_same_outputs(&pruned, &dense, &Batch::synthetic(3, 9, 32, 4), "stripped vs masked dense");
    let dims = initializer_dims(&pruned);
    assert!(!dims.contains_key("encoder.layer.0.attention.self.key.weight"), "layer 0 has no attention left");
    assert_eq!(dims["encoder.layer.0.attention.output.dense.bias"], vec![32], "its output bias remains");
}

#[test]
fn cli_rejects_a_mask_of_the_wrong_shape_without_writing() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("tiny");
    write_tiny_model(&model, &TinySpec::default()).unwrap();
    let out = d.path().join("out.onnx");
    let mask = fixture("head_mask_minilm_l6_h12_ratio0.5.np1.bin");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([
            model.to_str().unwrap(),
            "--pass",
            &format!("heads(mask={})", mask.display()),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is [6, 12] (layers x heads) but the model is [2, 4]"), "{err}");
    assert!(!out.exists());
}
