//! `optimize auto`: from a fine-tuned classifier to the fastest model within an accuracy budget.

use clap::Args;

/// From a fine-tuned classifier and its data to the fastest model within an accuracy budget: cut heads and
/// FFN deeper while validation holds (each stage recovered, distilled), off-ramps, int8, every candidate
/// timed on real validation sentences; the test rows read once, at the end. Resumable: rerun to continue.
#[derive(Args)]
pub struct Auto {
    #[command(flatten)]
    args: crate::auto::AutoArgs,
}

impl Auto {
    pub fn run(self) -> anyhow::Result<()> {
        let a = &self.args;
        let r = crate::auto::run(a)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{}", std::fs::read_to_string(a.out.join("report.md"))?);
            println!("\nwrote {} and {}", r.best.display(), a.out.join("report.md").display());
        }
        Ok(())
    }
}
