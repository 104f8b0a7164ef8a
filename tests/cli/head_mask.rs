//! SMP head masks computed by bertopt (`optimize head-mask`), recovery training under a mask, and `optimize eval`,
//! on the bundled model (a real trained 2-layer, 4-head classifier) and its UCI data.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use bertopt::run::{self, RunnerOptions, Runtime};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::{Dataset, Example};
use bertopt_models::train::head_importance::{head_importance, random_mask, select, Scope};
use bertopt_passes::mask::HeadMask;
use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
fn bundled() -> PathBuf {
    root().join("models/bundled/uci-sentiment-tiny")
}
fn uci_args() -> Vec<String> {
    ["amazon", "imdb", "yelp"]
        .iter()
        .flat_map(|n| ["--data".to_string(), format!("{}/models/data/uci-sentiment/{n}.json", root().display())])
        .collect()
}
fn uci(n: usize) -> Dataset {
    let parts = ["amazon", "imdb", "yelp"]
        .iter()
        .map(|n| Dataset::read(&root().join(format!("models/data/uci-sentiment/{n}.json"))).unwrap())
        .collect();
    let mut d = Dataset::concat(parts).split(2400, 42).0;
    d.examples.truncate(n);
    d
}
fn optimize(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_optimize")).args(args).output().unwrap()
}

fn loss_with_gate(model: &BertClassifier, enc: &mut TextEncoder, data: &[Example], gate: &[f32]) -> f64 {
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let b = enc.encode(&texts, 64, None).unwrap();
    let (l, h) = (model.config.num_hidden_layers, model.config.num_attention_heads);
    let gate = Tensor::from_vec(gate.to_vec(), (l, h), &Device::Cpu).unwrap();
    let logits = model.forward_gated(&b, None, Some(&gate)).unwrap();
    let labels: Vec<u32> = data.iter().map(|e| e.label as u32).collect();
    let t = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits, &t).unwrap().to_scalar::<f32>().unwrap() as f64
}

/// The autograd importance equals |central finite difference of the loss in each gate|, normalised per layer.
#[test]
fn head_importance_is_the_gate_gradient() {
    let data = uci(48);
    let model = BertClassifier::from_pretrained(&bundled(), data.labels.clone(), 0).unwrap();
    let mut enc = TextEncoder::from_file(&bundled().join("tokenizer.json")).unwrap();
    let scores = head_importance(&model, &mut enc, &data, 64, 48, |_| {}).unwrap();
    let (l, h) = (2, 4);
    assert_eq!((scores.len(), scores[0].len()), (l, h));
    let eps = 1e-2;
    for layer in 0..l {
        let fd: Vec<f64> = (0..h)
            .map(|head| {
                let mut up = vec![1f32; l * h];
                let mut down = up.clone();
                up[layer * h + head] += eps as f32;
                down[layer * h + head] -= eps as f32;
                let d = loss_with_gate(&model, &mut enc, &data.examples, &up)
                    - loss_with_gate(&model, &mut enc, &data.examples, &down);
                (d / (2.0 * eps)).abs()
            })
            .collect();
        let norm = fd.iter().map(|x| x * x).sum::<f64>().sqrt();
        for head in 0..h {
            let want = fd[head] / norm;
            let got = scores[layer][head] as f64;
            assert!((want - got).abs() < 2e-2, "layer {layer} head {head}: autograd {got:.4} vs finite diff {want:.4}");
        }
        let unit = scores[layer].iter().map(|x| x * x).sum::<f32>();
        assert!((unit - 1.0).abs() < 1e-4, "layer {layer} is normalised: {unit}");
    }
}

#[test]
fn selection_follows_smp_ratio_convention() {
    let scores = vec![vec![0.9, 0.1, 0.5, 0.3], vec![0.2, 0.8, 0.7, 0.05]];
    let per_layer = select(&scores, 0.5, Scope::Layer).unwrap();
    assert_eq!(per_layer, vec![vec![true, false, true, false], vec![false, true, true, false]]);
    // Global: the 4 lowest of 8 go wherever they are; with 0.75 a whole layer may go.
    let global = select(&scores, 0.5, Scope::Global).unwrap();
    assert_eq!(global, vec![vec![true, false, true, false], vec![false, true, true, false]]);
    let g75 = select(&[vec![0.1, 0.2], vec![0.9, 0.8]], 0.5, Scope::Global).unwrap();
    assert_eq!(g75, vec![vec![false, false], vec![true, true]]);
    assert!(select(&scores, 1.0, Scope::Layer).is_err());
    let r = random_mask(6, 12, 0.25, Scope::Layer, 7).unwrap();
    assert!(r.iter().all(|row| row.iter().filter(|k| !**k).count() == 3));
    assert_ne!(r, random_mask(6, 12, 0.25, Scope::Layer, 8).unwrap(), "the seed matters");
}

