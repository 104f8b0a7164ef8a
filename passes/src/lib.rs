//! bertopt's passes: the `Pass` trait, a registry, an LLVM-style pipeline parser, and the passes themselves
//! (one file each). Cleanup (`dce`, `fold`) runs after every user pass; the verifier after every pass.

pub mod amount;
pub mod args;
pub mod bw;
pub mod cost;
pub mod dce;
pub mod ebert;
pub mod entries;
pub mod entry_cut;
pub mod error;
pub mod exit;
pub mod ffn;
pub mod fold;
pub mod head_size;
pub mod heads;
pub mod hidden;
pub mod inputs;
pub mod layers;
pub mod mask;
pub mod masked;
pub mod pass;
pub mod pipeline;
pub mod qkv;
pub mod quant;
pub mod registry;
pub mod rewrite;
pub mod scores;
pub mod sites;
pub mod tile;
pub mod truncate;
pub mod type0;
pub mod unit_cut;
pub mod vw;

use std::collections::BTreeMap;

use bertopt_ir::Graph;

pub use cost::{cost, Cost};
pub use pass::{Keep, Pass, PassContext, PassError, PassInfo, PassReport, Recovery, Search, Unit};
pub use pipeline::{parse_pipeline, PassSpec};

/// A parsed, built pipeline, ready to run.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

impl Pipeline {
    /// Parse and build `--pass` text. Fails on syntax, unknown passes and unknown arguments, then on the files
    /// the arguments name (each read once, here), before any work on a graph.
    pub fn parse(text: &str) -> Result<Self, PassError> {
        let specs = parse_pipeline(text)?;
        Ok(Pipeline { passes: registry::build_all(&specs)? })
    }

    /// Whether some pass reads calibration inputs (`PassContext::calibration`).
    pub fn calibrates(&self) -> bool {
        self.passes.iter().any(|p| p.calibrates())
    }

    pub fn empty() -> Self {
        Pipeline { passes: vec![] }
    }

    /// Run every pass, verifying after each and running cleanup (dce, fold) after each user pass.
    pub fn run(&self, g: &mut Graph, ctx: &mut PassContext) -> Result<Vec<PassReport>, PassError> {
        self.passes.iter().map(|p| run_pass(p.as_ref(), g, ctx)).collect()
    }
}

/// Run one pass as a pipeline runs it: refused on a quantized graph unless it is cleanup or `quant`, verified,
/// then cleanup (dce, fold) after a user pass; returns its report.
pub fn run_pass(p: &dyn Pass, g: &mut Graph, ctx: &mut PassContext) -> Result<PassReport, PassError> {
    let seq = if ctx.flops_seq == 0 { 128 } else { ctx.flops_seq };
    if !p.reads_int8() && g.weights.0.values().any(|w| w.ty.dtype == bertopt_ir::DType::I8) {
        let problem = format!(
            "the graph is already quantized: structural passes read f32 weights, so `{}` must come after every \
             other pass",
            quant::INFO.name
        );
        return Err(PassError::Failed { pass: p.name().into(), problem });
    }
    let before = cost(g, seq);
    let mut changed = BTreeMap::new();
    run_verified(p, g, ctx, &mut changed)?;
    if !p.cleanup() {
        run_verified(&fold::Fold, g, ctx, &mut changed)?;
        run_verified(&dce::Dce, g, ctx, &mut changed)?;
    }
    Ok(PassReport { pass: p.name().into(), before, after: cost(g, seq), changed, note: p.note() })
}

fn run_verified(
    p: &dyn Pass,
    g: &mut Graph,
    ctx: &mut PassContext,
    changed: &mut BTreeMap<String, usize>,
) -> Result<(), PassError> {
    p.run(g, ctx, changed)?;
    bertopt_ir::verify(g).map_err(|source| PassError::Verify { pass: p.name().into(), source })
}
