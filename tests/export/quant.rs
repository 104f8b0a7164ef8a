//! `quant` end to end: the int8 ONNX (DynamicQuantizeLinear + MatMulInteger) passes `onnx.checker`, and tract,
//! ONNX Runtime and the IR interpreter compute the same logits, alone and composed with `heads,ffn` and with
//! early exits; the file holds one byte per quantized weight.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use bertopt::run::{self, Runtime};
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::testing::{write_tiny_model, TinySpec};
use common::{export_json as export, s, SENTENCES};

/// The int8 model in both runtimes against the interpreter. The integer sums are exact everywhere; what
/// differs is f32 rounding in the rescale (~1e-7 relative) and, rarely, an activation whose x / scale lands
/// within that rounding of a .5 boundary and moves one quantization step (at most xs * max|w| on one output).
/// 1e-3 on logits of magnitude ~1 bounds both with a wide margin.
fn assert_runtimes_match_interpreter(model: &Path, pipeline: &str, onnx: &Path, enc: &mut TextEncoder) {
    let want = common::interpreted(model, pipeline, enc);
    assert_match(&want, pipeline, onnx, enc, &[Runtime::Tract, Runtime::Ort]);
}

/// Logits (and exit layers) of `onnx` in `runtimes` against `want`, per sentence of `SENTENCES`.
fn assert_match(
    want: &[HashMap<String, Vec<f32>>],
    pipeline: &str,
    onnx: &Path,
    enc: &mut TextEncoder,
    runtimes: &[Runtime],
) {
    for &rt in runtimes {
        let r = run::load(rt, onnx, Default::default()).unwrap();
        for (t, w) in SENTENCES.iter().zip(want) {
            let b = enc.encode(&[t], 16, None).unwrap();
            let got: HashMap<String, Vec<f32>> = r.run(&b).unwrap().into_iter().map(|o| (o.name, o.data)).collect();
            let d = common::max_abs_diff(&got["logits"], &w["logits"]);
            assert!(d <= 1e-3, "{pipeline} {rt} `{t}`: logits differ by {d}: {:?} vs {:?}", got["logits"], w["logits"]);
            if let Some(l) = w.get("exit_layer") {
                assert_eq!(&got["exit_layer"], l, "{pipeline} {rt} `{t}`");
            }
        }
    }
}

#[test]
fn int8_onnx_runs_alike_in_tract_ort_and_the_interpreter() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec { labels: 2, ..TinySpec::default() }).unwrap();
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let f32_file = d.path().join("f32.onnx");
    let f32_report = export(&model, "dce", &f32_file);
    for pipeline in [
        "quant",
        "heads(ratio=0.5),ffn(ratio=0.5),quant",
        "quant(granularity=tensor,skip=classifier)",
        // int8 tiles: type 8 (dropped columns scattered back) on every matrix, and tiles after qkv's row cut.
        "tile(sparsity=0.5,g=16,n=true),quant",
        "qkv(sparsity=0.25),tile(sparsity=0.5,g=16),quant(granularity=tensor)",
    ] {
        let onnx = d.path().join("q.onnx");
        let report = export(&model, pipeline, &onnx);
        common::onnx_check(&onnx);
        assert_runtimes_match_interpreter(&model, pipeline, &onnx, &mut enc);
        if pipeline.contains("tile") {
            // The other form of int8 tiles computes the same integers: per tile a Gather and a MatMulInteger.
            let gather = d.path().join("q-gather.onnx");
            let o = common::optimize(&[s(&model), "--pass", pipeline, "--int8-tiles", "gather", "-o", s(&gather)]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            common::onnx_check(&gather);
            assert_runtimes_match_interpreter(&model, pipeline, &gather, &mut enc);
            let ops = |f: &Path| {
                use protobuf::Message;
                let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(f).unwrap()).unwrap();
                m.graph.node.iter().filter(|n| n.op_type == "MatMulInteger").count()
            };
            assert!(ops(&gather) > ops(&onnx), "{pipeline}: per-tile MatMulIntegers in the gather form");
        }
        if pipeline == "quant" {
            // Every weight the IR holds as i8 is one INT8 initializer of one byte per value, and nothing else.
            let quantized = report["passes"][0]["changed"]["linears quantized"].as_u64().unwrap();
            assert!(quantized >= 4, "{report}");
            let (mut ir, _) = bertopt_models::load_graph(&model).unwrap();
            bertopt_passes::Pipeline::parse("quant").unwrap().run(&mut ir, &mut Default::default()).unwrap();
            let i8s: HashMap<&String, usize> = ir
                .weights
                .0
                .iter()
                .filter(|(_, w)| w.ty.dtype == bertopt_ir::DType::I8)
                .map(|(n, w)| (n, w.ty.num_elements().unwrap()))
                .collect();
            let tables = report["passes"][0]["changed"]["embedding tables quantized"].as_u64().unwrap();
            assert_eq!((quantized, tables), (i8s.len() as u64 - 1, 1), "every linear and the word embeddings");
            use protobuf::Message;
            let proto = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&onnx).unwrap()).unwrap();
            let int8: HashMap<&String, usize> = proto
                .graph
                .initializer
                .iter()
                .filter(|t| t.data_type == onnx_protobuf::tensor_proto::DataType::INT8 as i32)
                .map(|t| (&t.name, t.raw_data.len()))
                .collect();
            assert_eq!(int8, i8s);
            // The file shrinks by about 3 bytes per quantized weight (less the scales and the extra nodes).
            let saved = f32_report["onnx_bytes"].as_u64().unwrap() - report["onnx_bytes"].as_u64().unwrap();
            let n: usize = i8s.values().sum();
            assert!(saved as f64 > 2.0 * n as f64, "saved {saved} bytes for {n} int8 weights");
        }
    }
}

