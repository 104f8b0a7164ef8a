//! `ffn`: remove intermediate neurons of the feed-forward blocks. A removed neuron loses its column of the
//! FFN-in matrix (and its bias) and its row of the FFN-out matrix, so both matmuls shrink. A block that loses
//! every neuron leaves only its output bias: `add_norm(ffn(h), h)` becomes `layer_norm(add_bias(h))`.
//!
//! Which neurons go, per layer: the `int(I * ratio)` (or `count=N`) of lowest weight magnitude
//! (‖column of W_in‖² + ‖row of W_out‖²). `multiple=M` rounds the number kept up to a multiple of M, so the
//! smaller matrices keep SIMD-friendly widths.

use std::collections::BTreeMap;

use crate::sites::FfnBlock;
use bertopt_ir::ops;
use bertopt_ir::{Dim, Graph, NodeIndex, Op};

use crate::amount::{round_kept, Amount};
use crate::args::Args;
use crate::pass::{failed, Keep, Pass, PassContext, PassError, PassInfo, Recovery, Search, Unit};
use crate::rewrite::{kept, residual_only, shrink};
use crate::scores::Importance;
use crate::unit_cut::{count, UnitCut};

/// `ffn` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "ffn",
    about: "remove FFN intermediate neurons (FFN-in columns, FFN-out rows); a block with none left goes",
    args: &[
        ("ratio", "fraction of neurons removed per layer, lowest weight magnitude first (default 0.5)"),
        ("count", "number of neurons removed per layer, lowest weight magnitude first"),
        ("multiple", "round the neurons kept up to a multiple of this (default 1)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Units(Unit::Neurons),
    search: Some(Search { arg: "ratio", values: &[0.25, 0.5, 0.75] }),
    note: None,
    build: |a| Ok(Box::new(Ffn::from_args(a)?)),
};

pub struct Ffn {
    /// Neurons removed per layer: a fraction of the intermediate size, or a count.
    pub remove: Amount,
    pub multiple: usize,
    /// How neurons are ranked (magnitude, or saved Taylor scores).
    pub importance: Importance,
}

impl Ffn {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let remove = Amount::ratio_or_count(a, "neurons removed per layer")?;
        let multiple: usize = a.get("multiple", 1)?;
        if multiple == 0 {
            return Err(a.bad("multiple", "must be at least 1".into()));
        }
        Ok(Ffn { remove, multiple, importance: a.importance()? })
    }
}

fn blocks(g: &Graph) -> Result<Vec<FfnBlock>, PassError> {
    // An FFN whose matrices `tile` already replaced has no neuron structure left to remove: the order is wrong.
    let tiled_ffn = g
        .dag
        .node_indices()
        .filter(|&n| matches!(g.dag[n].op, Op::Gelu))
        .any(|act| g.dag.neighbors_undirected(act).any(|m| matches!(g.dag[m].op, Op::TiledLinear(_))));
    if tiled_ffn {
        return Err(failed(
            INFO.name,
            "the FFN matrices are already tiled: run `ffn` before `tile` (e.g. `ffn(ratio=0.5),tile`)",
        ));
    }
    crate::sites::ffn_blocks(g, INFO.name)
}

fn names(g: &Graph, b: &FfnBlock) -> (String, String) {
    let name = |n: NodeIndex| match &g.dag[n].op {
        Op::Linear(ops::Linear { w, .. }) => w.clone(),
        _ => unreachable!("blocks() only returns linears here"),
    };
    (name(b.fc_in), name(b.fc_out))
}

/// Importance of every neuron j: the summed element importance (W², or Taylor scores) of column j of W_in and
/// row j of W_out (weights stored K x N).
fn importance(g: &Graph, imp: &Importance, w_in: &str, w_out: &str) -> Result<Vec<f32>, PassError> {
    let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
    let a = imp.of(g, "ffn", &format!("{w_in}.weight"))?.sum(0).map_err(c)?;
    let b = imp.of(g, "ffn", &format!("{w_out}.weight"))?.sum(1).map_err(c)?;
    (a + b).map_err(c)?.to_vec1::<f32>().map_err(c)
}

impl UnitCut for Ffn {
    type Site = FfnBlock;
    const COUNTS: &'static [&'static str] = &["neurons removed", "ffn blocks removed"];

    fn sites(&self, g: &Graph) -> Result<Vec<FfnBlock>, PassError> {
        blocks(g)
    }

    fn units(&self, g: &Graph, b: &FfnBlock) -> (usize, usize) {
        let Op::Linear(ops::Linear { n: inner, .. }) = g.dag[b.fc_in].op else { return (0, 0) };
        (inner, round_kept(inner, self.remove.of(inner, inner), self.multiple))
    }

    fn importance(&self, g: &Graph, b: &FfnBlock) -> Result<Vec<f32>, PassError> {
        let (w_in, w_out) = names(g, b);
        importance(g, &self.importance, &w_in, &w_out)
    }

    fn apply(
        &self,
        g: &mut Graph,
        b: FfnBlock,
        layer: usize,
        keep: &[bool],
        counts: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError> {
        let (w_in, w_out) = names(g, &b);
        let Op::Linear(ops::Linear { k: d, n: inner, .. }) = g.dag[b.fc_in].op else { return Ok(()) };
        let new = keep.iter().filter(|k| **k).count();
        if new == inner {
            return Ok(());
        }
        count(counts, "neurons removed", inner - new);
        if new == 0 {
            residual_only(g, b.fc_out, &format!("{w_out}.bias"), &format!("ffn: layer {layer}"))
                .map_err(|e| failed(INFO.name, e))?;
            count(counts, "ffn blocks removed", 1);
            return Ok(());
        }
        shrink(g, INFO.name, &[&w_in], &[&w_out], &kept(keep))?;
        g.dag[b.fc_in].op = Op::Linear(ops::Linear { w: w_in, k: d, n: new });
        if let Op::Linear(ops::Linear { w, n, .. }) = g.dag[b.fc_out].op.clone() {
            g.dag[b.fc_out].op = Op::Linear(ops::Linear { w, k: new, n });
        }
        for node in [b.fc_in, b.act] {
            if let Some(last) = g.dag[node].ty.shape.last_mut() {
                *last = Dim::Known(new);
            }
        }
        Ok(())
    }
}

impl Ffn {
    /// Which neurons this pass keeps, `[block][neuron]` in layer order, without changing the graph (recovery
    /// training gates exactly these).
    pub fn keep(&self, g: &Graph) -> Result<Vec<Vec<bool>>, PassError> {
        crate::unit_cut::keep(self, g)
    }
}

impl Pass for Ffn {
    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::Neurons(Ffn::keep(self, g)?)))
    }
    fn name(&self) -> &'static str {
        "ffn"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        crate::unit_cut::run(self, g, changed)
    }
}
