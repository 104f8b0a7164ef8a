//! `attention` (multi-head self-attention with its four projections) and `dyn_attention` (the same, running
//! for each row only the heads its third operand names: EBERT's per-input head selection).

use candle_core::{DType as CDType, Device, Tensor, D};

use super::attr::{int, weight, Attr, AttrReader};
use super::def::{data, hidden, select, width, EvalError, Flops, OpDef};
use super::linear::{check_dense, check_projection, eval_projection, linear, projection_macs};
use crate::types::{DType, ValueType};
use crate::weights::Weights;

/// Multi-head self-attention including its output projection (not the residual).
/// Operands: hidden states `f32[b, s, D]`, attention mask `i64[b, s]` (1 = attend).
/// Each projection's physical form is part of the op (`tiles`, printed when not all dense, checked by the
/// verifier against the weights): dense (`P.weight`, f32 or int8) or tiled (`P.tile{t}.*`, as a `tiled_linear`'s);
/// a single tile that keeps some input rows is a projection reading only those input features (TileSparsity
/// types 0 and 3). Scores are scaled by `1/sqrt(head_dim)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
    pub query: String,
    pub key: String,
    pub value: String,
    pub output: String,
    /// Tiles of the query, key, value and output projections: 0 = dense, 1 = one tile (the projection reads
    /// only the input rows it keeps), T = T tiles.
    pub tiles: [usize; 4],
}

impl Attention {
    /// A dense attention (every projection `P.weight`), as lowering from a checkpoint makes it.
    pub fn dense(heads: usize, head_dim: usize, [query, key, value, output]: [String; 4]) -> Self {
        Attention { heads, head_dim, query, key, value, output, tiles: [0; 4] }
    }

    /// The four projection groups with their tile counts, in order: query, key, value, output.
    pub fn projections(&self) -> [(&str, usize); 4] {
        let t = self.tiles;
        [(&self.query, t[0]), (&self.key, t[1]), (&self.value, t[2]), (&self.output, t[3])]
    }
}

/// `attention` that runs, for each row, only the `keep` heads its third operand names (`i64[b, keep]`): the
/// weights are the full `attention` ones; the lowering gathers each row's heads' slices and runs smaller
/// matmuls (EBERT's per-input head selection with a static shape).
#[derive(Clone, Debug, PartialEq)]
pub struct DynAttention {
    pub heads: usize,
    pub head_dim: usize,
    pub keep: usize,
    pub query: String,
    pub key: String,
    pub value: String,
    pub output: String,
}

/// The additive mask value for padding positions (what Hugging Face uses: the most negative f32).
pub const MASK_NEG: f32 = f32::MIN;

/// Numerically stable softmax over the last dim.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

impl OpDef for Attention {
    const MNEMONIC: &'static str = "attention";
    fn arity(&self) -> usize {
        2
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let mut a = vec![
            ("heads", int(self.heads)),
            ("head_dim", int(self.head_dim)),
            ("query", weight(&self.query)),
            ("key", weight(&self.key)),
            ("value", weight(&self.value)),
            ("output", weight(&self.output)),
        ];
        if self.tiles != [0; 4] {
            a.push(("tiles", Attr::Ints(self.tiles.iter().map(|&t| t as i64).collect())));
        }
        a
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        let tiles = match a.has("tiles") {
            false => [0; 4],
            true => a.usizes("tiles")?.try_into().map_err(|t: Vec<usize>| {
                format!("attribute `tiles` lists the query, key, value and output projections: 4 counts, got {t:?}")
            })?,
        };
        Ok(Attention {
            heads: a.usize("heads")?,
            head_dim: a.usize("head_dim")?,
            query: a.weight("query")?,
            key: a.weight("key")?,
            value: a.weight("value")?,
            output: a.weight("output")?,
            tiles,
        })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.query, &self.key, &self.value, &self.output]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let p = self.projections();
        let projection = |i: usize, k: usize, n: usize| check_projection(w, p[i].0, p[i].1, k, n);
        check(x[0], x[1], self.heads, self.head_dim, "attention", &projection)?;
        Ok(x[0].clone())
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        let groups = self.projections();
        let project = |i: usize, x: &Tensor| eval_projection(w, x, groups[i].0, groups[i].1);
        attend(x[0], x[1], &project, self.heads, self.head_dim)
    }
    /// Q, K, V and output projections (dense or tiled), then scores and context.
    fn flops(&self, w: &Weights, ty: &ValueType, seq: u64) -> Flops {
        let d = width(ty) as usize;
        let inner = self.heads * self.head_dim;
        let shapes = [(d, inner), (d, inner), (d, inner), (inner, d)];
        let (mut total, mut int8) = (2 * seq * seq * inner as u64 * 2, 0);
        for ((p, tiles), (k, n)) in self.projections().into_iter().zip(shapes) {
            let (macs, q) = projection_macs(w, p, tiles, k, n);
            total += 2 * seq * macs;
            int8 += if q { 2 * seq * macs } else { 0 };
        }
        Flops { total, int8 }
    }
}

