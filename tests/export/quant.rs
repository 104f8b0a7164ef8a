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
    for rt in [Runtime::Tract, Runtime::Ort] {
        let r = run::load(rt, onnx, Default::default()).unwrap();
        for (t, w) in SENTENCES.iter().zip(&want) {
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
    // Structural passes cannot follow.
    let out = d.path().join("refused.onnx");
    let e = common::must_fail(&[s(&model), "--pass", "quant,exit", "-o", s(&out)], &out);
    assert!(e.contains("`quant` must come after every other pass"), "{e}");
}
