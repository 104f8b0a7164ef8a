//! EBERT's per-input selection: `top_k` picks each row's units from predictor scores and `dyn_ffn` runs only
//! the FFN groups picked (`dyn_attention`, its attention half, is in `attention`); and the conventions the
//! `ebert` pass and the candle reference share.

use candle_core::{Device, Tensor};

use super::attr::{int, weight, Attr, AttrReader};
use super::def::{data, hidden, select, width, EvalError, Flops, OpDef};
use super::linear::{check_dense, linear};
use crate::types::{DType, Dim, ValueType};
use crate::weights::Weights;

/// Units (heads, FFN groups) EBERT's fused graph keeps per layer for a keep fraction: the nearest whole
/// number, at least one. The candle reference and the `ebert` pass both count with this.
pub fn kept_units(fraction: f64, units: usize) -> usize {
    ((fraction * units as f64).round() as usize).clamp(1, units.max(1))
}

/// BatchNorm epsilon of EBERT's predictors (PyTorch's default), used in training and when folding.
pub const PREDICTOR_BN_EPS: f64 = 1e-5;

/// Indices of the `k` largest entries of each row, largest first (ties: the lower index first), as ONNX
/// `TopK` gives them. Operand `f32[b, n]`, result `i64[b, k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    pub k: usize,
}

/// The FFN block `gelu(x·W1 + b1)·W2 + b2` running, for each row, only the `keep` groups of `F / groups`
/// consecutive neurons its second operand names (`i64[b, keep]`). Operands: x `f32[b, s, D]`, groups.
#[derive(Clone, Debug, PartialEq)]
pub struct DynFfn {
    pub inter: String,
    pub out: String,
    pub groups: usize,
    pub keep: usize,
}

impl OpDef for TopK {
    const MNEMONIC: &'static str = "top_k";
    fn arity(&self) -> usize {
        1
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("k", int(self.k))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(TopK { k: a.usize("k")? })
    }
    fn infer(&self, x: &[&ValueType], _: &Weights) -> Result<ValueType, String> {
        let (x, k) = (x[0], self.k);
        let n = hidden(x, "top_k input")?;
        if x.rank() != 2 || k == 0 || k > n {
            return Err(format!("top_k needs f32[b, n] with 1 <= k <= n, got k = {k} of {x}"));
        }
        Ok(ValueType::new(DType::I64, vec![x.shape[0].clone(), Dim::Known(k)]))
    }
    fn eval(&self, _: &Weights, a: &[&Tensor]) -> Result<Tensor, EvalError> {
        let x = a[0].to_vec2::<f32>()?;
        let mut out = vec![];
        for row in &x {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // Largest first; equal values keep index order (the sort is stable).
            order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
            out.extend(order[..self.k].iter().map(|&i| i as i64));
        }
        Ok(Tensor::from_vec(out, (x.len(), self.k), &Device::Cpu)?)
    }
}

impl OpDef for DynFfn {
    const MNEMONIC: &'static str = "dyn_ffn";
    fn arity(&self) -> usize {
        2
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![
            ("inter", weight(&self.inter)),
            ("out", weight(&self.out)),
            ("groups", int(self.groups)),
            ("keep", int(self.keep)),
        ]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(DynFfn {
            inter: a.weight("inter")?,
            out: a.weight("out")?,
            groups: a.usize("groups")?,
            keep: a.usize("keep")?,
        })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.inter, &self.out]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let (x, idx) = (x[0], x[1]);
        let d = hidden(x, "dyn_ffn input")?;
        let (inter, groups) = (&self.inter, self.groups);
        let f = match w.weight_type(&format!("{inter}.weight")).and_then(|t| t.known_dims()) {
            Some(dims) if dims.len() == 2 && dims[0] == d => dims[1],
            other => return Err(format!("weight @{inter}.weight must be f32[{d}, F], is {other:?}")),
        };
        if groups == 0 || f % groups != 0 {
            return Err(format!("dyn_ffn: {groups} groups do not divide {f} neurons"));
        }
        select(idx, x, self.keep, groups, "dyn_ffn groups")?;
        check_dense(w, inter, d, f)?;
        check_dense(w, &self.out, f, d)?;
        Ok(x.clone())
    }
    fn eval(&self, w: &Weights, a: &[&Tensor]) -> Result<Tensor, EvalError> {
        let idx = a[1].to_vec2::<i64>()?;
        let w1 = data(w, &format!("{}.weight", self.inter))?;
        let size = w1.dim(1)? / self.groups;
        let mut rows = vec![];
        for (r, chosen) in idx.iter().enumerate() {
            let cols: Vec<u32> =
                chosen.iter().flat_map(|&c| (c as usize * size..(c as usize + 1) * size).map(|i| i as u32)).collect();
            let cols = Tensor::new(cols.as_slice(), &Device::Cpu)?;
            let x = a[0].narrow(0, r, 1)?;
            let b1 = data(w, &format!("{}.bias", self.inter))?.index_select(&cols, 0)?;
            let h = linear(&x, &w1.index_select(&cols, 1)?, &b1)?;
            let w2 = data(w, &format!("{}.weight", self.out))?.index_select(&cols, 0)?;
            rows.push(linear(&h.gelu_erf()?, &w2, data(w, &format!("{}.bias", self.out))?)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }
    fn flops(&self, w: &Weights, ty: &ValueType, seq: u64) -> Flops {
        let f = w.get(&format!("{}.weight", self.inter)).and_then(|w| w.ty.known_dims()).map_or(0, |w| w[1]);
        let kept = (f / self.groups.max(1) * self.keep) as u64;
        Flops { total: 2 * seq * width(ty) * kept * 2, int8: 0 }
    }
}
