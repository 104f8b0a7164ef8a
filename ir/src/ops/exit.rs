//! `early_exit`: the logits of the first exit point whose rule every row meets (result 0) and how many encoder
//! layers ran before it (result 1). The rules themselves are `crate::exit`'s, shared with training and the
//! runners.

use candle_core::Tensor;

use super::attr::{Attr, AttrReader};
use super::def::{EvalError, OpDef};
use crate::exit::ExitRule;
use crate::types::{DType, ValueType};
use crate::weights::Weights;

/// Early exit: operands are the logits of each exit point in order (the last is the final classifier);
/// `layers[j]` is how many encoder layers run before exit point j. The result is the logits of the first
/// exit point at which every row of the batch meets `rule` (else the last): a whole batch leaves together,
/// which is what one `If` per exit point computes. Lowered to nested `If`s, so later layers do not run.
/// Result 1 is `layers[j]` for that exit point j, as `i64[batch]`.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyExit {
    pub rule: ExitRule,
    pub layers: Vec<usize>,
}

/// The exit point a batch leaves at, from each exit point's logits `[batch, labels]`.
pub fn exit_point(rule: ExitRule, exits: &[&Tensor]) -> candle_core::Result<usize> {
    let rows: Vec<Vec<Vec<f32>>> = exits.iter().map(|t| t.to_vec2::<f32>()).collect::<candle_core::Result<_>>()?;
    Ok(crate::exit::batch_exit(rule, &rows))
}

impl OpDef for EarlyExit {
    const MNEMONIC: &'static str = "early_exit";
    fn arity(&self) -> usize {
        self.layers.len()
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let rule = match self.rule {
            ExitRule::Entropy { threshold } => ("entropy", Attr::Float(threshold)),
            ExitRule::Patience { patience } => ("patience", Attr::Int(patience as i64)),
        };
        vec![rule, ("layers", Attr::Ints(self.layers.iter().map(|&l| l as i64).collect()))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        let rule = match (a.has("entropy"), a.has("patience")) {
            (true, false) => ExitRule::Entropy { threshold: a.float("entropy")? },
            (false, true) => ExitRule::Patience { patience: a.usize("patience")? },
            _ => return Err("early_exit needs exactly one of `entropy` or `patience`".into()),
        };
        Ok(EarlyExit { rule, layers: a.usizes("layers")? })
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        let first = x[0];
        if first.dtype != DType::F32 || first.rank() != 2 {
            return Err(format!("early_exit operands must be logits f32[batch, labels], got {first}"));
        }
        if let Some(t) = x.iter().find(|t| **t != first) {
            return Err(format!("early_exit operands differ: {first} vs {t}"));
        }
        let layers = &self.layers;
        if layers.len() < 2 || layers[0] == 0 || layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("early_exit layers must be at least two increasing layer counts >= 1, got {layers:?}"));
        }
        Ok(first.clone())
    }
    fn more_results(&self, first: &ValueType) -> Vec<ValueType> {
        vec![ValueType::new(DType::I64, vec![first.shape[0].clone()])]
    }
    fn eval(&self, _: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[exit_point(self.rule, x)?].clone())
    }
    fn eval_results(&self, _: &Weights, x: &[&Tensor]) -> Result<Vec<Tensor>, EvalError> {
        let j = exit_point(self.rule, x)?;
        let rows = x[0].dim(0)?;
        let layer = Tensor::from_vec(vec![self.layers[j] as i64; rows], rows, x[0].device())?;
        Ok(vec![x[j].clone(), layer])
    }
}
