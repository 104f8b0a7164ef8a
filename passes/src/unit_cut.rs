//! The unit cuts (`heads`, `head-size`, `ffn`, `hidden`) share one shape: at each site (a layer's attention, a
//! layer's FFN block, the whole residual stream) rank the units, keep all but the `removed` lowest, shrink the site to the kept
//! ones. `UnitCut` is what such a cut says about its own units; `keep` and `run` here are the rest, the same for
//! each, so what recovery trains under (`Pass::keep`) and what the export removes come from one computation.

use std::collections::BTreeMap;

use bertopt_ir::Graph;

use crate::error::PassError;
use crate::rewrite::keep_top;

pub trait UnitCut {
    /// A place the cut applies to (an attention node, an FFN block).
    type Site;
    /// The counts `run` reports, each present even when nothing is removed.
    const COUNTS: &'static [&'static str];
    /// The cut's sites in layer order; refuses a graph the cut cannot apply to.
    fn sites(&self, g: &Graph) -> Result<Vec<Self::Site>, PassError>;
    /// The units to keep when they are given (a mask file) rather than ranked, checked against `sites`.
    fn given(&self, _g: &Graph, _sites: &[Self::Site]) -> Result<Option<Vec<Vec<bool>>>, PassError> {
        Ok(None)
    }
    /// How many units a site has, and how many of them go.
    fn units(&self, g: &Graph, site: &Self::Site) -> (usize, usize);
    /// The importance of each unit of a site; the lowest go first.
    fn importance(&self, g: &Graph, site: &Self::Site) -> Result<Vec<f32>, PassError>;
    /// Shrink a site (the `layer`-th) to the units `keep` marks, adding to `counts`.
    fn apply(
        &self,
        g: &mut Graph,
        site: Self::Site,
        layer: usize,
        keep: &[bool],
        counts: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError>;
}

/// The units each site keeps, in layer order, without changing the graph.
pub fn keep<C: UnitCut>(cut: &C, g: &Graph) -> Result<Vec<Vec<bool>>, PassError> {
    keep_at(cut, g, &cut.sites(g)?)
}

fn keep_at<C: UnitCut>(cut: &C, g: &Graph, sites: &[C::Site]) -> Result<Vec<Vec<bool>>, PassError> {
    if let Some(given) = cut.given(g, sites)? {
        return Ok(given);
    }
    sites
        .iter()
        .map(|s| {
            let (units, remove) = cut.units(g, s);
            Ok(match remove {
                0 => vec![true; units],
                r if r == units => vec![false; units],
                r => keep_top(&cut.importance(g, s)?, r),
            })
        })
        .collect()
}

/// Apply the cut: every site shrunk to the units `keep` names.
pub fn run<C: UnitCut>(cut: &C, g: &mut Graph, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
    let sites = cut.sites(g)?;
    let keep = keep_at(cut, g, &sites)?;
    for name in C::COUNTS {
        changed.insert(name.to_string(), 0);
    }
    for (layer, (site, keep)) in sites.into_iter().zip(keep).enumerate() {
        cut.apply(g, site, layer, &keep, changed)?;
    }
    Ok(())
}

/// Add `n` to count `name`.
pub fn count(counts: &mut BTreeMap<String, usize>, name: &str, n: usize) {
    *counts.entry(name.to_string()).or_default() += n;
}
