//! Parameter and FLOP counts read off the IR, so every pass can say what it saved.

use bertopt_ir::{Graph, Op};

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
    let s = seq as u64;
    let mut flops = 0u64;
    let mut int8_flops = 0u64;
    let q = |p: &str| bertopt_ir::quant::is_quantized(|x| g.weights.0.contains_key(x), p);
    for n in g.dag.node_weights() {
        int8_flops += match &n.op {
            Op::Attention { heads, head_dim, query, key, value, output } => {
                let d = n.ty.last().and_then(|d| d.known()).unwrap_or(0) as u64;
                let inner = (*heads * *head_dim) as u64;
                [query, key, value, output].iter().filter(|p| q(p)).count() as u64 * 2 * s * d * inner
            }
            Op::Linear { w, k, n: out } if q(w) => {
                let rows = if n.ty.rank() == 3 { s } else { 1 };
                2 * rows * (*k as u64) * (*out as u64)
            }
            _ => 0,
        };
        flops += match &n.op {
            Op::Attention { heads, head_dim, query, key, value, output } => {
                let d = n.ty.last().and_then(|d| d.known()).unwrap_or(0);
                let inner = *heads * *head_dim;
                // Q, K, V and output projections (dense or tiled), then scores and context.
                let macs = projection_macs(g, query, d, inner)
                    + projection_macs(g, key, d, inner)
                    + projection_macs(g, value, d, inner)
                    + projection_macs(g, output, inner, d);
                2 * s * macs + 2 * s * s * inner as u64 * 2
            }
            Op::DynAttention { keep, head_dim, .. } => {
                // As `attention`, for the kept heads only (the gathers move weights but do no arithmetic).
                let d = n.ty.last().and_then(|d| d.known()).unwrap_or(0) as u64;
                let inner = (*keep * *head_dim) as u64;
                2 * s * d * inner * 4 + 2 * s * s * inner * 2
            }
            Op::DynFfn { inter, groups, keep, .. } => {
                let d = n.ty.last().and_then(|d| d.known()).unwrap_or(0) as u64;
                let f = g.weights.get(&format!("{inter}.weight")).and_then(|w| w.ty.known_dims()).map_or(0, |w| w[1]);
                let kept = (f / (*groups).max(1) * *keep) as u64;
                2 * s * d * kept * 2
            }
            Op::Linear { k, n: out, .. } => {
                // A linear on [b, s, k] runs per token; on [b, k] (pooler, classifier) once.
                let rows = if n.ty.rank() == 3 { s } else { 1 };
                2 * rows * (*k as u64) * (*out as u64)
            }
            Op::TiledLinear { w, tiles, .. } => {
                let rows = if n.ty.rank() == 3 { s } else { 1 };
                2 * rows * tiled_macs(g, w, *tiles)
            }
            _ => 0,
        };
    }
    Cost { params, flops, int8_flops }
}

/// Multiply-accumulates per token of a tiled weight: per tile, kept rows x tile width.
fn tiled_macs(g: &Graph, w: &str, tiles: usize) -> u64 {
    (0..tiles)
        .filter_map(|t| g.weights.get(&bertopt_ir::op::tile_names(w, t).1)?.ty.known_dims())
        .map(|d| (d[0] * d[1]) as u64)
        .sum()
}

/// Multiply-accumulates per token of an attention projection `k -> n`, dense or tiled.
fn projection_macs(g: &Graph, p: &str, k: usize, n: usize) -> u64 {
    match bertopt_ir::op::tile_count(|x| g.weights.0.contains_key(x), p) {
        0 => (k * n) as u64,
        tiles => tiled_macs(g, p, tiles),
    }
}
