//! `truncate`: ElasticBERT's static use. Keep the first `layers` encoder layers and classify with the off-ramp
//! that stands after them; cleanup then drops the later layers and the final head.

use std::collections::BTreeMap;

use bertopt_ir::Graph;

use crate::args::Args;
use crate::exit::{ramp_site, wire_ramp};
use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery};

/// `truncate` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "truncate",
    about: "keep the first `layers` layers and classify with the off-ramp after them (ElasticBERT static)",
    args: &[("layers", "layers kept (an off-ramp must stand after the last of them)")],
    recovery: Recovery::Unsupported,
    search: None,
    note: None,
    build: |a| Ok(Box::new(Truncate::from_args(a)?)),
};

pub struct Truncate {
    pub layers: usize,
}

impl Truncate {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        if !a.map.contains_key("layers") {
            return Err(a.bad("layers", "give the number of layers to keep, e.g. truncate(layers=3)".into()));
        }
        Ok(Truncate { layers: a.positive("layers", 1)? })
    }
}

impl Pass for Truncate {
    fn name(&self) -> &'static str {
        "truncate"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let fail = |p: &str| failed(INFO.name, p);
        let Some(oi) = g.outputs.iter().position(|(name, _)| name == "logits") else {
            return Err(fail("truncation needs a classifier: the graph has no `logits` output"));
        };
        if g.dag.node_weights().any(|n| matches!(n.op, bertopt_ir::Op::EarlyExit(_))) {
            return Err(fail("the graph has early exits: truncate before `exit`, not after"));
        }
        let labels = g.dag[g.outputs[oi].1.node].ty.last().and_then(|d| d.known()).unwrap_or(0);
        let h = ramp_site(g, self.layers).map_err(|e| match e {
            PassError::Failed { problem, .. } => fail(&problem),
            e => e,
        })?;
        let logits = wire_ramp(g, self.layers - 1, h, labels)?;
        g.outputs[oi].1 = logits.into();
        changed.insert("layers kept".into(), self.layers);
        Ok(())
    }
}
