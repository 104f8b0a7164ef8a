//! `heads`: true head pruning. A removed head loses its query, key and value output columns and the matching
//! rows of the attention-output matrix, so the graph is physically smaller. A layer whose heads are all removed
//! loses its attention block: what remains of it is the output bias, so `add_norm(attention(h), h)` becomes
//! `layer_norm(add_bias(h))`, exactly what the dense model computes with every head masked.
//!
//! Which heads go: `mask=PATH` (SMP's head_mask.bin, JSON, .npy or safetensors; True = keep), or per layer the
//! `count=N` / `int(H * ratio)` heads of lowest weight magnitude (the cheap fallback when no scores are given).
//! The release's "type 0" (64-row input blocks) is a different cut and is not this pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bertopt_ir::ops;
use bertopt_ir::{Graph, NodeIndex, Op};

use crate::amount::Amount;
use crate::args::Args;
use crate::mask::HeadMask;
use crate::pass::{failed, Keep, Pass, PassContext, PassError, PassInfo, Recovery, Search, Unit};
use crate::rewrite::{residual_only, shrink};
use crate::scores::Importance;
use crate::unit_cut::{count, UnitCut};

/// `heads` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "heads",
    about: "remove attention heads (Q/K/V columns, output rows); a layer with none left loses its attention",
    args: &[
        ("mask", "SMP head_mask.bin, JSON, .npy or safetensors [layers, heads]; true = keep"),
        ("ratio", "fraction of heads removed per layer, lowest weight magnitude first (default 0.5)"),
        ("count", "number of heads removed per layer, lowest weight magnitude first"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Units(Unit::Heads),
    search: Some(Search { arg: "ratio", values: &[0.25, 0.5] }),
    note: None,
    build: |a| Ok(Box::new(Heads::from_args(a)?)),
};

pub enum Select {
    /// A mask file (its path, for messages, and its content, read by the driver).
    Mask(PathBuf, Arc<HeadMask>),
    /// Heads removed per layer, lowest importance first.
    Amount(Amount),
}

pub struct Heads {
    pub select: Select,
    /// How `ratio`/`count` rank heads (magnitude, or saved Taylor scores).
    pub importance: Importance,
}

impl Heads {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let bad = |problem: &str| a.bad("mask|ratio|count", problem.into());
        let given = ["mask", "ratio", "count"].iter().filter(|k| a.map.contains_key(**k)).count();
        if given > 1 {
            return Err(bad("give at most one of mask=PATH, ratio=FRACTION (heads removed per layer), count=N"));
        }
        // None given: half of every layer's heads, as every other static cut defaults to 50 %.
        let select = if let Some(p) = a.map.get("mask") {
            let mask =
                a.inputs.mask(p).ok_or_else(|| a.bad("mask", format!("{p}: not read by the pipeline driver")))?;
            Select::Mask(PathBuf::from(p), mask)
        } else {
            Select::Amount(Amount::ratio_or_count(a, "heads removed per layer")?)
        };
        if matches!(select, Select::Mask(..)) && a.map.contains_key("scores") {
            return Err(bad("scores= ranks heads for ratio= or count=; a mask= already says which heads go"));
        }
        Ok(Heads { select, importance: a.importance()? })
    }
}

/// Importance of each head: the summed element importance (W², or Taylor scores) of its slices of Q, K, V
/// (columns) and O (rows).
fn importance(g: &Graph, imp: &Importance, op: &Op) -> Result<Vec<f32>, PassError> {
    let Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, .. }) = op else {
        unreachable!("attention only")
    };
    let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
    let mut score = vec![0f32; *heads];
    for p in [query, key, value] {
        let w = imp.of(g, "heads", &format!("{p}.weight"))?;
        let per_head = w.sum(0).map_err(c)?.reshape((*heads, *head_dim)).map_err(c)?.sum(1).map_err(c)?;
        for (s, v) in score.iter_mut().zip(per_head.to_vec1::<f32>().map_err(c)?) {
            *s += v;
        }
    }
    let w = imp.of(g, "heads", &format!("{output}.weight"))?;
    let per_head = w.sum(1).map_err(c)?.reshape((*heads, *head_dim)).map_err(c)?.sum(1).map_err(c)?;
    for (s, v) in score.iter_mut().zip(per_head.to_vec1::<f32>().map_err(c)?) {
        *s += v;
    }
    Ok(score)
}

