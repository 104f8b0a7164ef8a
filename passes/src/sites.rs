//! Where cuts apply, found one way for every cut: the attention nodes, the FFN blocks and the per-token matrices of
//! the encoder, each in layer order. A cut names its units within these; it does not walk the graph itself.

use bertopt_ir::{ops, Graph, NodeIndex, Op};
use petgraph::Direction;

use crate::error::{failed, PassError};

/// The attention nodes in layer order.
pub fn attentions(g: &Graph, pass: &str) -> Result<Vec<NodeIndex>, PassError> {
    let order = g.topo_order().map_err(|e| failed(pass, e))?;
    Ok(order.into_iter().filter(|n| matches!(g.dag[*n].op, Op::Attention(_))).collect())
}

/// The attention nodes in layer order, each with all four projections still dense (`pass` reshapes them by
/// output columns, which a tiled projection no longer has).
pub fn dense_attentions(g: &Graph, pass: &str) -> Result<Vec<NodeIndex>, PassError> {
    let attns = attentions(g, pass)?;
    for &n in &attns {
        for p in g.dag[n].op.weight_refs() {
            crate::rewrite::require_dense(g, pass, p)?;
        }
    }
    Ok(attns)
}

/// One FFN block: `linear(in) -> gelu -> linear(out)`, each feeding only the next.
pub struct FfnBlock {
    pub fc_in: NodeIndex,
    pub act: NodeIndex,
    pub fc_out: NodeIndex,
}

/// The FFN blocks in layer order (dense linears only: a tiled FFN has no neuron structure left).
pub fn ffn_blocks(g: &Graph, pass: &str) -> Result<Vec<FfnBlock>, PassError> {
    let mut out = vec![];
    for fc_in in g.topo_order().map_err(|e| failed(pass, e))? {
        let Op::Linear(ops::Linear { n: inner, .. }) = g.dag[fc_in].op else { continue };
        let Some(act) = single_user(g, fc_in).filter(|a| matches!(g.dag[*a].op, Op::Gelu)) else { continue };
        let Some(fc_out) = single_user(g, act) else { continue };
        if matches!(g.dag[fc_out].op, Op::Linear(ops::Linear { k, .. }) if k == inner) {
            out.push(FfnBlock { fc_in, act, fc_out });
        }
    }
    Ok(out)
}

/// The only node reading `n`'s value, when it is not also a graph output.
fn single_user(g: &Graph, n: NodeIndex) -> Option<NodeIndex> {
    let users: Vec<NodeIndex> = g.dag.neighbors_directed(n, Direction::Outgoing).collect();
    let outputs = g.outputs.iter().any(|(_, o)| o.node == n);
    match users.as_slice() {
        [u] if !outputs => Some(*u),
        _ => None,
    }
}

/// A matrix the encoder applies to every token: a `linear` on `[b, s, K]` (`node` is it) or an attention
/// projection (`node` is `None`: the attention holds four).
pub struct Matrix {
    pub node: Option<NodeIndex>,
    pub group: String,
}

/// The encoder's per-token matrices in layer order: every `linear` on hidden states (the pooler and classifier
/// run once per sequence and are left out) and, with `attention`, the four projections of each attention.
pub fn encoder_matrices(g: &Graph, pass: &str, attention: bool) -> Result<Vec<Matrix>, PassError> {
    let mut out = vec![];
    for node in g.topo_order().map_err(|e| failed(pass, e))? {
        match &g.dag[node].op {
            Op::Linear(ops::Linear { w, .. }) if g.dag[node].ty.rank() == 3 => {
                out.push(Matrix { node: Some(node), group: w.clone() })
            }
            Op::Attention(a) if attention => {
                out.extend(a.projections().map(|(p, _)| Matrix { node: None, group: p.to_string() }))
            }
            _ => {}
        }
    }
    Ok(out)
}
