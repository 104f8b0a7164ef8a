//! `optimize mem-probe` (hidden): a child process of `bench` that loads and runs one model and prints its peak
//! resident memory, so that each model's figure is its own.

use std::path::PathBuf;

use clap::Args;

use crate::run::Runtime;

/// Load a model, run it once, print the process's peak resident memory in KiB (used by `bench`).
#[derive(Args)]
pub struct MemProbe {
    model: PathBuf,
    #[arg(long, value_enum)]
    runtime: Runtime,
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    seq: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl MemProbe {
    pub fn run(self) -> anyhow::Result<()> {
        println!(
            "{}",
            crate::measure::bench::mem_probe(&self.model, self.runtime, self.batch, self.seq, self.threads)?
        );
        Ok(())
    }
}
