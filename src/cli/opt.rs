//! `optimize opt`: a pass pipeline on IR text, IR text out, like `mlir-opt` or `clif-util`'s pass command. The
//! pass file tests (`passes/filetests/`) are this command's input and output in one file; a failing case can be
//! rerun by hand with it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Run a pass pipeline on IR text (as `--print-ir` writes it; weights may carry data with `= seeded(N)` or
/// `= [v, ...]`) and print the IR after it; each pass's report goes to stderr.
#[derive(Args)]
pub struct Opt {
    /// IR text file.
    input: PathBuf,
    /// Pass pipeline, e.g. `heads(ratio=0.5),ffn(ratio=0.25)`.
    #[arg(long = "pass", default_value = "")]
    pipeline: String,
    /// Write the IR to this file (whole or not at all) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl Opt {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.input.display();
        let text = bertopt_ir::read_capped_text(&self.input, bertopt_models::limits::MAX_IR_TEXT_BYTES)
            .with_context(|| format!("reading {name}"))?;
        let mut g = bertopt_ir::parse(&text).with_context(|| format!("{name}"))?;
        bertopt_ir::verify(&g).with_context(|| format!("{name} does not verify"))?;
        let pipeline = bertopt_passes::Pipeline::parse(&self.pipeline)?;
        let reports = pipeline.run(&mut g, &mut bertopt_passes::PassContext::default())?;
        for r in &reports {
            eprintln!(
                "pass {:<8} params {} -> {}, FLOPs@128 {} -> {}, {:?}",
                r.pass, r.before.params, r.after.params, r.before.flops, r.after.flops, r.changed
            );
        }
        let out = bertopt_ir::print(&g);
        match &self.output {
            None => print!("{out}"),
            Some(p) => crate::atomic::write_atomic(p, |w| w.write_all(out.as_bytes()))
                .with_context(|| format!("writing {}", p.display()))?,
        }
        Ok(())
    }
}
