//! `type0`: TileSparsity type 0 as the public release implements it. Each of a layer's Q, K and V matrices is
//! cut along K into blocks of `block` input rows (the head size by default: 12 blocks of 64 in BERT-base) and
//! its lowest-scoring blocks go, `int(blocks · sparsity)` per matrix, independently for Q, K and V.
//!
//! The release calls this head pruning, but a head is a group of *output* columns; this cuts *input* features,
//! so every head keeps its size and each of Q, K and V reads fewer features of the hidden state. True head
//! pruning is `heads`. Physically: each projection becomes one tile holding its kept rows (a Gather of the
//! kept features and a smaller MatMul); the bias stays, which is what the masked matrix computes.

use bertopt_ir::ops;
use bertopt_ir::{Graph, Op};

use crate::amount::removed;
use crate::args::Args;
use crate::entry_cut::{Entries, EntryCut, Form, Plan};
use crate::pass::{PassError, PassInfo, Recovery, Search};
use crate::rewrite::{keep_top, require_dense, weight};
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
    let c = |e: candle_core::Error| PassError::Failed { pass: INFO.name.into(), problem: e.to_string() };
    let rows = imp.of(g, INFO.name, &format!("{p}.weight"))?.sum(1).map_err(c)?.to_vec1::<f32>().map_err(c)?;
    Ok(rows.chunks(block).map(|b| b.iter().sum()).collect())
}

impl EntryCut for Type0 {
    const INFO: &'static PassInfo = &INFO;

    fn form(&self) -> Form {
        Form::Tiles { width: usize::MAX }
    }

    fn plan(&self, g: &Graph) -> Result<Plan, PassError> {
        let (mut matrices, mut blocks_removed, mut rows_removed) = (vec![], 0, 0);
        for n in attentions(g, INFO.name)? {
            let Op::Attention(ops::Attention { head_dim, query, key, value, .. }) = &g.dag[n].op else { continue };
            let block = self.block.unwrap_or(*head_dim);
            for p in [query, key, value] {
                require_dense(g, INFO.name, p)?;
                let scores = block_scores(g, &self.importance, p, block)?;
                let remove = removed(scores.len(), self.sparsity, scores.len() - 1);
                let keep_block = keep_top(&scores, remove);
                let dims = weight(g, INFO.name, &format!("{p}.weight"))?.dims().to_vec();
                let keep: Vec<bool> = (0..dims[0]).map(|r| keep_block[r / block]).collect();
                rows_removed += keep.iter().filter(|k| !**k).count();
                blocks_removed += remove;
                matrices.push(Entries::rows(p, dims[1], &keep));
            }
        }
        let counts = [("row blocks removed", blocks_removed), ("input rows removed", rows_removed)];
        Ok(Plan { matrices, counts: counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect() })
    }
}
