//! Taylor scores (`optimize score`) on the bundled model: each score is (dL/dW · W)² (checked against finite
//! differences of the loss), the file holds IR names in K×N layout, and the passes rank by it with `scores=`.

use std::path::PathBuf;
use std::process::Command;

use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Dataset;
use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
fn bundled() -> PathBuf {
    root().join("models/bundled/uci-sentiment-tiny")
}
fn uci(n: usize) -> Dataset {
    let mut d = Dataset::read(&root().join("models/data/uci-sentiment/yelp.json")).unwrap();
    d.examples.truncate(n);
    d
}

#[test]
fn taylor_score_is_squared_gradient_times_weight() {
    let data = uci(24);
    let model = BertClassifier::from_pretrained(&bundled(), data.labels.clone(), 0).unwrap();
    let mut enc = TextEncoder::from_file(&bundled().join("tokenizer.json")).unwrap();
    let scores = bertopt_models::train::taylor::taylor_scores(&model, &mut enc, &data, 64, 24, 1, |_| {}).unwrap();
    let name = "bert.encoder.layer.0.intermediate.dense.weight";
    let s = scores[name].to_vec2::<f32>().unwrap();
    assert!(!scores.contains_key("bert.embeddings.word_embeddings.weight"), "only encoder matrices are scored");
    // The three highest-scoring entries, checked by central differences of the loss in that weight.
    let mut flat: Vec<(f32, usize, usize)> =
        s.iter().enumerate().flat_map(|(i, r)| r.iter().enumerate().map(move |(j, v)| (*v, i, j))).collect();
    flat.sort_by(|a, b| b.0.total_cmp(&a.0));
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let b = enc.encode(&texts, 64, None).unwrap();
    let labels: Vec<u32> = data.examples.iter().map(|e| e.label as u32).collect();
    let targets = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let var = model.params[name].clone();
    let w0 = var.as_tensor().copy().unwrap();
    let loss_at = |i: usize, j: usize, delta: f32| -> f64 {
        let mut w = w0.to_vec2::<f32>().unwrap();
        w[i][j] += delta;
        var.set(&Tensor::new(w, &Device::Cpu).unwrap()).unwrap();
        let l = candle_nn::loss::cross_entropy(&model.forward(&b, None).unwrap(), &targets).unwrap();
        l.to_scalar::<f32>().unwrap() as f64
    };
    for &(score, i, j) in &flat[..3] {
        let eps = 1e-2f32;
        let grad = (loss_at(i, j, eps) - loss_at(i, j, -eps)) / (2.0 * eps as f64);
        let w = w0.to_vec2::<f32>().unwrap()[i][j] as f64;
        let want = (grad * w).powi(2);
        assert!(
            (want - score as f64).abs() <= 0.05 * want.max(1e-12),
            "[{i}, {j}]: autograd score {score:e} vs finite differences {want:e}"
        );
    }
    var.set(&w0).unwrap();
}

#[test]
fn score_command_feeds_the_passes() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("scores.safetensors");
    let data = root().join("models/data/uci-sentiment/yelp.json");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args(["score", bundled().to_str().unwrap(), "--data", data.to_str().unwrap(), "--batches", "3"])
        .args(["--batch", "16", "--json", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["batches"].as_u64(), r["examples"].as_u64(), r["tensors"].as_u64()), (Some(3), Some(48), Some(12)));

    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("encoder.layer.1.intermediate.dense.weight").unwrap();
    assert_eq!(t.shape(), &[128, 512], "IR layout: K x N");

    // ffn with scores removes, per layer, the neurons of lowest summed score (computed here from the file).
    let (g, _) = bertopt_models::load_graph(&bundled()).unwrap();
    // Built as a pipeline is: the driver reads the score file, the pass ranks with it.
    let keep_of = |pipeline: &str| {
        let spec = &bertopt_passes::parse_pipeline(pipeline).unwrap()[0];
        match bertopt_passes::registry::build(spec).unwrap().keep(&g).unwrap() {
            Some(bertopt_passes::Keep::Neurons(k)) => k,
            other => panic!("ffn keeps neurons, got {other:?}"),
        }
    };
    let keep = keep_of(&format!("ffn(ratio=0.5,scores={})", out.display()));
    let read = |n: &str| -> Vec<Vec<f32>> {
        let v = st.tensor(n).unwrap();
        let f: Vec<f32> = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        f.chunks(v.shape()[1]).map(|r| r.to_vec()).collect()
    };
    for (l, kept) in keep.iter().enumerate() {
        let wi = read(&format!("encoder.layer.{l}.intermediate.dense.weight"));
        let wo = read(&format!("encoder.layer.{l}.output.dense.weight"));
        let score: Vec<f32> =
            (0..512).map(|j| wi.iter().map(|r| r[j]).sum::<f32>() + wo[j].iter().sum::<f32>()).collect();
        let min_kept = (0..512).filter(|&j| kept[j]).map(|j| score[j]).fold(f32::MAX, f32::min);
        let max_gone = (0..512).filter(|&j| !kept[j]).map(|j| score[j]).fold(f32::MIN, f32::max);
        assert_eq!(kept.iter().filter(|k| !**k).count(), 256);
        assert!(min_kept >= max_gone * (1.0 - 1e-5), "layer {l}: kept {min_kept} < removed {max_gone}");
    }
    let magnitude = keep_of("ffn(ratio=0.5)");
    assert_ne!(keep, magnitude, "Taylor scores choose other neurons than magnitude");

    // Scores of another model are refused with the file, the weight and both shapes.
    let tiny = d.path().join("tiny");
    bertopt_models::testing::write_tiny_model(&tiny, &Default::default()).unwrap();
    let onnx = d.path().join("x.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_optimize"))
        .args([tiny.to_str().unwrap(), "--pass", &format!("tile(scores={})", out.display()), "-o"])
        .arg(&onnx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("scores.safetensors") && err.contains("query.weight is [128, 128] but the weight is [32, 32]"),
        "{err}"
    );
    assert!(!onnx.exists());
}
