//! Type inference: the output type of an op from its operand types and the weights it names.
//! The verifier compares this against every node's declared type.

use crate::op::Op;
use crate::types::{DType, Dim, ValueType};

/// Looks up a weight's declared type by full tensor name.
pub trait WeightTypes {
    fn weight_type(&self, name: &str) -> Option<&ValueType>;
}

/// Infer the output type of `op` applied to `operands`, checking every weight it reads.
pub fn infer(op: &Op, operands: &[&ValueType], weights: &dyn WeightTypes) -> Result<ValueType, String> {
    if operands.len() != op.arity() {
        return Err(format!("`{}` takes {} operand(s), got {}", op.mnemonic(), op.arity(), operands.len()));
    }
    let expect = |name: String, dims: &[usize]| -> Result<(), String> {
        let want = ValueType::known(DType::F32, dims);
        match weights.weight_type(&name) {
            None => Err(format!("weight @{name} does not exist (expected {want})")),
            Some(t) if *t != want => Err(format!("weight @{name} is {t}, expected {want}")),
            Some(_) => Ok(()),
        }
    };
    let linear = |p: &str, k: usize, n: usize| -> Result<(), String> {
        let name = format!("{p}.weight");
        match weights.weight_type(&name) {
            // An int8 group (its scale is checked by the verifier).
            Some(t) if t.dtype == DType::I8 && *t == ValueType::known(DType::I8, &[k, n]) => {}
            _ => expect(name, &[k, n])?,
        }
        expect(format!("{p}.bias"), &[n])
    };
    // An attention projection: dense, or tiled by weight presence.
    let projection = |p: &str, k: usize, n: usize| -> Result<(), String> {
        match crate::op::tile_count(|x| weights.weight_type(x).is_some(), p) {
            0 => linear(p, k, n),
            tiles => {
                if weights.weight_type(&format!("{p}.weight")).is_some() {
                    return Err(format!("@{p} is both dense (@{p}.weight) and tiled"));
                }
                tiled(weights, p, k, n, tiles)?;
                expect(format!("{p}.bias"), &[n])
            }
        }
    };
    let norm = |p: &str, d: usize| -> Result<(), String> {
        expect(format!("{p}.weight"), &[d])?;
        expect(format!("{p}.bias"), &[d])
    };
    match op {
        Op::Input { name } => Err(format!("input %{name} has no operands to infer from")),
        Op::Const { weight } => {
            weights.weight_type(weight).cloned().ok_or_else(|| format!("weight @{weight} does not exist"))
        }
        Op::Embed { word, position, token_type, ln, position_offset, .. } => {
            let (ids, tt) = (operands[0], operands[1]);
            for (what, t) in [("ids", ids), ("token_type_ids", tt)] {
                if t.dtype != DType::I64 || t.rank() != 2 {
                    return Err(format!("embed {what} must be i64[batch, seq], got {t}"));
                }
            }
            if ids.shape != tt.shape {
                return Err(format!("embed ids {ids} and token_type_ids {tt} differ in shape"));
            }
            let table = |name: &str| -> Result<(usize, usize), String> {
                match weights.weight_type(name).and_then(|t| t.known_dims()) {
                    Some(d) if d.len() == 2 => Ok((d[0], d[1])),
                    Some(d) => Err(format!("embedding table @{name} must be 2-D, is {d:?}")),
                    None => Err(format!("weight @{name} does not exist")),
                }
            };
            let (_, d) = table(word)?;
            let (rows, dp) = table(position)?;
            let (_, dt) = table(token_type)?;
            if dp != d || dt != d {
                return Err(format!("embedding widths differ: word {d}, position {dp}, token_type {dt}"));
            }
            if let Some(s) = ids.shape[1].known() {
                if position_offset + s > rows {
                    return Err(format!("sequence {s} + offset {position_offset} exceeds {rows} positions"));
                }
            }
            norm(ln, d)?;
            Ok(ValueType::new(DType::F32, vec![ids.shape[0].clone(), ids.shape[1].clone(), Dim::Known(d)]))
        }
        Op::Attention { heads, head_dim, query, key, value, output } => {
            let (x, mask) = (operands[0], operands[1]);
            attention(x, mask, *heads, *head_dim, [query, key, value, output], "attention", &projection)?;
            Ok(x.clone())
        }
        Op::AddNorm { ln, .. } => {
            let (x, r) = (operands[0], operands[1]);
            if x != r {
                return Err(format!("add_norm operands differ: {x} vs {r}"));
            }
            norm(ln, hidden(x, "add_norm input")?)?;
            Ok(x.clone())
        }
        Op::LayerNorm { ln, .. } => {
            let x = operands[0];
            norm(ln, hidden(x, "layer_norm input")?)?;
            Ok(x.clone())
        }
        Op::AddBias { bias } => {
            let x = operands[0];
            expect(bias.clone(), &[hidden(x, "add_bias input")?])?;
            Ok(x.clone())
        }
        Op::Linear { w, k, n } => {
            let x = operands[0];
            let got = hidden(x, "linear input")?;
            if got != *k {
                return Err(format!("linear k = {k} but its input is {x}"));
            }
            linear(w, *k, *n)?;
            Ok(x.with_last(Dim::Known(*n)))
        }
        Op::TiledLinear { w, k, n, tiles } => {
            let x = operands[0];
            let got = hidden(x, "tiled_linear input")?;
            if got != *k {
                return Err(format!("tiled_linear k = {k} but its input is {x}"));
            }
            if *tiles == 0 {
                return Err("tiled_linear needs at least one tile".into());
            }
            tiled(weights, w, *k, *n, *tiles)?;
            expect(format!("{w}.bias"), &[*n])?;
            Ok(x.with_last(Dim::Known(*n)))
        }
        Op::Gelu | Op::Tanh => {
            float(operands[0], op.mnemonic())?;
            Ok(operands[0].clone())
        }
        Op::Add => {
            let (a, b) = (operands[0], operands[1]);
            if a != b {
                return Err(format!("add operands differ: {a} vs {b}"));
            }
            Ok(a.clone())
        }
        Op::EarlyExit { layers, .. } => {
            let first = operands[0];
            if first.dtype != DType::F32 || first.rank() != 2 {
                return Err(format!("early_exit operands must be logits f32[batch, labels], got {first}"));
            }
            if let Some(t) = operands.iter().find(|t| **t != first) {
                return Err(format!("early_exit operands differ: {first} vs {t}"));
            }
            if layers.len() < 2 || layers[0] == 0 || layers.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "early_exit layers must be at least two increasing layer counts >= 1, got {layers:?}"
                ));
            }
            Ok(first.clone())
        }
        Op::ExitLayer => {
            let x = operands[0];
            if x.dtype != DType::F32 || x.rank() != 2 {
                return Err(format!("exit_layer takes the logits of an early_exit, got {x}"));
            }
            Ok(ValueType::new(DType::I64, vec![x.shape[0].clone()]))
        }
        Op::Relu => {
            float(operands[0], "relu")?;
            Ok(operands[0].clone())
        }
        Op::MaskedMean => {
            let (x, mask) = (operands[0], operands[1]);
            let d = hidden(x, "masked_mean input")?;
            if x.rank() != 3 || mask.dtype != DType::I64 || mask.rank() != 2 || mask.shape[..] != x.shape[..2] {
                return Err(format!("masked_mean needs f32[b, s, D] and i64[b, s], got {x} and {mask}"));
            }
            Ok(ValueType::new(DType::F32, vec![x.shape[0].clone(), Dim::Known(d)]))
        }
        Op::TopK { k } => {
            let x = operands[0];
            let n = hidden(x, "top_k input")?;
            if x.rank() != 2 || *k == 0 || *k > n {
                return Err(format!("top_k needs f32[b, n] with 1 <= k <= n, got k = {k} of {x}"));
            }
            Ok(ValueType::new(DType::I64, vec![x.shape[0].clone(), Dim::Known(*k)]))
        }
        Op::DynAttention { heads, head_dim, keep, query, key, value, output } => {
            let (x, mask, idx) = (operands[0], operands[1], operands[2]);
            attention(x, mask, *heads, *head_dim, [query, key, value, output], "dyn_attention", &linear)?;
            select(idx, x, *keep, *heads, "dyn_attention heads")?;
            Ok(x.clone())
        }
        Op::DynFfn { inter, out, groups, keep } => {
            let (x, idx) = (operands[0], operands[1]);
            let d = hidden(x, "dyn_ffn input")?;
            let f = match weights.weight_type(&format!("{inter}.weight")).and_then(|t| t.known_dims()) {
                Some(dims) if dims.len() == 2 && dims[0] == d => dims[1],
                other => return Err(format!("weight @{inter}.weight must be f32[{d}, F], is {other:?}")),
            };
            if *groups == 0 || f % groups != 0 {
                return Err(format!("dyn_ffn: {groups} groups do not divide {f} neurons"));
            }
            select(idx, x, *keep, *groups, "dyn_ffn groups")?;
            linear(inter, d, f)?;
            linear(out, f, d)?;
            Ok(x.clone())
        }
        Op::TakeCls => {
            let x = operands[0];
            if x.rank() != 3 {
                return Err(format!("take_cls needs f32[batch, seq, D], got {x}"));
            }
            float(x, "take_cls")?;
            Ok(ValueType::new(DType::F32, vec![x.shape[0].clone(), x.shape[2].clone()]))
        }
    }
}

