//! Operations, one family per file. Each op is a type that implements `OpDef`: its text-form attributes, its
//! type rule, what it computes (the reference interpreter's meaning) and what it costs, together; `Op` is the
//! list of them, and its methods dispatch by one arm per op. Ops are few and structural: an `attention` knows
//! its heads and head size, a `linear` its K and N, so that passes read intent instead of pattern-matching
//! primitives. Lowering to ONNX (`src/onnx/lower/`, one file per op family) is where structure becomes
//! primitives.
//!
//! Weight conventions (what a name in an attribute stands for):
//! - a *linear* parameter `P` is the pair `P.weight: f32[K, N]` (stored K×N, so `y = x·W + b`, the transpose of
//!   PyTorch's layout) and `P.bias: f32[N]`;
//! - a *norm* parameter `P` is `P.weight: f32[D]` and `P.bias: f32[D]`;
//! - an *embedding table* or a *const* names one tensor directly.
//!
//! Adding an op: a type and its `OpDef` in its family's file, a variant and one arm in `each_op!` and `PARSE`
//! here, and its lowering.

pub mod attention;
pub mod attr;
pub mod def;
pub mod elementwise;
pub mod embed;
pub mod exit;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod select;
pub mod source;

use candle_core::Tensor;

pub use attention::{Attention, DynAttention, MASK_NEG};
pub use attr::{Attr, AttrReader};
pub use def::{EvalError, Flops, OpDef};
pub use elementwise::{Add, Gelu, Relu, Tanh};
pub use embed::Embed;
pub use exit::EarlyExit;
pub use linear::{cols_name, tile_count, tile_group, tile_names, tiles_quantized, AddBias, Linear, TiledLinear};
pub use norm::{AddNorm, LayerNorm};
pub use pool::{MaskedMean, TakeCls};
pub use select::{kept_units, DynFfn, TopK, PREDICTOR_BN_EPS};
pub use source::{Const, Input};

use crate::types::ValueType;
use crate::weights::Weights;

/// Every op of the IR. Ops without attributes are plain variants.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Input(Input),
    Const(Const),
    Embed(Embed),
    Attention(Attention),
    AddNorm(AddNorm),
    LayerNorm(LayerNorm),
    AddBias(AddBias),
    Linear(Linear),
    TiledLinear(TiledLinear),
    Gelu,
    Tanh,
    Add,
    TakeCls,
    EarlyExit(EarlyExit),
    Relu,
    MaskedMean,
    TopK(TopK),
    DynAttention(DynAttention),
    DynFfn(DynFfn),
}

/// `$body` with `$d` bound to the op's definition (an `OpDef`), whichever op it is.
macro_rules! each_op {
    ($op:expr, $d:ident => $body:expr) => {
        match $op {
            Op::Input($d) => $body,
            Op::Const($d) => $body,
            Op::Embed($d) => $body,
            Op::Attention($d) => $body,
            Op::AddNorm($d) => $body,
            Op::LayerNorm($d) => $body,
            Op::AddBias($d) => $body,
            Op::Linear($d) => $body,
            Op::TiledLinear($d) => $body,
            Op::Gelu => {
                let $d = &Gelu;
                $body
            }
            Op::Tanh => {
                let $d = &Tanh;
                $body
            }
            Op::Add => {
                let $d = &Add;
                $body
            }
            Op::TakeCls => {
                let $d = &TakeCls;
                $body
            }
            Op::EarlyExit($d) => $body,
            Op::Relu => {
                let $d = &Relu;
                $body
            }
            Op::MaskedMean => {
                let $d = &MaskedMean;
                $body
            }
            Op::TopK($d) => $body,
            Op::DynAttention($d) => $body,
            Op::DynFfn($d) => $body,
        }
    };
}

