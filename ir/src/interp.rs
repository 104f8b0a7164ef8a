//! The reference interpreter: executes any verified IR graph with candle tensor ops, op by op, as plainly as
//! possible. It is the ground truth that passes and the ONNX lowering are compared against.

use std::collections::HashMap;

use candle_core::{DType as CDType, Device, Tensor, D};

use crate::graph::Graph;
use crate::op::Op;
use crate::types::{DType, Dim};

#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("input `{name}`: expected {expected}, got dtype {dtype:?} dims {dims:?}")]
    BadInput { name: String, expected: String, dtype: CDType, dims: Vec<usize> },
    #[error("weight @{0} has no data (a graph parsed from text must have its weights attached)")]
    NoData(String),
    #[error("{0}")]
    Graph(String),
    #[error("at `{op}`: {source}")]
    Candle { op: String, source: candle_core::Error },
}

/// Run the graph on named inputs (i64 tensors for ids and masks). Returns the outputs in declaration order.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, InterpError> {
    let order = g.topo_order().map_err(InterpError::Graph)?;
    let mut vals: HashMap<petgraph::stable_graph::NodeIndex, Tensor> = HashMap::new();
    let mut syms: HashMap<String, usize> = HashMap::new();
    for n in order {
        let node = &g.dag[n];
        let args: Vec<&Tensor> = g.operands(n).iter().map(|o| &vals[o]).collect();
        let out = match &node.op {
            Op::Input { name } => {
                let t = inputs.get(name).ok_or_else(|| InterpError::MissingInput(name.clone()))?;
                check_input(name, t, &node.ty, &mut syms)?;
                t.clone()
            }
            Op::ExitLayer => {
                let e = g.operands(n)[0];
                let Op::EarlyExit { rule, layers } = &g.dag[e].op else {
                    return Err(InterpError::Graph("exit_layer's operand is not an early_exit".into()));
                };
                let exits: Vec<&Tensor> = g.operands(e).iter().map(|o| &vals[o]).collect();
                let j = exit_point(*rule, &exits)
                    .map_err(|source| InterpError::Candle { op: "exit_layer".into(), source })?;
                let rows = exits[0].dim(0).map_err(|source| InterpError::Candle { op: "exit_layer".into(), source })?;
                Tensor::from_vec(vec![layers[j] as i64; rows], rows, &Device::Cpu)
                    .map_err(|source| InterpError::Candle { op: "exit_layer".into(), source })?
            }
            op => eval_op(g, op, &args)?,
        };
        vals.insert(n, out);
    }
    Ok(g.outputs.iter().map(|(name, n)| (name.clone(), vals[n].clone())).collect())
}

fn check_input(
    name: &str,
    t: &Tensor,
    ty: &crate::types::ValueType,
    syms: &mut HashMap<String, usize>,
) -> Result<(), InterpError> {
    let want_dtype = match ty.dtype {
        DType::F32 => CDType::F32,
        DType::I64 => CDType::I64,
        DType::I8 => return Err(InterpError::Graph(format!("input {name} is i8: only weights are"))),
    };
    let bad = || InterpError::BadInput {
        name: name.into(),
        expected: ty.to_string(),
        dtype: t.dtype(),
        dims: t.dims().to_vec(),
    };
    if t.dtype() != want_dtype || t.rank() != ty.rank() {
        return Err(bad());
    }
    for (d, &actual) in ty.shape.iter().zip(t.dims()) {
        match d {
            Dim::Known(k) if *k != actual => return Err(bad()),
            Dim::Sym(s) if *syms.entry(s.clone()).or_insert(actual) != actual => return Err(bad()),
            _ => {}
        }
    }
    Ok(())
}

enum Fail {
    Candle(candle_core::Error),
    Other(InterpError),
}

impl From<candle_core::Error> for Fail {
    fn from(e: candle_core::Error) -> Self {
        Fail::Candle(e)
    }
}

fn weight<'a>(g: &'a Graph, name: &str) -> Result<&'a Tensor, Fail> {
    g.weights.tensor(name).ok_or_else(|| Fail::Other(InterpError::NoData(name.to_string())))
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

/// LayerNorm over the last dim.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps as f64)?.sqrt()?)?;
    y.broadcast_mul(w)?.broadcast_add(b)
}

/// Numerically stable softmax over the last dim.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The additive mask value for padding positions (what Hugging Face uses: the most negative f32).
pub const MASK_NEG: f32 = f32::MIN;