/// A model trained under a head mask is saved dense with the masked heads' value projections zeroed: it then
/// computes the masked model exactly, and `heads(mask=...)` strips those heads to an ONNX that agrees with it.
#[test]
fn gated_checkpoint_is_the_masked_model_and_strips_to_it() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let data = uci(8);
    let keep = vec![vec![true, false, true, false], vec![false, false, false, false]];
    let mut model = BertClassifier::from_pretrained(&bundled(), data.labels.clone(), 0).unwrap();
    model.set_head_gate(keep.clone()).unwrap();
    let saved = d.path().join("gated");
    model.save(&saved, &bundled().join("tokenizer.json"), &Default::default()).unwrap();

    let mut enc = TextEncoder::from_file(&bundled().join("tokenizer.json")).unwrap();
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let b = enc.encode(&texts, 64, None).unwrap();
    let gated = model.forward(&b, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ungated_original = {
        model.head_gate = None;
        model.forward(&b, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let reloaded = BertClassifier::from_pretrained(&saved, data.labels.clone(), 0).unwrap();
    let dense = reloaded.forward(&b, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = |a: &[f32], c: &[f32]| a.iter().zip(c).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff(&gated, &dense) < 1e-5, "saved dense == gated: {}", diff(&gated, &dense));
    assert!(diff(&gated, &ungated_original) > 1e-3, "the mask changes the model");

    let mask = d.path().join("mask.json");
    std::fs::write(&mask, HeadMask { keep }.to_json()).unwrap();
    let onnx = d.path().join("stripped.onnx");
    let pipeline = format!("heads(mask={})", mask.display());
    let o = optimize(&[saved.to_str().unwrap(), "--pass", &pipeline, "-o", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for rt in [Runtime::Tract, Runtime::Ort] {
        let r = run::load(rt, &onnx, RunnerOptions::default()).unwrap();
        let out = r.run(&b).unwrap();
        let logits = &common::output(&out, "logits").data;
        assert!(diff(&gated, logits) < 1e-4, "{rt}: stripped ONNX vs gated candle {}", diff(&gated, logits));
    }
}

#[test]
fn head_mask_command_writes_smp_pickle_and_json() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("head_mask.bin");
    let model = bundled();
    let mut args = vec!["head-mask", model.to_str().unwrap()];
    let data = uci_args();
    args.extend(data.iter().map(String::as_str));
    args.extend(["--train-size", "2400", "--max-examples", "64", "--ratio", "0.5", "-o", bin.to_str().unwrap()]);
    let o = optimize(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&bin).unwrap()[..2], [0x80, 3], "a protocol-3 pickle");
    let m = HeadMask::read(&bin).unwrap();
    assert_eq!((m.layers(), m.heads(), m.kept()), (2, 4, 4));
    assert!(m.keep.iter().all(|r| r.iter().filter(|k| **k).count() == 2), "per layer: {:?}", m.keep);

    // JSON with the report: the kept heads are the top-scoring ones of each layer.
    let json_out = d.path().join("mask.json");
    let mut jargs = args.clone();
    let n = jargs.len();
    jargs[n - 1] = json_out.to_str().unwrap();
    jargs.extend(["--format", "json", "--json"]);
    let o = optimize(&jargs);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let scores: Vec<Vec<f64>> = serde_json::from_value(report["scores"].clone()).unwrap();
    let jm = HeadMask::read(&json_out).unwrap();
    assert_eq!(jm, m, "pickle and JSON outputs hold the same mask");
    for (row, keep) in scores.iter().zip(&jm.keep) {
        let min_kept = row.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| *s).fold(f64::MAX, f64::min);
        let max_gone = row.iter().zip(keep).filter(|(_, k)| !**k).map(|(s, _)| *s).fold(f64::MIN, f64::max);
        assert!(min_kept >= max_gone, "kept heads outscore removed ones: {row:?} {keep:?}");
    }
    assert_eq!(report["calibration_examples"], 64);
}

#[test]
fn head_mask_and_train_refuse_bad_models_and_masks() {
    let d = tempfile::tempdir().unwrap();
    // A model without a trained classifier cannot be scored by the task loss.
    let bare = d.path().join("bare");
    bertopt_models::testing::write_tiny_model(&bare, &Default::default()).unwrap();
    let data = uci_args();
    let out = d.path().join("m.bin");
    let mut args = vec!["head-mask", bare.to_str().unwrap()];
    args.extend(data.iter().map(String::as_str));
    args.extend(["-o", out.to_str().unwrap()]);
    let o = optimize(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no trained classifier"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());

    // Recovery training with a mask of the wrong shape names both shapes and writes nothing.
    let mask = d.path().join("wrong.json");
    std::fs::write(&mask, HeadMask { keep: vec![vec![true; 12]; 6] }.to_json()).unwrap();
    let trained = d.path().join("trained");
    let model = bundled();
    let mut args = vec!["train", "--from", model.to_str().unwrap()];
    args.extend(data.iter().map(String::as_str));
    args.extend(["--head-mask", mask.to_str().unwrap(), "-o", trained.to_str().unwrap()]);
    let o = optimize(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("[6, 12]") && err.contains("2 layers of 4 heads"), "{err}");
    assert!(!trained.join("model.safetensors").exists());
}

/// `optimize eval --split val` on the exported bundled model reproduces the validation accuracy that training
/// recorded with candle, in both runtimes.
#[test]
fn eval_command_reproduces_recorded_accuracy() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    let o = optimize(&[bundled().to_str().unwrap(), "-o", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled().join("training.json")).unwrap()).unwrap();
    let want = record["best_accuracy"].as_f64().unwrap();
    for rt in ["tract", "ort"] {
        let mut args = vec!["eval", onnx.to_str().unwrap()];
        let data = uci_args();
        args.extend(data.iter().map(String::as_str));
        args.extend(["--train-size", "2400", "--val-size", "240", "--seed", "42", "--split", "val"]);
        args.extend(["--runtime", rt, "--json"]);
        let o = optimize(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["examples"], 240);
        let got = r["accuracy"].as_f64().unwrap();
        assert!((got - want).abs() <= 1.0 / 240.0 + 1e-9, "{rt}: {got} vs recorded {want}");
    }
}
