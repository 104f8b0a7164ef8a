//! `hidden`: remove features of the residual stream (the hidden size D) everywhere they appear, as CoFi prunes
//! the hidden dimension: the columns of the three embedding tables, every LayerNorm's weight and bias, the input
//! rows of every matrix that reads the stream (Q/K/V, FFN-in, the pooler, off-ramp poolers), the output columns
//! and bias entries of every matrix that writes it (attention output, FFN-out) and the biases left by blocks
//! that lost every unit. Every value on the stream then has `D - removed` features.
//!
//! What the result computes: a LayerNorm over fewer features normalises with the mean and variance of the kept
//! features only. So the pruned graph is exactly the dense model in which every LayerNorm is replaced by a
//! *masked* LayerNorm — mean and variance over the kept features (divided by their count), removed features set
//! to 0 — and nothing else changes (a matrix reading zeros equals the same matrix without those rows; what a
//! writer adds to a removed feature is dropped by the next LayerNorm). That masked model is what `optimize
//! recover` trains under this pass (candle's `set_hidden_gate`); a plain dense checkpoint cannot express it.
//!
//! Which features go: the `floor(D * ratio)` (or `count=N`) of lowest importance summed over all appearances.
//! - magnitude (default): per appearance, each feature's sum of squared entries, divided by that appearance's
//!   mean over features (a 30k-row embedding table and a LayerNorm gain then weigh the same), summed;
//! - `scores=FILE` (`optimize score`, first-order Taylor): the summed element scores over the encoder matrices
//!   the file holds (per element the score estimates a loss change, so sums across matrices compare). After a
//!   cut that narrowed a matrix's other axis (`heads`, `ffn` on the scored model) the sum runs over the row or
//!   column as scored, the removed units' entries included.
//!
//! `multiple=M` rounds the kept count up to a multiple of M. Order: after `heads`, `ffn`, `head-size`, before
//! `layers` when recovering (every unit is chosen on the whole model); before `tile`, `type0`, `qkv` and `quant`
//! (it slices dense float matrices); after `exit` if the model has off-ramps (their poolers are sliced with the
//! rest). EBERT's per-input ops are refused.

use std::collections::{BTreeMap, BTreeSet};

use bertopt_ir::ops;
use bertopt_ir::{DType, Graph, NodeIndex, Op};
use candle_core::Tensor;
use petgraph::Direction;

use crate::amount::{round_kept, Amount};
use crate::args::Args;
use crate::pass::{failed, Keep, Pass, PassContext, PassError, PassInfo, Recovery, Search, Unit};
use crate::rewrite::{kept_index, set_weight, weight};
use crate::scores::Importance;
use crate::unit_cut::{count, UnitCut};

/// `hidden` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "hidden",
    about: "remove hidden-size features everywhere (embeddings, LayerNorms, stream rows/columns); LayerNorm then \
            normalises over the kept features",
    args: &[
        ("ratio", "fraction of the hidden features removed (default 0.5)"),
        ("count", "number of hidden features removed"),
        ("multiple", "round the features kept up to a multiple of this (default 1)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Units(Unit::Hidden),
    search: Some(Search { arg: "ratio", values: &[] }),
    note: None,
    build: |a| Ok(Box::new(Hidden::from_args(a)?)),
};

pub struct Hidden {
    pub remove: Amount,
    pub multiple: usize,
    pub importance: Importance,
}

impl Hidden {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let remove = Amount::ratio_or_count(a, "hidden features removed")?;
        let multiple = a.positive("multiple", 1)?;
        Ok(Hidden { remove, multiple, importance: a.importance()? })
    }
}

/// Along which axis of a weight the hidden features run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Axis {
    /// Rows of a K×N matrix (a reader's input features), or the entries of a vector.
    Rows,
    /// Columns of a K×N matrix (a writer's outputs, an embedding table's width).
    Cols,
}

/// Every weight in which the hidden features appear, with the axis they run along, and the nodes whose op
/// attributes name the width (`linear` k or n).
pub struct Sites {
    weights: BTreeSet<(String, Axis)>,
    readers: Vec<NodeIndex>,
    writers: Vec<NodeIndex>,
    width: usize,
}

