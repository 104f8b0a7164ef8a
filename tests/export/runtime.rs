//! The `bertopt-runtime` crate as an application uses it: `Classifier` against an independent implementation
//! (candle-transformers' BERT for plain classifiers, bertopt's candle model with the same exit rule for exit
//! models), against `optimize run`, from several threads, and on files it must refuse with a typed error.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bertopt_ir::exit::{batch_exit, entropy, row_exits, ExitRule};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::train::exits::{exit_logits, exit_points};
use bertopt_runtime::{Classifier, Error, Options, Planning, Runtime};
use common::{optimize, s, SENTENCES};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bundled/uci-sentiment-tiny")
}

fn export(model: &Path, args: &[&str], out: &Path) {
    let mut a = vec![s(model), "-o", s(out)];
    a.extend_from_slice(args);
    let o = optimize(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `optimize run --json` on the sentences: (label, logits) per row.
fn optimize_run(model: &Path) -> Vec<(String, Vec<f32>)> {
    let mut a = vec!["run", s(model), "--json"];
    for t in SENTENCES {
        a.extend(["--text", t]);
    }
    let o = optimize(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let logits = r["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            (r["label"].as_str().unwrap().to_string(), logits)
        })
        .collect()
}

#[test]
fn classifier_matches_candle_and_optimize_run_on_the_bundled_model() {
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    export(&bundled(), &[], &onnx);
    let model = Classifier::load(&onnx).unwrap();
    assert_eq!(model.labels(), ["0", "1"]);
    assert_eq!(model.max_len(), 128, "the export records the model's 128 positions");
    let got = model.classify_batch(&SENTENCES).unwrap();

    // candle-transformers' BERT on the same batch (same tokenizer, padded to the longest row).
    let b = TextEncoder::from_file(&bundled().join("tokenizer.json")).unwrap().encode(&SENTENCES, 128, None).unwrap();
    let want = common::flat(&common::reference(&bundled(), &b)["logits"]);
    for (r, p) in got.iter().enumerate() {
        let d = common::max_abs_diff(&p.logits, &want[r * 2..(r + 1) * 2]);
        assert!(d <= 1e-4, "row {r}: {:?} vs candle {:?}", p.logits, &want[r * 2..(r + 1) * 2]);
        let sum: f32 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5 && p.probabilities[p.index] >= 0.5, "{p:?}");
        assert_eq!(p.exit_layer, None);
    }
    // One text at a time pads nothing: same answers within float noise.
    for (t, p) in SENTENCES.iter().zip(&got) {
        let one = model.classify(t).unwrap();
        assert_eq!(one.label, p.label);
        assert!(common::max_abs_diff(&one.logits, &p.logits) <= 1e-4);
    }
    // The CLI's `run` prints what the crate computes.
    for ((label, logits), p) in optimize_run(&onnx).iter().zip(&got) {
        assert_eq!(label, &p.label);
        assert!(common::max_abs_diff(logits, &p.logits) <= 1e-6, "{logits:?} vs {:?}", p.logits);
    }
}

/// An exit model's threshold that sends some of the sentences out at the first exit and keeps others, in the
/// middle of the widest gap between their first-exit entropies (so that float noise between runtimes and plans
/// cannot move a row across it).
fn gap_threshold(m: &BertClassifier, enc: &mut TextEncoder) -> f32 {
    let mut first: Vec<f32> = SENTENCES
        .iter()
        .map(|t| entropy(&exit_logits(m, &enc.encode(&[t], 128, None).unwrap()).unwrap()[0][0]))
        .collect();
    first.sort_by(f32::total_cmp);
    let i = (2..6).max_by(|&a, &b| (first[a + 1] - first[a]).total_cmp(&(first[b + 1] - first[b]))).unwrap();
    (first[i] + first[i + 1]) / 2.0
}

#[test]
fn exit_models_answer_as_the_candle_model_with_the_same_rule() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let m = BertClassifier::from_pretrained(&model, (0..3).map(|i| format!("LABEL_{i}")).collect(), 1).unwrap();
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let batch = enc.encode(&SENTENCES, 128, None).unwrap();
    let threshold = gap_threshold(&m, &mut enc);
    let rule = ExitRule::Entropy { threshold };
    let pipeline = format!("exit(criterion=entropy,threshold={threshold})");
    let points = exit_points(&m);

    // Nested `If` (one file): the batch leaves together, so classify one text at a time.
    let nested = d.path().join("exit.onnx");
    export(&model, &["--pass", &pipeline], &nested);
    // Segmented folder: rows leave one by one, at any batch size.
    let segmented = d.path().join("segmented");
    export(&model, &["--pass", &pipeline, "--segmented"], &segmented);

    let mut layers = std::collections::BTreeSet::new();
    for planning in [Planning::PerBatch, Planning::Symbolic, Planning::PerShape, Planning::Buckets(8)] {
        let opts = Options { planning, ..Default::default() };
        let c = Classifier::load_with(&nested, opts.clone()).unwrap();
        for t in SENTENCES {
            let b = enc.encode(&[t], 128, None).unwrap();
            let exits = exit_logits(&m, &b).unwrap();
            let j = batch_exit(rule, &exits);
            let p = c.classify(t).unwrap();
            assert_eq!(p.exit_layer, Some(points[j]), "{planning:?} `{t}`");
            assert!(common::max_abs_diff(&p.logits, &exits[j][0]) <= 1e-4, "{planning:?} `{t}`");
            layers.insert(points[j]);
        }
        let c = Classifier::load_with(&segmented, opts).unwrap();
        let exits = exit_logits(&m, &batch).unwrap();
        let want = row_exits(rule, &exits);
        for (r, p) in c.classify_batch(&SENTENCES).unwrap().iter().enumerate() {
            assert_eq!(p.exit_layer, Some(points[want[r]]), "{planning:?} row {r}");
            assert!(common::max_abs_diff(&p.logits, &exits[want[r]][r]) <= 1e-4, "{planning:?} row {r}");
        }
    }
    assert!(layers.len() >= 2, "the sentences should leave at different exits: {layers:?}");
}

