//! Graph rewrites shared by the structured pruning passes.

use bertopt_ir::ops;
use bertopt_ir::{Graph, NodeIndex, Op, Weight};
use candle_core::Tensor;
use petgraph::Direction;

use crate::error::{failed, PassError};

/// A block (attention, or FFN) that has lost all of its units leaves only its output bias behind: rewrite
/// `add_norm(block(h), r)` to `layer_norm(add_bias(r))`, which is what the dense model computes with every unit
/// of that block masked. `block` must feed exactly one `add_norm` as its first operand.
pub fn residual_only(g: &mut Graph, block: NodeIndex, bias: &str, what: &str) -> Result<(), String> {
    let users: Vec<NodeIndex> = g.dag.neighbors_directed(block, Direction::Outgoing).collect();
    let [user] = users.as_slice() else {
        return Err(format!("{what}: every unit is removed, but its output has {} users", users.len()));
    };
    let Op::AddNorm(ops::AddNorm { ln, eps }) = g.dag[*user].op.clone() else {
        return Err(format!("{what}: every unit is removed, but its output feeds `{}`", g.dag[*user].op.mnemonic()));
    };
    let ops = g.operands(*user);
    if ops.len() != 2 || ops[0] != block {
        return Err(format!("{what}: its output is not the first operand of add_norm"));
    }
    let residual = ops[1];
    let ty = g.dag[residual].ty.clone();
    let biased = g.add_node(Op::AddBias(ops::AddBias { bias: bias.to_string() }), ty.clone(), &[residual]);
    let normed = g.add_node(Op::LayerNorm(ops::LayerNorm { ln, eps }), ty, &[biased]);
    g.replace_uses(*user, normed);
    Ok(())
}

/// Replace (or add) weight `name` with `t`.
pub fn set_weight(g: &mut Graph, name: &str, t: Tensor) {
    g.weights.0.insert(name.to_string(), Weight::from_tensor(t));
}

/// The data of weight `name`, or an error naming the pass and the weight.
pub fn weight<'g>(g: &'g Graph, pass: &str, name: &str) -> Result<&'g Tensor, PassError> {
    g.weights.tensor(name).ok_or_else(|| failed(pass, format!("weight @{name} has no data")))
}

/// The shrink every unit cut of a block applies: keep only the units `idx` lists (indices into the block's
/// inner width, ascending) in the output columns and bias entries of each producer group (`P.weight: [K, n]`,
/// `P.bias: [n]`) and the input rows of each consumer group (`C.weight: [n, N]`; its bias stays). `heads`,
/// `head-size` and `ffn` cut Q/K/V -> output and FFN-in -> FFN-out with it.
pub fn shrink(g: &mut Graph, pass: &str, producers: &[&str], consumers: &[&str], idx: &[u32]) -> Result<(), PassError> {
    let c = |e: candle_core::Error| failed(pass, e.to_string());
    let idx = Tensor::new(idx, &candle_core::Device::Cpu).map_err(c)?;
    for p in producers {
        let w = weight(g, pass, &format!("{p}.weight"))?.index_select(&idx, 1).map_err(c)?;
        let b = weight(g, pass, &format!("{p}.bias"))?.index_select(&idx, 0).map_err(c)?;
        set_weight(g, &format!("{p}.weight"), w);
        set_weight(g, &format!("{p}.bias"), b);
    }
    for p in consumers {
        let w = weight(g, pass, &format!("{p}.weight"))?.index_select(&idx, 0).map_err(c)?;
        set_weight(g, &format!("{p}.weight"), w);
    }
    Ok(())
}

/// Indices `0..n` whose `keep` is true.
pub fn kept(keep: &[bool]) -> Vec<u32> {
    keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u32).collect()
}

/// Indices `0..n` whose `keep` is true, as a u32 tensor for `index_select`.
pub fn kept_index(keep: &[bool]) -> Result<Tensor, candle_core::Error> {
    Tensor::new(kept(keep).as_slice(), &candle_core::Device::Cpu)
}

/// Keep all but the `remove` lowest-scoring units (ties: the higher index goes first, so the result is
/// deterministic).
pub fn keep_top(score: &[f32], remove: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(b.cmp(&a)));
    let mut keep = vec![true; score.len()];
    for &h in order.iter().take(remove.min(score.len())) {
        keep[h] = false;
    }
    keep
}

/// Refuse to reshape projection group `p` that an earlier pass already tiled: its `P.weight` is gone.
pub fn require_dense(g: &Graph, pass: &str, p: &str) -> Result<(), PassError> {
    if bertopt_ir::ops::tile_count(|n| g.weights.0.contains_key(n), p) > 0 {
        return Err(failed(
            pass,
            format!("@{p} is already tiled (by `tile`, `type0` or `qkv`); run `{pass}` before the pass that tiled it"),
        ));
    }
    Ok(())
}

/// After a pass stored some attention projections as tiles (`entry_cut`'s tiles), write each attention
/// op's declared form (`Attention::tiles`) from what its groups now hold; the verifier checks the two agree.
pub fn declare_tiles(g: &mut Graph) {
    let nodes: Vec<NodeIndex> = g.dag.node_indices().collect();
    for n in nodes {
        let tiles = match &g.dag[n].op {
            Op::Attention(a) => a.projections().map(|(p, _)| bertopt_ir::ops::tile_count(|x| g.weights.has(x), p)),
            _ => continue,
        };
        if let Op::Attention(a) = &mut g.dag[n].op {
            a.tiles = tiles;
        }
    }
}
