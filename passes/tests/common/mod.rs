//! Helpers shared by the pass tests.
#![allow(dead_code)]

use std::collections::HashMap;

use bertopt_ir::ops;
use bertopt_ir::{Graph, Op};
use candle_core::{Device, Tensor};

/// Attach deterministic data to every declared weight so the graph can run: `seeded(i)` for the i-th weight in
/// name order, as a file test's `= seeded(i)` declarations give it.
pub fn with_data(mut g: Graph) -> Graph {
    bertopt_ir::seeded::seed_all(&mut g);
    g
}

/// Inputs of shape [batch, seq] with ids below `vocab` and the last position of row 1 padded.
pub fn inputs(batch: usize, seq: usize, vocab: usize) -> HashMap<String, Tensor> {
    let ids: Vec<i64> = (0..batch * seq).map(|i| ((i * 5 + 3) % vocab) as i64).collect();
    let mask: Vec<i64> = (0..batch * seq).map(|i| if i == 2 * seq - 1 { 0 } else { 1 }).collect();
    let t = |v: Vec<i64>| Tensor::from_vec(v, (batch, seq), &Device::Cpu).unwrap();
    HashMap::from([
        ("input_ids".to_string(), t(ids)),
        ("attention_mask".to_string(), t(mask)),
        ("token_type_ids".to_string(), t(vec![0; batch * seq])),
    ])
}

/// The dense graph with the heads `keep[layer][head] == false` masked out: their value columns are zeroed, so
/// their context is zero, which is what multiplying their attention probabilities by 0 gives.
pub fn mask_heads_dense(g: &Graph, keep: &[Vec<bool>]) -> Graph {
    let mut g = g.clone();
    let order = g.topo_order().unwrap();
    let attns: Vec<Op> =
        order.iter().map(|n| g.dag[*n].op.clone()).filter(|op| matches!(op, Op::Attention(_))).collect();
    for (op, keep) in attns.iter().zip(keep) {
        let Op::Attention(ops::Attention { head_dim, value, .. }) = op else { unreachable!() };
        let cols: Vec<f32> =
            keep.iter().flat_map(|&k| std::iter::repeat_n(if k { 1.0 } else { 0.0 }, *head_dim)).collect();
        let m = Tensor::new(cols.as_slice(), &Device::Cpu).unwrap();
        for part in ["weight", "bias"] {
            let name = format!("{value}.{part}");
            let t = g.weights.tensor(&name).unwrap().broadcast_mul(&m).unwrap();
            g.weights.insert(name, t);
        }
    }
    g
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}
