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
fn tiles_are_quantized_each_with_its_own_scales() {
    // Type 8 on every matrix (attention projections and FFN): tiles of 8 columns, some columns dropped.
    let mut tiled = dense();
    run(&mut tiled, "tile(sparsity=0.5,g=8,n=true)").unwrap();
    let mut g = tiled.clone();
    let r = run(&mut g, "quant").unwrap();
    assert_eq!(r[0].changed["tiled linears quantized"], 6, "q, k, v, o and the two FFN linears, all tiled");
    assert_eq!(r[0].after.int8_flops, r[0].after.flops - 2 * 2 * 128 * 128 * 32, "every weight matmul is int8");
    // Each tile of the FFN-in: a scale per tile column equal to that column's max / 127 and q = round(w / scale),
    // computed here from the f32 tile.
    let mut t = 0;
    while let Some(wf) = tiled.weights.tensor(&format!("in.tile{t}.weight")) {
        let n = wf.dim(1).unwrap();
        let (w, q) = (values(&tiled, &format!("in.tile{t}.weight")), values(&g, &format!("in.tile{t}.weight")));
        let s = values(&g, &format!("in.tile{t}.weight_scale"));
        assert_eq!(s.len(), n, "tile {t}: one scale per column");
        for (c, sc) in s.iter().enumerate() {
            let max = w.iter().skip(c).step_by(n).fold(0f32, |m, x| m.max(x.abs()));
            assert!((sc - max / 127.0).abs() <= 1e-9, "tile {t} column {c}");
        }
        for (i, (q, w)) in q.iter().zip(&w).enumerate() {
            assert_eq!(*q, (w / s[i % n]).round().clamp(-127.0, 127.0), "tile {t} entry {i}");
        }
        t += 1;
    }
    assert!(t >= 2, "the FFN-in has several tiles");
    // The int8 tiles compute nearly what the f32 tiles do (the same bound as dense int8 above).
    let x = inputs(2, 5, 20);
    let (a, b) = (interp::run(&tiled, &x).unwrap(), interp::run(&g, &x).unwrap());
    let diff = max_abs_diff(&a[0].1, &b[0].1);
    assert!(diff > 0.0 && diff < 0.1, "int8 tiles differ from f32 tiles by {diff}");
    // A group with one tile int8 and another f32 is refused by the verifier.
    let mut mixed = g.clone();
    mixed.weights.0.remove("in.tile1.weight_scale");
    let f = tiled.weights.0["in.tile1.weight"].clone();
    mixed.weights.0.insert("in.tile1.weight".into(), f);
    let e = verify(&mixed).unwrap_err().to_string();
    assert!(e.contains("differ in being int8"), "{e}");
}

#[test]
fn orders_and_arguments_it_cannot_use_are_refused() {
    let e = run(&mut dense(), "quant,ffn(ratio=0.5)").err().unwrap().to_string();
    assert!(e.contains("`quant` must come after every other pass"), "{e}");
    for (p, want) in [
        ("quant(activations=lazy)", "dynamic or static"),
        ("quant(range=mean)", "for activations=static"),
        ("quant(activations=static,range=p99)", "mean or minmax"),
        ("quant(skip=layers)", "`layers`"),
        ("quant(granularity=row)", "channel or tensor"),
        ("quant(weights=int4)", "only int8"),
    ] {
        let e = Pipeline::parse(p).err().unwrap().to_string();
        assert!(e.contains(want), "{p}: {e}");
    }
    // Static activations need calibration inputs in the context.
    let e = run(&mut dense(), "quant(activations=static)").err().unwrap().to_string();
    assert!(e.contains("--data"), "{e}");
    // Quantized weights that are not whole numbers fail verification, naming the weight.
    let mut g = dense();
    run(&mut g, "quant").unwrap();
    let w = g.weights.tensor("k.weight").unwrap().affine(1.0, 0.5).unwrap();
    g.weights.insert("k.weight", w);
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("@k.weight is quantized but 1024 values are not whole numbers"), "{e}");
    // Static activation parameters: only on an int8 group, a positive scale and a whole zero point in 0..=255.
    let params = |v: [f32; 2]| candle_core::Tensor::new(&v, &candle_core::Device::Cpu).unwrap();
    let mut g = dense();
    run(&mut g, "quant(skip=ffn)").unwrap();
    g.weights.insert("k.input_qparams", params([0.02, 300.0]));
    g.weights.insert("in.input_qparams", params([0.02, 10.0]));
    let e = verify(&g).unwrap_err().to_string();
    assert!(e.contains("@k.input_qparams = [0.02, 300]: want a scale > 0 and a whole zero point"), "{e}");
    assert!(e.contains("@in.input_qparams gives static activation parameters, but @in is not an int8 group"), "{e}");
    g.weights.insert("k.input_qparams", params([0.02, 128.0]));
    g.weights.0.remove("in.input_qparams");
    verify(&g).unwrap();
}
