//! Pooling a sequence into one vector per row: `take_cls` (the first token) and `masked_mean` (the mean over
//! the positions the mask keeps).

use candle_core::{DType as CDType, Tensor};

use super::attr::AttrReader;
use super::def::{float, hidden, EvalError, OpDef};
use crate::types::{DType, Dim, ValueType};
use crate::weights::Weights;

/// `x[:, 0, :]`: the first ([CLS]) token.
pub struct TakeCls;

/// Mean over the sequence of the positions the mask keeps. Operands: x `f32[b, s, D]`, mask `i64[b, s]`;
/// result `f32[b, D]` (a row with no kept position gives zeros).
pub struct MaskedMean;

impl OpDef for TakeCls {
    const MNEMONIC: &'static str = "take_cls";
    fn arity(&self) -> usize {
        1
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(TakeCls)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        let x = x[0];
        if x.rank() != 3 {
            return Err(format!("take_cls needs f32[batch, seq, D], got {x}"));
        }
        float(x, "take_cls")?;
        Ok(ValueType::new(DType::F32, vec![x.shape[0].clone(), x.shape[2].clone()]))
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[0].narrow(1, 0, 1)?.squeeze(1)?)
    }
}

impl OpDef for MaskedMean {
    const MNEMONIC: &'static str = "masked_mean";
    fn arity(&self) -> usize {
        2
    }
    fn parse(_: &mut AttrReader) -> Result<Self, String> {
        Ok(MaskedMean)
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        let (x, mask) = (x[0], x[1]);
        let d = hidden(x, "masked_mean input")?;
        if x.rank() != 3 || mask.dtype != DType::I64 || mask.rank() != 2 || mask.shape[..] != x.shape[..2] {
            return Err(format!("masked_mean needs f32[b, s, D] and i64[b, s], got {x} and {mask}"));
        }
        Ok(ValueType::new(DType::F32, vec![x.shape[0].clone(), Dim::Known(d)]))
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        let m = x[1].to_dtype(CDType::F32)?.unsqueeze(2)?;
        let sum = x[0].broadcast_mul(&m)?.sum(1)?;
        let count = m.sum(1)?.maximum(1f64)?;
        Ok(sum.broadcast_div(&count)?)
    }
}