fn lin(g: &Graph, x: &Tensor, p: &str) -> Result<Tensor, Fail> {
    let (w, b) = (weight(g, &format!("{p}.weight"))?, weight(g, &format!("{p}.bias"))?);
    if crate::quant::is_quantized(|n| g.weights.0.contains_key(n), p) {
        return Ok(crate::quant::qlinear(x, w, weight(g, &crate::quant::scale_name(p))?, b, 1.0)?);
    }
    Ok(linear(x, w, b)?)
}

/// Evaluate one op on operand values (used by constant folding).
pub fn eval_op(g: &Graph, op: &Op, a: &[&Tensor]) -> Result<Tensor, InterpError> {
    if matches!(op, Op::Input { .. }) {
        return Err(InterpError::Graph("an input has no value to evaluate".into()));
    }
    eval(g, op, a).map_err(|e| match e {
        Fail::Candle(source) => InterpError::Candle { op: op.mnemonic().into(), source },
        Fail::Other(e) => e,
    })
}

fn eval(g: &Graph, op: &Op, a: &[&Tensor]) -> Result<Tensor, Fail> {
    Ok(match op {
        Op::Input { .. } => unreachable!("inputs are bound before eval"),
        Op::Const { weight: w } => weight(g, w)?.clone(),
        Op::Embed { word, position, token_type, ln, eps, position_offset } => {
            let (ids, tt) = (a[0], a[1]);
            let (b, s) = ids.dims2()?;
            let gather = |table: &Tensor, idx: &Tensor| -> candle_core::Result<Tensor> {
                table.index_select(&idx.flatten_all()?, 0)?.reshape((b, s, table.dim(1)?))
            };
            let we = match g.weights.tensor(&crate::quant::row_scale_name(word)) {
                Some(scale) => gather(&crate::quant::dequantize_rows(weight(g, word)?, scale)?, ids)?,
                None => gather(weight(g, word)?, ids)?,
            };
            let te = gather(weight(g, token_type)?, tt)?;
            let pe = weight(g, position)?.narrow(0, *position_offset, s)?;
            let x = (we + te)?.broadcast_add(&pe)?;
            layer_norm(&x, weight(g, &format!("{ln}.weight"))?, weight(g, &format!("{ln}.bias"))?, *eps)?
        }
        Op::Attention { heads, head_dim, query, key, value, output } => {
            let names = [query, key, value, output];
            attention(a[0], a[1], &|i, x| projection(g, x, names[i]), *heads, *head_dim)?
        }
        Op::DynAttention { head_dim, query, key, value, output, .. } => {
            // Row by row: slice the chosen heads' columns of Q, K, V and rows of the output projection.
            let idx = a[2].to_vec2::<i64>()?;
            let mut rows = vec![];
            for (r, chosen) in idx.iter().enumerate() {
                let cols: Vec<u32> = chosen
                    .iter()
                    .flat_map(|&h| (h as usize * head_dim..(h as usize + 1) * head_dim).map(|c| c as u32))
                    .collect();
                let cols = Tensor::new(cols.as_slice(), &Device::Cpu)?;
                let proj = |p: &str| -> Result<(Tensor, Tensor), Fail> {
                    Ok((
                        weight(g, &format!("{p}.weight"))?.index_select(&cols, 1)?,
                        weight(g, &format!("{p}.bias"))?.index_select(&cols, 0)?,
                    ))
                };
                let out = (
                    weight(g, &format!("{output}.weight"))?.index_select(&cols, 0)?,
                    weight(g, &format!("{output}.bias"))?.clone(),
                );
                let ws = [proj(query)?, proj(key)?, proj(value)?, out];
                let (x, m) = (a[0].narrow(0, r, 1)?, a[1].narrow(0, r, 1)?);
                let dense = |i: usize, x: &Tensor| Ok(linear(x, &ws[i].0, &ws[i].1)?);
                rows.push(attention(&x, &m, &dense, chosen.len(), *head_dim)?);
            }
            Tensor::cat(&rows, 0)?
        }
        Op::DynFfn { inter, out, groups, .. } => {
            let idx = a[1].to_vec2::<i64>()?;
            let w1 = weight(g, &format!("{inter}.weight"))?;
            let size = w1.dim(1)? / groups;
            let mut rows = vec![];
            for (r, chosen) in idx.iter().enumerate() {
                let cols: Vec<u32> = chosen
                    .iter()
                    .flat_map(|&c| (c as usize * size..(c as usize + 1) * size).map(|i| i as u32))
                    .collect();
                let cols = Tensor::new(cols.as_slice(), &Device::Cpu)?;
                let x = a[0].narrow(0, r, 1)?;
                let h = linear(
                    &x,
                    &w1.index_select(&cols, 1)?,
                    &weight(g, &format!("{inter}.bias"))?.index_select(&cols, 0)?,
                )?;
                let w2 = weight(g, &format!("{out}.weight"))?.index_select(&cols, 0)?;
                rows.push(linear(&h.gelu_erf()?, &w2, weight(g, &format!("{out}.bias"))?)?);
            }
            Tensor::cat(&rows, 0)?
        }
        Op::Relu => a[0].relu()?,
        Op::MaskedMean => {
            let m = a[1].to_dtype(CDType::F32)?.unsqueeze(2)?;
            let sum = a[0].broadcast_mul(&m)?.sum(1)?;
            let count = m.sum(1)?.maximum(1f64)?;
            sum.broadcast_div(&count)?
        }
        Op::TopK { k } => {
            let x = a[0].to_vec2::<f32>()?;
            let mut out = vec![];
            for row in &x {
                let mut order: Vec<usize> = (0..row.len()).collect();
                // Largest first; equal values keep index order (the sort is stable).
                order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
                out.extend(order[..*k].iter().map(|&i| i as i64));
            }
            Tensor::from_vec(out, (x.len(), *k), &Device::Cpu)?
        }
        Op::AddNorm { ln, eps } => {
            let x = (a[0] + a[1])?;
            layer_norm(&x, weight(g, &format!("{ln}.weight"))?, weight(g, &format!("{ln}.bias"))?, *eps)?
        }
        Op::LayerNorm { ln, eps } => {
            layer_norm(a[0], weight(g, &format!("{ln}.weight"))?, weight(g, &format!("{ln}.bias"))?, *eps)?
        }
        Op::AddBias { bias } => a[0].broadcast_add(weight(g, bias)?)?,
        Op::Linear { w, .. } => lin(g, a[0], w)?,
        Op::TiledLinear { w, tiles, .. } => tiled(g, a[0], w, *tiles)?,
        Op::Gelu => a[0].gelu_erf()?,
        Op::Tanh => a[0].tanh()?,
        Op::Add => (a[0] + a[1])?,
        Op::TakeCls => a[0].narrow(1, 0, 1)?.squeeze(1)?,
        Op::EarlyExit { rule, .. } => a[exit_point(*rule, a)?].clone(),
        Op::ExitLayer => return Err(Fail::Other(InterpError::Graph("exit_layer is evaluated by `run`".into()))),
    })
}

