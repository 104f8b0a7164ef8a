//! `optimize check`: any ONNX file validated and run in both runtimes.

use clap::Args;

use super::common::Report;

/// Check any ONNX file: structural validation, then tract vs ONNX Runtime on seeded random inputs.
/// Exit code 1 if it is malformed, a runtime refuses it, or an output differs beyond --tol.
#[derive(Args)]
pub struct Check {
    #[command(flatten)]
    args: crate::check_cmd::CheckArgs,
    #[arg(long)]
    json: bool,
}

impl Report for crate::check_cmd::CheckReport {
    fn print_text(&self) {
        crate::check_cmd::print(self);
    }
}

impl Check {
    pub fn run(self) -> anyhow::Result<()> {
        let r = crate::check_cmd::check(&self.args)?;
        r.show(self.json)?;
        anyhow::ensure!(r.ok, "{} did not pass the check", self.args.model.display());
        Ok(())
    }
}
