//! `type0`: TileSparsity type 0 as the public release implements it. Each of a layer's Q, K and V matrices is
//! cut along K into blocks of `block` input rows (the head size by default: 12 blocks of 64 in BERT-base) and
//! its lowest-scoring blocks go, `int(blocks · sparsity)` per matrix, independently for Q, K and V.
//!
//! The release calls this head pruning, but a head is a group of *output* columns; this cuts *input* features,
//! so every head keeps its size and each of Q, K and V reads fewer features of the hidden state. True head
//! pruning is `heads`. Physically: each projection becomes one tile holding its kept rows (a Gather of the
//! kept features and a smaller MatMul); the bias stays, which is what the masked matrix computes.

use std::collections::BTreeMap;

use bertopt_ir::ops;
use bertopt_ir::{Graph, Op};

use crate::amount::removed;
use crate::args::Args;
use crate::pass::{Pass, PassContext, PassError, PassInfo, Recovery, Search};
use crate::rewrite::{keep_input_rows, keep_top, require_dense};
use crate::scores::Importance;
use crate::sites::attentions;

/// `type0` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "type0",
    about: "the release's type 0: drop blocks of input rows of Q, K and V, each matrix on its own",
    args: &[
        ("sparsity", "fraction of blocks removed per matrix (default 0.5)"),
        ("block", "rows per block (default: the head size)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: None,
    build: |a| Ok(Box::new(Type0::from_args(a)?)),
};

pub struct Type0 {
    pub sparsity: f64,
    /// Rows per block; `None`: the attention's head size.
    pub block: Option<usize>,
    pub importance: Importance,
}

impl Type0 {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let block = match a.map.contains_key("block") {
            true => Some(a.positive("block", 64)?),
            false => None,
        };
        Ok(Type0 { sparsity: a.sparsity("sparsity", 0.5)?, block, importance: a.importance()? })
    }
}

/// Score of each block of `block` rows of weight `p.weight` (the last block may be shorter).
fn block_scores(g: &Graph, imp: &Importance, p: &str, block: usize) -> Result<Vec<f32>, PassError> {
    let c = |e: candle_core::Error| PassError::Failed { pass: "type0".into(), problem: e.to_string() };
    let rows = imp.of(g, "type0", &format!("{p}.weight"))?.sum(1).map_err(c)?.to_vec1::<f32>().map_err(c)?;
    Ok(rows.chunks(block).map(|b| b.iter().sum()).collect())
}

impl Pass for Type0 {
    fn name(&self) -> &'static str {
        "type0"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let (mut blocks_removed, mut rows_removed) = (0, 0);
        for n in attentions(g, "type0")? {
            let Op::Attention(ops::Attention { head_dim, query, key, value, .. }) = g.dag[n].op.clone() else {
                continue;
            };
            let block = self.block.unwrap_or(head_dim);
            for p in [&query, &key, &value] {
                require_dense(g, "type0", p)?;
                let scores = block_scores(g, &self.importance, p, block)?;
                let remove = removed(scores.len(), self.sparsity, scores.len() - 1);
                let keep_block = keep_top(&scores, remove);
                let k = scores.len() * block; // rows, rounded up to whole blocks
                let keep: Vec<bool> = (0..k).map(|r| keep_block[r / block]).collect();
                let d = crate::rewrite::weight(g, "type0", &format!("{p}.weight"))?.dim(0).unwrap_or(0);
                rows_removed += keep_input_rows(g, "type0", p, &keep[..d])?;
                blocks_removed += remove;
            }
        }
        crate::rewrite::declare_tiles(g);
        changed.insert("row blocks removed".into(), blocks_removed);
        changed.insert("input rows removed".into(), rows_removed);
        Ok(())
    }
}
