//! The bundled default model (models/bundled/uci-sentiment-tiny, made by models/bundled/reproduce): its accuracy on
//! the validation rows, recomputed here, is the one training recorded (the epoch was chosen there); on the test rows
//! no choice used it is a usable classifier; it exports and runs with no network.

use std::path::PathBuf;

use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Dataset;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundled() -> PathBuf {
    root().join("models/bundled/uci-sentiment-tiny")
}

/// The split exactly as `models/bundled/reproduce` makes it: the three files in order, shuffled with seed 42; a
/// training pool of 2,400 whose last 240 rows validate; the 600 rows after it are the test set. Returns
/// (validation, test).
fn val_and_test() -> (Dataset, Dataset) {
    let parts = ["amazon", "imdb", "yelp"]
        .iter()
        .map(|n| Dataset::read(&root().join(format!("models/data/uci-sentiment/{n}.json"))).unwrap())
        .collect();
    let (_, val, test) = Dataset::concat(parts).split3(2400, 240, 42);
    (val, test)
}

#[test]
fn bundled_model_accuracy_matches_its_record() {
    let dir = bundled();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap()).unwrap();
    let (val, test) = val_and_test();
    assert_eq!((val.examples.len(), test.examples.len()), (240, 600));
    let model = BertClassifier::from_pretrained(&dir, val.labels.clone(), 0).unwrap();
    let mut enc = TextEncoder::from_file(&dir.join("tokenizer.json")).unwrap();
    let acc = bertopt_models::train::evaluate(&model, &mut enc, &val, 64, 64).unwrap();
    assert_eq!(
        acc,
        record["best_accuracy"].as_f64().unwrap(),
        "recomputed validation accuracy equals the recorded one"
    );
    let test_acc = bertopt_models::train::evaluate(&model, &mut enc, &test, 64, 64).unwrap();
    eprintln!("bundled model: validation {:.2} %, test {:.2} %", acc * 100.0, test_acc * 100.0);
    assert!(test_acc >= 0.78, "the bundled model must be a usable classifier on its test rows: {test_acc}");
    let size = std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
    assert!(size < 8 << 20, "the bundled model must stay small: {size} bytes");
}

#[test]
fn bundled_model_exports_and_classifies_offline() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("default.onnx");
    let bin = env!("CARGO_BIN_EXE_optimize");
    let o = std::process::Command::new(bin).arg(bundled()).arg("-o").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = |text: &str| -> String {
        let o = std::process::Command::new(bin).args(["run", out.to_str().unwrap(), "--text", text]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).split('\t').next().unwrap().to_string()
    };
    assert_eq!(run("Great phone, excellent battery and I love the screen."), "1");
    assert_eq!(run("Terrible service, the food was cold and awful."), "0");
}
