//! `optimize profile`: where a runtime spends its time, by node and operator kind.

use std::path::PathBuf;

use clap::Args;

use super::common::Report;
use crate::measure::profile::ModelProfile;
use crate::run::{Plans, Runtime};

/// Where tract spends its time: every node of the optimized plan timed over --iters runs, summed by
/// operator kind; several models side by side (the first is the reference). Per-node timing adds overhead:
/// take latencies from `bench`, and from here which operators a pass made cheaper and which stayed.
#[derive(Args)]
pub struct Profile {
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// tract (every node of its plan timed) or ort (ONNX Runtime's own profiler, per kernel).
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    runtime: Runtime,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// tract only: which plan to time: one made for exactly --batch x --seq, a plan for --batch over a symbolic
    /// length (what `run`, `eval`, `bench --inputs` and the runtime crate make by default), or one over a
    /// symbolic batch and length.
    #[arg(long, value_enum, default_value_t = ProfilePlan::Exact)]
    plan: ProfilePlan,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProfilePlan {
    Exact,
    PerBatch,
    Symbolic,
}

impl Profile {
    pub fn run(self) -> anyhow::Result<()> {
        let (b, s, w, i) = (self.batch, self.seq, self.warmup, self.iters);
        anyhow::ensure!(
            self.plan == ProfilePlan::Exact || self.runtime == Runtime::Tract,
            "--plan chooses how tract plans; ONNX Runtime plans on its own (leave --plan out with --runtime ort)"
        );
        let plans = match self.plan {
            ProfilePlan::Exact => Plans::PerShape(b, s),
            ProfilePlan::PerBatch => Plans::PerBatch,
            ProfilePlan::Symbolic => Plans::Symbolic,
        };
        let profiles = self
            .models
            .iter()
            .map(|m| match self.runtime {
                Runtime::Tract => crate::measure::profile::profile(m, b, s, w, i, plans),
                Runtime::Ort => crate::measure::profile::profile_ort(m, b, s, w, i),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        profiles.show(self.json)
    }
}

impl Report for Vec<ModelProfile> {
    fn print_text(&self) {
        crate::measure::profile::print_table(self);
    }
}
