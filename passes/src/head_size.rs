//! `head-size`: TileSparsity type 1. Unit `j` of a layer is dimension `j` of every head: the strided columns
//! `{h·d + j}` of Q, K and V and the matching rows of the attention-output matrix. Removing it shrinks every
//! head of that layer by one, so the matrices are physically smaller and heads stay uniform.
//!
//! The release scores each matrix's strided groups separately and only zeros them; bertopt removes a dimension
//! from Q, K, V and O together, which is the cut that a smaller graph can represent exactly: with the Q/K
//! columns (and biases) gone, that dimension adds nothing to any attention score, and with the V column gone,
//! nothing to the context. The attention scale stays `1/sqrt(d)` of the *original* size: the query weights are
//! multiplied by `sqrt(d'/d)` so that the lowering's `1/sqrt(d')` gives it back.

use std::collections::BTreeMap;

use bertopt_ir::ops;
use bertopt_ir::{Graph, NodeIndex, Op};
use candle_core::Tensor;

use crate::amount::removed;
use crate::args::Args;
use crate::pass::{failed, Keep, Pass, PassContext, PassError, PassInfo, Recovery, Search, Unit};
use crate::rewrite::{set_weight, shrink, weight};
use crate::scores::Importance;
use crate::unit_cut::{count, UnitCut};

/// `head-size` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "head-size",
    about: "head size (type 1): remove dimension j of every head (Q/K/V columns, O rows); heads shrink",
    args: &[
        ("sparsity", "fraction of each layer's head dimensions removed (default 0.5)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Units(Unit::HeadDims),
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: None,
    build: |a| Ok(Box::new(HeadSize::from_args(a)?)),
};

pub struct HeadSize {
    /// Fraction of each layer's head dimensions removed (at least one always stays).
    pub sparsity: f64,
    pub importance: Importance,
}

fn c(e: candle_core::Error) -> PassError {
    failed(INFO.name, e.to_string())
}

impl HeadSize {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        Ok(HeadSize { sparsity: a.sparsity("sparsity", 0.5)?, importance: a.importance()? })
    }
}

/// Importance of dimension `j` of the heads: Q/K/V columns `h·d + j` and O rows `h·d + j`, summed over heads.
fn dim_scores(g: &Graph, imp: &Importance, op: &Op) -> Result<Vec<f32>, PassError> {
    let Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, .. }) = op else {
        unreachable!("attention only")
    };
    let mut score = vec![0f32; *head_dim];
    let mut add = |per_unit: Tensor| -> Result<(), PassError> {
        let per_dim = per_unit.reshape((*heads, *head_dim)).map_err(c)?.sum(0).map_err(c)?;
        for (s, v) in score.iter_mut().zip(per_dim.to_vec1::<f32>().map_err(c)?) {
            *s += v;
        }
        Ok(())
    };
    for p in [query, key, value] {
        add(imp.of(g, "head-size", &format!("{p}.weight"))?.sum(0).map_err(c)?)?;
    }
    add(imp.of(g, "head-size", &format!("{output}.weight"))?.sum(1).map_err(c)?)?;
    Ok(score)
}

impl UnitCut for HeadSize {
    type Site = NodeIndex;
    const COUNTS: &'static [&'static str] = &["head dimensions removed"];

    fn sites(&self, g: &Graph) -> Result<Vec<NodeIndex>, PassError> {
        crate::sites::dense_attentions(g, INFO.name)
    }

    fn units(&self, g: &Graph, &n: &NodeIndex) -> (usize, usize) {
        let Op::Attention(ops::Attention { head_dim, .. }) = g.dag[n].op else { return (0, 0) };
        (head_dim, removed(head_dim, self.sparsity, head_dim.saturating_sub(1)))
    }

    fn importance(&self, g: &Graph, &n: &NodeIndex) -> Result<Vec<f32>, PassError> {
        dim_scores(g, &self.importance, &g.dag[n].op)
    }

    fn apply(
        &self,
        g: &mut Graph,
        n: NodeIndex,
        _layer: usize,
        keep: &[bool],
        counts: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError> {
        let Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, tiles }) = g.dag[n].op.clone()
        else {
            return Ok(());
        };
        let remove = keep.iter().filter(|k| !**k).count();
        if remove == 0 {
            return Ok(());
        }
        let kept: Vec<usize> = (0..head_dim).filter(|&j| keep[j]).collect();
        let idx: Vec<u32> = (0..heads).flat_map(|h| kept.iter().map(move |&j| (h * head_dim + j) as u32)).collect();
        shrink(g, INFO.name, &[&query, &key, &value], &[&output], &idx)?;
        // The lowering scales scores by 1/sqrt(d'); the model was trained with 1/sqrt(d).
        let rescale = (kept.len() as f64 / head_dim as f64).sqrt();
        for name in [format!("{query}.weight"), format!("{query}.bias")] {
            let t = (weight(g, INFO.name, &name)? * rescale).map_err(c)?;
            set_weight(g, &name, t);
        }
        count(counts, "head dimensions removed", remove);
        g.dag[n].op = Op::Attention(ops::Attention { heads, head_dim: kept.len(), query, key, value, output, tiles });
        Ok(())
    }
}

impl HeadSize {
    /// The head dimensions each attention keeps, `[layer][dim]` in layer order, without changing the graph
    /// (recovery training masks exactly these).
    pub fn keep(&self, g: &Graph) -> Result<Vec<Vec<bool>>, PassError> {
        crate::unit_cut::keep(self, g)
    }
}

impl Pass for HeadSize {
    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::HeadDims(HeadSize::keep(self, g)?)))
    }
    fn name(&self) -> &'static str {
        "head-size"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        crate::unit_cut::run(self, g, changed)
    }
}
