//! Lowering IR to ONNX, one file per op family: where structure becomes primitives. Each IR op expands to a
//! short, fixed sequence of standard ONNX ops (opset 17) that tract and ONNX Runtime both optimize well; node
//! names carry the weight scope they come from (`encoder.layer.3.attention.self.query/MatMul`). `lower` is the
//! one dispatch, an arm per op; `emitter` holds the state they share; `early_exit` is lowered as a whole
//! (`exit`), since its branches hold the nodes that run after it.

pub(crate) mod attention;
pub(crate) mod elementwise;
pub(crate) mod embed;
pub(crate) mod emitter;
pub(crate) mod exit;
pub(crate) mod linear;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod select;

use bertopt_ir::{NodeIndex, Op};

use emitter::{EmitError, Emitter};

/// The ONNX value of IR node `n`, its operands already lowered.
pub(crate) fn lower(e: &mut Emitter, n: NodeIndex) -> Result<String, EmitError> {
    let g = e.g;
    let args: Vec<String> = g.operand_values(n).iter().map(|o| e.vals[o].clone()).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match &g.dag[n].op {
        Op::Input(op) => op.name.clone(),
        Op::Const(op) => e.init(&op.weight)?,
        Op::Embed(op) => e.lower_embed(op, &a)?,
        Op::Attention(op) => e.lower_attention(n, op, &a)?,
        Op::AddNorm(op) => e.lower_add_norm(op, &a)?,
        Op::LayerNorm(op) => e.lower_layer_norm(op, &a)?,
        Op::AddBias(op) => e.lower_add_bias(op, &a)?,
        Op::Linear(op) => e.lower_linear(op, &a)?,
        Op::TiledLinear(op) => e.lower_tiled_linear(n, op, &a)?,
        Op::Gelu => e.gelu(a[0]),
        Op::Relu => e.lower_unary("Relu", "relu", &a),
        Op::MaskedMean => e.lower_masked_mean(n, &a)?,
        Op::TopK(op) => e.lower_top_k(op, &a),
        Op::DynAttention(op) => e.lower_dyn_attention(n, op, &a)?,
        Op::DynFfn(op) => e.lower_dyn_ffn(op, &a)?,
        Op::Tanh => e.lower_unary("Tanh", "tanh", &a),
        Op::Add => e.lower_add(&a),
        Op::TakeCls => e.lower_take_cls(n, &a)?,
        Op::EarlyExit(_) => return Err(EmitError::Graph("early_exit is lowered as a whole by `emit_exits`".into())),
    })
}

/// Lower `nodes` (in topological order) into the current scope.
pub(crate) fn nodes(e: &mut Emitter, nodes: &[NodeIndex]) -> Result<(), EmitError> {
    for &n in nodes {
        let v = lower(e, n)?;
        e.vals.insert(n.into(), v);
    }
    Ok(())
}
