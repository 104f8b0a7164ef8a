//! `tile`: tile-wise sparsity along K (TileSparsity types 2 and 7). Each per-token linear's N outputs are cut
//! into tiles of `g` columns; inside a tile, whole 1×g row segments (input features) are removed. A tile then
//! reads only its kept input features: the linear becomes a `tiled_linear` (per tile a gather and a smaller dense
//! GEMM, concatenated along N), so the savings are real on a dense runtime.
//!
//! Which segments go: the lowest by score (mean squared weight of the segment; Taylor scores when they land).
//! `scope=global` (type 7) ranks every segment of every tiled matrix together, so tiles and layers end up with
//! different densities; `scope=tile` (type 2) removes the same fraction inside every tile. A tile always keeps
//! its best row: a tile with no input would be a constant, which this version does not emit.
//! Tiled: the FFN matrices (and any other per-token `linear`); the attention projections live inside the fused
//! `attention` op and are not tiled yet.

use std::collections::BTreeMap;

use bertopt_ir::{op::tile_names, Graph, NodeIndex, Op};
use candle_core::{DType, Device, Tensor};

use crate::pass::{Pass, PassContext, PassError};
use crate::registry::Args;
use crate::rewrite::{set_weight, weight};
use crate::scores::Importance;

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
    /// How row segments are ranked (magnitude, or saved Taylor scores).
    pub importance: Importance,
}

fn fail(problem: impl Into<String>) -> PassError {
    PassError::Failed { pass: "tile".into(), problem: problem.into() }
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
        if a.get("n", false)? {
            return Err(a.bad("n", "tiling along K and N (type 8) is not implemented yet".into()));
        }
        Ok(TilePass { sparsity, g, scope, importance: Importance::from_arg("tile", a.map.get("scores"))? })
    }
}

/// One matrix to tile: its node, parameter group, and per tile (first column, width, score of every row).
struct Target {
    node: NodeIndex,
    w: String,
    k: usize,
    n: usize,
    tiles: Vec<(usize, usize, Vec<f32>)>,
}

fn c(e: candle_core::Error) -> PassError {
    fail(e.to_string())
}

fn targets(g: &Graph, width: usize, imp: &Importance) -> Result<Vec<Target>, PassError> {
    let mut out = vec![];
    for node in g.topo_order().map_err(fail)? {
        let Op::Linear { w, k, n } = &g.dag[node].op else { continue };
        if g.dag[node].ty.rank() != 3 {
            continue; // pooler and classifier run once per sequence: nothing to gain
        }
        let sq = imp.of(g, "tile", &format!("{w}.weight"))?;
        let mut tiles = vec![];
        for c0 in (0..*n).step_by(width) {
            let wd = width.min(n - c0);
            let s = (sq.narrow(1, c0, wd).map_err(c)?.sum(1).map_err(c)? / wd as f64).map_err(c)?;
            tiles.push((c0, wd, s.to_vec1::<f32>().map_err(c)?));
        }
        out.push(Target { node, w: w.clone(), k: *k, n: *n, tiles });
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
    /// `keep[matrix][tile][row]` for the targets, in graph order.
    fn keep(&self, targets: &[Target]) -> Vec<Vec<Vec<bool>>> {
        let mut keep: Vec<Vec<Vec<bool>>> = targets.iter().map(|t| vec![vec![true; t.k]; t.tiles.len()]).collect();
        // Each tile's best row is never a candidate, so no tile is left without input.
        let candidates = |m: usize, t: usize, scores: &[f32]| -> Vec<(f32, usize, usize, usize)> {
            let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
            (0..scores.len()).filter(|r| Some(*r) != best).map(|r| (scores[r], m, t, r)).collect()
        };
        match self.scope {
            Scope::Global => {
                let mut all = vec![];
                let mut total = 0;
                for (m, tg) in targets.iter().enumerate() {
                    for (t, (_, _, s)) in tg.tiles.iter().enumerate() {
                        all.extend(candidates(m, t, s));
                        total += s.len();
                    }
                }
                let remove = ((total as f64 * self.sparsity) as usize).min(all.len());
                drop_lowest(&mut all, remove, &mut keep);
            }
            Scope::Tile => {
                for (m, tg) in targets.iter().enumerate() {
                    for (t, (_, _, s)) in tg.tiles.iter().enumerate() {
                        let mut cands = candidates(m, t, s);
                        let remove = ((s.len() as f64 * self.sparsity) as usize).min(cands.len());
                        drop_lowest(&mut cands, remove, &mut keep);
                    }
                }
            }
        }
        keep
    }
}

impl Pass for TilePass {
    fn name(&self) -> &'static str {
        "tile"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let targets = targets(g, self.g, &self.importance)?;
        let keep = self.keep(&targets);
        let (mut segments, mut matrices) = (0, 0);
        for (tg, keep) in targets.iter().zip(&keep) {
            let removed: usize = keep.iter().map(|rows| rows.iter().filter(|k| !**k).count()).sum();
            if removed == 0 {
                continue;
            }
            segments += removed;
            matrices += 1;
            let w = weight(g, "tile", &format!("{}.weight", tg.w))?.clone();
            for (t, ((c0, wd, _), rows)) in tg.tiles.iter().zip(keep).enumerate() {
                let idx: Vec<i64> = rows.iter().enumerate().filter(|(_, k)| **k).map(|(r, _)| r as i64).collect();
                let idx_t = Tensor::new(idx.as_slice(), &Device::Cpu).map_err(c)?;
                let sub = w
                    .narrow(1, *c0, *wd)
                    .map_err(c)?
                    .contiguous()
                    .map_err(c)?
                    .index_select(&idx_t.to_dtype(DType::U32).map_err(c)?, 0)
                    .map_err(c)?
                    .contiguous()
                    .map_err(c)?;
                let (rows_name, weight_name) = tile_names(&tg.w, t);
                set_weight(g, &rows_name, idx_t);
                set_weight(g, &weight_name, sub);
            }
            g.weights.0.remove(&format!("{}.weight", tg.w)); // the tiles replace it
            g.dag[tg.node].op = Op::TiledLinear { w: tg.w.clone(), k: tg.k, n: tg.n, tiles: tg.tiles.len() };
        }
        changed.insert("row segments removed".into(), segments);
        changed.insert("matrices tiled".into(), matrices);
        Ok(())
    }
}
