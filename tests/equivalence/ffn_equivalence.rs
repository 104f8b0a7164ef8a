//! The `ffn` pass through the whole tool: MiniLM with half of every FFN's neurons removed equals the dense MiniLM
//! with those neurons masked (their FFN-out rows zeroed), in tract and ONNX Runtime, with smaller matrices.

use crate::common;

use candle_core::{Device, Tensor};
use onnx_protobuf::Message;

/// Neurons kept per layer by magnitude, computed here from the IR weights: the `remove` lowest
/// ‖W_in[:, j]‖² + ‖W_out[j, :]‖² go.
fn keep_by_magnitude(g: &bertopt_ir::Graph, layer: usize, remove: usize) -> Vec<bool> {
    let wi = g.weights.tensor(&format!("encoder.layer.{layer}.intermediate.dense.weight")).unwrap();
    let wo = g.weights.tensor(&format!("encoder.layer.{layer}.output.dense.weight")).unwrap();
    let s = (wi.sqr().unwrap().sum(0).unwrap() + wo.sqr().unwrap().sum(1).unwrap()).unwrap().to_vec1::<f32>().unwrap();
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(b.cmp(&a)));
    let mut keep = vec![true; s.len()];
    for &j in &order[..remove] {
        keep[j] = false;
    }
    keep
}

#[test]
fn minilm_ffn_pruned_equals_masked_dense() {
    common::ensure_ort();
    let model = common::minilm();
    let d = tempfile::tempdir().unwrap();
    let pruned = d.path().join("ffn.onnx");
    let report = bertopt::export::export(&model, "ffn(ratio=0.5)", &pruned).unwrap();
    let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
    for l in 0..6 {
        let keep = keep_by_magnitude(&g, l, 768);
        let rows: Vec<f32> = keep.iter().map(|&k| k as u8 as f32).collect();
        let m = Tensor::from_vec(rows, (1536, 1), &Device::Cpu).unwrap();
        let name = format!("encoder.layer.{l}.output.dense.weight");
        let t = g.weights.tensor(&name).unwrap().broadcast_mul(&m).unwrap();
        g.weights.insert(name, t);
    }
    let proto = bertopt::onnx::emit(&g, &bertopt::onnx::EmitOptions::default()).unwrap();
    let dense = d.path().join("masked_dense.onnx");
    bertopt::onnx::write_model(&proto, &dense).unwrap();

    let mut enc = bertopt::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let batch = enc.encode(&["Cold pasta, rude waiter.", "A lovely, warm and funny film."], 128, None).unwrap();
    common::assert_same_outputs(&pruned, &dense, &batch, "ffn-pruned vs masked dense");
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&pruned).unwrap()).unwrap();
    let dims = |n: &str| m.graph.initializer.iter().find(|t| t.name == n).map(|t| t.dims.clone());
    for l in 0..6 {
        assert_eq!(dims(&format!("encoder.layer.{l}.intermediate.dense.weight")), Some(vec![384, 768]));
        assert_eq!(dims(&format!("encoder.layer.{l}.output.dense.weight")), Some(vec![768, 384]));
    }
    // Each layer drops 768 neurons from two 384-wide matmuls: 2 * 2 * 128 * 384 * 768 FLOPs at seq 128.
    let p = &report.passes[0];
    assert_eq!(p.flops_before - p.flops_after, 6 * 2 * 2 * 128 * 384 * 768);
}
