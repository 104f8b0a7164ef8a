//! The pass interface: a pass rewrites the graph in place and reports what it changed.

use std::collections::BTreeMap;

use bertopt_ir::Graph;

use crate::cost::Cost;
pub use crate::error::{failed, PassError};

/// What some passes need beyond the graph (calibration data, scores, training hooks arrive here as the
/// passes that need them land).
#[derive(Default)]
pub struct PassContext {
    /// Sequence length at which FLOPs are counted in reports.
    pub flops_seq: usize,
}

/// What a pass changed, for the CLI to print and benches to record.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub pass: String,
    pub before: Cost,
    pub after: Cost,
    /// Units removed or rewritten, by kind ("nodes", "weights", "heads", ...).
    pub changed: BTreeMap<String, usize>,
    /// What a reader of the report must know about the result (e.g. that zeros bring no dense speedup).
    pub note: Option<&'static str>,
}

pub trait Pass {
    fn name(&self) -> &'static str;
    /// A caveat printed with the pass's report.
    fn note(&self) -> Option<&'static str> {
        None
    }
    /// Rewrite the graph; record counts of what changed in `changed`.
    fn run(
        &self,
        graph: &mut Graph,
        ctx: &mut PassContext,
        changed: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError>;
}

/// A pass as the registry knows it.
pub struct PassInfo {
    pub name: &'static str,
    pub about: &'static str,
    /// Accepted arguments and what they mean.
    pub args: &'static [(&'static str, &'static str)],
    pub build: fn(&crate::args::Args) -> Result<Box<dyn Pass>, PassError>,
}
