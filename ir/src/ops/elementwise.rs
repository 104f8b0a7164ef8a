//! Elementwise ops: `gelu` (exact, erf), `tanh`, `relu` and `add` of two values of one type.

use candle_core::Tensor;

use super::attr::AttrReader;
use super::def::{float, EvalError, OpDef};
use crate::types::ValueType;
use crate::weights::Weights;

/// Exact (erf) GELU.
pub struct Gelu;
pub struct Tanh;
/// `max(x, 0)`.
pub struct Relu;
/// Elementwise add of two values of the same type.
pub struct Add;

/// The type rule of a one-operand f32 function.
fn unary(x: &[&ValueType], what: &str) -> Result<ValueType, String> {
    float(x[0], what)?;
    Ok(x[0].clone())
}

impl OpDef for Gelu {
    const MNEMONIC: &'static str = "gelu";
    fn arity(&self) -> usize {
        1
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(Gelu)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        unary(x, Self::MNEMONIC)
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[0].gelu_erf()?)
    }
}

impl OpDef for Tanh {
    const MNEMONIC: &'static str = "tanh";
    fn arity(&self) -> usize {
        1
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(Tanh)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        unary(x, Self::MNEMONIC)
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[0].tanh()?)
    }
}

impl OpDef for Relu {
    const MNEMONIC: &'static str = "relu";
    fn arity(&self) -> usize {
        1
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(Relu)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        unary(x, Self::MNEMONIC)
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[0].relu()?)
    }
}

impl OpDef for Add {
    const MNEMONIC: &'static str = "add";
    fn arity(&self) -> usize {
        2
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(Add)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        if x[0] != x[1] {
            return Err(format!("add operands differ: {} vs {}", x[0], x[1]));
        }
        Ok(x[0].clone())
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok((x[0] + x[1])?)
    }
}
