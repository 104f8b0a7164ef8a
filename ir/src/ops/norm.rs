//! `layer_norm` and `add_norm` (LayerNorm of a residual sum): over the last dim, with a norm parameter group.

use candle_core::{Tensor, D};

use super::attr::{weight, Attr, AttrReader};
use super::def::{data, hidden, norm, EvalError, OpDef};
use crate::types::ValueType;
use crate::weights::Weights;

/// `LayerNorm(x + residual)`. Operands: x, residual.
#[derive(Clone, Debug, PartialEq)]
pub struct AddNorm {
    pub ln: String,
    pub eps: f32,
}

/// `LayerNorm(x)` over the last dim.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub ln: String,
    pub eps: f32,
}

/// LayerNorm over the last dim.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps as f64)?.sqrt()?)?;
    y.broadcast_mul(w)?.broadcast_add(b)
}

/// LayerNorm with the norm group `ln`.
pub fn eval_norm(w: &Weights, x: &Tensor, ln: &str, eps: f32) -> Result<Tensor, EvalError> {
    Ok(layer_norm(x, data(w, &format!("{ln}.weight"))?, data(w, &format!("{ln}.bias"))?, eps)?)
}

impl OpDef for AddNorm {
    const MNEMONIC: &'static str = "add_norm";
    fn arity(&self) -> usize {
        2
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("ln", weight(&self.ln)), ("eps", Attr::Float(self.eps))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(AddNorm { ln: a.weight("ln")?, eps: a.float("eps")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.ln]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        if x[0] != x[1] {
            return Err(format!("add_norm operands differ: {} vs {}", x[0], x[1]));
        }
        norm(w, &self.ln, hidden(x[0], "add_norm input")?)?;
        Ok(x[0].clone())
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        eval_norm(w, &(x[0] + x[1])?, &self.ln, self.eps)
    }
}

impl OpDef for LayerNorm {
    const MNEMONIC: &'static str = "layer_norm";
    fn arity(&self) -> usize {
        1
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("ln", weight(&self.ln)), ("eps", Attr::Float(self.eps))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(LayerNorm { ln: a.weight("ln")?, eps: a.float("eps")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.ln]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        norm(w, &self.ln, hidden(x[0], "layer_norm input")?)?;
        Ok(x[0].clone())
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        eval_norm(w, x[0], &self.ln, self.eps)
    }
}
