//! `vw`: vector-wise sparsity (TileSparsity type 4). In every output column of every encoder matrix, each run of
//! `v` consecutive K entries (16 by default) keeps its `int((1 - sparsity) * v)` most important entries (4 of 16
//! at 75 %); the rest are zeroed. Zeros only: see `masked`.

use bertopt_ir::Graph;

use crate::args::Args;
use crate::entry_cut::{Entries, EntryCut, Form, Plan};
use crate::pass::{failed, PassError, PassInfo, Recovery, Search};
use crate::scores::Importance;

/// `vw` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "vw",
    about: "vector-wise sparsity (type 4): each run of v along K keeps its top (1-s)v; zeros only, no speedup",
    args: &[
        ("sparsity", "fraction zeroed in every run (default 0.75: 4 of 16 kept)"),
        ("v", "run length along K (default 16)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: Some(crate::masked::NO_DENSE_SPEEDUP),
    build: |a| Ok(Box::new(Vw::from_args(a)?)),
};

pub struct Vw {
    pub sparsity: f64,
    pub v: usize,
    pub importance: Importance,
}

impl Vw {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let sparsity = a.sparsity("sparsity", 0.75)?;
        let v = a.positive("v", 16)?;
        Ok(Vw { sparsity, v, importance: a.importance()? })
    }
}

/// Keep the `keep` most important of each run of `v` entries along K of `[K, N]` scores `s` (ties: the lower
/// index stays); row-major.
fn keep_runs(s: &[Vec<f32>], v: usize, keep: usize) -> Vec<bool> {
    let (k, n) = (s.len(), s.first().map_or(0, Vec::len));
    let mut out = vec![true; k * n];
    for col in 0..n {
        for start in (0..k).step_by(v) {
            let end = (start + v).min(k);
            let keep_here = keep.min(end - start);
            let mut rows: Vec<usize> = (start..end).collect();
            rows.sort_by(|&a, &b| s[b][col].total_cmp(&s[a][col]).then(a.cmp(&b)));
            for &r in &rows[keep_here..] {
                out[r * n + col] = false;
            }
        }
    }
    out
}

impl EntryCut for Vw {
    const INFO: &'static PassInfo = &INFO;

    fn form(&self) -> Form {
        Form::Zeros
    }

    fn plan(&self, g: &Graph) -> Result<Plan, PassError> {
        let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
        let keep = ((1.0 - self.sparsity) * self.v as f64) as usize;
        let mut matrices = vec![];
        for m in crate::sites::encoder_matrices(g, INFO.name, true)? {
            crate::rewrite::require_dense(g, INFO.name, &m.group)?;
            let s = self.importance.of(g, INFO.name, &format!("{}.weight", m.group))?.to_vec2::<f32>().map_err(c)?;
            let (k, n) = (s.len(), s.first().map_or(0, Vec::len));
            matrices.push(Entries { group: m.group, k, n, keep: keep_runs(&s, self.v, keep) });
        }
        let zeroed = matrices.iter().map(Entries::removed).sum();
        Ok(Plan { matrices, counts: [("weights zeroed".to_string(), zeroed)].into() })
    }
}
