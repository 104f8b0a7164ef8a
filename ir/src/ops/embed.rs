//! `embed`: word + position + token-type embeddings, then LayerNorm.

use candle_core::Tensor;

use super::attr::{int, weight, Attr, AttrReader};
use super::def::{data, norm, EvalError, OpDef};
use super::norm::eval_norm;
use crate::types::{DType, Dim, ValueType};
use crate::weights::Weights;

/// Word + position + token-type embeddings, then LayerNorm. Operands: ids, token_type_ids.
/// Positions are `position_offset + 0..seq` (RoBERTa: padding_idx + 1). An int8 word table (`quant`'s row
/// scales beside it) is dequantized row by row.
#[derive(Clone, Debug, PartialEq)]
pub struct Embed {
    pub word: String,
    pub position: String,
    pub token_type: String,
    pub ln: String,
    pub eps: f32,
    pub position_offset: usize,
}

impl OpDef for Embed {
    const MNEMONIC: &'static str = "embed";
    fn arity(&self) -> usize {
        2
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![
            ("word", weight(&self.word)),
            ("position", weight(&self.position)),
            ("token_type", weight(&self.token_type)),
            ("ln", weight(&self.ln)),
            ("eps", Attr::Float(self.eps)),
            ("position_offset", int(self.position_offset)),
        ]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(Embed {
            word: a.weight("word")?,
            position: a.weight("position")?,
            token_type: a.weight("token_type")?,
            ln: a.weight("ln")?,
            eps: a.float("eps")?,
            position_offset: a.usize("position_offset")?,
        })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.word, &self.position, &self.token_type, &self.ln]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let (ids, tt) = (x[0], x[1]);
        for (what, t) in [("ids", ids), ("token_type_ids", tt)] {
            if t.dtype != DType::I64 || t.rank() != 2 {
                return Err(format!("embed {what} must be i64[batch, seq], got {t}"));
            }
        }
        if ids.shape != tt.shape {
            return Err(format!("embed ids {ids} and token_type_ids {tt} differ in shape"));
        }
        let table = |name: &str| -> Result<(usize, usize), String> {
            match w.weight_type(name).and_then(|t| t.known_dims()) {
                Some(d) if d.len() == 2 => Ok((d[0], d[1])),
                Some(d) => Err(format!("embedding table @{name} must be 2-D, is {d:?}")),
                None => Err(format!("weight @{name} does not exist")),
            }
        };
        let (_, d) = table(&self.word)?;
        let (rows, dp) = table(&self.position)?;
        let (_, dt) = table(&self.token_type)?;
        if dp != d || dt != d {
            return Err(format!("embedding widths differ: word {d}, position {dp}, token_type {dt}"));
        }
        if let Some(s) = ids.shape[1].known() {
            if self.position_offset + s > rows {
                return Err(format!("sequence {s} + offset {} exceeds {rows} positions", self.position_offset));
            }
        }
        norm(w, &self.ln, d)?;
        Ok(ValueType::new(DType::F32, vec![ids.shape[0].clone(), ids.shape[1].clone(), Dim::Known(d)]))
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        let (ids, tt) = (x[0], x[1]);
        let (b, s) = ids.dims2()?;
        let gather = |table: &Tensor, idx: &Tensor| -> candle_core::Result<Tensor> {
            table.index_select(&idx.flatten_all()?, 0)?.reshape((b, s, table.dim(1)?))
        };
        let we = match w.tensor(&crate::quant::row_scale_name(&self.word)) {
            Some(scale) => gather(&crate::quant::dequantize_rows(data(w, &self.word)?, scale)?, ids)?,
            None => gather(data(w, &self.word)?, ids)?,
        };
        let te = gather(data(w, &self.token_type)?, tt)?;
        let pe = data(w, &self.position)?.narrow(0, self.position_offset, s)?;
        eval_norm(w, &(we + te)?.broadcast_add(&pe)?, &self.ln, self.eps)
    }
}