fn sites(g: &Graph) -> Result<Sites, PassError> {
    let fail = |p: String| failed(INFO.name, p);
    let order = g.topo_order().map_err(|e| failed(INFO.name, e))?;
    let mut stream: BTreeSet<NodeIndex> = BTreeSet::new();
    let mut weights = BTreeSet::new();
    let mut w = |name: String, axis| {
        weights.insert((name, axis));
    };
    let mut readers = vec![];
    let mut writers = vec![];
    let feeds_norm =
        |n: NodeIndex| g.dag.neighbors_directed(n, Direction::Outgoing).any(|u| matches!(g.dag[u].op, Op::AddNorm(_)));
    for n in order {
        let ops = g.operands(n);
        let reads = ops.iter().any(|o| stream.contains(o));
        match &g.dag[n].op {
            Op::Embed(ops::Embed { word, position, token_type, ln, .. }) => {
                for t in [word, position, token_type] {
                    w(t.clone(), Axis::Cols);
                }
                w(format!("{ln}.weight"), Axis::Rows);
                w(format!("{ln}.bias"), Axis::Rows);
                stream.insert(n);
            }
            Op::Attention(ops::Attention { query, key, value, output, .. }) => {
                for p in [query, key, value, output] {
                    crate::rewrite::require_dense(g, INFO.name, p)?;
                }
                for p in [query, key, value] {
                    w(format!("{p}.weight"), Axis::Rows);
                }
                w(format!("{output}.weight"), Axis::Cols);
                w(format!("{output}.bias"), Axis::Rows);
                stream.insert(n);
            }
            Op::AddNorm(ops::AddNorm { ln, .. }) | Op::LayerNorm(ops::LayerNorm { ln, .. }) if reads => {
                w(format!("{ln}.weight"), Axis::Rows);
                w(format!("{ln}.bias"), Axis::Rows);
                stream.insert(n);
            }
            Op::AddBias(ops::AddBias { bias }) if reads => {
                w(bias.clone(), Axis::Rows);
                stream.insert(n);
            }
            Op::TakeCls | Op::MaskedMean | Op::Add if reads => {
                stream.insert(n);
            }
            Op::Linear(ops::Linear { w: p, .. }) => {
                if reads {
                    w(format!("{p}.weight"), Axis::Rows);
                    readers.push(n);
                }
                if feeds_norm(n) {
                    w(format!("{p}.weight"), Axis::Cols);
                    w(format!("{p}.bias"), Axis::Rows);
                    writers.push(n);
                    stream.insert(n);
                }
            }
            Op::TiledLinear(_) if reads || feeds_norm(n) => {
                return Err(fail(format!(
                    "%{} is tiled and touches the hidden stream: run `hidden` before `tile`, `type0` or `qkv`",
                    n.index()
                )))
            }
            Op::DynAttention(_) | Op::DynFfn(_) => {
                return Err(fail("the graph has EBERT's per-input ops, whose predictors read the hidden stream".into()))
            }
            op if reads => {
                return Err(fail(format!(
                    "`{}` (%{}) reads the hidden stream and `hidden` does not know how to narrow it",
                    op.mnemonic(),
                    n.index()
                )))
            }
            _ => {}
        }
    }
    for (name, _) in &weights {
        let t = g.weights.get(name).ok_or_else(|| fail(format!("weight @{name} does not exist")))?;
        if t.ty.dtype != DType::F32 {
            return Err(fail(format!("@{name} is {}: run `hidden` before `quant`", t.ty)));
        }
    }
    let embed = g.dag.node_indices().find(|&n| matches!(g.dag[n].op, Op::Embed(_)));
    let width = embed
        .and_then(|e| g.dag[e].ty.last().and_then(|d| d.known()))
        .ok_or_else(|| fail("the graph has no embeddings of known width".into()))?;
    Ok(Sites { weights, readers, writers, width })
}

