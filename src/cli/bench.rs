//! `optimize bench`: models against the first over runtimes, batches and lengths, interleaved.

use std::path::PathBuf;

use clap::Args;

use super::common::Report;
use crate::measure::bench::{BenchConfig, BenchReport, Inputs};
use crate::run::Runtime;

/// Benchmark models against the first (the dense one) over a grid of runtimes, batch sizes and sequence
/// lengths, interleaved after warm-up: p50/p90/p99, throughput, speedup, FLOPs, parameters, peak memory; with
/// --data also accuracy (and average layers for early-exit models), and --svg a Pareto plot.
#[derive(Args)]
pub struct Bench {
    #[arg(required = true)]
    models: Vec<PathBuf>,
    /// One or more of tract, ort (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tract")]
    runtime: Vec<Runtime>,
    /// Batch sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Synthetic fixed sequence lengths (comma-separated), for kernel-level comparisons; default 128 when
    /// no --inputs are given.
    #[arg(long, value_delimiter = ',')]
    seq: Vec<usize>,
    /// Real sentences to time at their own length (the primary latency figure): labelled data files whose
    /// --split rows are batched in order, each batch padded only to its longest row.
    #[arg(long)]
    inputs: Vec<PathBuf>,
    /// Which rows of --inputs (and of --data for accuracy, always its test rows): test, val or all.
    #[arg(long = "split", value_enum, default_value_t = crate::split::Part::Test)]
    part: crate::split::Part,
    /// How tract is planned for real lengths: a plan per batch size over a symbolic length (the runtime's
    /// default), one plan over a symbolic batch and length, a plan per input shape, or batches padded to a
    /// multiple of --bucket tokens with a plan per padded shape; several for comparison:
    /// `per-batch,symbolic,per-length,buckets`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "per-batch")]
    tract_plans: Vec<crate::measure::real_length::TractPlans>,
    /// Bucket width in tokens for `--tract-plans buckets`.
    #[arg(long, default_value_t = 16)]
    bucket: usize,
    /// Batches each model runs per turn with --inputs, the order rotating from turn to turn. 1: every call
    /// follows another model's, which has pushed this model's weights out of the caches; larger: each turn
    /// starts with one untimed call, so every timed call follows one of the same model, as in a server holding
    /// one loaded model (the default; docs/results.md, "How the bench runs models, and how tract plans them").
    #[arg(long, default_value_t = 25)]
    block: usize,
    /// Timed passes over the --inputs rows.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 30)]
    iters: usize,
    /// Intra-op threads for ONNX Runtime (tract runs on one).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Accuracy data: its test rows, with 95 % intervals and paired differences against the first model.
    #[command(flatten)]
    split: crate::split::SplitArgs,
    /// Tokens per example (accuracy and real-length rows are truncated to it).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Write an SVG plot of accuracy against latency (needs --data).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// The accuracy budget, in points below the first model, within which the plot rings the fastest model
    /// that is not measurably worse as the recommended one.
    #[arg(long, default_value_t = 1.0)]
    max_drop: f64,
    #[arg(long)]
    json: bool,
}

impl Report for BenchReport {
    fn print_text(&self) {
        crate::measure::bench::print_table(self);
    }
}

impl Bench {
    pub fn run(self) -> anyhow::Result<()> {
        let mut seq = self.seq;
        let real = if self.inputs.is_empty() {
            if seq.is_empty() {
                seq = vec![128];
            }
            None
        } else {
            let rows =
                crate::split::SplitArgs { data: self.inputs.clone(), eval: None, val: None, ..self.split.clone() };
            let texts = rows.splits()?.part(self.part).examples.into_iter().map(|e| e.text).collect();
            let rc = crate::measure::real_length::RealLengthConfig {
                runtimes: self.runtime.clone(),
                batches: self.batch.clone(),
                tract_plans: self.tract_plans,
                max_len: self.max_len,
                repeat: self.repeat,
                warmup: self.warmup,
                threads: self.threads,
                bucket: self.bucket,
                block: self.block,
            };
            Some((Inputs { files: self.inputs, split: self.part, texts }, rc))
        };
        let accuracy = self.split.given();
        anyhow::ensure!(self.svg.is_none() || accuracy.is_some(), "--svg plots accuracy against latency: give --data");
        let cfg = BenchConfig {
            runtimes: self.runtime,
            batches: self.batch,
            seqs: seq,
            warmup: self.warmup,
            iters: self.iters,
            threads: self.threads,
            seed: 1,
            accuracy,
            real,
            max_len: self.max_len,
            mem_probe: std::env::current_exe().ok(),
        };
        let r = crate::measure::bench::bench(&self.models, &cfg)?;
        if let Some(p) = &self.svg {
            crate::measure::plot::pareto_svg(&r, p, self.max_drop)?;
        }
        r.show(self.json)?;
        if let (Some(p), false) = (&self.svg, self.json) {
            println!("plot: {}", p.display());
        }
        Ok(())
    }
}