#[test]
fn exit_branches_are_planned_by_the_crate() {
    // What makes an exit model faster than dense in tract: the `If` bodies are optimized and planned once, at
    // load, instead of tract's `IfThenElse` re-planning them with the weights as inputs on every call.
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let onnx = d.path().join("exit.onnx");
    export(&model, &["--pass", "exit(criterion=entropy,threshold=0.3)"], &onnx);
    let r = bertopt_runtime::tract_runner::TractRunner::load(&onnx, Default::default()).unwrap();
    let b = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap().encode(&["a film"], 16, None).unwrap();
    let (plan, _) = r.prepare(&bertopt_runtime::Value::from_batch(&b)).unwrap();
    // The `If`s nest (each later exit sits in the previous one's else branch): count through the bodies.
    let all = format!("{:?}", plan.model());
    assert_eq!(all.matches("PlannedIf").count(), 3, "one per off-ramp");
    assert_eq!(all.matches("IfThenElse").count(), 0);
}

#[test]
fn a_plan_per_batch_size_fuses_what_a_symbolic_batch_leaves_apart() {
    // Why `Plans::PerBatch` is the default: with the batch known and the length asserted positive, tract fuses
    // the residual additions into the matrix products before them; over a symbolic batch it leaves them as
    // separate broadcasting `Add`s. Both plans compute the same function.
    use bertopt_runtime::tract_runner::TractRunner;
    use bertopt_runtime::{Plans, Runner, RunnerOptions, Value};
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    export(&bundled(), &[], &onnx);
    let mut enc = TextEncoder::from_file(&bundled().join("tokenizer.json")).unwrap();
    let one = enc.encode(&SENTENCES[..1], 128, None).unwrap();
    let three = enc.encode(&SENTENCES[1..4], 128, None).unwrap();
    let load = |plans| TractRunner::load(&onnx, RunnerOptions { plans, threads: 1 }).unwrap();
    let (per_batch, symbolic) = (load(Plans::PerBatch), load(Plans::Symbolic));
    let adds = |r: &TractRunner, b| {
        let (plan, _) = r.prepare(&Value::from_batch(b)).unwrap();
        plan.model().nodes.iter().filter(|n| n.op().name() == "Add").count()
    };
    let (fused, apart) = (adds(&per_batch, &one), adds(&symbolic, &one));
    assert!(fused < apart, "plain Adds: {fused} per batch size, {apart} over a symbolic batch");
    for b in [&one, &three] {
        let x = per_batch.run(b).unwrap();
        let y = symbolic.run(b).unwrap();
        let (x, y) = (&common::output(&x, "logits").data, &common::output(&y, "logits").data);
        assert!(common::max_abs_diff(x, y) <= 1e-5, "{x:?} vs {y:?}");
    }
    // Batch 1 planned at load, batch 3 when first seen; a new length of a seen batch size needs no plan.
    assert_eq!(per_batch.plans(), 2);
    per_batch.run(&enc.encode(&SENTENCES[4..5], 128, None).unwrap()).unwrap();
    assert_eq!(per_batch.plans(), 2);
    // A batch-1 plan exists, yet inputs of the wrong rank are refused by name, not handed to tract.
    let mut wrong = Value::from_batch(&one);
    for v in &mut wrong {
        v.shape.insert(0, 1);
    }
    let err = per_batch.run_values(&wrong).unwrap_err().to_string();
    assert!(err.contains("the model takes"), "{err}");
}

