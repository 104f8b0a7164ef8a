//! `qkv`: TileSparsity type 3. Per layer, the scores of Q, K and V are read side by side (`[D, 3·inner]`) and
//! an input feature goes from all three at once: the `int(D · sparsity)` rows with the lowest summed score.
//! Physically the three projections read the same kept features, so the ONNX graph gathers them once and runs
//! three smaller MatMuls. Biases stay, which is what the masked matrices compute.

use bertopt_ir::ops;
use bertopt_ir::{Graph, Op};

use crate::args::Args;
use crate::entry_cut::{Entries, EntryCut, Form, Plan};
use crate::pass::{failed, PassError, PassInfo, Recovery, Search};
use crate::rewrite::{keep_top, require_dense, weight};
use crate::scores::Importance;
use crate::sites::attentions;

/// `qkv` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "qkv",
    about: "QKV together (type 3): drop input features from Q, K and V at once; one shared gather",
    args: &[
        ("sparsity", "fraction of input features removed per layer (default 0.5)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: None,
    build: |a| Ok(Box::new(Qkv::from_args(a)?)),
};

pub struct Qkv {
    pub sparsity: f64,
    pub importance: Importance,
}

impl Qkv {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        Ok(Qkv { sparsity: a.sparsity("sparsity", 0.5)?, importance: a.importance()? })
    }
}

/// Each input feature's summed importance over the Q, K and V rows it feeds.
fn row_scores(g: &Graph, imp: &Importance, ps: [&String; 3]) -> Result<Vec<f32>, PassError> {
    let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
    let mut total: Vec<f32> = vec![];
    for p in ps {
        let rows = imp.of(g, INFO.name, &format!("{p}.weight"))?.sum(1).map_err(c)?.to_vec1::<f32>().map_err(c)?;
        total.resize(rows.len(), 0.0);
        total.iter_mut().zip(rows).for_each(|(t, r)| *t += r);
    }
    Ok(total)
}

impl EntryCut for Qkv {
    const INFO: &'static PassInfo = &INFO;

    fn form(&self) -> Form {
        Form::Tiles { width: usize::MAX }
    }

    fn plan(&self, g: &Graph) -> Result<Plan, PassError> {
        let (mut matrices, mut removed) = (vec![], 0);
        for n in attentions(g, INFO.name)? {
            let Op::Attention(ops::Attention { query, key, value, .. }) = &g.dag[n].op else { continue };
            for p in [query, key, value] {
                require_dense(g, INFO.name, p)?;
            }
            let scores = row_scores(g, &self.importance, [query, key, value])?;
            let remove = crate::amount::removed(scores.len(), self.sparsity, scores.len().saturating_sub(1));
            let keep = keep_top(&scores, remove);
            for p in [query, key, value] {
                let n = weight(g, INFO.name, &format!("{p}.weight"))?.dims()[1];
                matrices.push(Entries::rows(p, n, &keep));
            }
            removed += remove;
        }
        Ok(Plan { matrices, counts: [("input features removed".to_string(), removed)].into() })
    }
}