/// What `attention` and `dyn_attention` share: the input, the mask and the four projections' weights.
/// The tiles of a tiled projection `w` (K×N in all): each `P.tile{t}.rows: i64[r]` with `r <= k` and
/// `P.tile{t}.weight: f32[r, n_t]`, the widths summing to N.
fn tiled(weights: &dyn WeightTypes, w: &str, k: usize, n: usize, tiles: usize) -> Result<(), String> {
    let mut width = 0;
    for t in 0..tiles {
        let (rows, weight) = crate::op::tile_names(w, t);
        let r = match weights.weight_type(&rows) {
            Some(ty) if ty.dtype == DType::I64 && ty.rank() == 1 => ty.known_dims().map_or(0, |d| d[0]),
            Some(ty) => return Err(format!("weight @{rows} must be i64[rows], is {ty}")),
            None => return Err(format!("weight @{rows} does not exist")),
        };
        match weights.weight_type(&weight).and_then(|ty| ty.known_dims()) {
            Some(d) if d.len() == 2 && d[0] == r => width += d[1],
            Some(d) => return Err(format!("weight @{weight} is {d:?}, expected [{r}, tile width]")),
            None => return Err(format!("weight @{weight} does not exist")),
        }
        if r > k {
            return Err(format!("tile {t} of @{w} keeps {r} rows of k = {k}"));
        }
    }
    let cols = crate::op::cols_name(w);
    let covered = match weights.weight_type(&cols) {
        None => n,
        Some(ty) if ty.dtype == DType::I64 && ty.rank() == 1 => match ty.known_dims() {
            Some(d) if d[0] >= 1 && d[0] <= n => d[0],
            _ => return Err(format!("weight @{cols} is {ty}: it lists between 1 and n = {n} output columns")),
        },
        Some(ty) => return Err(format!("weight @{cols} must be i64[columns], is {ty}")),
    };
    if width != covered {
        return Err(format!("the tiles of @{w} are {width} wide in all, but they cover {covered} columns"));
    }
    Ok(())
}