impl UnitCut for Hidden {
    type Site = Sites;
    const COUNTS: &'static [&'static str] = &["hidden features removed"];

    /// One site: every appearance of the stream's features.
    fn sites(&self, g: &Graph) -> Result<Vec<Sites>, PassError> {
        Ok(vec![sites(g)?])
    }

    fn units(&self, _: &Graph, s: &Sites) -> (usize, usize) {
        let d = s.width;
        (d, round_kept(d, self.remove.of(d, d - 1), self.multiple))
    }

    fn importance(&self, g: &Graph, s: &Sites) -> Result<Vec<f32>, PassError> {
        self.score(g, s)
    }

    fn apply(
        &self,
        g: &mut Graph,
        s: Sites,
        _layer: usize,
        keep: &[bool],
        counts: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError> {
        let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
        let new = keep.iter().filter(|k| **k).count();
        count(counts, "hidden features removed", keep.len() - new);
        if new == keep.len() {
            return Ok(());
        }
        let idx = kept_index(keep).map_err(c)?;
        // A matrix can hold the features along both axes (none in BERT, but slice each axis once regardless).
        for (name, axis) in &s.weights {
            let t = weight(g, INFO.name, name)?;
            let dim = if t.rank() == 1 || *axis == Axis::Rows { 0 } else { 1 };
            let sliced = t.index_select(&idx, dim).map_err(c)?.contiguous().map_err(c)?;
            set_weight(g, name, sliced);
        }
        for &n in &s.readers {
            if let Op::Linear(ops::Linear { k, .. }) = &mut g.dag[n].op {
                *k = new;
            }
        }
        for &n in &s.writers {
            if let Op::Linear(ops::Linear { n: out, .. }) = &mut g.dag[n].op {
                *out = new;
            }
        }
        retype(g)
    }
}

impl Hidden {
    /// Which hidden features this pass keeps on `g`, without changing it.
    pub fn keep(&self, g: &Graph) -> Result<Vec<bool>, PassError> {
        Ok(crate::unit_cut::keep(self, g)?.remove(0))
    }

    /// Importance of each hidden feature, summed over its appearances.
    fn score(&self, g: &Graph, s: &Sites) -> Result<Vec<f32>, PassError> {
        let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
        let mut total = vec![0f32; s.width];
        for (name, axis) in &s.weights {
            let per_feature = match &self.importance {
                Importance::Magnitude => {
                    let t = weight(g, INFO.name, name)?;
                    let v = along(&t.sqr().map_err(c)?, *axis).map_err(c)?;
                    let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
                    if mean > 0.0 {
                        v.iter().map(|x| x / mean).collect()
                    } else {
                        v
                    }
                }
                Importance::Scores { tensors, path } => {
                    let dims = g.weights.get(name).and_then(|w| w.ty.known_dims()).unwrap_or_default();
                    let Some(t) = tensors.get(name).filter(|_| dims.len() == 2 && name.starts_with("encoder.")) else {
                        continue;
                    };
                    // An earlier cut (heads, ffn) may have narrowed the other axis: the row or column sum then
                    // runs over the matrix as it was scored, removed units included.
                    let feature_dim = if *axis == Axis::Rows { 0 } else { 1 };
                    if t.rank() != 2 || t.dims()[feature_dim] != dims[feature_dim] {
                        return Err(failed(
                            INFO.name,
                            format!(
                                "score file {}: @{name} is {:?} but the weight is {dims:?} along the hidden features",
                                path.display(),
                                t.dims()
                            ),
                        ));
                    }
                    along(t, *axis).map_err(c)?
                }
            };
            if per_feature.len() != s.width {
                return Err(failed(
                    INFO.name,
                    format!("@{name} has {} hidden features, the embeddings {}", per_feature.len(), s.width),
                ));
            }
            for (t, x) in total.iter_mut().zip(per_feature) {
                *t += x;
            }
        }
        Ok(total)
    }
}

/// Per-feature sums of `t` along `axis` (a vector is its own per-feature values).
fn along(t: &Tensor, axis: Axis) -> Result<Vec<f32>, candle_core::Error> {
    match (t.rank(), axis) {
        (1, _) => t.to_vec1(),
        (_, Axis::Rows) => t.sum(1)?.to_vec1(),
        (_, Axis::Cols) => t.sum(0)?.to_vec1(),
    }
}

impl Pass for Hidden {
    fn name(&self) -> &'static str {
        "hidden"
    }

    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::Hidden(Hidden::keep(self, g)?)))
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        crate::unit_cut::run(self, g, changed)
    }
}

/// Infer every node's type again, in order, from its operands and weights (every width on the stream changed).
fn retype(g: &mut Graph) -> Result<(), PassError> {
    for n in g.topo_order().map_err(|e| failed(INFO.name, e))? {
        if matches!(g.dag[n].op, Op::Input(_)) {
            continue;
        }
        let operands = g.operands(n);
        let types: Vec<_> = operands.iter().map(|&o| g.dag[o].ty.clone()).collect();
        let refs: Vec<_> = types.iter().collect();
        let ty = g.dag[n]
            .op
            .infer(&refs, &g.weights)
            .map_err(|e| failed(INFO.name, format!("after the cut, %{}: {e}", n.index())))?;
        g.dag[n].ty = ty;
    }
    Ok(())
}
