//! `linear`, `tiled_linear` and `add_bias`, and the physical forms of a parameter group they share with the
//! attention projections: dense (`P.weight`), int8 (`P.weight: i8` with `P.scale`, see `quant`) or tiled
//! (`P.tile{t}.*`, with an optional `P.cols`).

use candle_core::Tensor;

use super::attr::{int, weight, Attr, AttrReader};
use super::def::{data, expect, hidden, rows, EvalError, Flops, OpDef};
use crate::types::{DType, Dim, ValueType};
use crate::weights::Weights;

/// `x·W + b` over the last dim. Operand: x.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub w: String,
    pub k: usize,
    pub n: usize,
}

/// A linear whose weight is pruned tile-wise along K: the N outputs are cut into `tiles` consecutive tiles,
/// and tile `t` reads only its own input features. Weights: `P.tile{t}.rows: i64[r_t]` (the kept K indices,
/// ascending), `P.tile{t}.weight: f32[r_t, n_t]` (the tiles' widths sum to N) and `P.bias: f32[N]`.
/// `y[.., tile t] = x[.., rows_t] · W_t`, concatenated over t, plus b: each tile is a small dense GEMM.
/// With `P.cols` (see `cols_name`) the tiles cover only those output columns; the others are b alone.
#[derive(Clone, Debug, PartialEq)]
pub struct TiledLinear {
    pub w: String,
    pub k: usize,
    pub n: usize,
    pub tiles: usize,
}

/// `x + b` with `b: f32[D]` broadcast over the last dim (what is left of a block whose units are all pruned).
#[derive(Clone, Debug, PartialEq)]
pub struct AddBias {
    pub bias: String,
}

/// The weight names of tile `t` of a tiled linear with parameter group `p`: (kept rows, weight).
pub fn tile_names(p: &str, t: usize) -> (String, String) {
    (format!("{p}.tile{t}.rows"), format!("{p}.tile{t}.weight"))
}

/// The optional output-column map of a tiled group `p` (TileSparsity type 8): `P.cols: i64[m]`, ascending, the
/// output columns the tiles produce, in order (their widths sum to m). Columns not listed are dropped: they
/// get the bias alone, which is what a zeroed weight column computes.
pub fn cols_name(p: &str) -> String {
    format!("{p}.cols")
}

/// How many tiles group `p`'s weights hold: 0 when dense (`P.weight`), else T (`P.tile{0..T}.rows` and
/// `.weight`, as a `tiled_linear`'s). An `attention` declares each projection's count (`Attention::tiles`); the
/// verifier checks it against this.
pub fn tile_count(has: impl Fn(&str) -> bool, p: &str) -> usize {
    (0..).take_while(|&t| has(&tile_names(p, t).1)).count()
}

/// `x·W + b` over the last dim of x, any rank.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows = x.elem_count() / k.max(1);
    let y = x.reshape((rows, k))?.matmul(w)?.broadcast_add(b)?;
    let mut out = dims;
    *out.last_mut().expect("rank >= 1") = w.dim(1)?;
    y.reshape(out)
}

