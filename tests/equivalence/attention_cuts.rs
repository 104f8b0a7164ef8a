//! The attention cuts other than whole heads (`head-size`, `type0`, `qkv`) and type 8 through export: the ONNX
//! agrees with the IR interpreter in tract and ONNX Runtime, and its structure is what the passes promise
//! (`qkv` gathers each layer's kept features once for Q, K and V; `type0` once per matrix; type 8 puts the
//! computed columns in place with a Pad and a Gather).

use crate::common;

use bertopt::run::{self, Batch, RunnerOptions, Runtime};
use bertopt_ir::interp;
use protobuf::Message;

fn batch() -> Batch {
    let ids: Vec<i64> = (0..16).map(|i| (i * 13 + 5) % 90).collect();
    let mut mask = vec![1; 16];
    mask[15] = 0;
    Batch { batch: 2, seq: 8, input_ids: ids, attention_mask: mask, token_type_ids: vec![0; 16] }
}

/// Node op types whose name contains `scope`.
fn ops(path: &std::path::Path, scope: &str) -> Vec<String> {
    let m = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    m.graph.node.iter().filter(|n| n.name.contains(scope)).map(|n| n.op_type.clone()).collect()
}

#[test]
fn attention_cuts_export_exactly_in_both_runtimes() {
    common::ensure_ort();
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("m");
    let spec = bertopt_models::testing::TinySpec {
        scheme: bertopt_models::Scheme::Bert,
        layers: 2,
        hidden: 16,
        heads: 2,
        vocab: 100,
        labels: 2,
        ..Default::default()
    };
    bertopt_models::testing::write_tiny_model(&model, &spec).unwrap();
    let b = batch();
    // (pipeline, distinct feature sets Q, K, V of a layer read: qkv 1, type0 up to 3, head-size none)
    for (pipeline, at_most) in [
        ("qkv(sparsity=0.5)", 1),
        ("type0(sparsity=0.5)", 3),
        ("head-size(sparsity=0.5)", 0),
        ("tile(sparsity=0.5,g=4,n=true)", 0),
    ] {
        let onnx = d.path().join(format!("{}.onnx", pipeline.split('(').next().unwrap()));
        bertopt::export::export(&model, pipeline, &onnx).unwrap();
        let (mut g, _) = bertopt_models::load_graph(&model).unwrap();
        bertopt_passes::Pipeline::parse(pipeline).unwrap().run(&mut g, &mut Default::default()).unwrap();
        let want = interp::run(&g, &common::ir_inputs(&b)).unwrap();
        let (name, t) = &want[0];
        let want = common::flat(t);
        for rt in [Runtime::Tract, Runtime::Ort] {
            let got = run::load(rt, &onnx, RunnerOptions::default()).unwrap().run(&b).unwrap();
            let diff = common::max_diff(name, &b, t.dims(), &common::output(&got, name).data, &want);
            assert!(diff <= 1e-4, "{pipeline}, {rt}: differs from the interpreter by {diff}");
        }
        let layer0 = ops(&onnx, "encoder.layer.0.");
        let count = |op: &str| layer0.iter().filter(|o| *o == op).count();
        if pipeline.starts_with("tile") {
            // Type 8: one Pad per matrix that lost columns (at most Q, K, V, O, FFN in, FFN out).
            assert!(count("Pad") >= 1 && count("Pad") <= 6, "{pipeline}: {layer0:?}");
            assert!(count("Gather") >= count("Pad"), "{pipeline}: {layer0:?}");
        } else {
            // One Gather per distinct set of kept features: projections reading the same set share it.
            let mut sets: Vec<Vec<i64>> = ["query", "key", "value"]
                .iter()
                .filter_map(|m| g.weights.tensor(&format!("encoder.layer.0.attention.self.{m}.tile0.rows")))
                .map(|t| t.to_vec1::<i64>().unwrap())
                .collect();
            sets.sort();
            sets.dedup();
            assert!(sets.len() <= at_most, "{pipeline}: {} feature sets", sets.len());
            assert_eq!(count("Gather"), sets.len(), "{pipeline}: {layer0:?}");
            assert_eq!(count("Pad"), 0, "{pipeline}: {layer0:?}");
        }
    }
    common::onnx_check_parts(&[
        d.path().join("qkv.onnx"),
        d.path().join("type0.onnx"),
        d.path().join("head-size.onnx"),
        d.path().join("tile.onnx"),
    ]);
}
