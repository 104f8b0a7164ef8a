//! Values that come from outside the dataflow: `input` (a graph parameter) and `const` (a weight as a value).

use candle_core::Tensor;

use super::attr::{weight, Attr, AttrReader};
use super::def::{data, EvalError, OpDef};
use crate::types::ValueType;
use crate::weights::Weights;

/// A graph parameter; its type is the node's type (the text form writes `%name: type` in the header, not an
/// op line, so it has no attributes to parse).
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
}

/// A weight used as a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub weight: String,
}

impl OpDef for Input {
    const MNEMONIC: &'static str = "input";
    fn arity(&self) -> usize {
        0
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Err("inputs are declared in the graph header, not as ops".into())
    }
    fn infer(&self, _: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        Err(format!("input %{} has no operands to infer from", self.name))
    }
    fn eval(&self, _: &Weights, _: &[&Tensor]) -> Result<Tensor, EvalError> {
        Err(EvalError::Graph("an input has no value to evaluate".into()))
    }
}

impl OpDef for Const {
    const MNEMONIC: &'static str = "const";
    fn arity(&self) -> usize {
        0
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("value", weight(&self.weight))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(Const { weight: a.weight("value")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.weight]
    }
    fn infer(&self, _: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        w.weight_type(&self.weight).cloned().ok_or_else(|| format!("weight @{} does not exist", self.weight))
    }
    fn eval(&self, w: &Weights, _: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(data(w, &self.weight)?.clone())
    }
}
