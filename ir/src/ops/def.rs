//! What every op defines (`OpDef`), and what the definitions share: how evaluation fails, how its weights are
//! read, what an op costs, and the operand checks of type inference.

use candle_core::Tensor;

use super::attr::{Attr, AttrReader};
use crate::types::{DType, Dim, ValueType};
use crate::weights::Weights;

/// One op: its text-form syntax, its type rule, its meaning and its cost, in one place.
pub trait OpDef: Sized {
    /// The op's name in the text form.
    const MNEMONIC: &'static str;
    /// Number of operands.
    fn arity(&self) -> usize;
    /// Attributes in the order the text form prints them.
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![]
    }
    /// Build the op from its attributes (the parser's half of `attrs`).
    fn parse(a: &mut AttrReader) -> Result<Self, String>;
    /// Names of weight groups (prefixes) or tensors the op refers to, as written in its attributes.
    fn weight_refs(&self) -> Vec<&str> {
        vec![]
    }
    /// The type of result 0 from the operand types (their number is checked before), checking every weight read.
    fn infer(&self, operands: &[&ValueType], weights: &Weights) -> Result<ValueType, String>;
    /// The types of the results after the first, given the first's (most ops have no other).
    fn more_results(&self, _first: &ValueType) -> Vec<ValueType> {
        vec![]
    }
    /// What the op computes (result 0): the reference interpreter's meaning, which the ONNX lowering must match.
    fn eval(&self, weights: &Weights, operands: &[&Tensor]) -> Result<Tensor, EvalError>;
    /// Every result's value, in order.
    fn eval_results(&self, weights: &Weights, operands: &[&Tensor]) -> Result<Vec<Tensor>, EvalError> {
        Ok(vec![self.eval(weights, operands)?])
    }
    /// Arithmetic for one sequence of `seq` tokens, given the node's result type.
    fn flops(&self, _weights: &Weights, _ty: &ValueType, _seq: u64) -> Flops {
        Flops::default()
    }
}

/// Floating-point operations of one node: multiply-accumulates of its matrix products, counted as 2 each
/// (they dominate; norms, softmax and activations are not counted), and the part of them that runs as int8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flops {
    pub total: u64,
    pub int8: u64,
}

/// Why evaluating an op failed.
#[derive(Debug)]
pub enum EvalError {
    Candle(candle_core::Error),
    /// A weight the op reads has no data (a graph parsed from text without its weights attached).
    NoData(String),
    /// The graph is not what the op needs.
    Graph(String),
}

impl From<candle_core::Error> for EvalError {
    fn from(e: candle_core::Error) -> Self {
        EvalError::Candle(e)
    }
}

/// The data of weight `name`.
pub fn data<'a>(w: &'a Weights, name: &str) -> Result<&'a Tensor, EvalError> {
    w.tensor(name).ok_or_else(|| EvalError::NoData(name.to_string()))
}

/// Check that weight `name` exists and is `f32[dims]`.
pub fn expect(w: &Weights, name: &str, dims: &[usize]) -> Result<(), String> {
    let want = ValueType::known(DType::F32, dims);
    match w.weight_type(name) {
        None => Err(format!("weight @{name} does not exist (expected {want})")),
        Some(t) if *t != want => Err(format!("weight @{name} is {t}, expected {want}")),
        Some(_) => Ok(()),
    }
}

/// Check a norm parameter group `p` of width `d`.
pub fn norm(w: &Weights, p: &str, d: usize) -> Result<(), String> {
    expect(w, &format!("{p}.weight"), &[d])?;
    expect(w, &format!("{p}.bias"), &[d])
}

/// An f32 operand.
pub fn float(t: &ValueType, what: &str) -> Result<(), String> {
    if t.dtype != DType::F32 {
        return Err(format!("{what} needs f32, got {t}"));
    }
    Ok(())
}

/// An f32 operand's last dim, which must be known.
pub fn hidden(t: &ValueType, what: &str) -> Result<usize, String> {
    float(t, what)?;
    t.last().and_then(Dim::known).ok_or_else(|| format!("{what} {t} has no known last dim"))
}

/// A per-row selection `i64[b, keep]` of `keep` out of `of` units, for the rows of `x`.
pub fn select(idx: &ValueType, x: &ValueType, keep: usize, of: usize, what: &str) -> Result<(), String> {
    if idx.dtype != DType::I64 || idx.rank() != 2 || idx.shape[0] != x.shape[0] || idx.shape[1] != Dim::Known(keep) {
        return Err(format!("{what} must be i64[{}, {keep}], got {idx}", x.shape[0]));
    }
    if keep == 0 || keep > of {
        return Err(format!("{what}: keep {keep} of {of} is out of range"));
    }
    Ok(())
}

/// Rows a per-token matmul runs on for one sequence: `seq` for `[b, s, D]`, one for `[b, D]` (pooler,
/// classifier).
pub fn rows(ty: &ValueType, seq: u64) -> u64 {
    if ty.rank() == 3 {
        seq
    } else {
        1
    }
}

/// The last dim of a result type, 0 when unknown.
pub fn width(ty: &ValueType) -> u64 {
    ty.last().and_then(Dim::known).unwrap_or(0) as u64
}