impl OpDef for Linear {
    const MNEMONIC: &'static str = "linear";
    fn arity(&self) -> usize {
        1
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("w", weight(&self.w)), ("k", int(self.k)), ("n", int(self.n))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(Linear { w: a.weight("w")?, k: a.usize("k")?, n: a.usize("n")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.w]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let (k, n) = (self.k, self.n);
        if hidden(x[0], "linear input")? != k {
            return Err(format!("linear k = {k} but its input is {}", x[0]));
        }
        check_dense(w, &self.w, k, n)?;
        Ok(x[0].with_last(Dim::Known(n)))
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        eval_dense(w, x[0], &self.w)
    }
    fn flops(&self, w: &Weights, ty: &ValueType, seq: u64) -> Flops {
        let total = 2 * rows(ty, seq) * (self.k * self.n) as u64;
        Flops { total, int8: if quantized(w, &self.w) { total } else { 0 } }
    }
}

impl OpDef for TiledLinear {
    const MNEMONIC: &'static str = "tiled_linear";
    fn arity(&self) -> usize {
        1
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("w", weight(&self.w)), ("k", int(self.k)), ("n", int(self.n)), ("tiles", int(self.tiles))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(TiledLinear { w: a.weight("w")?, k: a.usize("k")?, n: a.usize("n")?, tiles: a.usize("tiles")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.w]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        let (k, n, tiles) = (self.k, self.n, self.tiles);
        if hidden(x[0], "tiled_linear input")? != k {
            return Err(format!("tiled_linear k = {k} but its input is {}", x[0]));
        }
        if tiles == 0 {
            return Err("tiled_linear needs at least one tile".into());
        }
        check_tiled(w, &self.w, k, n, tiles)?;
        expect(w, &format!("{}.bias", self.w), &[n])?;
        Ok(x[0].with_last(Dim::Known(n)))
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        eval_tiled(w, x[0], &self.w, self.tiles)
    }
    fn flops(&self, w: &Weights, ty: &ValueType, seq: u64) -> Flops {
        let total = 2 * rows(ty, seq) * tiled_macs(w, &self.w, self.tiles);
        Flops { total, int8: if tiles_quantized(w, &self.w) { total } else { 0 } }
    }
}

impl OpDef for AddBias {
    const MNEMONIC: &'static str = "add_bias";
    fn arity(&self) -> usize {
        1
    }
    fn attrs(&self) -> Vec<(&'static str, Attr)> {
        vec![("bias", weight(&self.bias))]
    }
    fn parse(a: &mut AttrReader) -> Result<Self, String> {
        Ok(AddBias { bias: a.weight("bias")? })
    }
    fn weight_refs(&self) -> Vec<&str> {
        vec![&self.bias]
    }
    fn infer(&self, x: &[&ValueType], w: &Weights) -> Result<ValueType, String> {
        expect(w, &self.bias, &[hidden(x[0], "add_bias input")?])?;
        Ok(x[0].clone())
    }
    fn eval(&self, w: &Weights, x: &[&Tensor]) -> Result<Tensor, EvalError> {
        Ok(x[0].broadcast_add(data(w, &self.bias)?)?)
    }
}

/// Whether group `p` is int8.
fn quantized(w: &Weights, p: &str) -> bool {
    crate::quant::is_quantized(|x| w.has(x), p)
}

/// The parameter group of tile `t` of group `p` (`P.tile{t}`: its `weight`, and `weight_scale` when int8).
pub fn tile_group(p: &str, t: usize) -> String {
    format!("{p}.tile{t}")
}

/// Whether the tiles of group `p` are int8 (`quant` quantizes all of a group's tiles or none; the verifier checks
/// each tile's weight against its scale).
pub fn tiles_quantized(w: &Weights, p: &str) -> bool {
    quantized(w, &tile_group(p, 0))
}

/// A dense group `p`, `k -> n`: f32 or int8 weight (its scale is checked by the verifier), f32 bias.
pub fn check_dense(w: &Weights, p: &str, k: usize, n: usize) -> Result<(), String> {
    let name = format!("{p}.weight");
    match w.weight_type(&name) {
        Some(t) if t.dtype == DType::I8 && *t == ValueType::known(DType::I8, &[k, n]) => {}
        _ => expect(w, &name, &[k, n])?,
    }
    expect(w, &format!("{p}.bias"), &[n])
}

/// The tiles of a tiled group `p` (K×N in all): each `P.tile{t}.rows: i64[r]` with `r <= k` and
/// `P.tile{t}.weight: f32[r, n_t]`, the widths summing to N (or to the columns `P.cols` lists).
fn check_tiled(w: &Weights, p: &str, k: usize, n: usize, tiles: usize) -> Result<(), String> {
    let mut width = 0;
    for t in 0..tiles {
        let (rows, weight) = tile_names(p, t);
        let r = match w.weight_type(&rows) {
            Some(ty) if ty.dtype == DType::I64 && ty.rank() == 1 => ty.known_dims().map_or(0, |d| d[0]),
            Some(ty) => return Err(format!("weight @{rows} must be i64[rows], is {ty}")),
            None => return Err(format!("weight @{rows} does not exist")),
        };
        match w.weight_type(&weight).and_then(|ty| ty.known_dims()) {
            Some(d) if d.len() == 2 && d[0] == r => width += d[1],
            Some(d) => return Err(format!("weight @{weight} is {d:?}, expected [{r}, tile width]")),
            None => return Err(format!("weight @{weight} does not exist")),
        }
        if r > k {
            return Err(format!("tile {t} of @{p} keeps {r} rows of k = {k}"));
        }
        if quantized(w, &tile_group(p, t)) != tiles_quantized(w, p) {
            return Err(format!("tile {t} of @{p} and tile 0 differ in being int8: quantize all of a group's tiles"));
        }
    }
    let cols = cols_name(p);
    let covered = match w.weight_type(&cols) {
        None => n,
        Some(ty) if ty.dtype == DType::I64 && ty.rank() == 1 => match ty.known_dims() {
            Some(d) if d[0] >= 1 && d[0] <= n => d[0],
            _ => return Err(format!("weight @{cols} is {ty}: it lists between 1 and n = {n} output columns")),
        },
        Some(ty) => return Err(format!("weight @{cols} must be i64[columns], is {ty}")),
    };
    if width != covered {
        return Err(format!("the tiles of @{p} are {width} wide in all, but they cover {covered} columns"));
    }
    Ok(())
}

/// An attention projection group `p`, `k -> n`, in the form its op declares: dense (f32 or int8) when `tiles` is
/// 0, else exactly `tiles` tiles.
pub fn check_projection(w: &Weights, p: &str, tiles: usize, k: usize, n: usize) -> Result<(), String> {
    let stored = tile_count(|x| w.has(x), p);
    if stored != tiles {
        let form = |t: usize| if t == 0 { "dense".to_string() } else { format!("{t} tile(s)") };
        return Err(format!("@{p} is declared {} but its weights hold {}", form(tiles), form(stored)));
    }
    match tiles {
        0 => check_dense(w, p, k, n),
        tiles => {
            if w.has(&format!("{p}.weight")) {
                return Err(format!("@{p} is both dense (@{p}.weight) and tiled"));
            }
            check_tiled(w, p, k, n, tiles)?;
            expect(w, &format!("{p}.bias"), &[n])
        }
    }
}

/// How group `p`'s input is quantized: calibrated constants when `P.input_qparams` exists, else per call.
pub fn activation(w: &Weights, p: &str) -> Result<crate::quant::Activation, EvalError> {
    Ok(crate::quant::Activation::of(w.tensor(&crate::quant::input_params_name(p)))?)
}

/// A dense group applied to `x` (int8 groups compute what `quant::qlinear` says).
pub fn eval_dense(w: &Weights, x: &Tensor, p: &str) -> Result<Tensor, EvalError> {
    crate::observe::observe(p, x)?;
    let (weight, bias) = (data(w, &format!("{p}.weight"))?, data(w, &format!("{p}.bias"))?);
    if quantized(w, p) {
        let scale = data(w, &crate::quant::scale_name(p))?;
        return Ok(crate::quant::qlinear(x, weight, scale, bias, 1.0, activation(w, p)?)?);
    }
    Ok(linear(x, weight, bias)?)
}

/// A tiled group applied to `x`: per tile, the kept input features times the tile's weight; tiles
/// concatenated (scattered into the listed columns when `P.cols` exists), plus bias.
fn eval_tiled(w: &Weights, x: &Tensor, p: &str, tiles: usize) -> Result<Tensor, EvalError> {
    crate::observe::observe(p, x)?;
    let last = x.rank() - 1;
    let mut parts = vec![];
    if tiles_quantized(w, p) {
        let mut int8 = vec![];
        for t in 0..tiles {
            let (rows, weight_name) = tile_names(p, t);
            let scale = crate::quant::scale_name(&tile_group(p, t));
            int8.push((data(w, &rows)?, data(w, &weight_name)?, data(w, &scale)?));
        }
        parts = crate::quant::qtiles(x, &int8, activation(w, p)?)?;
    } else {
        for t in 0..tiles {
            let (rows, weight_name) = tile_names(p, t);
            let idx = data(w, &rows)?.to_dtype(candle_core::DType::U32)?;
            let xt = x.index_select(&idx, last)?.contiguous()?;
            parts.push(xt.broadcast_matmul(data(w, &weight_name)?)?);
        }
    }
    let bias = data(w, &format!("{p}.bias"))?;
    let y = Tensor::cat(&parts, last)?;
    let y = match w.tensor(&cols_name(p)) {
        // Type 8: the tiles produce only the listed columns; scatter them into zeros.
        Some(cols) => {
            let mut dims = y.dims().to_vec();
            dims[last] = bias.dim(0)?;
            let zeros = Tensor::zeros(dims, y.dtype(), y.device())?;
            zeros.index_add(&cols.to_dtype(candle_core::DType::U32)?, &y.contiguous()?, last)?
        }
        None => y,
    };
    Ok(y.broadcast_add(bias)?)
}

/// An attention projection group applied to `x`: dense, or its `tiles` tiles.
pub fn eval_projection(w: &Weights, x: &Tensor, p: &str, tiles: usize) -> Result<Tensor, EvalError> {
    match tiles {
        0 => eval_dense(w, x, p),
        tiles => eval_tiled(w, x, p, tiles),
    }
}

/// Multiply-accumulates per token of a tiled group: per tile, kept rows x tile width.
fn tiled_macs(w: &Weights, p: &str, tiles: usize) -> u64 {
    (0..tiles).filter_map(|t| w.get(&tile_names(p, t).1)?.ty.known_dims()).map(|d| (d[0] * d[1]) as u64).sum()
}

/// Multiply-accumulates per token of an attention projection `k -> n`, dense or in `tiles` tiles, and whether
/// they run as int8.
pub fn projection_macs(w: &Weights, p: &str, tiles: usize, k: usize, n: usize) -> (u64, bool) {
    match tiles {
        0 => ((k * n) as u64, quantized(w, p)),
        tiles => (tiled_macs(w, p, tiles), tiles_quantized(w, p)),
    }
}
