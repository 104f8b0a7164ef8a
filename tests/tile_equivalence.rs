//! The `tile` pass through the whole tool on MiniLM: the exported ONNX (per tile a Gather and a smaller MatMul,
//! concatenated) equals the dense MiniLM with the same row segments zeroed, in tract and ONNX Runtime, passes
//! `onnx.checker`, and holds fewer weights.

mod common;

use bertopt_ir::{op::tile_names, Op};
use candle_core::{Device, Tensor};

#[test]
fn minilm_tiled_equals_masked_dense_in_both_runtimes() {
    common::ensure_ort();
    let model = common::minilm();
    let d = tempfile::tempdir().unwrap();
    let tiled = d.path().join("tiled.onnx");
    let report = bertopt::export::export(&model, "tile(sparsity=0.5,g=128)", &tiled).unwrap();
    let p = &report.passes[0];
    assert_eq!(p.changed["matrices tiled"], 12, "both FFN matrices of all 6 layers");
    // Half the row segments of the tiled matrices go: 2 * 6 * (384 * 1536) weights of 2 * 6 * 384 * 1536.
    let ffn_weights = 12 * 384 * 1536;
    assert!((p.params_before - p.params_after) as f64 > 0.49 * ffn_weights as f64);

    // The dense model with the removed segments zeroed, read back from the pruned graph's kept rows.
    let (dense, _) = bertopt_models::load_graph(&model).unwrap();
    let (mut pruned, _) = bertopt_models::load_graph(&model).unwrap();
    bertopt_passes::Pipeline::parse("tile(sparsity=0.5,g=128)")
        .unwrap()
        .run(&mut pruned, &mut Default::default())
        .unwrap();
    let mut masked = dense.clone();
    let mut tiled_ops = 0;
    for n in pruned.dag.node_weights() {
        let Op::TiledLinear { w, k, n: cols, tiles } = &n.op else { continue };
        tiled_ops += 1;
        let mut m = vec![0f32; k * cols];
        for t in 0..*tiles {
            let (rows, _) = tile_names(w, t);
            for r in pruned.weights.tensor(&rows).unwrap().to_vec1::<i64>().unwrap() {
                for c in t * 128..((t + 1) * 128).min(*cols) {
                    m[r as usize * cols + c] = 1.0;
                }
            }
        }
        let name = format!("{w}.weight");
        let mask = Tensor::from_vec(m, (*k, *cols), &Device::Cpu).unwrap();
        let t = (dense.weights.tensor(&name).unwrap() * mask).unwrap();
        masked.weights.insert(name, t);
    }
    assert_eq!(tiled_ops, 12);
    let proto = bertopt::onnx::emit(&masked, &bertopt::onnx::EmitOptions { metadata: vec![] }).unwrap();
    let masked_path = d.path().join("masked.onnx");
    bertopt::onnx::write_model(&proto, &masked_path).unwrap();

    let mut enc = bertopt::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let batch = enc.encode(&["Cold pasta, rude waiter.", "A lovely, warm and funny film."], 128, None).unwrap();
    common::assert_same_outputs(&tiled, &masked_path, &batch, "tiled vs masked dense");
    common::onnx_check(&tiled);
}
