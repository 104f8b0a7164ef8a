//! Training with candle on a small slice: the loss falls and held-out accuracy beats chance; the saved folder
//! reloads to identical logits; its ONNX export agrees with the candle model in tract and ONNX Runtime.

use crate::common;
use bertopt::run::{self, RunnerOptions, Runtime};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Dataset;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::train::{self, TrainConfig};

/// Settings under which the tiny model learns the generated sentiment data in a few seconds.
fn tiny_config() -> TrainConfig {
    TrainConfig { epochs: 4, batch_size: 16, lr: 3e-3, max_len: 16, dropout: 0.0, seed: 3, ..TrainConfig::default() }
}

#[test]
fn tiny_training_learns_saves_reloads_and_exports() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec::default()).unwrap();
    let data = d.path().join("train.jsonl");
    common::write_sentiment_jsonl(&data, 240, 1);
    let eval_path = d.path().join("eval.jsonl");
    common::write_sentiment_jsonl(&eval_path, 80, 2);
    let train_set = Dataset::read(&data).unwrap();
    let eval_set = Dataset::read(&eval_path).unwrap();
    assert_eq!(train_set.labels, vec!["0", "1"]);

    let cfg = tiny_config();
    let mut model = BertClassifier::random(
        bertopt_models::BertConfig::from_file(&base.join("config.json")).unwrap(),
        train_set.labels.clone(),
        cfg.seed,
    )
    .unwrap();
    let tok = base.join("tokenizer.json");
    let mut enc = TextEncoder::from_file(&tok).unwrap();
    let out = d.path().join("trained");
    let before = train::evaluate(&model, &mut enc, &eval_set, 16, 32).unwrap();
    let meta = Default::default();
    let job = train::TrainJob {
        train: &train_set,
        val: &eval_set,
        tokenizer: &tok,
        out: &out,
        metadata: &meta,
        progress: false,
        teacher: None,
    };
    let report = train::train(&mut model, &mut enc, &job, &cfg).unwrap();
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    eprintln!(
        "losses {losses:?}, accuracy before {before}, after {:?}",
        report.epochs.iter().map(|e| e.val_accuracy).collect::<Vec<_>>()
    );
    assert!(losses.last().unwrap() < &(losses[0] * 0.7), "loss falls: {losses:?}");
    assert!(report.best_accuracy >= 0.8, "held-out accuracy {} should beat chance (0.5) clearly", report.best_accuracy);

    // The saved folder is a BertForSequenceClassification: reload it and get the same logits as the best epoch.
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["architectures"][0], "BertForSequenceClassification");
    assert_eq!(cfg_json["num_labels"], 2);
    assert_eq!(cfg_json["id2label"]["1"], "1");
    let reloaded = BertClassifier::from_pretrained(&out, train_set.labels.clone(), 99).unwrap();
    let reloaded_again = BertClassifier::from_pretrained(&out, train_set.labels.clone(), 7).unwrap();
    let texts = ["the movie was great", "boring plot and bad acting", "it was fun"];
    let batch = enc.encode(&texts, 16, None).unwrap();
    let a = reloaded.forward(&batch, None).unwrap();
    let b = reloaded_again.forward(&batch, None).unwrap();
    assert_eq!(common::flat(&a), common::flat(&b), "reloading is exact");
    let acc = train::evaluate(&reloaded, &mut enc, &eval_set, 16, 32).unwrap();
    assert_eq!(acc, report.best_accuracy, "the saved checkpoint is the best epoch's");

    // Export the trained folder and compare with candle in tract and ONNX Runtime.
    let onnx = d.path().join("trained.onnx");
    bertopt::export::export(&out, "", &onnx).unwrap();
    let want = common::flat(&a);
    for rt in [Runtime::Tract, Runtime::Ort] {
        let outs = run::load(rt, &onnx, RunnerOptions::default()).unwrap().run(&batch).unwrap();
        let logits = common::output(&outs, "logits");
        let diff = common::max_diff("logits", &batch, &logits.shape, &want, &logits.data);
        eprintln!("{rt}: trained classifier ONNX vs candle, max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{rt} differs from candle by {diff}");
    }
}