#[test]
fn one_loaded_model_serves_threads_as_it_serves_one() {
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    export(&bundled(), &[], &onnx);
    for planning in [Planning::PerBatch, Planning::Symbolic, Planning::PerShape, Planning::Buckets(8)] {
        let c = Arc::new(Classifier::load_with(&onnx, Options { planning, ..Default::default() }).unwrap());
        let sequential: Vec<_> = SENTENCES.iter().map(|t| c.classify(t).unwrap()).collect();
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let c = c.clone();
                std::thread::spawn(move || {
                    // Each thread walks the sentences from a different start, so shapes are planned concurrently.
                    (0..SENTENCES.len() * 3)
                        .map(|i| {
                            let r = (i + k * 3) % SENTENCES.len();
                            (r, c.classify(SENTENCES[r]).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for (r, p) in t.join().unwrap() {
                assert_eq!(p, sequential[r], "{planning:?} row {r}");
            }
        }
    }
}

#[test]
fn files_it_cannot_use_are_refused_with_a_typed_error() {
    use protobuf::Message;
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    export(&bundled(), &[], &onnx);

    // No bertopt metadata (an ONNX file from another exporter): no tokenizer to encode with.
    let mut proto = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&onnx).unwrap()).unwrap();
    proto.metadata_props.clear();
    let bare = d.path().join("bare.onnx");
    std::fs::write(&bare, proto.write_to_bytes().unwrap()).unwrap();
    match Classifier::load(&bare) {
        Err(e @ Error::MissingMetadata { key: "bertopt.tokenizer", .. }) => {
            assert!(e.to_string().contains("bare.onnx"), "{e}")
        }
        other => panic!("want MissingMetadata, got {:?}", other.err()),
    }
    // ... which an explicit tokenizer makes usable (labels then are the class indices).
    let opts = Options { tokenizer: Some(bundled().join("tokenizer.json")), ..Default::default() };
    let p = Classifier::load_with(&bare, opts).unwrap().classify("great").unwrap();
    assert_eq!(p.label, p.index.to_string());

    // Not ONNX at all.
    let junk = d.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let e = Classifier::load(&junk).err().expect("junk must be refused");
    assert!(matches!(e, Error::Model(_)) && e.to_string().contains("junk.onnx"), "{e}");

    // A segmented folder with a stage missing.
    let model = common::exit_model(d.path());
    let seg = d.path().join("segmented");
    export(&model, &["--pass", "exit(criterion=entropy,threshold=0.3)", "--segmented"], &seg);
    std::fs::remove_file(seg.join("stage2.onnx")).unwrap();
    let e = Classifier::load(&seg).err().expect("a missing stage must be refused");
    assert!(matches!(e, Error::Model(_)) && e.to_string().contains("stage2.onnx is missing"), "{e}");

    // Too long, with truncation off; cut to the limit with it on.
    let long = "good ".repeat(200);
    let strict = Classifier::load_with(&onnx, Options { truncate: false, ..Default::default() }).unwrap();
    match strict.classify_batch(&["fine", &long]) {
        Err(Error::InputTooLong { row: 1, tokens, max: 128 }) => assert!(tokens > 128, "{tokens}"),
        other => panic!("want InputTooLong for row 1, got {other:?}"),
    }
    assert!(Classifier::load(&onnx).unwrap().classify(&long).is_ok());
}

#[test]
fn onnx_runtime_gives_the_answers_tract_gives() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let onnx = d.path().join("m.onnx");
    export(&bundled(), &[], &onnx);
    let tract = Classifier::load(&onnx).unwrap().classify_batch(&SENTENCES).unwrap();
    let ort = Classifier::load_with(&onnx, Options { runtime: Runtime::Ort, ..Default::default() })
        .unwrap()
        .classify_batch(&SENTENCES)
        .unwrap();
    for (t, o) in tract.iter().zip(&ort) {
        assert_eq!(t.label, o.label);
        assert!(common::max_abs_diff(&t.logits, &o.logits) <= 1e-4, "{:?} vs {:?}", t.logits, o.logits);
    }
}
