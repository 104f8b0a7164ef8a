//! `tile`: tile-wise sparsity along K (TileSparsity types 2 and 7) and along K and N (type 8). Each per-token
//! linear's N outputs are cut into tiles of `g` columns; inside a tile, whole 1×g row segments (input features)
//! are removed. A tile then reads only its kept input features: the linear becomes a `tiled_linear` (per tile a
//! gather and a smaller dense GEMM, concatenated along N), so the savings are real on a dense runtime.
//!
//! Which segments go: the lowest by score (mean importance of the segment: squared weight, or saved Taylor
//! scores). `scope=global` (type 7) ranks every segment of every tiled matrix together, so tiles and layers end
//! up with different densities; `scope=tile` (type 2, also `kgran`) removes the same fraction inside every tile.
//! A tile always keeps its best row: a tile with no input would be a constant, which this version does not emit.
//!
//! `n=true` (type 8) first removes whole output columns, the lowest `sparsity` of all columns of all tiled
//! matrices by mean importance (norm / K), each matrix keeping at least one; the tiles are then cut from the
//! surviving columns and lose row segments as above, so density is about (1-s)². A removed column yields its
//! bias alone (`P.cols` lists the computed ones), which is what the zeroed column computes.
//!
//! Tiled: every per-token `linear` (the FFN matrices) and, unless `attention=false`, the Q/K/V/O projections of
//! each `attention` (the release's 72 matrices of BERT-base); a tiled projection is stored as the same tile
//! weights and the `attention` op reads it by their presence. Projections an earlier `type0`/`qkv` already cut
//! are left as they are.

use std::collections::BTreeMap;

use bertopt_ir::Graph;
use candle_core::{Device, Tensor};

use crate::amount::removed;
use crate::args::Args;
use crate::entry_cut::{Entries, EntryCut, Form, Plan};
use crate::pass::{failed, PassError, PassInfo, Recovery, Search};
use crate::scores::Importance;

/// `tile` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "tile",
    about: "tile-wise sparsity along K: per tile of g outputs, drop input-row segments; gather + small GEMMs",
    args: &[
        ("sparsity", "fraction of 1 x g row segments removed (default 0.5)"),
        ("g", "tile width in output columns (default 128)"),
        ("scope", "global (type 7, one ranking over all matrices; default) or tile (type 2, per tile)"),
        ("n", "true: type 8, first remove whole output columns (global ranking), then tile the rest"),
        ("attention", "also tile the Q/K/V/O projections (default true)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[0.5] }),
    note: None,
    build: |a| Ok(Box::new(TilePass::from_args(a)?)),
};

/// `kgran` as the registry lists it.
pub const KGRAN_INFO: PassInfo = PassInfo {
    name: "kgran",
    about: "K-granularity (type 2): `tile` with every tile losing the same fraction of its row segments",
    args: &[
        ("sparsity", "fraction of 1 x g row segments removed in every tile (default 0.5)"),
        ("g", "tile width in output columns (default 128)"),
        ("attention", "also tile the Q/K/V/O projections (default true)"),
        ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
    ],
    recovery: Recovery::Entries,
    search: Some(Search { arg: "sparsity", values: &[] }),
    note: None,
    build: |a| Ok(Box::new(TilePass::kgran(a)?)),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Type 7: one ranking over all segments of all tiled matrices.
    Global,
    /// Type 2: every tile loses the same fraction of its rows.
    Tile,
}

pub struct TilePass {
    pub sparsity: f64,
    pub g: usize,
    pub scope: Scope,
    /// Type 8: remove whole output columns first.
    pub n: bool,
    /// Also tile the attention projections.
    pub attention: bool,
    /// How row segments (and columns) are ranked (magnitude, or saved Taylor scores).
    pub importance: Importance,
}

fn c(e: candle_core::Error) -> PassError {
    failed(INFO.name, e.to_string())
}

impl TilePass {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let sparsity = a.sparsity("sparsity", 0.5)?;
        let g = a.positive("g", 128)?;
        let scope = match a.map.get("scope").map(String::as_str) {
            None | Some("global") => Scope::Global,
            Some("tile") => Scope::Tile,
            Some(other) => return Err(a.bad("scope", format!("`{other}`: use global (type 7) or tile (type 2)"))),
        };
        Ok(TilePass {
            sparsity,
            g,
            scope,
            n: a.get("n", false)?,
            attention: a.get("attention", true)?,
            importance: a.importance()?,
        })
    }

    /// `kgran`: type 2 under its own name (tile-local ranking along K).
    pub fn kgran(a: &Args) -> Result<Self, PassError> {
        Ok(TilePass { scope: Scope::Tile, ..TilePass::from_args(a)? })
    }
}

/// One matrix to tile: its parameter group and the importance of each of its K×N entries.
struct Target {
    w: String,
    k: usize,
    n: usize,
    importance: Tensor,
}

fn targets(g: &Graph, imp: &Importance, attention: bool) -> Result<Vec<Target>, PassError> {
    let mut out = vec![];
    let target = |w: &str, k: usize, n: usize| -> Result<Target, PassError> {
        let importance = imp.of(g, INFO.name, &format!("{w}.weight"))?;
        Ok(Target { w: w.to_string(), k, n, importance })
    };
    for m in crate::sites::encoder_matrices(g, INFO.name, attention)? {
        // The shape of the dense weight; a projection without one was already cut.
        let Some(w) = g.weights.get(&format!("{}.weight", m.group)) else { continue };
        if let Some([k, n]) = w.ty.known_dims().as_deref() {
            out.push(target(&m.group, *k, *n)?);
        }
    }
    Ok(out)
}

