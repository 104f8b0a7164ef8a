//! `optimize bench`: latency of several ONNX models on the same inputs, run interleaved after warm-up so that
//! drift in machine load hits every model alike; speedups are against the first model, measured in the same run.

use std::path::PathBuf;
use std::time::Instant;

use crate::run::{self, Batch, RunnerOptions, Runtime};

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub runtime: Runtime,
    pub batch: usize,
    pub seq: usize,
    pub warmup: usize,
    pub iters: usize,
    pub threads: usize,
    pub seed: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ModelTiming {
    pub model: PathBuf,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Sequences per second at the p50 latency.
    pub throughput: f64,
    /// p50 of the first model divided by this model's p50.
    pub speedup_vs_first: f64,
    /// The pass pipeline bertopt recorded in the model (empty for dense or foreign models).
    pub pipeline: String,
    /// Caveats a reader of the timing must know (zeros-only passes bring no dense speedup).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub runtime: Runtime,
    pub runtime_version: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub warmup: usize,
    pub iters: usize,
    pub cpu: String,
    pub cores: usize,
    pub models: Vec<ModelTiming>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// What bertopt recorded in a model (read once: reading parses the whole file).
struct Recorded {
    /// Vocabulary size, to draw valid token ids; 100 for foreign models.
    vocab: usize,
    pipeline: String,
    /// Caveats the pipeline implies for timings.
    notes: Vec<String>,
}

fn recorded(path: &std::path::Path) -> Recorded {
    let meta = crate::onnx::read_metadata(path).unwrap_or_default();
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let pipeline = get(crate::export::META_PIPELINE).unwrap_or_default();
    let notes = bertopt_passes::parse_pipeline(&pipeline)
        .unwrap_or_default()
        .iter()
        .filter(|s| matches!(s.name.as_str(), "vw" | "bw"))
        .map(|s| format!("`{}` only zeroes weights: shapes are unchanged, so a dense runtime runs no faster", s.name))
        .collect();
    Recorded { vocab: get(crate::export::META_VOCAB).and_then(|v| v.parse().ok()).unwrap_or(100), pipeline, notes }
}

pub fn bench(models: &[PathBuf], cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(!models.is_empty(), "bench needs at least one model");
    anyhow::ensure!(cfg.batch > 0 && cfg.seq > 0 && cfg.iters > 0, "batch, seq and iters must be positive");
    let recorded: Vec<Recorded> = models.iter().map(|m| recorded(m)).collect();
    let vocab = recorded.iter().map(|r| r.vocab).min().unwrap_or(100);
    let input = Batch::synthetic(cfg.batch, cfg.seq, vocab, cfg.seed);
    let opts = RunnerOptions { fixed_shape: Some((cfg.batch, cfg.seq)), threads: cfg.threads };
    let mut runners = models.iter().map(|m| run::load(cfg.runtime, m, opts)).collect::<anyhow::Result<Vec<_>>>()?;
    for _ in 0..cfg.warmup {
        for r in runners.iter_mut() {
            r.run(&input)?;
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(cfg.iters); models.len()];
    for _ in 0..cfg.iters {
        for (r, t) in runners.iter_mut().zip(times.iter_mut()) {
            let start = Instant::now();
            r.run(&input)?;
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut timings = vec![];
    for ((m, mut t), Recorded { pipeline, notes, .. }) in models.iter().zip(times).zip(recorded) {
        t.sort_by(f64::total_cmp);
        let p50 = percentile(&t, 0.5);
        timings.push(ModelTiming {
            model: m.clone(),
            p50_ms: p50,
            p90_ms: percentile(&t, 0.9),
            p99_ms: percentile(&t, 0.99),
            mean_ms: t.iter().sum::<f64>() / t.len() as f64,
            throughput: cfg.batch as f64 / (p50 / 1e3),
            speedup_vs_first: 0.0,
            pipeline,
            notes,
        });
    }
    let first = timings[0].p50_ms;
    for t in timings.iter_mut() {
        t.speedup_vs_first = first / t.p50_ms;
    }
    Ok(BenchReport {
        runtime: cfg.runtime,
        runtime_version: match cfg.runtime {
            Runtime::Tract => "tract-onnx 0.23.9".into(),
            Runtime::Ort => "onnxruntime 1.31.1 (ort 2.0.0-rc.15)".into(),
        },
        batch: cfg.batch,
        seq: cfg.seq,
        threads: if cfg.runtime == Runtime::Tract { 1 } else { cfg.threads.max(1) },
        warmup: cfg.warmup,
        iters: cfg.iters,
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        models: timings,
    })
}

pub fn print_table(r: &BenchReport) {
    println!(
        "runtime {} ({}), batch {}, seq {}, threads {}, {} iters after {} warm-up, {} ({} cores)",
        r.runtime, r.runtime_version, r.batch, r.seq, r.threads, r.iters, r.warmup, r.cpu, r.cores
    );
    println!("{:<40} {:>9} {:>9} {:>9} {:>11} {:>8}", "model", "p50 ms", "p90 ms", "p99 ms", "seq/s", "speedup");
    for m in &r.models {
        println!(
            "{:<40} {:>9.2} {:>9.2} {:>9.2} {:>11.1} {:>7.2}x",
            m.model.display(),
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.throughput,
            m.speedup_vs_first
        );
    }
    for m in &r.models {
        for n in &m.notes {
            println!("note: {}: {n}", m.model.display());
        }
    }
}
