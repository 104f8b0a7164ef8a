//! The entry cuts (`type0`, `qkv`, `tile`, `kgran`, `vw`, `bw`) share one shape: each matrix they cut keeps its
//! index space `[K, N]` and loses some entries. `EntryCut` is what such a cut says for itself (which entries of
//! which matrices it keeps, ranked on the graph it is given, and how the result is stored); `keep` and `run` here
//! are the rest, the same for each, so the entries recovery training masks (`Pass::keep`) and the entries the
//! export drops come from one computation.
//!
//! Two storage forms: `Zeros` writes zeros and keeps every shape (`vw`, `bw`); `Tiles` makes each matrix read
//! only what it keeps (`tile`, `kgran`; `type0` and `qkv` as one tile of every column, which restricts the
//! inputs).

use std::collections::BTreeMap;

use bertopt_ir::ops::{self, cols_name, tile_names};
use bertopt_ir::{Graph, Op};
use candle_core::{Device, Tensor};

pub use crate::entries::Entries;
use crate::error::{failed, PassError};
use crate::pass::{Keep, Pass, PassContext, PassInfo};
use crate::rewrite::{declare_tiles, set_weight, weight};

/// How a cut stores what it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Removed entries become zeros; every shape stays (no dense speedup: see `masked`).
    Zeros,
    /// The computed columns (those that keep an entry) are cut into tiles of `width`; each tile reads only the
    /// rows its columns keep, which must be the same for all of them. A linear becomes a `tiled_linear`; an
    /// attention projection is stored as tiles its op declares. `usize::MAX`: one tile, i.e. fewer inputs.
    Tiles { width: usize },
}

/// What an entry cut's plan says: the entries kept per matrix it cuts (in site order) and the counts `run`
/// reports, each present even when nothing is removed.
pub struct Plan {
    pub matrices: Vec<Entries>,
    pub counts: BTreeMap<String, usize>,
}

pub trait EntryCut {
    /// The pass's registry entry (its name for errors and reports, its note).
    const INFO: &'static PassInfo;
    /// How the kept entries are stored.
    fn form(&self) -> Form;
    /// The entries each matrix keeps, ranked on `g` without changing it; refuses a graph the cut cannot apply to.
    fn plan(&self, g: &Graph) -> Result<Plan, PassError>;
}

/// The entries each matrix keeps, without changing the graph.
pub fn keep<C: EntryCut>(cut: &C, g: &Graph) -> Result<Vec<Entries>, PassError> {
    Ok(cut.plan(g)?.matrices)
}

/// Apply the cut: every matrix of the plan stored in the cut's form.
pub fn run<C: EntryCut>(cut: &C, g: &mut Graph, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
    let plan = cut.plan(g)?;
    for e in plan.matrices.iter().filter(|e| e.removed() > 0) {
        match cut.form() {
            Form::Zeros => zero(g, C::INFO.name, e)?,
            Form::Tiles { width } => tile(g, C::INFO.name, e, width)?,
        }
    }
    if matches!(cut.form(), Form::Tiles { .. }) {
        declare_tiles(g);
    }
    changed.extend(plan.counts);
    Ok(())
}

/// Every entry cut is a pass the same way: `keep` and `run` above.
impl<C: EntryCut> Pass for C {
    fn name(&self) -> &'static str {
        C::INFO.name
    }

    fn note(&self) -> Option<&'static str> {
        C::INFO.note
    }

    fn keep(&self, g: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(Some(Keep::Entries(keep(self, g)?)))
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        run(self, g, changed)
    }
}

fn c(pass: &str) -> impl Fn(candle_core::Error) -> PassError + '_ {
    move |e| failed(pass, e.to_string())
}

/// `P.weight` with the removed entries set to zero.
fn zero(g: &mut Graph, pass: &str, e: &Entries) -> Result<(), PassError> {
    let name = format!("{}.weight", e.group);
    let w = weight(g, pass, &name)?;
    let mut data = w.flatten_all().map_err(c(pass))?.to_vec1::<f32>().map_err(c(pass))?;
    for (x, k) in data.iter_mut().zip(&e.keep) {
        if !k {
            *x = 0.0;
        }
    }
    let t = Tensor::from_vec(data, (e.k, e.n), w.device()).map_err(c(pass))?;
    set_weight(g, &name, t);
    Ok(())
}

fn index(v: &[usize]) -> Result<Tensor, candle_core::Error> {
    let v: Vec<u32> = v.iter().map(|&i| i as u32).collect();
    Tensor::new(v.as_slice(), &Device::Cpu)
}

/// `P.weight` replaced by tiles of `width` computed columns (`P.tile{t}.rows`, `P.tile{t}.weight`), and
/// `P.cols` when some columns compute nothing.
fn tile(g: &mut Graph, pass: &str, e: &Entries, width: usize) -> Result<(), PassError> {
    let (k, n) = (e.k, e.n);
    let at = |r: usize, col: usize| e.keep[r * n + col];
    let cols: Vec<usize> = (0..n).filter(|&col| (0..k).any(|r| at(r, col))).collect();
    let w = weight(g, pass, &format!("{}.weight", e.group))?.clone();
    let mut tiles = 0;
    for (t, chunk) in cols.chunks(width).enumerate() {
        let rows: Vec<usize> = (0..k).filter(|&r| at(r, chunk[0])).collect();
        if let Some(&other) = chunk.iter().find(|&&col| (0..k).any(|r| at(r, col) != at(r, chunk[0]))) {
            return Err(failed(
                pass,
                format!("@{}: columns {} and {other} of one tile keep different rows", e.group, chunk[0]),
            ));
        }
        let sub = w
            .index_select(&index(chunk).map_err(c(pass))?, 1)
            .and_then(|s| s.index_select(&index(&rows)?, 0))
            .and_then(|s| s.contiguous())
            .map_err(c(pass))?;
        let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let (rows_name, weight_name) = tile_names(&e.group, t);
        set_weight(g, &rows_name, Tensor::new(rows.as_slice(), &Device::Cpu).map_err(c(pass))?);
        set_weight(g, &weight_name, sub);
        tiles += 1;
    }
    if cols.len() < n {
        let cols: Vec<i64> = cols.iter().map(|&j| j as i64).collect();
        set_weight(g, &cols_name(&e.group), Tensor::new(cols.as_slice(), &Device::Cpu).map_err(c(pass))?);
    }
    g.weights.0.remove(&format!("{}.weight", e.group)); // the tiles replace it
    let linear = g.dag.node_indices().find(|&i| matches!(&g.dag[i].op, Op::Linear(l) if l.w == e.group));
    if let Some(node) = linear {
        g.dag[node].op = Op::TiledLinear(ops::TiledLinear { w: e.group.clone(), k, n, tiles });
    }
    Ok(())
}