/// How the parser builds each op from its mnemonic (`input` is declared in the header, not parsed as an op).
type Parse = fn(&mut AttrReader) -> Result<Op, String>;
const PARSE: &[(&str, Parse)] = &[
    (Const::MNEMONIC, |a| Const::parse(a).map(Op::Const)),
    (Embed::MNEMONIC, |a| Embed::parse(a).map(Op::Embed)),
    (Attention::MNEMONIC, |a| Attention::parse(a).map(Op::Attention)),
    (AddNorm::MNEMONIC, |a| AddNorm::parse(a).map(Op::AddNorm)),
    (LayerNorm::MNEMONIC, |a| LayerNorm::parse(a).map(Op::LayerNorm)),
    (AddBias::MNEMONIC, |a| AddBias::parse(a).map(Op::AddBias)),
    (Linear::MNEMONIC, |a| Linear::parse(a).map(Op::Linear)),
    (TiledLinear::MNEMONIC, |a| TiledLinear::parse(a).map(Op::TiledLinear)),
    (Gelu::MNEMONIC, |a| Gelu::parse(a).map(|_| Op::Gelu)),
    (Tanh::MNEMONIC, |a| Tanh::parse(a).map(|_| Op::Tanh)),
    (Add::MNEMONIC, |a| Add::parse(a).map(|_| Op::Add)),
    (TakeCls::MNEMONIC, |a| TakeCls::parse(a).map(|_| Op::TakeCls)),
    (EarlyExit::MNEMONIC, |a| EarlyExit::parse(a).map(Op::EarlyExit)),
    (Relu::MNEMONIC, |a| Relu::parse(a).map(|_| Op::Relu)),
    (MaskedMean::MNEMONIC, |a| MaskedMean::parse(a).map(|_| Op::MaskedMean)),
    (TopK::MNEMONIC, |a| TopK::parse(a).map(Op::TopK)),
    (DynAttention::MNEMONIC, |a| DynAttention::parse(a).map(Op::DynAttention)),
    (DynFfn::MNEMONIC, |a| DynFfn::parse(a).map(Op::DynFfn)),
];

fn mnemonic_of<T: OpDef>(_: &T) -> &'static str {
    T::MNEMONIC
}

impl Op {
    /// The mnemonic in the text form.
    pub fn mnemonic(&self) -> &'static str {
        each_op!(self, d => mnemonic_of(d))
    }

    /// Number of operands the op takes.
    pub fn arity(&self) -> usize {
        each_op!(self, d => d.arity())
    }

    /// Attributes in the order the text form prints them.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        each_op!(self, d => d.attrs())
    }

    /// Names of weight groups (prefixes) or tensors this op refers to, as written in its attributes.
    pub fn weight_refs(&self) -> Vec<&str> {
        each_op!(self, d => d.weight_refs())
    }

    /// Build an op from its mnemonic and attributes (the parser's half of `attrs`).
    pub fn from_parts(mnemonic: &str, attrs: &[(String, Attr)]) -> Result<Op, String> {
        let Some((_, parse)) = PARSE.iter().find(|(m, _)| *m == mnemonic) else {
            let known = PARSE.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ");
            return Err(format!("unknown op `{mnemonic}` (ops: {known})"));
        };
        let mut a = AttrReader::new(attrs);
        let op = parse(&mut a)?;
        if let Some(key) = a.unused() {
            return Err(format!("op `{mnemonic}` has no attribute `{key}`"));
        }
        Ok(op)
    }

    /// The type of the op's result 0 on `operands`, checking their number and every weight the op reads.
    pub fn infer(&self, operands: &[&ValueType], weights: &Weights) -> Result<ValueType, String> {
        if operands.len() != self.arity() {
            return Err(format!("`{}` takes {} operand(s), got {}", self.mnemonic(), self.arity(), operands.len()));
        }
        each_op!(self, d => d.infer(operands, weights))
    }

    /// The types of all the op's results on `operands` (result 0, then the others); the verifier compares them
    /// with every node's declared types.
    pub fn infer_results(
        &self,
        operands: &[&ValueType],
        weights: &Weights,
    ) -> Result<(ValueType, Vec<ValueType>), String> {
        let first = self.infer(operands, weights)?;
        let more = each_op!(self, d => d.more_results(&first));
        Ok((first, more))
    }

    /// What the op computes on operand values (its result 0, the reference interpreter's meaning).
    pub fn eval(&self, weights: &Weights, operands: &[&Tensor]) -> Result<Tensor, EvalError> {
        each_op!(self, d => d.eval(weights, operands))
    }

    /// Every result the op computes on operand values.
    pub fn eval_results(&self, weights: &Weights, operands: &[&Tensor]) -> Result<Vec<Tensor>, EvalError> {
        each_op!(self, d => d.eval_results(weights, operands))
    }

    /// The arithmetic of a node of this op with result type `ty`, for one sequence of `seq` tokens.
    pub fn flops(&self, weights: &Weights, ty: &ValueType, seq: u64) -> Flops {
        each_op!(self, d => d.flops(weights, ty, seq))
    }
}
