//! `quant`: int8 weights for every linear and attention projection (see `bertopt_ir::quant` for what a
//! quantized group computes). Symmetric weights, one scale per output column (`granularity=channel`, the
//! default) or per matrix; activations quantized per tensor at run time (`activations=dynamic`) or with a
//! constant range per group calibrated on training inputs (`activations=static`, `bertopt_ir::calibrate`). A tiled linear or
//! projection (`tile`, `kgran`, `type0`, `qkv`) is quantized tile by tile, each tile with its own scales (per
//! column, or one per tile with `granularity=tensor`). Runs after the structural passes: the pipeline refuses a
//! structural pass after it.

use std::collections::BTreeMap;

use bertopt_ir::ops;
use bertopt_ir::{quant, Graph, Op};

use crate::args::Args;
use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery};
use crate::rewrite::{set_weight, weight};

/// `quant` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "quant",
    about: "int8 weights for every linear and attention projection, activations quantized per call or with calibrated ranges; run last",
    args: &[
        ("weights", "int8 (the only width; default)"),
        (
            "activations",
            "dynamic: per-tensor uint8 range computed per call (default), or static: ranges calibrated on training rows (--data)",
        ),
        (
            "range",
            "static ranges: mean, the mean of each calibration row's extremes (default: 0.75 points better than minmax on MR validation), or minmax, the extremes over all rows",
        ),
        ("granularity", "channel: one weight scale per output column (default), or tensor: one per matrix"),
        ("skip", "groups left in f32: none (default), all, or attention, ffn, pooler, classifier, exits joined with +"),
    ],
    recovery: Recovery::Unsupported,
    search: None,
    note: None,
    build: |a| Ok(Box::new(Quant::from_args(a)?)),
};

/// Groups a `skip=` may name (joined with `+`).
pub const KINDS: [&str; 6] = ["attention", "ffn", "pooler", "classifier", "exits", "embeddings"];

pub struct Quant {
    pub per_channel: bool,
    /// Activations quantized with ranges calibrated on `PassContext::calibration` (else per call).
    pub static_activations: bool,
    /// How a static range is made from each calibration row's extremes.
    pub range: bertopt_ir::calibrate::Statistic,
    /// Kinds of group left in f32.
    pub skip: Vec<String>,
}

impl Quant {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let per_channel = match a.map.get("granularity").map(String::as_str) {
            None | Some("channel") => true,
            Some("tensor") => false,
            Some(o) => return Err(a.bad("granularity", format!("`{o}`: want channel or tensor"))),
        };
        match a.map.get("weights").map(String::as_str) {
            None | Some("int8") => {}
            Some(o) => return Err(a.bad("weights", format!("`{o}`: only int8 is supported"))),
        }
        let static_activations = match a.map.get("activations").map(String::as_str) {
            None | Some("dynamic") => false,
            Some("static") => true,
            Some(o) => return Err(a.bad("activations", format!("`{o}`: want dynamic or static"))),
        };
        let range = match a.map.get("range").map(String::as_str) {
            // Chosen on MR validation rows (`scripts/int8-forms-minilm`): -0.25 points against dense f32 with
            // `mean`, -1.00 with `minmax`.
            None | Some("mean") => bertopt_ir::calibrate::Statistic::Mean,
            Some("minmax") => bertopt_ir::calibrate::Statistic::MinMax,
            Some(o) => return Err(a.bad("range", format!("`{o}`: want mean or minmax"))),
        };
        if a.map.contains_key("range") && !static_activations {
            return Err(a.bad("range", "calibrated ranges are for activations=static".into()));
        }
        let skip: Vec<String> = match a.map.get("skip").map(String::as_str) {
            None | Some("none") => vec![],
            Some("all") => KINDS.iter().map(|k| k.to_string()).collect(),
            Some(list) => list.split('+').map(|k| k.trim().to_string()).collect(),
        };
        if let Some(k) = skip.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(a.bad("skip", format!("`{k}`: want all, none, or {} joined with +", KINDS.join(", "))));
        }
        Ok(Quant { per_channel, static_activations, range, skip })
    }
}

/// Replace weight `name` with whole-number data `q`, typed i8.
fn set_i8(g: &mut Graph, name: &str, q: candle_core::Tensor) {
    set_weight(g, name, q);
    if let Some(w) = g.weights.0.get_mut(name) {
        w.ty.dtype = bertopt_ir::DType::I8;
    }
}

/// The kind of a `linear`'s parameter group, by its name.
fn linear_kind(p: &str) -> &'static str {
    if p.starts_with(bertopt_ir::names::EXITS) {
        "exits"
    } else if p.contains("pooler") {
        "pooler"
    } else if p.ends_with("classifier") {
        "classifier"
    } else {
        "ffn"
    }
}

