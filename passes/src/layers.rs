//! `layers`: drop whole encoder layers. A dropped layer's output is replaced, everywhere it is read, by the
//! hidden state that entered it (the previous layer's output, or the embeddings for layer 0); cleanup then
//! removes its attention, FFN and both LayerNorms. The graph computes exactly the model whose forward pass
//! skips those layers, which is what `optimize recover` trains under this pass.
//!
//! Which layers go:
//! - `drop=2+5`: the listed layers (0-based, as the checkpoint names them: `encoder.layer.N`);
//! - `keep=K` without scores: the first K stay and the top ones go ("top-layer dropping", the strategy that
//!   kept the most accuracy among the task-agnostic orders compared by Sajjad et al., *On the effect of dropping
//!   layers of pre-trained transformer models*, 2023); ElasticBERT's `truncate` is the same cut read by an
//!   off-ramp instead of the model's own classifier;
//! - `keep=K, scores=FILE`: the layers with the lowest summed first-order Taylor score (`optimize score`) over
//!   their weights go. Per element the score estimates the loss change from removing that weight, so the sum
//!   over a layer's matrices estimates what the layer as a whole contributes on the data scored.
//!
//! Order: run it after the other unit cuts (`heads,ffn,layers`), so that their masks keep the model's layer
//! count, and before `exit` (a ramp reads a layer that must still stand) and `quant`. A graph that already has
//! early exits or EBERT's per-input ops is refused.

use std::collections::{BTreeMap, BTreeSet};

use bertopt_ir::{Graph, NodeIndex, Op};

use crate::args::Args;
use crate::exit::layer_outputs;
use crate::pass::{failed, Keep, Pass, PassContext, PassError, PassInfo, Recovery, Unit};
use crate::scores::Importance;

/// `layers` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "layers",
    about: "drop whole encoder layers: a list, or all but K (the top ones, or the least important by scores)",
    args: &[
        ("drop", "layers dropped, 0-based, joined by `+` (e.g. drop=4+5)"),
        ("keep", "layers kept; without scores the first K stay (top-layer dropping)"),
        ("scores", "with keep: drop the layers of lowest summed Taylor score (optimize score)"),
    ],
    recovery: Recovery::Units(Unit::Layers),
    search: None,
    note: None,
    build: |a| Ok(Box::new(Layers::from_args(a)?)),
};

/// Which layers the pass drops.
pub enum Choice {
    Drop(BTreeSet<usize>),
    Keep { count: usize, importance: Importance },
}

pub struct Layers {
    pub choice: Choice,
}

impl Layers {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let choice = match (a.map.get("drop"), a.map.contains_key("keep")) {
            (Some(_), true) => return Err(a.bad("drop", "give `drop` or `keep`, not both".into())),
            (None, false) => return Err(a.bad("keep", "give the layers to keep (keep=4) or to drop (drop=4+5)".into())),
            (Some(list), false) => {
                if a.map.contains_key("scores") {
                    return Err(a.bad("scores", "scores choose layers for `keep`; `drop` names them itself".into()));
                }
                let mut set = BTreeSet::new();
                for part in list.split('+') {
                    let l = part.trim().parse::<usize>().map_err(|_| {
                        a.bad("drop", format!("cannot read `{part}` as a layer index (0-based, joined by `+`)"))
                    })?;
                    set.insert(l);
                }
                Choice::Drop(set)
            }
            (None, true) => Choice::Keep { count: a.positive("keep", 1)?, importance: a.importance()? },
        };
        Ok(Layers { choice })
    }

    /// Per layer of `g`, whether it stays.
    pub fn keep(&self, g: &Graph) -> Result<Vec<bool>, PassError> {
        let fail = |p: String| failed(INFO.name, p);
        let outs = layer_outputs(g);
        let total = outs.len();
        if total == 0 || outs.keys().copied().ne(0..total) {
            return Err(fail(format!(
                "the graph's encoder layers are {:?}, not 0..L (was a layer dropped already?)",
                outs.keys().collect::<Vec<_>>()
            )));
        }
        let keep: Vec<bool> = match &self.choice {
            Choice::Drop(set) => {
                if let Some(&l) = set.iter().find(|&&l| l >= total) {
                    return Err(fail(format!("no layer {l}: the model has layers 0..{}", total - 1)));
                }
                (0..total).map(|l| !set.contains(&l)).collect()
            }
            Choice::Keep { count, importance } => {
                if *count > total {
                    return Err(fail(format!("keep={count} but the model has {total} layers")));
                }
                match importance {
                    Importance::Magnitude => (0..total).map(|l| l < *count).collect(),
                    Importance::Scores { .. } => {
                        let scores =
                            (0..total).map(|l| layer_score(g, importance, l)).collect::<Result<Vec<_>, _>>()?;
                        let mut order: Vec<usize> = (0..total).collect();
                        // Highest score first; ties keep the lower layer.
                        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
                        let kept: BTreeSet<usize> = order.into_iter().take(*count).collect();
                        (0..total).map(|l| kept.contains(&l)).collect()
                    }
                }
            }
        };
        if !keep.contains(&true) {
            return Err(fail("every layer would go; keep at least one".into()));
        }
        Ok(keep)
    }
}

/// Summed Taylor score of layer `l`'s matrices (`optimize score` scores matrices, not biases or LayerNorms).
fn layer_score(g: &Graph, importance: &Importance, l: usize) -> Result<f64, PassError> {
    let prefix = format!("encoder.layer.{l}.");
    let mut total = 0f64;
    for name in g.weights.0.keys().filter(|n| n.starts_with(&prefix) && n.ends_with(".weight")) {
        let dims = g.weights.get(name).and_then(|w| w.ty.known_dims()).unwrap_or_default();
        if dims.len() != 2 {
            continue;
        }
        let s = importance.of(g, INFO.name, name)?;
        total += s
            .to_dtype(candle_core::DType::F64)
            .and_then(|s| s.sum_all())
            .and_then(|s| s.to_scalar::<f64>())
            .map_err(|e| failed(INFO.name, e.to_string()))?;
    }
    Ok(total)
}

/// The hidden state that enters layer 0: the embeddings' output.
fn embeddings(g: &Graph) -> Option<NodeIndex> {
    g.dag.node_indices().find(|&n| matches!(g.dag[n].op, Op::Embed(_)))
}

impl Pass for Layers {
    fn name(&self) -> &'static str {
        "layers"
    }

    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::Layers(Layers::keep(self, g)?)))
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let fail = |p: &str| failed(INFO.name, p);
        if g.dag.node_weights().any(|n| matches!(n.op, Op::EarlyExit(_))) {
            return Err(fail("the graph has early exits: drop layers before `exit`, not after"));
        }
        if g.dag.node_weights().any(|n| matches!(n.op, Op::DynAttention(_) | Op::DynFfn(_))) {
            return Err(fail("the graph has EBERT's per-input ops, whose predictors read every layer"));
        }
        let keep = Layers::keep(self, g)?;
        let outs = layer_outputs(g);
        let first = embeddings(g).ok_or_else(|| fail("the graph has no embeddings"))?;
        let input = |l: usize| if l == 0 { first } else { outs[&(l - 1)] };
        // From the top down, so that a run of dropped layers collapses onto the last one kept below it.
        for l in (0..keep.len()).rev().filter(|&l| !keep[l]) {
            g.replace_uses(outs[&l], input(l));
        }
        changed.insert("layers dropped".into(), keep.iter().filter(|k| !**k).count());
        Ok(())
    }
}
