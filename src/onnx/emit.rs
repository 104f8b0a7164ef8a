//! Lowering a whole IR graph to one ONNX model: inputs, every node through `lower` (one file per op family), an
//! early exit as nested `If`s, outputs. Hidden states travel batched or as rows (`Stream`).

use bertopt_ir::{ops, Graph, Op, Value};

pub use super::lower::emitter::EmitError;
use super::lower::emitter::{dims, elem, Emitter};
use super::lower::exit::ExitPlan;

/// Metadata stored in the model (tokenizer, labels) so that `optimize run` needs only the ONNX file, and the
/// layout of the hidden states between ops.
#[derive(Default)]
pub struct EmitOptions<'a> {
    pub metadata: Vec<(&'a str, String)>,
    pub stream: Stream,
    pub int8_tiles: Int8Tiles,
    pub int8_form: Int8Form,
    pub qkv: Qkv,
}

/// How an attention layer's query, key and value projections are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Qkv {
    /// Three linears (`MatMul` + `Add` each) reading the same hidden states.
    #[default]
    Separate,
    /// One linear over the three weights side by side (`[D, 3·H·d]`, the query's columns pre-scaled) and one
    /// `Split` into Q, K and V: one packing of the input and one kernel call instead of three. Layers whose
    /// projections are tiled or int8 stay separate.
    Fused,
}

/// Which ONNX ops an int8 group (`quant`) is written with. All compute what `bertopt_ir::quant` says: the same
/// integers, rescaled (`qdq` sums the dequantized products in f32 instead, equal up to f32 rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Int8Form {
    /// `DynamicQuantizeLinear` (or `QuantizeLinear` with static ranges) + `MatMulInteger` + `Cast` + the rescale
    /// `Mul` + bias: standard ONNX ops that tract and ONNX Runtime both run on integers.
    #[default]
    Integer,
    /// Quantize-dequantize: x through `(Dynamic)QuantizeLinear` + `DequantizeLinear`, the int8 weight through a
    /// per-column `DequantizeLinear`, then an f32 `MatMul`: the form ONNX Runtime's optimizer fuses into its
    /// integer kernels, and runtimes without int8 kernels run in f32. With dynamic activations ONNX Runtime
    /// only: tract's `DequantizeLinear` wants a constant scale.
    Qdq,
    /// ONNX Runtime's contrib ops (domain `com.microsoft`): `DynamicQuantizeMatMul`, or `QuantizeLinear` +
    /// `MatMulIntegerToFloat` with static ranges; one node per linear with the bias. ONNX Runtime only: tract
    /// does not run them.
    Ort,
}

/// How an int8 tiled group (`tile`, `type0`, `qkv` followed by `quant`) is written. Both compute the same
/// integers (a tile's dropped rows contribute nothing either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Int8Tiles {
    /// The tiles placed in one K x N int8 matrix with zeros where they read nothing, and one `MatMulInteger`: as
    /// fast as a dense int8 linear. The default: at real length it beat the per-tile form in both runtimes
    /// (`scripts/int8-tiles-minilm`).
    #[default]
    Dense,
    /// Per tile a `Gather` of its kept features and a `MatMulInteger` on fewer MACs, one rescale.
    Gather,
}

/// How the encoder's hidden states (`[batch, seq, D]` in the IR) travel between ONNX ops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    /// `[batch, seq, D]` throughout; every linear is `MatMul` + `Add`.
    #[default]
    Batched,
    /// `[batch·seq, D]` from the embeddings to the classifier's token pick: every linear is one `Gemm` with its
    /// bias, attention reshapes `[batch·seq, H·d]` to `[batch, seq, H, d]` with the batch and sequence sizes taken
    /// once from the input ids. Graphs that gather weights per row (`ebert`) and segmented exports stay batched.
    Rows,
}

/// Lower a verified IR graph to an ONNX model.
pub fn emit(g: &Graph, opts: &EmitOptions) -> Result<onnx_protobuf::ModelProto, EmitError> {
    let order = g.topo_order().map_err(EmitError::Graph)?;
    let mut e = Emitter::new(g, &g.name);
    // Per-row weight gathers (`ebert`) multiply batched hidden states: such graphs stay batched.
    let per_row = g.dag.node_weights().any(|n| matches!(n.op, Op::DynAttention(_) | Op::DynFfn(_)));
    e.rows = opts.stream == Stream::Rows && !per_row;
    e.int8_tiles = opts.int8_tiles;
    e.int8_form = opts.int8_form;
    e.fuse_qkv = opts.qkv == Qkv::Fused;
    for &i in &g.inputs {
        let node = &g.dag[i];
        if let Op::Input(ops::Input { name }) = &node.op {
            e.b.input(name, elem(node.ty.dtype), &dims(&node.ty.shape));
        }
    }
    let exit = order.iter().copied().find(|&n| matches!(g.dag[n].op, Op::EarlyExit(_)));
    match exit {
        None => super::lower::nodes(&mut e, &order)?,
        Some(x) => {
            let (plan, rest) = ExitPlan::new(g, x, &order)?;
            let (logits, layer) = e.emit_exits(&plan, 0, None)?;
            e.vals.insert(Value { node: x, result: 0 }, logits);
            e.vals.insert(Value { node: x, result: 1 }, layer);
            super::lower::nodes(&mut e, &rest)?;
        }
    }
    for (name, out) in &g.outputs {
        let ty = g.value_type(*out).ok_or_else(|| EmitError::Graph(format!("output `{name}` has no value")))?;
        let v = e.vals[out].clone();
        let v = if out.result == 0 { e.batched(&v, out.node)? } else { v };
        e.b.node_into("Identity", name, &[&v], name, &[]);
        e.b.output(name, elem(ty.dtype), &dims(&ty.shape));
    }
    Ok(e.b.finish(&opts.metadata))
}