#[test]
fn int8_composes_with_early_exits() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = common::exit_model(d.path());
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let pipeline = "exit(criterion=entropy,threshold=0.5),quant";
    let onnx = d.path().join("exit-q.onnx");
    let report = export(&model, pipeline, &onnx);
    // Every layer's projections and FFN, the pooler, the classifier and the three off-ramps' classifiers.
    // 4 layers x (Q, K, V, O, FFN in, FFN out), the pooler, the classifier, and each of the three off-ramps'
    // pooler and classifier.
    assert_eq!(report["passes"][1]["changed"]["linears quantized"], 4 * 6 + 2 + 3 * 2, "{report}");
    common::onnx_check(&onnx);
    assert_runtimes_match_interpreter(&model, pipeline, &onnx, &mut enc);
    // Int8 tiles inside the exit branches: the encoder's matrices tiled, then off-ramps, then int8.
    let tiled = "tile(sparsity=0.5,g=16),exit(criterion=entropy,threshold=0.5),quant";
    let report = export(&model, tiled, &onnx);
    assert_eq!(report["passes"][2]["changed"]["tiled linears quantized"], 4 * 6, "{report}");
    common::onnx_check(&onnx);
    assert_runtimes_match_interpreter(&model, tiled, &onnx, &mut enc);
    // Static activations inside the exit branches: every group calibrated (the interpreter runs every layer and
    // off-ramp of the calibration rows), in both runtimes.
    let data = d.path().join("train.jsonl");
    common::write_class_jsonl(&data, 40, 3);
    let pipeline = "exit(criterion=entropy,threshold=0.5),quant(activations=static)";
    let o = common::optimize(&[s(&model), "--pass", pipeline, "--data", s(&data), "-o", s(&onnx)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::onnx_check(&onnx);
    let want = interpreted_calibrated(&model, pipeline, &data, &mut enc);
    assert_match(&want, pipeline, &onnx, &mut enc, &[Runtime::Tract, Runtime::Ort]);
    // Structural passes cannot follow.
    let out = d.path().join("refused.onnx");
    let e = common::must_fail(&[s(&model), "--pass", "quant,exit", "-o", s(&out)], &out);
    assert!(e.contains("`quant` must come after every other pass"), "{e}");
}

/// The IR after `pipeline`, calibrated on the training rows of `data` as `optimize --data` calibrates, run by the
/// interpreter on `SENTENCES`.
fn interpreted_calibrated(
    model: &Path,
    pipeline: &str,
    data: &Path,
    enc: &mut TextEncoder,
) -> Vec<HashMap<String, Vec<f32>>> {
    let split = bertopt::split::SplitArgs { data: vec![data.to_path_buf()], ..Default::default() };
    let rows =
        bertopt::calibration_rows::calibration_rows(&split, Some(&model.join("tokenizer.json")), model, 256).unwrap();
    let (mut ir, _) = bertopt_models::load_graph(model).unwrap();
    let mut ctx = bertopt_passes::PassContext { flops_seq: 128, calibration: rows };
    bertopt_passes::Pipeline::parse(pipeline).unwrap().run(&mut ir, &mut ctx).unwrap();
    SENTENCES
        .iter()
        .map(|t| {
            let b = enc.encode(&[t], 16, None).unwrap();
            bertopt_ir::interp::run(&ir, &common::ir_inputs(&b))
                .unwrap()
                .into_iter()
                .map(|(n, t)| {
                    (n, t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
                })
                .collect()
        })
        .collect()
}

/// The op types of an ONNX file's main graph.
fn op_types(f: &Path) -> Vec<String> {
    use protobuf::Message;
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(f).unwrap()).unwrap();
    m.graph.node.iter().map(|n| n.op_type.clone()).collect()
}

#[test]
fn static_activations_and_every_int8_form_run_as_the_interpreter_computes() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    write_tiny_model(&model, &TinySpec { labels: 2, ..TinySpec::default() }).unwrap();
    let data = d.path().join("train.jsonl");
    common::write_class_jsonl(&data, 40, 7);
    let mut enc = TextEncoder::from_file(&model.join("tokenizer.json")).unwrap();
    let onnx = d.path().join("q.onnx");
    for pipeline in ["quant(activations=static)", "heads(ratio=0.5),tile(sparsity=0.5,g=16),quant(activations=static)"]
    {
        let want = interpreted_calibrated(&model, pipeline, &data, &mut enc);
        // Static ranges change the function: not the dynamic model's logits (else the ranges were not used).
        let dynamic = common::interpreted(&model, &pipeline.replace("(activations=static)", ""), &mut enc);
        let moved =
            want.iter().zip(&dynamic).map(|(a, b)| common::max_abs_diff(&a["logits"], &b["logits"])).sum::<f32>();
        assert!(moved > 0.0, "{pipeline}: static and dynamic logits are identical");
        for (form, runtimes) in [
            ("integer", &[Runtime::Tract, Runtime::Ort][..]),
            ("qdq", &[Runtime::Tract, Runtime::Ort]),
            ("ort", &[Runtime::Ort]),
        ] {
            let args = [s(&model), "--pass", pipeline, "--data", s(&data), "--int8-form", form, "-o", s(&onnx)];
            let o = common::optimize(&args);
            assert!(o.status.success(), "{pipeline} {form}: {}", String::from_utf8_lossy(&o.stderr));
            if form != "ort" {
                common::onnx_check(&onnx);
            }
            let ops = op_types(&onnx);
            assert!(!ops.iter().any(|o| o == "DynamicQuantizeLinear"), "{pipeline} {form}: static, yet {ops:?}");
            let want_op = match form {
                "integer" => "MatMulInteger",
                "qdq" => "DequantizeLinear",
                _ => "MatMulIntegerToFloat",
            };
            assert!(ops.iter().any(|o| o == want_op), "{pipeline} {form}: no {want_op} in {ops:?}");
            assert_match(&want, &format!("{pipeline} --int8-form {form}"), &onnx, &mut enc, runtimes);
        }
    }
    // Dynamic activations in the two other forms: ONNX Runtime only (tract's DequantizeLinear wants a constant
    // scale, and a per-call one is not).
    for form in ["qdq", "ort"] {
        let o = common::optimize(&[s(&model), "--pass", "quant", "--int8-form", form, "-o", s(&onnx)]);
        assert!(o.status.success(), "{form}: {}", String::from_utf8_lossy(&o.stderr));
        let want = common::interpreted(&model, "quant", &mut enc);
        assert_match(&want, &format!("quant --int8-form {form}"), &onnx, &mut enc, &[Runtime::Ort]);
        let ops = op_types(&onnx);
        let fused = ops.iter().filter(|o| *o == "DynamicQuantizeMatMul").count();
        assert_eq!(fused > 0, form == "ort", "{form}: {ops:?}");
    }
    // Static without data is refused, and writes nothing.
    let out = d.path().join("refused.onnx");
    let e = common::must_fail(&[s(&model), "--pass", "quant(activations=static)", "-o", s(&out)], &out);
    assert!(e.contains("activations=static calibrates on training rows") && e.contains("--data"), "{e}");
}
