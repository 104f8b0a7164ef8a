//! `vw`: vector-wise sparsity (TileSparsity type 4). In every output column of every encoder matrix, each run of
//! `v` consecutive K entries (16 by default) keeps its `int((1 - sparsity) * v)` most important entries (4 of 16
//! at 75 %); the rest are zeroed. Zeros only: see `masked`.

use std::collections::BTreeMap;

use bertopt_ir::Graph;
use candle_core::Tensor;

use crate::args::Args;
use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery, Search};
use crate::rewrite::{set_weight, weight};
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

/// Zero all but the `keep` most important of each run of `v` entries along K (ties: the lower index stays).
fn mask_runs(w: &[Vec<f32>], s: &[Vec<f32>], v: usize, keep: usize) -> (Vec<f32>, usize) {
    let (k, n) = (w.len(), w.first().map_or(0, Vec::len));
    let mut out: Vec<f32> = w.iter().flatten().copied().collect();
    let mut zeroed = 0;
    for col in 0..n {
        for start in (0..k).step_by(v) {
            let end = (start + v).min(k);
            let keep_here = keep.min(end - start);
            let mut rows: Vec<usize> = (start..end).collect();
            rows.sort_by(|&a, &b| s[b][col].total_cmp(&s[a][col]).then(a.cmp(&b)));
            for &r in &rows[keep_here..] {
                out[r * n + col] = 0.0;
                zeroed += 1;
            }
        }
    }
    (out, zeroed)
}

impl Pass for Vw {
    fn name(&self) -> &'static str {
        "vw"
    }

    fn note(&self) -> Option<&'static str> {
        INFO.note
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let c = |e: candle_core::Error| failed(INFO.name, e.to_string());
        let keep = ((1.0 - self.sparsity) * self.v as f64) as usize;
        let mut zeroed = 0;
        for m in crate::sites::encoder_matrices(g, INFO.name, true)? {
            let name = format!("{}.weight", m.group);
            crate::rewrite::require_dense(g, INFO.name, name.trim_end_matches(".weight"))?;
            let w = weight(g, "vw", &name)?;
            let dims = w.dims().to_vec();
            let s = self.importance.of(g, "vw", &name)?.to_vec2::<f32>().map_err(c)?;
            let (masked, z) = mask_runs(&w.to_vec2::<f32>().map_err(c)?, &s, self.v, keep);
            zeroed += z;
            set_weight(g, &name, Tensor::from_vec(masked, dims, w.device()).map_err(c)?);
        }
        changed.insert("weights zeroed".into(), zeroed);
        Ok(())
    }
}