fn attention(
    x: &ValueType,
    mask: &ValueType,
    heads: usize,
    head_dim: usize,
    [query, key, value, output]: [&String; 4],
    what: &str,
    linear: &dyn Fn(&str, usize, usize) -> Result<(), String>,
) -> Result<(), String> {
    let d = hidden(x, &format!("{what} input"))?;
    if mask.dtype != DType::I64 || mask.rank() != 2 || mask.shape[..] != x.shape[..2] {
        return Err(format!("{what} mask must be i64[{}, {}], got {mask}", x.shape[0], x.shape[1]));
    }
    if heads == 0 || head_dim == 0 {
        return Err(format!("{what} needs heads >= 1 and head_dim >= 1 (got {heads} x {head_dim})"));
    }
    let inner = heads * head_dim;
    linear(query, d, inner)?;
    linear(key, d, inner)?;
    linear(value, d, inner)?;
    linear(output, inner, d)
}

/// A per-row selection `i64[b, keep]` of `keep` out of `of` units, for the rows of `x`.
fn select(idx: &ValueType, x: &ValueType, keep: usize, of: usize, what: &str) -> Result<(), String> {
    if idx.dtype != DType::I64 || idx.rank() != 2 || idx.shape[0] != x.shape[0] || idx.shape[1] != Dim::Known(keep) {
        return Err(format!("{what} must be i64[{}, {keep}], got {idx}", x.shape[0]));
    }
    if keep == 0 || keep > of {
        return Err(format!("{what}: keep {keep} of {of} is out of range"));
    }
    Ok(())
}

fn float(t: &ValueType, what: &str) -> Result<(), String> {
    if t.dtype != DType::F32 {
        return Err(format!("{what} needs f32, got {t}"));
    }
    Ok(())
}

fn hidden(t: &ValueType, what: &str) -> Result<usize, String> {
    float(t, what)?;
    t.last().and_then(Dim::known).ok_or_else(|| format!("{what} {t} has no known last dim"))
}