impl OpDef for DynAttention {
    const MNEMONIC: &'static str = "dyn_attention";
    fn arity(&self) -> usize {
        3
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![
            ("heads", int(self.heads)),
            ("head_dim", int(self.head_dim)),
            ("keep", int(self.keep)),
            ("query", weight(&self.query)),
            ("key", weight(&self.key)),
            ("value", weight(&self.value)),
            ("output", weight(&self.output)),
        ]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(DynAttention {
            heads: a.usize("heads")?,
            head_dim: a.usize("head_dim")?,
            keep: a.usize("keep")?,
            query: a.weight("query")?,
            key: a.weight("key")?,
            value: a.weight("value")?,
            output: a.weight("output")?,
        })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.query, &self.key, &self.value, &self.output]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let p = [&self.query, &self.key, &self.value, &self.output];
        check(x[0], x[1], self.heads, self.head_dim, "dyn_attention", &|i, k, n| check_dense(w, p[i], k, n))?;
        select(x[2], x[0], self.keep, self.heads, "dyn_attention heads")?;
        Ok(x[0].clone())
    }
    /// Row by row: slice the chosen heads' columns of Q, K, V and rows of the output projection.
    fn eval(&self, w: &Weights, a: &[&Tensor]) -> Result<Tensor, EvalError> {
        let hd = self.head_dim;
        let idx = a[2].to_vec2::<i64>()?;
        let mut rows = vec![];
        for (r, chosen) in idx.iter().enumerate() {
            let cols: Vec<u32> =
                chosen.iter().flat_map(|&h| (h as usize * hd..(h as usize + 1) * hd).map(|c| c as u32)).collect();
            let cols = Tensor::new(cols.as_slice(), &Device::Cpu)?;
            let proj = |p: &str| -> Result<(Tensor, Tensor), EvalError> {
                Ok((
                    data(w, &format!("{p}.weight"))?.index_select(&cols, 1)?,
                    data(w, &format!("{p}.bias"))?.index_select(&cols, 0)?,
                ))
            };
            let out = (
                data(w, &format!("{}.weight", self.output))?.index_select(&cols, 0)?,
                data(w, &format!("{}.bias", self.output))?.clone(),
            );
            let ws = [proj(&self.query)?, proj(&self.key)?, proj(&self.value)?, out];
            let (x, m) = (a[0].narrow(0, r, 1)?, a[1].narrow(0, r, 1)?);
            let dense = |i: usize, x: &Tensor| Ok(linear(x, &ws[i].0, &ws[i].1)?);
            rows.push(attend(&x, &m, &dense, chosen.len(), hd)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }
    /// As `attention`, for the kept heads only (the gathers move weights but do no arithmetic).
    fn flops(&self, _w: &Weights, ty: &ValueType, seq: u64) -> Flops {
        let inner = (self.keep * self.head_dim) as u64;
        Flops { total: 2 * seq * width(ty) * inner * 4 + 2 * seq * seq * inner * 2, int8: 0 }
    }
}

/// What `attention` and `dyn_attention` share: the input, the mask and the four projections' weights, checked
/// by `projection(i, k, n)` for projection i (query, key, value, output) of shape k -> n.
fn check(
    x: &ValueType,
    mask: &ValueType,
    heads: usize,
    head_dim: usize,
    what: &str,
    projection: &dyn Fn(usize, usize, usize) -> Result<(), String>,
) -> Result<(), String> {
    let d = hidden(x, &format!("{what} input"))?;
    if mask.dtype != DType::I64 || mask.rank() != 2 || mask.shape[..] != x.shape[..2] {
        return Err(format!("{what} mask must be i64[{}, {}], got {mask}", x.shape[0], x.shape[1]));
    }
    if heads == 0 || head_dim == 0 {
        return Err(format!("{what} needs heads >= 1 and head_dim >= 1 (got {heads} x {head_dim})"));
    }
    let inner = heads * head_dim;
    projection(0, d, inner)?;
    projection(1, d, inner)?;
    projection(2, d, inner)?;
    projection(3, inner, d)
}

/// Projection `i` (0..4: query, key, value, output) of an attention applied to a value.
type Project<'a> = dyn Fn(usize, &Tensor) -> Result<Tensor, EvalError> + 'a;

/// Multi-head attention; `proj(i, x)` applies projection i (query, key, value, output).
fn attend(x: &Tensor, mask: &Tensor, proj: &Project, heads: usize, hd: usize) -> Result<Tensor, EvalError> {
    let (b, s, _) = x.dims3()?;
    let split =
        |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((b, s, heads, hd))?.transpose(1, 2)?.contiguous() };
    let q = split(proj(0, x)?)?;
    let k = split(proj(1, x)?)?;
    let v = split(proj(2, x)?)?;
    let scores = (q.matmul(&k.t()?.contiguous()?)? / (hd as f64).sqrt())?;
    // (1 - mask) * MASK_NEG, broadcast over heads and query positions.
    let add = ((1.0 - mask.to_dtype(CDType::F32)?)? * MASK_NEG as f64)?.reshape((b, 1, 1, s))?;
    let p = softmax(&scores.broadcast_add(&add)?)?;
    let ctx = p.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, s, heads * hd))?;
    proj(3, &ctx)
}