fn heads_of(g: &Graph, n: NodeIndex) -> usize {
    match g.dag[n].op {
        Op::Attention(ops::Attention { heads, .. }) => heads,
        _ => 0,
    }
}

impl UnitCut for Heads {
    type Site = NodeIndex;
    const COUNTS: &'static [&'static str] = &["heads removed", "attention blocks removed"];

    fn sites(&self, g: &Graph) -> Result<Vec<NodeIndex>, PassError> {
        crate::sites::dense_attentions(g, INFO.name)
    }

    fn given(&self, g: &Graph, attns: &[NodeIndex]) -> Result<Option<Vec<Vec<bool>>>, PassError> {
        let Select::Mask(path, mask) = &self.select else { return Ok(None) };
        let model_heads: Vec<usize> = attns.iter().map(|&n| heads_of(g, n)).collect();
        if mask.layers() != attns.len() || model_heads.iter().any(|&h| h != mask.heads()) {
            let shape = match model_heads.iter().all(|&h| Some(&h) == model_heads.first()) {
                true => format!("[{}, {}]", attns.len(), model_heads.first().copied().unwrap_or(0)),
                false => format!("{} layers with heads {model_heads:?}", attns.len()),
            };
            return Err(failed(
                INFO.name,
                format!(
                    "head mask {} is [{}, {}] (layers x heads) but the model is {shape}",
                    path.display(),
                    mask.layers(),
                    mask.heads()
                ),
            ));
        }
        Ok(Some(mask.keep.clone()))
    }

    fn units(&self, g: &Graph, &n: &NodeIndex) -> (usize, usize) {
        let h = heads_of(g, n);
        match &self.select {
            Select::Amount(amount) => (h, amount.of(h, h)),
            Select::Mask(..) => (h, 0),
        }
    }

    fn importance(&self, g: &Graph, &n: &NodeIndex) -> Result<Vec<f32>, PassError> {
        importance(g, &self.importance, &g.dag[n].op)
    }

    fn apply(
        &self,
        g: &mut Graph,
        n: NodeIndex,
        layer: usize,
        keep: &[bool],
        counts: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError> {
        let Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, tiles }) = g.dag[n].op.clone()
        else {
            return Ok(());
        };
        let kept: Vec<usize> = (0..heads).filter(|&h| keep[h]).collect();
        count(counts, "heads removed", heads - kept.len());
        if kept.len() == heads {
            return Ok(());
        }
        if kept.is_empty() {
            residual_only(g, n, &format!("{output}.bias"), &format!("heads: layer {layer}"))
                .map_err(|e| failed(INFO.name, e))?;
            count(counts, "attention blocks removed", 1);
            return Ok(());
        }
        let idx: Vec<u32> = kept.iter().flat_map(|&h| (h * head_dim..(h + 1) * head_dim).map(|i| i as u32)).collect();
        shrink(g, INFO.name, &[&query, &key, &value], &[&output], &idx)?;
        g.dag[n].op = Op::Attention(ops::Attention { heads: kept.len(), head_dim, query, key, value, output, tiles });
        Ok(())
    }
}

impl Heads {
    /// Which heads this pass keeps, `[layer][head]` in layer order, without changing the graph (recovery
    /// training gates exactly these).
    pub fn keep(&self, g: &Graph) -> Result<Vec<Vec<bool>>, PassError> {
        crate::unit_cut::keep(self, g)
    }
}

impl Pass for Heads {
    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::Heads(Heads::keep(self, g)?)))
    }
    fn name(&self) -> &'static str {
        "heads"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        crate::unit_cut::run(self, g, changed)
    }
}
