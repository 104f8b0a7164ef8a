//! The `tile` pass through the whole tool on MiniLM, as type 8 (columns, then row segments of tiles; the
//! attention projections included): the exported ONNX (per tile a Gather and a smaller MatMul, concatenated,
//! the computed columns put in place) equals the dense MiniLM with the same entries zeroed, in tract and ONNX
//! Runtime, passes `onnx.checker`, and holds fewer weights.

use crate::common;

use bertopt_ir::ops::{cols_name, tile_count, tile_names};
use candle_core::{Device, Tensor};

#[test]
fn minilm_tiled_equals_masked_dense_in_both_runtimes() {
    common::ensure_ort();
    let model = common::minilm();
    let d = tempfile::tempdir().unwrap();
    let tiled = d.path().join("tiled.onnx");
    let pipeline = "tile(sparsity=0.5,g=128,n=true)";
    let report = bertopt::export::export(&model, pipeline, &tiled).unwrap();
    let p = &report.passes[0];
    assert_eq!(p.changed["matrices tiled"], 36, "Q, K, V, O and both FFN matrices of all 6 layers");
    // Half of all columns go, then half of the remaining row segments: about 3/4 of the encoder's matrices.
    let encoder = 6 * (4 * 384 * 384 + 2 * 384 * 1536);
    let removed = (p.params_before - p.params_after) as f64;
    assert!(removed > 0.7 * encoder as f64, "{removed} of {encoder}");

    // The dense model with the removed entries zeroed, read back from the pruned graph: tile t covers the
    // next columns of `P.cols` (all columns when absent), as wide as its weight, and reads its kept rows.
    let (dense, _) = bertopt_models::load_graph(&model).unwrap();
    let (mut pruned, _) = bertopt_models::load_graph(&model).unwrap();
    bertopt_passes::Pipeline::parse(pipeline).unwrap().run(&mut pruned, &mut Default::default()).unwrap();
    let mut masked = dense.clone();
    let groups: Vec<String> =
        pruned.weights.0.keys().filter_map(|n| n.strip_suffix(".tile0.rows").map(str::to_string)).collect();
    assert_eq!(groups.len(), 36);
    for w in groups {
        let name = format!("{w}.weight");
        let (k, n) = dense.weights.tensor(&name).unwrap().dims2().unwrap();
        let cols: Vec<usize> = match pruned.weights.tensor(&cols_name(&w)) {
            Some(c) => c.to_vec1::<i64>().unwrap().into_iter().map(|c| c as usize).collect(),
            None => (0..n).collect(),
        };
        let mut m = vec![0f32; k * n];
        let mut next = 0;
        for t in 0..tile_count(|x| pruned.weights.0.contains_key(x), &w) {
            let (rows, weight) = tile_names(&w, t);
            let width = pruned.weights.tensor(&weight).unwrap().dim(1).unwrap();
            for r in pruned.weights.tensor(&rows).unwrap().to_vec1::<i64>().unwrap() {
                for &c in &cols[next..next + width] {
                    m[r as usize * n + c] = 1.0;
                }
            }
            next += width;
        }
        assert_eq!(next, cols.len(), "{w}: the tiles cover the computed columns");
        let mask = Tensor::from_vec(m, (k, n), &Device::Cpu).unwrap();
        let t = (dense.weights.tensor(&name).unwrap() * mask).unwrap();
        masked.weights.insert(name, t);
    }
    let proto = bertopt::onnx::emit(&masked, &bertopt::onnx::EmitOptions::default()).unwrap();
    let masked_path = d.path().join("masked.onnx");
    bertopt::onnx::write_model(&proto, &masked_path).unwrap();

    let mut enc = bertopt::tokenize::TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let batch = enc.encode(&["Cold pasta, rude waiter.", "A lovely, warm and funny film."], 128, None).unwrap();
    common::assert_same_outputs(&tiled, &masked_path, &batch, "tiled vs masked dense");
    common::onnx_check(&tiled);
}
