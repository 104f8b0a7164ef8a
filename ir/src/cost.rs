//! Parameter and FLOP counts read off the IR, so every pass can say what it saved. Each op counts its own
//! arithmetic (`OpDef::flops`); this sums them and the parameters the graph reads.

use crate::graph::Graph;

/// Cost of a graph at one sequence length, for one sequence (batch 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Scalar parameters in weights the graph uses.
    pub params: usize,
    /// Multiply-accumulates counted as 2 FLOPs; matmuls only (they dominate; norms and softmax are ignored).
    pub flops: u64,
    /// The part of `flops` that runs as int8 (quantized linears and projections, see `quant`).
    pub int8_flops: u64,
}

/// Count the cost of `g` for one sequence of length `seq`.
pub fn cost(g: &Graph, seq: usize) -> Cost {
    let used = g.used_weight_names();
    let params = used.iter().filter_map(|n| g.weights.get(n)?.ty.num_elements()).sum();
    let (mut flops, mut int8_flops) = (0, 0);
    for n in g.dag.node_weights() {
        let f = n.op.flops(&g.weights, &n.ty, seq as u64);
        flops += f.total;
        int8_flops += f.int8;
    }
    Cost { params, flops, int8_flops }
}