/// Multi-head attention with projections `ws` = [query, key, value, output] as (K×N weight, bias) pairs.
/// Projection `i` (0..4: query, key, value, output) of an attention applied to a value.
type Project<'a> = dyn Fn(usize, &Tensor) -> Result<Tensor, Fail> + 'a;

/// A tiled linear: per tile, the kept input features times the tile's weight; tiles concatenated, plus bias.
fn tiled(g: &Graph, x: &Tensor, w: &str, tiles: usize) -> Result<Tensor, Fail> {
    let last = x.rank() - 1;
    let mut parts = vec![];
    for t in 0..tiles {
        let (rows, weight_name) = crate::op::tile_names(w, t);
        let idx = weight(g, &rows)?.to_dtype(candle_core::DType::U32)?;
        let xt = x.index_select(&idx, last)?.contiguous()?;
        parts.push(xt.broadcast_matmul(weight(g, &weight_name)?)?);
    }
    let bias = weight(g, &format!("{w}.bias"))?;
    let y = Tensor::cat(&parts, last)?;
    let y = match g.weights.tensor(&crate::op::cols_name(w)) {
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

/// An attention projection group: dense or tiled (by weight presence, see `op::tile_count`).
fn projection(g: &Graph, x: &Tensor, p: &str) -> Result<Tensor, Fail> {
    match crate::op::tile_count(|n| g.weights.0.contains_key(n), p) {
        0 => lin(g, x, p),
        tiles => tiled(g, x, p, tiles),
    }
}

/// Multi-head attention; `proj(i, x)` applies projection i (query, key, value, output).
fn attention(x: &Tensor, mask: &Tensor, proj: &Project, heads: usize, hd: usize) -> Result<Tensor, Fail> {
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

/// The exit point a batch leaves at, from each exit point's logits `[batch, labels]`.
pub fn exit_point(rule: crate::exit::ExitRule, exits: &[&Tensor]) -> candle_core::Result<usize> {
    let rows: Vec<Vec<Vec<f32>>> = exits.iter().map(|t| t.to_vec2::<f32>()).collect::<candle_core::Result<_>>()?;
    Ok(crate::exit::batch_exit(rule, &rows))
}

/// The CPU device the interpreter uses.
pub fn device() -> Device {
    Device::Cpu
}