#[test]
fn data_readers_handle_each_layout_and_report_bad_rows() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    // GLUE SST-2 TSV
    std::fs::write(p("sst2.tsv"), "sentence\tlabel\nit 's a charming journey . \t1\nunflinchingly bleak \t0\n")
        .unwrap();
    let s = Dataset::read(&p("sst2.tsv")).unwrap();
    assert_eq!(s.examples.len(), 2);
    assert_eq!((s.examples[0].label, s.examples[1].label), (1, 0));
    // MR: "label","text" with quotes spanning a line break and a BOM, labels 1 / -1
    std::fs::write(p("mr.csv"), "\u{feff}\"1\",\"a \"\"great\"\" film . \n\"\n\"-1\",\"dull , flat\"\n").unwrap();
    let m = Dataset::read(&p("mr.csv")).unwrap();
    assert_eq!(m.labels, vec!["-1", "1"]);
    assert_eq!(m.examples[0].text, "a \"great\" film .");
    assert_eq!((m.examples[0].label, m.examples[1].label), (1, 0));
    // UCI JSON with the trailing null-class record
    std::fs::write(
        p("uci.json"),
        r#"[{"text":"Good case.","class":1},{"text":"Broke.","class":0},{"text":"","class":null}]"#,
    )
    .unwrap();
    let u = Dataset::read(&p("uci.json")).unwrap();
    assert_eq!(u.examples.len(), 2);
    // bad rows: file and line number
    std::fs::write(p("bad.jsonl"), "{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"no label\"}\n").unwrap();
    let e = Dataset::read(&p("bad.jsonl")).unwrap_err().to_string();
    assert!(e.contains("bad.jsonl, line 2") && e.contains("no label field"), "{e}");
    std::fs::write(p("bad.csv"), "text,label\nfine,1\n,0\n").unwrap();
    let e = Dataset::read(&p("bad.csv")).unwrap_err().to_string();
    assert!(e.contains("bad.csv, line 3") && e.contains("empty text"), "{e}");
    std::fs::write(p("one.jsonl"), "{\"text\": \"a\", \"label\": 0}\n").unwrap();
    assert!(Dataset::read(&p("one.jsonl")).unwrap_err().to_string().contains("only one label"));
}

/// Without the `cuda` feature (CI never enables it), asking for CUDA says how to get it and writes nothing.
#[test]
fn cuda_device_without_the_feature_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("d.jsonl");
    common::write_sentiment_jsonl(&data, 20, 1);
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec::default()).unwrap();
    let out = d.path().join("out");
    for (device, want) in [("cuda", "--features cuda"), ("tpu", "unknown device")] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_optimize"))
            .args(["train", "--from", base.to_str().unwrap(), "--data", data.to_str().unwrap(), "--device", device])
            .args(["--epochs", "1", "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{device}: {err}");
        assert!(!out.exists(), "nothing written");
    }
}

/// With `kd_alpha = 1` the labels carry no weight: a student given *flipped* labels still learns the teacher's
/// answers, which are right; the same soft targets attached to the wrong examples teach nothing.
#[test]
fn distillation_with_alpha_one_follows_the_teacher_not_the_labels() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base");
    write_tiny_model(&base, &TinySpec::default()).unwrap();
    let (data, eval_path) = (d.path().join("train.jsonl"), d.path().join("eval.jsonl"));
    common::write_sentiment_jsonl(&data, 240, 1);
    common::write_sentiment_jsonl(&eval_path, 80, 2);
    let (train_set, eval_set) = (Dataset::read(&data).unwrap(), Dataset::read(&eval_path).unwrap());
    let cfg = TrainConfig { kd_alpha: 1.0, kd_temperature: 2.0, ..tiny_config() };
    let config = bertopt_models::BertConfig::from_file(&base.join("config.json")).unwrap();
    let tok = base.join("tokenizer.json");
    let mut enc = TextEncoder::from_file(&tok).unwrap();
    let meta = Default::default();
    let train_with = |enc: &mut TextEncoder, train: &Dataset, teacher: Option<&candle_core::Tensor>, name: &str| {
        let mut model = BertClassifier::random(config.clone(), train_set.labels.clone(), 5).unwrap();
        let out = d.path().join(name);
        let job = train::TrainJob {
            train,
            val: &eval_set,
            tokenizer: &tok,
            out: &out,
            metadata: &meta,
            progress: false,
            teacher,
        };
        let report = train::train(&mut model, enc, &job, &cfg).unwrap();
        (BertClassifier::from_pretrained(&out, train_set.labels.clone(), 0).unwrap(), report.best_accuracy)
    };
    let (teacher, teacher_acc) = train_with(&mut enc, &train_set, None, "teacher");
    assert!(teacher_acc >= 0.8, "the teacher learns the task: {teacher_acc}");

    let mut flipped = train_set.clone();
    flipped.examples.iter_mut().for_each(|e| e.label = 1 - e.label);
    let soft = train::teacher_logits(&teacher, &mut enc, &flipped, 16, 32).unwrap();
    assert_eq!(soft.dims(), [240, 2]);
    let (_, student_acc) = train_with(&mut enc, &flipped, Some(&soft), "student");
    assert!(student_acc >= 0.75, "distilled despite flipped labels: {student_acc} on the true labels");

    // Shift by one: labels alternate in this data, so every example gets the soft target of the other class.
    let misaligned =
        candle_core::Tensor::cat(&[soft.narrow(0, 1, 239).unwrap(), soft.narrow(0, 0, 1).unwrap()], 0).unwrap();
    let (_, control_acc) = train_with(&mut enc, &flipped, Some(&misaligned), "control");
    // Its best epoch is no better than a constant answer (0.5): it learns the other class, not the task.
    assert!(control_acc <= 0.55, "soft targets of the other class teach nothing right: {control_acc}");
}