impl Pass for Quant {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn reads_int8(&self) -> bool {
        true
    }

    fn calibrates(&self) -> bool {
        self.static_activations
    }

    fn run(
        &self,
        g: &mut Graph,
        ctx: &mut PassContext,
        changed: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError> {
        let has = |g: &Graph, n: &str| g.weights.0.contains_key(n);
        // (group, kind, tiles: 0 when dense)
        let mut groups = vec![];
        let mut tables = vec![];
        for n in g.dag.node_weights() {
            match &n.op {
                Op::Embed(ops::Embed { word, .. }) => tables.push(word.clone()),
                Op::Linear(ops::Linear { w, .. }) => groups.push((w.clone(), linear_kind(w), 0)),
                Op::TiledLinear(ops::TiledLinear { w, tiles, .. }) => groups.push((w.clone(), linear_kind(w), *tiles)),
                Op::Attention(a) => {
                    groups.extend(a.projections().map(|(p, tiles)| (p.to_string(), "attention", tiles)))
                }
                Op::DynAttention(_) | Op::DynFfn(_) => {
                    return Err(failed(
                        INFO.name,
                        "the graph is EBERT's (`ebert` ran): it gathers each input's weights in f32 at run time, \
                         and an int8 gather is not supported",
                    ))
                }
                _ => {}
            }
        }
        // Ranges of every group's input on the graph as it enters the pass (f32 where it matters: quantized
        // groups are skipped below).
        let ranges = match self.static_activations {
            false => Default::default(),
            true if ctx.calibration.is_empty() => {
                return Err(failed(
                    INFO.name,
                    "activations=static calibrates on training rows, and none were given: pass --data FILE",
                ))
            }
            true => bertopt_ir::calibrate::ranges(g, &ctx.calibration, self.range)
                .map_err(|e| failed(INFO.name, format!("calibration run: {e}")))?,
        };
        let (mut done, mut tiled, mut skipped) = (0, 0, 0);
        for (p, kind, tiles) in groups {
            // A tiled group is quantized tile by tile: each tile is a group of its own (`P.tile{t}`).
            let parts: Vec<String> = match tiles {
                0 => vec![p.clone()],
                t => (0..t).map(|t| ops::tile_group(&p, t)).collect(),
            };
            if self.skip.iter().any(|k| k == kind) || quant::is_quantized(|x| has(g, x), &parts[0]) {
                skipped += 1;
                continue;
            }
            for part in parts {
                let w = weight(g, INFO.name, &format!("{part}.weight"))?;
                let (q, s) = quant::quantize_weight(w, self.per_channel)
                    .map_err(|e| failed(INFO.name, format!("{part}: {e}")))?;
                set_i8(g, &format!("{part}.weight"), q);
                set_weight(g, &quant::scale_name(&part), s);
            }
            if self.static_activations {
                let &(lo, hi) = ranges.get(&p).ok_or_else(|| {
                    failed(INFO.name, format!("@{p}: no calibration input reached this group, so it has no range"))
                })?;
                let (scale, zero) = quant::range_params(lo, hi);
                // An input that was zero on every calibration row still needs a valid (positive) scale.
                let scale = if scale > 0.0 { scale } else { 1.0 / 255.0 };
                let params = candle_core::Tensor::new(&[scale, zero as f32], &candle_core::Device::Cpu)
                    .map_err(|e| failed(INFO.name, e.to_string()))?;
                set_weight(g, &quant::input_params_name(&p), params);
            }
            done += 1;
            tiled += usize::from(tiles > 0);
        }
        let mut tables_done = 0;
        if !self.skip.iter().any(|k| k == "embeddings") {
            for t in tables {
                if g.weights.0.contains_key(&quant::row_scale_name(&t)) {
                    continue;
                }
                let (q, s) = quant::quantize_rows(weight(g, "quant", &t)?)
                    .map_err(|e| failed(INFO.name, format!("{t}: {e}")))?;
                set_i8(g, &t, q);
                set_weight(g, &quant::row_scale_name(&t), s);
                tables_done += 1;
            }
        }
        changed.insert("embedding tables quantized".into(), tables_done);
        changed.insert("linears quantized".into(), done);
        if tiled > 0 {
            changed.insert("tiled linears quantized".into(), tiled);
        }
        changed.insert("linears left in f32".into(), skipped);
        if self.static_activations {
            changed.insert("calibration batches".into(), ctx.calibration.len());
        }
        Ok(())
    }
}
