//! The pass interface: a pass rewrites the graph in place and reports what it changed.

use std::collections::BTreeMap;

use bertopt_ir::Graph;

use crate::cost::Cost;
pub use crate::error::{failed, PassError};

/// What some passes need beyond the graph.
#[derive(Default)]
pub struct PassContext {
    /// Sequence length at which FLOPs are counted in reports.
    pub flops_seq: usize,
    /// Inputs to calibrate on (`quant(activations=static)`): batches of the graph's inputs by name, each
    /// sentence at its own length, from training rows the driver tokenized (`--data`). Empty when none given.
    pub calibration: Vec<std::collections::HashMap<String, candle_core::Tensor>>,
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
    /// Cleanup (`dce`, `fold`): the pipeline runs it after every other pass, and nothing after it.
    fn cleanup(&self) -> bool {
        false
    }
    /// Whether the pass works on int8 weights (cleanup and `quant` itself); every other pass reads f32 weights
    /// and is refused on a quantized graph.
    fn reads_int8(&self) -> bool {
        self.cleanup()
    }
    /// Whether the pass reads `PassContext::calibration` (so the driver tokenizes calibration rows only then).
    fn calibrates(&self) -> bool {
        false
    }
    /// A caveat printed with the pass's report.
    fn note(&self) -> Option<&'static str> {
        None
    }
    /// For a cut (recovery `Units` or `Entries`): which units or entries of `graph` it keeps, without changing it.
    fn keep(&self, _graph: &Graph) -> Result<Option<Keep>, PassError> {
        Ok(None)
    }
    /// Rewrite the graph; record counts of what changed in `changed`.
    fn run(
        &self,
        graph: &mut Graph,
        ctx: &mut PassContext,
        changed: &mut BTreeMap<String, usize>,
    ) -> Result<(), PassError>;
}

/// How `optimize recover` trains a model under a pass's cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Removes nothing a model trains (cleanup).
    Nothing,
    /// Removes whole units of this kind, which `Pass::keep` names on the unpruned graph; training gates them off.
    Units(Unit),
    /// Removes entries of matrices that keep their index space, which `Pass::keep` names on the graph it is given;
    /// training masks them.
    Entries,
    /// Has no training-time form (branches, fused predictors, int8): recover refuses it.
    Unsupported,
}

impl Recovery {
    /// The unit a unit cut removes; `None` for the other kinds.
    pub fn unit(self) -> Option<Unit> {
        match self {
            Recovery::Units(u) => Some(u),
            _ => None,
        }
    }
}

/// What a unit cut removes. Recovery composes unit cuts by it: the masks each one gives, which cut must see the
/// graph the earlier ones leave (`Hidden`), and which must come last (`Layers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Heads,
    Neurons,
    HeadDims,
    Layers,
    Hidden,
}

/// What a cut keeps (true = keep): a `Recovery::Units` pass's units per layer in layer order, or a
/// `Recovery::Entries` pass's entries per matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Attention heads, `[layer][head]`.
    Heads(Vec<Vec<bool>>),
    /// FFN intermediate neurons, `[layer][neuron]`.
    Neurons(Vec<Vec<bool>>),
    /// Dimensions of every head, `[layer][dimension]`.
    HeadDims(Vec<Vec<bool>>),
    /// Whole encoder layers, `[layer]`.
    Layers(Vec<bool>),
    /// Features of the hidden stream, `[feature]` (one set for the whole model).
    Hidden(Vec<bool>),
    /// Entries of each matrix an entry cut changes, in the index space of the graph it was given.
    Entries(Vec<crate::entries::Entries>),
}

impl Keep {
    /// The recovery kind this belongs to (the unit a unit cut names, or entries).
    pub fn recovery(&self) -> Recovery {
        Recovery::Units(match self {
            Keep::Heads(_) => Unit::Heads,
            Keep::Neurons(_) => Unit::Neurons,
            Keep::HeadDims(_) => Unit::HeadDims,
            Keep::Layers(_) => Unit::Layers,
            Keep::Hidden(_) => Unit::Hidden,
            Keep::Entries(_) => return Recovery::Entries,
        })
    }
}

/// How budget search (`optimize --latency-budget`) varies a cut.
#[derive(Clone, Copy, Debug)]
pub struct Search {
    /// The argument that takes the fraction of units removed (`ratio`, `sparsity`).
    pub arg: &'static str,
    /// The fractions tried when `--search` does not name the pass; empty: not searched unless named.
    pub values: &'static [f64],
}

/// A pass as the registry knows it.
pub struct PassInfo {
    pub name: &'static str,
    pub about: &'static str,
    /// Accepted arguments and what they mean.
    pub args: &'static [(&'static str, &'static str)],
    /// How recovery training takes its cut.
    pub recovery: Recovery,
    /// How budget search varies the pass, for a cut that removes a fraction of its units.
    pub search: Option<Search>,
    /// What a reader of a report or a benchmark of the pass's output must know (e.g. that zeros bring no dense
    /// speedup); the pass's report prints it too (`Pass::note`).
    pub note: Option<&'static str>,
    pub build: fn(&crate::args::Args) -> Result<Box<dyn Pass>, PassError>,
}
