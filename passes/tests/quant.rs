//! The `quant` pass on a one-layer graph (attention and FFN): the quantized weights
//! and scales as computed here independently, the interpreter's int8 result close to the f32 graph, `skip=all`
//! as the identity, per-tensor scales, and the orders and arguments it refuses.

mod common;

use bertopt_ir::{interp, parse, print, verify, Graph};
use bertopt_passes::{PassContext, Pipeline};
use common::*;

const ONE_LAYER: &str = include_str!("fixtures/one_layer.ir");

fn dense() -> Graph {
    let g = with_data(parse(ONE_LAYER).unwrap());
    verify(&g).unwrap();
    g
}

fn run(g: &mut Graph, pipeline: &str) -> Result<Vec<bertopt_passes::PassReport>, bertopt_passes::PassError> {
    Pipeline::parse(pipeline)?.run(g, &mut PassContext::default())
}

fn values(g: &Graph, name: &str) -> Vec<f32> {
    g.weights.tensor(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn every_projection_and_linear_gets_int8_weights_and_a_scale_per_column() {
    let d = dense();
    let mut g = d.clone();
    let r = run(&mut g, "quant").unwrap();
    assert_eq!(r[0].changed["linears quantized"], 6, "q, k, v, o and the two FFN linears");
    assert_eq!(r[0].changed["embedding tables quantized"], 1, "the word embeddings");
    // Params grow by one scale per column; every weight matmul is now int8, the attention scores and context
    // (activation x activation, 2 * 2 * 128² * 32 FLOPs at seq 128) stay f32.
    assert_eq!(r[0].after.params - r[0].before.params, 4 * 32 + 48 + 32 + 20, "and one scale per token");
    assert_eq!(r[0].after.flops, r[0].before.flops);
    assert_eq!(r[0].after.flops - r[0].after.int8_flops, 2 * 2 * 128 * 128 * 32);
    assert_eq!(r[0].before.int8_flops, 0);

    // The FFN-in weight, quantized here with plain loops: scale = max |column| / 127, q = round(w / scale).
    let (w, q, s) = (values(&d, "in.weight"), values(&g, "in.weight"), values(&g, "in.weight_scale"));
    for c in 0..48 {
        let max = (0..32).map(|r| w[r * 48 + c].abs()).fold(0f32, f32::max);
        assert!((s[c] - max / 127.0).abs() <= 1e-9, "column {c}");
        for r in 0..32 {
            assert_eq!(q[r * 48 + c], (w[r * 48 + c] / s[c]).round().clamp(-127.0, 127.0), "({r}, {c})");
        }
    }

    // The int8 graph computes nearly what the f32 graph does: one weight step is 1/254 of a column's (or a
    // token's) range and one activation step 1/255 of the tensor's, so the normalised hidden state (values of
    // order 1) moves by a few hundredths; a wrong scale or zero point would move it by whole units.
    let x = inputs(2, 5, 20);
    let (a, b) = (interp::run(&d, &x).unwrap(), interp::run(&g, &x).unwrap());
    let diff = max_abs_diff(&a[0].1, &b[0].1);
    assert!(diff > 0.0 && diff < 0.1, "int8 differs from f32 by {diff}");
}

#[test]
fn skip_all_is_the_identity_and_tensor_granularity_shares_one_scale() {
    let d = dense();
    let mut g = d.clone();
    let r = run(&mut g, "quant(skip=all)").unwrap();
    assert_eq!(r[0].changed["linears quantized"], 0);
    assert_eq!(print(&g), print(&d));
    for name in d.weights.0.keys() {
        assert_eq!(values(&g, name), values(&d, name), "{name}");
    }

    let mut g = d.clone();
    let r = run(&mut g, "quant(skip=attention+embeddings,granularity=tensor)").unwrap();
    assert_eq!(r[0].changed["linears quantized"], 2);
    assert_eq!(r[0].changed["embedding tables quantized"], 0);
    assert!(!g.weights.0.contains_key("q.weight_scale"));
    let s = values(&g, "out.weight_scale");
    let max = values(&d, "out.weight").iter().map(|x| x.abs()).fold(0f32, f32::max);
    assert!(s.iter().all(|&v| v == max / 127.0), "{s:?}");
}

#[test]
fn orders_and_arguments_it_cannot_use_are_refused() {
    let e = run(&mut dense(), "quant,ffn(ratio=0.5)").err().unwrap().to_string();
    assert!(e.contains("`quant` must come after every other pass"), "{e}");
    let e = run(&mut dense(), "tile(sparsity=0.5,g=8),quant").err().unwrap().to_string();
    assert!(e.contains("int8 tiles are not supported"), "{e}");
    for (p, want) in [
        ("quant(activations=static)", "not implemented"),
        ("quant(skip=layers)", "`layers`"),
        ("quant(granularity=row)", "channel or tensor"),
        ("quant(weights=int4)", "only int8"),
    ] {
        let e = Pipeline::parse(p).err().unwrap().to_string();
        assert!(e.contains(want), "{p}: {e}");
    }
    // Quantized weights that are not whole numbers fail verification, naming the weight.
    let mut g = dense();
    run(&mut g, "quant").unwrap();
    let w = g.weights.tensor("k.weight").unwrap().affine(1.0, 0.5).unwrap();
    g.weights.insert("k.weight", w);
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("@k.weight is quantized but 1024 values are not whole numbers"), "{e}");
}