/// A tile: the output columns it computes and the score of each of its K rows (mean over those columns).
struct Tile {
    cols: Vec<usize>,
    rows: Vec<f32>,
}

fn tiles(t: &Target, cols: &[usize], width: usize) -> Result<Vec<Tile>, PassError> {
    let mut out = vec![];
    for chunk in cols.chunks(width) {
        let idx: Vec<u32> = chunk.iter().map(|&c| c as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &Device::Cpu).map_err(c)?;
        let s = (t.importance.index_select(&idx, 1).map_err(c)?.sum(1).map_err(c)? / chunk.len() as f64).map_err(c)?;
        out.push(Tile { cols: chunk.to_vec(), rows: s.to_vec1::<f32>().map_err(c)? });
    }
    Ok(out)
}

/// Remove the `remove` lowest of `scored` (ties: later entries first) from `keep`.
fn drop_lowest(scored: &mut [(f32, usize, usize, usize)], remove: usize, keep: &mut [Vec<Vec<bool>>]) {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then((b.1, b.2, b.3).cmp(&(a.1, a.2, a.3))));
    for &(_, m, t, r) in scored.iter().take(remove) {
        keep[m][t][r] = false;
    }
}

impl TilePass {
    /// Type 8's first cut: the output columns each target keeps (all of them unless `n=true`).
    fn columns(&self, targets: &[Target]) -> Result<Vec<Vec<usize>>, PassError> {
        if !self.n {
            return Ok(targets.iter().map(|t| (0..t.n).collect()).collect());
        }
        // (score, matrix, column), each matrix's best column left out so none is emptied.
        let mut all = vec![];
        let mut total = 0;
        for (m, t) in targets.iter().enumerate() {
            let s = (t.importance.sum(0).map_err(c)? / t.k as f64).map_err(c)?.to_vec1::<f32>().map_err(c)?;
            let best = (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b]).then(b.cmp(&a)));
            all.extend((0..s.len()).filter(|&j| Some(j) != best).map(|j| (s[j], m, j)));
            total += s.len();
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then((b.1, b.2).cmp(&(a.1, a.2))));
        let remove = removed(total, self.sparsity, all.len());
        let mut keep: Vec<Vec<bool>> = targets.iter().map(|t| vec![true; t.n]).collect();
        for &(_, m, j) in &all[..remove] {
            keep[m][j] = false;
        }
        Ok(keep.iter().map(|k| (0..k.len()).filter(|&j| k[j]).collect()).collect())
    }

    /// `keep[matrix][tile][row]` for the tiles of each target.
    fn keep(&self, tiles: &[Vec<Tile>]) -> Vec<Vec<Vec<bool>>> {
        let mut keep: Vec<Vec<Vec<bool>>> =
            tiles.iter().map(|ts| ts.iter().map(|t| vec![true; t.rows.len()]).collect()).collect();
        // Each tile's best row is never a candidate, so no tile is left without input.
        let candidates = |m: usize, t: usize, scores: &[f32]| -> Vec<(f32, usize, usize, usize)> {
            let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
            (0..scores.len()).filter(|r| Some(*r) != best).map(|r| (scores[r], m, t, r)).collect()
        };
        match self.scope {
            Scope::Global => {
                let mut all = vec![];
                let mut total = 0;
                for (m, ts) in tiles.iter().enumerate() {
                    for (t, tile) in ts.iter().enumerate() {
                        all.extend(candidates(m, t, &tile.rows));
                        total += tile.rows.len();
                    }
                }
                let remove = removed(total, self.sparsity, all.len());
                drop_lowest(&mut all, remove, &mut keep);
            }
            Scope::Tile => {
                for (m, ts) in tiles.iter().enumerate() {
                    for (t, tile) in ts.iter().enumerate() {
                        let mut cands = candidates(m, t, &tile.rows);
                        let remove = removed(tile.rows.len(), self.sparsity, cands.len());
                        drop_lowest(&mut cands, remove, &mut keep);
                    }
                }
            }
        }
        keep
    }
}

impl EntryCut for TilePass {
    const INFO: &'static PassInfo = &INFO;

    fn form(&self) -> Form {
        Form::Tiles { width: self.g }
    }

    fn plan(&self, g: &Graph) -> Result<Plan, PassError> {
        let targets = targets(g, &self.importance, self.attention)?;
        let columns = self.columns(&targets)?;
        let tiles: Vec<Vec<Tile>> =
            targets.iter().zip(&columns).map(|(t, cols)| tiles(t, cols, self.g)).collect::<Result<_, _>>()?;
        let keep = self.keep(&tiles);
        let (mut matrices, mut segments, mut tiled, mut dropped_cols) = (vec![], 0, 0, 0);
        for ((tg, cols), (tiles, keep)) in targets.iter().zip(&columns).zip(tiles.iter().zip(&keep)) {
            let removed: usize = keep.iter().map(|rows| rows.iter().filter(|k| !**k).count()).sum();
            if removed > 0 || cols.len() < tg.n {
                segments += removed;
                dropped_cols += tg.n - cols.len();
                tiled += 1;
            }
            let mut e = Entries { group: tg.w.clone(), k: tg.k, n: tg.n, keep: vec![false; tg.k * tg.n] };
            for (tile, rows) in tiles.iter().zip(keep) {
                for r in (0..rows.len()).filter(|&r| rows[r]) {
                    tile.cols.iter().for_each(|&col| e.keep[r * tg.n + col] = true);
                }
            }
            matrices.push(e);
        }
        let mut counts: BTreeMap<String, usize> =
            [("row segments removed".to_string(), segments), ("matrices tiled".to_string(), tiled)].into();
        if self.n {
            counts.insert("output columns removed".into(), dropped_cols);
        }
        Ok(Plan { matrices, counts })
    }
}
