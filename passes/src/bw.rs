//! `bw`: block-wise sparsity (TileSparsity type 5). Every encoder matrix is cut into `g`×`g` blocks (32 by
//! default; edge blocks may be smaller); in each matrix the `int(sparsity * blocks)` blocks with the lowest
//! Frobenius norm of their importance are zeroed. Zeros only: see `masked`.

use bertopt_ir::Graph;

use crate::amount::removed;
use crate::args::Args;
use crate::entry_cut::{Entries, EntryCut, Form, Plan};
use crate::pass::{failed, PassError, PassInfo, Recovery, Search};
use crate::scores::Importance;

/// `bw` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "bw",
    about: "block-wise sparsity (type 5): zero the weakest g x g blocks of each matrix; zeros only, no speedup",
    args: &[
        ("sparsity", "fraction of blocks zeroed per matrix (default 0.5)"),
        ("g", "block size (default 32)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: Some(crate::masked::NO_DENSE_SPEEDUP),
    build: |a| Ok(Box::new(Bw::from_args(a)?)),
};

pub struct Bw {
    pub sparsity: f64,
    pub g: usize,
    pub importance: Importance,
}

impl Bw {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let sparsity = a.sparsity("sparsity", 0.5)?;
        let g = a.positive("g", 32)?;
        Ok(Bw { sparsity, g, importance: a.importance()? })
    }
}

impl EntryCut for Bw {
    const INFO: &'static PassInfo = &INFO;

    fn form(&self) -> Form {
        Form::Zeros
    }

    fn plan(&self, g: &Graph) -> Result<Plan, PassError> {
        let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
        let (mut matrices, mut blocks_zeroed) = (vec![], 0);
        for m in crate::sites::encoder_matrices(g, INFO.name, true)? {
            crate::rewrite::require_dense(g, INFO.name, &m.group)?;
            let s = self.importance.of(g, INFO.name, &format!("{}.weight", m.group))?.to_vec2::<f32>().map_err(c)?;
            let (k, n) = (s.len(), s.first().map_or(0, Vec::len));
            let mut blocks = vec![];
            for r0 in (0..k).step_by(self.g) {
                for c0 in (0..n).step_by(self.g) {
                    let (r1, c1) = ((r0 + self.g).min(k), (c0 + self.g).min(n));
                    let fro = (r0..r1).flat_map(|r| (c0..c1).map(move |cc| (r, cc))).map(|(r, cc)| s[r][cc].powi(2));
                    blocks.push((fro.sum::<f32>().sqrt(), r0, r1, c0, c1));
                }
            }
            let remove = removed(blocks.len(), self.sparsity, blocks.len());
            blocks.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.3).cmp(&(b.1, b.3))));
            let mut e = Entries::all(&m.group, k, n);
            for &(_, r0, r1, c0, c1) in &blocks[..remove] {
                for r in r0..r1 {
                    e.keep[r * n + c0..r * n + c1].fill(false);
                }
            }
            blocks_zeroed += remove;
            matrices.push(e);
        }
        let zeroed = matrices.iter().map(Entries::removed).sum();
        let counts = [("blocks zeroed", blocks_zeroed), ("weights zeroed", zeroed)];
        Ok(Plan { matrices, counts: counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect() })
    }
}
