//! Passes compose: static pruning (`heads`, `ffn`, `tile`) and early exit (`exit`) in one pipeline, in either
//! order, give the same model, which runs alike in tract, ONNX Runtime and the interpreter and passes
//! `onnx.checker`; orders that cannot work fail with a message that says so, and write nothing.

use crate::common;

use std::collections::HashMap;

use bertopt::run::{self, Runtime};
use bertopt_models::data::tokenize::TextEncoder;
use common::{must_fail, optimize, s};

const PRUNE: &str = "heads(ratio=0.5),ffn(ratio=0.5),tile(sparsity=0.5,g=8)";
const EXIT: &str = "exit(criterion=entropy,threshold=0.5)";
const SENTENCES: [&str; 5] =
    ["i loved it", "the movie was terrible", "great fun !", "the plot was bad but the acting was great", "a film"];

#[test]
fn pruning_and_early_exit_compose_in_either_order() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let files: Vec<_> = [format!("{PRUNE},{EXIT}"), format!("{EXIT},{PRUNE}"), EXIT.to_string()]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let out = d.path().join(format!("{i}.onnx"));
            let o = optimize(&[s(&model), "--pass", p, "-o", s(&out)]);
            assert!(o.status.success(), "{p}: {}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .collect();
    common::onnx_check(&files[0]);

    // The IR of the first pipeline, run by the reference interpreter.
    let (mut ir, _) = bertopt_models::load_graph(&model).unwrap();
    bertopt_passes::Pipeline::parse(&format!("{PRUNE},{EXIT}")).unwrap().run(&mut ir, &mut Default::default()).unwrap();

    let mut differs_from_unpruned = false;
    for text in SENTENCES {
        let b = enc.encode(&[text], 16, None).unwrap();
        let mut results: Vec<HashMap<String, Vec<f32>>> = vec![];
        for f in &files {
            for rt in [Runtime::Tract, Runtime::Ort] {
                let outs = run::load(rt, f, Default::default()).unwrap().run(&b).unwrap();
                results.push(outs.into_iter().map(|o| (o.name, o.data)).collect());
            }
        }
        let interp: HashMap<String, Vec<f32>> = bertopt_ir::interp::run(&ir, &common::ir_inputs(&b))
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, common::flat(&t.to_dtype(candle_core::DType::F32).unwrap())))
            .collect();
        // Both orders, both runtimes, and the interpreter: the same logits and the same exit layer.
        for r in results[..4].iter().chain([&interp]) {
            assert_eq!(r["exit_layer"], results[0]["exit_layer"], "{text}");
            let diff = common::max_abs_diff(&r["logits"], &results[0]["logits"]);
            assert!(diff <= 1e-4, "{text}: logits differ by {diff}");
        }
        differs_from_unpruned |= common::max_abs_diff(&results[4]["logits"], &results[0]["logits"]) > 1e-3;
    }
    assert!(differs_from_unpruned, "pruning must change the model's answers somewhere");
}

#[test]
fn orders_that_cannot_work_are_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let out = d.path().join("out.onnx");
    let e = must_fail(&[s(&model), "--pass", "tile(sparsity=0.5,g=8),ffn(ratio=0.5)", "-o", s(&out)], &out);
    assert!(e.contains("already tiled: run `ffn` before `tile`"), "{e}");
    let e = must_fail(&[s(&model), "--pass", &format!("{EXIT},{EXIT}"), "-o", s(&out)], &out);
    assert!(e.contains("already has early exits"), "{e}");
    // After truncation to two layers only the ramp after layer 1 stands below the last: naming the one after
    // layer 3 is refused (without `layers=`, exit wires the ramps that still stand).
    let explicit = "exit(criterion=entropy,threshold=0.5,layers=1+3)";
    let e = must_fail(&[s(&model), "--pass", &format!("truncate(layers=2),{explicit}"), "-o", s(&out)], &out);
    assert!(e.contains("off-ramps stand before the last layer"), "{e}");
}
