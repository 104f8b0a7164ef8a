//! Latency on real sentences at their own length: what a server holding one loaded model sees. Each model
//! tokenizes the rows with its own embedded tokenizer; batches are taken in data order and padded only to their
//! longest row; tract runs a plan per batch size over a symbolic sequence length (or, with `symbolic`, one plan
//! over a symbolic batch and length, with `per-length` a cached plan per input shape, or with `buckets`, batches
//! padded (masked) to a multiple of `--bucket` tokens and a plan per padded shape; all built during warm-up); ONNX
//! Runtime runs as usual. Models take turns of `block` batches in a rotating order, so drift in machine load hits
//! every model alike while each timed call follows one of the same model; speedups are against the first model in
//! the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::measure::stats::percentile;
use crate::run::{self, Batch, Plans, RunnerOptions, Runtime};

/// How tract is planned for inputs of varying length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TractPlans {
    /// One plan per batch size over a symbolic sequence length (the runtime's default).
    PerBatch,
    /// One plan over a symbolic batch and sequence length, made at load.
    Symbolic,
    /// One plan per input shape, made on first use (during warm-up here).
    PerLength,
    /// Batches padded (masked) to a multiple of the bucket width, one plan per padded shape.
    Buckets,
}

impl TractPlans {
    fn describe(self, bucket: usize) -> String {
        match self {
            TractPlans::PerBatch => "a plan per batch size over a symbolic length".into(),
            TractPlans::Symbolic => "one plan over a symbolic batch and length".into(),
            TractPlans::PerLength => "a plan per length".into(),
            TractPlans::Buckets => format!("a plan per {bucket}-token bucket"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RealLengthConfig {
    pub runtimes: Vec<Runtime>,
    pub batches: Vec<usize>,
    pub tract_plans: Vec<TractPlans>,
    pub max_len: usize,
    /// Timed passes over all rows.
    pub repeat: usize,
    /// Untimed batches per model before timing (with `per-length`, every batch is run once instead).
    pub warmup: usize,
    /// Intra-op threads of ONNX Runtime; tract runs on one.
    pub threads: usize,
    /// Bucket width in tokens for `TractPlans::Buckets`.
    pub bucket: usize,
    /// Consecutive batches each model runs before the next model's turn (the order rotating from block to
    /// block). 1: every call follows a call of another model, whose weights and buffers have just pushed this
    /// model's out of the caches; larger: each block starts with one untimed call of its first batch, so every
    /// timed call follows a call of the same model, as in a server holding one loaded model.
    pub block: usize,
}

/// One model in one real-length cell.
#[derive(Debug, Serialize, Deserialize)]
pub struct RealTiming {
    pub model: PathBuf,
    /// Latency of one batch.
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub sentences_per_s: f64,
    /// Real (unpadded) tokens per row, [CLS] and [SEP] included, with this model's tokenizer.
    pub mean_tokens: f64,
    /// Tokens per row after padding each batch to its longest row.
    pub mean_padded_tokens: f64,
    /// The first model's mean (p50) divided by this model's, in this cell.
    pub speedup_mean: f64,
    pub speedup_p50: f64,
    /// Early-exit models: average layers run on these rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_layers: Option<f64>,
    /// Seconds spent in warm-up (with `per-length` and `buckets`: planning every shape).
    pub warmup_s: f64,
    /// Plans tract made (one per distinct padded shape) with `per-length` and `buckets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plans: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RealCell {
    pub runtime: Runtime,
    pub runtime_version: String,
    /// tract only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tract_plans: Option<TractPlans>,
    /// Bucket width with `buckets` plans.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bucket: usize,
    /// Batches per model turn (`RealLengthConfig::block`); 1 in reports that predate it.
    #[serde(default = "one")]
    pub block: usize,
    pub batch: usize,
    pub threads: usize,
    pub rows: usize,
    pub batches: usize,
    pub models: Vec<RealTiming>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> usize {
    1
}

/// Mean real tokens per row of `batches` (sum of the attention masks over the rows).
pub fn mean_tokens(batches: &[Batch]) -> f64 {
    let rows: usize = batches.iter().map(|b| b.batch).sum();
    let tokens: i64 = batches.iter().flat_map(|b| b.attention_mask.iter()).sum();
    tokens as f64 / rows.max(1) as f64
}

/// The rows as `model` would see them: its tokenizer, `batch` rows at a time in order, padded to the longest.
pub fn batches_for(model: &Path, texts: &[String], batch: usize, max_len: usize) -> anyhow::Result<Vec<Batch>> {
    let mut enc = crate::tokenize::for_model(model, None)?;
    texts
        .chunks(batch.max(1))
        .map(|c| {
            let t: Vec<&str> = c.iter().map(String::as_str).collect();
            enc.encode(&t, max_len, None)
        })
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

/// Every cell of runtimes x batch sizes (x tract plans) on `texts`.
pub fn bench(models: &[PathBuf], texts: &[String], cfg: &RealLengthConfig) -> anyhow::Result<Vec<RealCell>> {
    anyhow::ensure!(!texts.is_empty(), "--inputs: no rows to time");
    anyhow::ensure!(cfg.repeat > 0, "--repeat must be positive");
    anyhow::ensure!(cfg.block > 0, "--block must be positive");
    anyhow::ensure!(cfg.batches.iter().all(|&b| b > 0), "--batch needs positive sizes");
    let mut cells = vec![];
    for &runtime in &cfg.runtimes {
        let plans: Vec<Option<TractPlans>> = match runtime {
            Runtime::Tract => cfg.tract_plans.iter().copied().map(Some).collect(),
            Runtime::Ort => vec![None],
        };
        for &batch in &cfg.batches {
            for &p in &plans {
                cells.push(cell(models, texts, cfg, runtime, batch, p)?);
            }
        }
    }
    Ok(cells)
}

fn cell(
    models: &[PathBuf],
    texts: &[String],
    cfg: &RealLengthConfig,
    runtime: Runtime,
    batch: usize,
    plans: Option<TractPlans>,
) -> anyhow::Result<RealCell> {
    let bucket = (plans == Some(TractPlans::Buckets)).then_some(cfg.bucket.max(1));
    let inputs = models
        .iter()
        .map(|m| {
            let bs = batches_for(m, texts, batch, cfg.max_len)?;
            Ok(match bucket {
                Some(n) => bs.iter().map(|b| b.padded_to_bucket(n, cfg.max_len)).collect(),
                None => bs,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fixed = matches!(plans, Some(TractPlans::PerLength | TractPlans::Buckets));
    let symbolic = plans == Some(TractPlans::Symbolic);
    let n = inputs[0].len();
    let mut runners = vec![];
    let mut warmup_s = vec![];
    for (m, bs) in models.iter().zip(&inputs) {
        let plans = match (fixed, symbolic) {
            (true, _) => Plans::PerShape(bs[0].batch, bs[0].seq),
            (false, true) => Plans::Symbolic,
            (false, false) => Plans::PerBatch,
        };
        let start = Instant::now();
        let r = run::load(runtime, m, RunnerOptions { plans, threads: cfg.threads })?;
        // No plan may be made inside the timed runs. Plans per shape: every batch once. Plans per batch size: the
        // last batch too (it may be shorter), and for a segmented exit model every batch, since the rows that
        // reach a later stage vary in number from call to call and each number gets its plan.
        let segmented = run::segmented::folder(m).is_some();
        let warm: Vec<&Batch> = match plans {
            Plans::PerShape(..) => bs.iter().collect(),
            Plans::PerBatch if segmented && runtime == Runtime::Tract => bs.iter().collect(),
            Plans::PerBatch => bs[..cfg.warmup.min(bs.len())].iter().chain(bs.last()).collect(),
            Plans::Symbolic => bs[..cfg.warmup.min(bs.len())].iter().collect(),
        };
        for b in warm {
            r.run(b)?;
        }
        warmup_s.push(start.elapsed().as_secs_f64());
        runners.push(r);
    }
    let mut ms: Vec<Vec<f64>> = vec![Vec::with_capacity(n * cfg.repeat); models.len()];
    let mut layers: Vec<Vec<f64>> = vec![vec![]; models.len()];
    for rep in 0..cfg.repeat {
        // Block q of every model before block q + 1 of any, starting each block at the next model: whatever the
        // first call after a change of model pays, every model pays it equally often (with 27 models in a fixed
        // order, models of dense shape ran 1.44-1.51x faster than dense, which always went first).
        let block = cfg.block.max(1);
        for q in 0..n.div_ceil(block) {
            let blk = q * block..((q + 1) * block).min(n);
            for k in 0..runners.len() {
                let j = (q + k) % runners.len();
                let r = &mut runners[j];
                if block > 1 {
                    r.run(&inputs[j][blk.start])?;
                }
                for i in blk.clone() {
                    let start = Instant::now();
                    let out = r.run(&inputs[j][i])?;
                    ms[j].push(start.elapsed().as_secs_f64() * 1e3);
                    if rep == 0 {
                        if let Some(l) = out.iter().find(|o| o.name == "exit_layer") {
                            layers[j].extend(l.data.iter().map(|&v| v as f64));
                        }
                    }
                }
            }
        }
    }
    let mut timings = vec![];
    for (j, m) in models.iter().enumerate() {
        let total_s: f64 = ms[j].iter().sum::<f64>() / 1e3;
        let mut sorted = ms[j].clone();
        sorted.sort_by(f64::total_cmp);
        let padded: usize = inputs[j].iter().map(|b| b.batch * b.seq).sum();
        timings.push(RealTiming {
            model: m.clone(),
            mean_ms: ms[j].iter().sum::<f64>() / ms[j].len() as f64,
            p50_ms: percentile(&sorted, 0.5),
            p90_ms: percentile(&sorted, 0.9),
            p99_ms: percentile(&sorted, 0.99),
            sentences_per_s: (texts.len() * cfg.repeat) as f64 / total_s,
            mean_tokens: mean_tokens(&inputs[j]),
            mean_padded_tokens: padded as f64 / texts.len() as f64,
            speedup_mean: 0.0,
            speedup_p50: 0.0,
            avg_layers: (!layers[j].is_empty()).then(|| layers[j].iter().sum::<f64>() / layers[j].len() as f64),
            warmup_s: warmup_s[j],
            plans: fixed
                .then(|| inputs[j].iter().map(|b| (b.batch, b.seq)).collect::<std::collections::HashSet<_>>().len()),
        });
    }
    let (mean0, p500) = (timings[0].mean_ms, timings[0].p50_ms);
    for t in &mut timings {
        t.speedup_mean = mean0 / t.mean_ms;
        t.speedup_p50 = p500 / t.p50_ms;
    }
    let threads = if runtime == Runtime::Tract { 1 } else { cfg.threads.max(1) };
    Ok(RealCell {
        runtime,
        runtime_version: crate::measure::machine::runtime_version(runtime),
        tract_plans: plans,
        bucket: bucket.unwrap_or(0),
        block: cfg.block.max(1),
        batch,
        threads,
        rows: texts.len(),
        batches: n,
        models: timings,
    })
}

pub fn print(cells: &[RealCell]) {
    for c in cells {
        println!();
        let plans = c.tract_plans.map_or(String::new(), |p| format!(", {}", p.describe(c.bucket)));
        let turns = match c.block {
            1 => "models alternating every batch".to_string(),
            b => format!("models taking turns of {b} batches"),
        };
        println!(
            "{} ({}{plans}), real lengths: {} rows in {} batches of {}, threads {}, {turns}",
            c.runtime, c.runtime_version, c.rows, c.batches, c.batch, c.threads
        );
        println!(
            "{:<32} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>7} {:>8} {:>8} {:>7} {:>6} {:>9}",
            "model",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "sent/s",
            "tokens",
            "padded",
            "x mean",
            "x p50",
            "layers",
            "plans",
            "warm-up s"
        );
        for m in &c.models {
            println!(
                "{:<32} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>7.1} {:>7.1} {:>7.2}x {:>7.2}x {:>7} {:>6} {:>9.1}",
                crate::measure::machine::name(&m.model),
                m.mean_ms,
                m.p50_ms,
                m.p90_ms,
                m.p99_ms,
                m.sentences_per_s,
                m.mean_tokens,
                m.mean_padded_tokens,
                m.speedup_mean,
                m.speedup_p50,
                m.avg_layers.map_or("-".into(), |l| format!("{l:.2}")),
                m.plans.map_or("1".into(), |p| p.to_string()),
                m.warmup_s
            );
        }
    }
}
