//! Shared by the fine-grained passes (`vw`, `bw`): they zero weights in place and leave every shape as it is,
//! because their patterns (4 of 16 along K, scattered 32×32 blocks) cannot be made into smaller dense matrices.
//! A dense runtime (tract, ONNX Runtime) gains nothing from them; they exist to measure accuracy and to feed
//! runtimes with sparse kernels.

use bertopt_ir::ops;
use bertopt_ir::{Graph, Op};

/// Every prunable encoder matrix, by weight name (`P.weight`, K×N): the per-token linears and the attention
/// projections.
pub fn encoder_matrices(g: &Graph) -> Vec<String> {
    let mut out = vec![];
    for n in g.dag.node_weights() {
        match &n.op {
            Op::Linear(ops::Linear { w, .. }) if n.ty.rank() == 3 => out.push(format!("{w}.weight")),
            Op::Attention(ops::Attention { query, key, value, output, .. }) => {
                out.extend([query, key, value, output].iter().map(|p| format!("{p}.weight")))
            }
            _ => {}
        }
    }
    out.sort();
    out
}

/// The note every report of a zeros-only pass carries.
pub const NO_DENSE_SPEEDUP: &str = "zeros only: shapes unchanged, a dense runtime runs no faster";
