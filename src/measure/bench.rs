//! `optimize bench`: the project's benchmark. Several ONNX models (the first is the reference, normally the dense
//! one) over a grid of runtimes, batch sizes and sequence lengths. In each grid cell the models run interleaved
//! after warm-up on the same inputs, so drift in machine load hits every model alike, and speedups are against
//! the reference measured in that same cell. Per model it also reports parameters, FLOPs (recorded by bertopt
//! from its IR), peak memory, and with `--data` the accuracy, average layers run and exit histogram.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::measure::machine::{machine, name, runtime_version, Machine};
use crate::measure::stats::percentile;
use crate::run::{self, Batch, Plans, RunnerOptions, Runtime};

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub runtimes: Vec<Runtime>,
    pub batches: Vec<usize>,
    pub seqs: Vec<usize>,
    pub warmup: usize,
    pub iters: usize,
    /// Intra-op threads of ONNX Runtime; tract runs on one.
    pub threads: usize,
    pub seed: u64,
    /// Data for accuracy (`--data` and its split; its test rows), measured once per model in the first runtime.
    pub accuracy: Option<crate::split::SplitArgs>,
    /// Real sentences to time at their own length (`--inputs`), and how.
    pub real: Option<(Inputs, crate::measure::real_length::RealLengthConfig)>,
    /// Tokens per example for the accuracy run.
    pub max_len: usize,
    /// The `optimize` binary, to measure each model's peak memory in a child process (None: not measured).
    pub mem_probe: Option<PathBuf>,
}

/// What is measured once per model.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelSummary {
    pub model: PathBuf,
    /// The pass pipeline bertopt recorded in the model (empty for dense or foreign models).
    pub pipeline: String,
    /// Weights in the file, f32 and int8 (all stages of a segmented model).
    pub params: u64,
    /// FLOPs per sequence as `[c0, c1, c2]` in the sequence length, when bertopt recorded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops_poly: Option<[f64; 3]>,
    /// Caveats a reader of the timing must know (zeros-only passes bring no dense speedup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// 95 % Wilson interval of `accuracy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    /// Paired difference of accuracy against the first model on the same rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_vs_first: Option<crate::measure::stats::PairedDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<usize>,
    /// Early-exit models: average layers run on the data, and (layer, inputs that left there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_layers: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_histogram: Vec<(usize, usize)>,
}

/// One model's timing in one grid cell.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelTiming {
    pub model: PathBuf,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Sequences per second at the p50 latency.
    pub throughput: f64,
    /// p50 of the first model divided by this model's p50, in this cell.
    pub speedup_vs_first: f64,
    /// FLOPs of one batch (batch x FLOPs per sequence), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// The first model's FLOPs divided by this one's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops_ratio_vs_first: Option<f64>,
    /// Peak resident memory of a process that loads the model and runs it once on this cell's input (MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// One grid cell: a runtime, a batch size and a sequence length.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cell {
    pub runtime: Runtime,
    pub runtime_version: String,
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    pub models: Vec<ModelTiming>,
}

/// The sentences of a real-length run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub split: crate::split::Part,
    #[serde(skip, default)]
    pub texts: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub warmup: usize,
    pub iters: usize,
    pub models: Vec<ModelSummary>,
    /// Synthetic fixed shapes (`--seq`): kernel-level comparisons.
    pub cells: Vec<Cell>,
    /// Real sentences at their own length (`--inputs`): the primary latency figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub real: Vec<crate::measure::real_length::RealCell>,
    /// With two or more `--seq` lengths: from which length each model beats the first (p50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crossovers: Vec<Crossover>,
}

/// Where a model starts to beat the first model, over the synthetic lengths measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Crossover {
    pub model: PathBuf,
    pub runtime: Runtime,
    pub batch: usize,
    /// The shortest measured length from which the model's p50 beats the first model's at every longer
    /// measured length; `None` when it is slower at the longest.
    pub faster_from_seq: Option<usize>,
    /// (seq, speedup of p50 over the first model), in length order.
    pub measured: Vec<(usize, f64)>,
}

impl Crossover {
    pub fn describe(&self) -> String {
        let m: Vec<String> = self.measured.iter().map(|(s, x)| format!("{s}: {x:.2}x")).collect();
        let verdict = match self.faster_from_seq {
            Some(s) if Some(&s) == self.measured.first().map(|(s, _)| s) => "faster at every measured length".into(),
            Some(s) => format!("faster than the first model from {s} tokens, slower below"),
            None => "slower than the first model at the longest measured length".into(),
        };
        format!("{}, {} batch {}: {verdict} ({})", name(&self.model), self.runtime, self.batch, m.join(", "))
    }
}

/// Crossovers of every model but the first, per runtime and batch, where two or more lengths were measured.
fn crossovers(cells: &[Cell]) -> Vec<Crossover> {
    let mut out = vec![];
    let mut keys: Vec<(Runtime, usize)> = vec![];
    for c in cells {
        if !keys.contains(&(c.runtime, c.batch)) {
            keys.push((c.runtime, c.batch));
        }
    }
    for (runtime, batch) in keys {
        let mut row: Vec<&Cell> = cells.iter().filter(|c| c.runtime == runtime && c.batch == batch).collect();
        row.sort_by_key(|c| c.seq);
        if row.len() < 2 {
            continue;
        }
        for m in 1..row[0].models.len() {
            let measured: Vec<(usize, f64)> = row.iter().map(|c| (c.seq, c.models[m].speedup_vs_first)).collect();
            let slower_until = measured.iter().rposition(|&(_, x)| x < 1.0);
            let faster_from_seq = match slower_until {
                None => Some(measured[0].0),
                Some(i) => measured.get(i + 1).map(|&(s, _)| s),
            };
            out.push(Crossover { model: row[0].models[m].model.clone(), runtime, batch, faster_from_seq, measured });
        }
    }
    out
}

/// A `/proc/self/status` field in KiB (Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory of a fresh process that loads `model` and runs it once on a `batch` x `seq` input:
/// `optimize mem-probe`, run by `probe` (the `optimize` binary). In a child, so that neither the other models
/// nor allocator reuse within the benchmark's own process blur the figure.
fn probe_peak_mib(
    probe: &Path,
    model: &Path,
    runtime: Runtime,
    batch: usize,
    seq: usize,
    threads: usize,
) -> anyhow::Result<f64> {
    let o = std::process::Command::new(probe)
        .arg("mem-probe")
        .arg(model)
        .args(["--runtime", &runtime.to_string(), "--batch", &batch.to_string(), "--seq", &seq.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", probe.display()))?;
    anyhow::ensure!(
        o.status.success(),
        "memory probe of {} failed: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let kib: f64 = String::from_utf8_lossy(&o.stdout).trim().parse()?;
    Ok(kib / 1024.0)
}

/// `optimize mem-probe`: load, run once, print the process's peak resident memory in KiB (Linux).
pub fn mem_probe(model: &Path, runtime: Runtime, batch: usize, seq: usize, threads: usize) -> anyhow::Result<u64> {
    let input = Batch::synthetic(batch, seq, recorded(model)?.vocab, 1);
    let r = run::load(runtime, model, RunnerOptions { plans: Plans::PerShape(batch, seq), threads })?;
    r.run(&input)?;
    status_kib("VmHWM:").ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status (Linux only)"))
}

/// What bertopt recorded in a model, and its size (one parse per file: a parse reads the whole file).
pub(crate) struct Recorded {
    /// Vocabulary size, to draw valid token ids; 100 for foreign models.
    pub(crate) vocab: usize,
    pipeline: String,
    flops_poly: Option<[f64; 3]>,
    /// Caveats the pipeline implies for timings.
    notes: Vec<String>,
    /// Floating-point weights, of every stage of a segmented model.
    params: u64,
}

pub(crate) fn recorded(path: &Path) -> anyhow::Result<Recorded> {
    let files: Vec<PathBuf> = match run::segmented::folder(path) {
        Some(dir) => crate::onnx::segments::Manifest::read(&dir)?.stages.iter().map(|s| dir.join(&s.file)).collect(),
        None => vec![path.to_path_buf()],
    };
    let summaries = files
        .iter()
        .map(|f| crate::onnx::summarize(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>, _>>()?;
    // The first stage carries the model's metadata.
    let meta = &summaries[0].metadata;
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let pipeline = get(crate::export::META_PIPELINE).unwrap_or_default();
    let notes = bertopt_passes::parse_pipeline(&pipeline)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            let note = bertopt_passes::registry::info(&s.name).ok()?.note?;
            Some(format!("`{}`: {note}", s.name))
        })
        .collect();
    Ok(Recorded {
        vocab: get(crate::export::META_VOCAB).and_then(|v| v.parse().ok()).unwrap_or(100),
        pipeline,
        flops_poly: get(crate::export::META_FLOPS).and_then(|v| serde_json::from_str(&v).ok()),
        notes,
        params: summaries.iter().map(|s| s.weight_params).sum(),
    })
}

pub fn bench(models: &[PathBuf], cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(!models.is_empty(), "bench needs at least one model");
    anyhow::ensure!(cfg.iters > 0, "--iters must be positive");
    anyhow::ensure!(!cfg.runtimes.is_empty(), "give at least one --runtime");
    anyhow::ensure!(
        !cfg.batches.is_empty() && cfg.batches.iter().chain(&cfg.seqs).all(|&n| n > 0),
        "--batch and --seq need positive sizes"
    );
    anyhow::ensure!(!cfg.seqs.is_empty() || cfg.real.is_some(), "give --seq lengths or --inputs sentences to time");
    for m in models {
        run::ensure_model(m)?;
    }
    let recorded = models.iter().map(|m| recorded(m)).collect::<anyhow::Result<Vec<Recorded>>>()?;
    let vocab = recorded.iter().map(|r| r.vocab).min().unwrap_or(100);
    let mut summaries = vec![];
    for (m, r) in models.iter().zip(&recorded) {
        summaries.push(ModelSummary {
            model: m.clone(),
            pipeline: r.pipeline.clone(),
            params: r.params,
            flops_poly: r.flops_poly,
            notes: r.notes.clone(),
            accuracy: None,
            ci95: None,
            diff_vs_first: None,
            examples: None,
            avg_layers: None,
            exit_histogram: vec![],
        });
    }
    if let Some(split) = &cfg.accuracy {
        let mut first: Option<Vec<bool>> = None;
        for s in summaries.iter_mut() {
            let e = crate::eval_cmd::run(&crate::eval_cmd::EvalArgs {
                model: s.model.clone(),
                split: split.clone(),
                part: crate::split::Part::Test,
                runtime: cfg.runtimes[0],
                batch: 32,
                max_len: cfg.max_len,
                tokenizer: None,
                against: None,
            })?;
            s.diff_vs_first = first.as_ref().map(|f| crate::measure::stats::paired(f, &e.right));
            (s.accuracy, s.ci95, s.examples, s.avg_layers) =
                (Some(e.accuracy), Some(e.ci95), Some(e.examples), e.avg_layers);
            s.exit_histogram = e.exit_histogram;
            first.get_or_insert(e.right);
        }
    }
    let real = match &cfg.real {
        Some((inputs, rc)) => crate::measure::real_length::bench(models, &inputs.texts, rc)?,
        None => vec![],
    };
    let mut cells = vec![];
    for &runtime in &cfg.runtimes {
        for &batch in &cfg.batches {
            for &seq in &cfg.seqs {
                cells.push(bench_cell(models, &recorded, cfg, runtime, batch, seq, vocab)?);
            }
        }
    }
    Ok(BenchReport {
        machine: machine(),
        warmup: cfg.warmup,
        iters: cfg.iters,
        models: summaries,
        inputs: cfg.real.as_ref().map(|(i, _)| i.clone()),
        real,
        crossovers: crossovers(&cells),
        cells,
    })
}

fn bench_cell(
    models: &[PathBuf],
    recorded: &[Recorded],
    cfg: &BenchConfig,
    runtime: Runtime,
    batch: usize,
    seq: usize,
    vocab: usize,
) -> anyhow::Result<Cell> {
    let input = Batch::synthetic(batch, seq, vocab, cfg.seed);
    let opts = RunnerOptions { plans: Plans::PerShape(batch, seq), threads: cfg.threads };
    let threads = if runtime == Runtime::Tract { 1 } else { cfg.threads.max(1) };
    let peaks = models
        .iter()
        .map(|m| cfg.mem_probe.as_ref().map(|p| probe_peak_mib(p, m, runtime, batch, seq, threads)).transpose())
        .collect::<anyhow::Result<Vec<Option<f64>>>>()?;
    let mut runners = models.iter().map(|m| run::load(runtime, m, opts)).collect::<Result<Vec<_>, _>>()?;
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
    for ((m, mut t), (rec, peak)) in models.iter().zip(times).zip(recorded.iter().zip(peaks)) {
        t.sort_by(f64::total_cmp);
        let p50 = percentile(&t, 0.5);
        timings.push(ModelTiming {
            model: m.clone(),
            p50_ms: p50,
            p90_ms: percentile(&t, 0.9),
            p99_ms: percentile(&t, 0.99),
            mean_ms: t.iter().sum::<f64>() / t.len() as f64,
            throughput: batch as f64 / (p50 / 1e3),
            speedup_vs_first: 0.0,
            flops: rec.flops_poly.map(|p| batch as f64 * crate::export::flops_at(&p, seq)),
            flops_ratio_vs_first: None,
            peak_rss_mib: peak,
        });
    }
    let (first_p50, first_flops) = (timings[0].p50_ms, timings[0].flops);
    for t in timings.iter_mut() {
        t.speedup_vs_first = first_p50 / t.p50_ms;
        t.flops_ratio_vs_first = first_flops.zip(t.flops).map(|(a, b)| a / b);
    }
    Ok(Cell { runtime, runtime_version: runtime_version(runtime), batch, seq, threads, models: timings })
}

pub fn print_table(r: &BenchReport) {
    println!(
        "{} ({} cores, {}); {} iters after {} warm-up",
        r.machine.cpu, r.machine.cores, r.machine.os, r.iters, r.warmup
    );
    println!(
        "{:<32} {:>11} {:>9} {:>24} {:>32} {:>7}  pipeline",
        "model", "params", "GFLOP/seq", "test accuracy [95 %]", "vs first, paired [95 %]", "layers"
    );
    for m in &r.models {
        let seq = r.cells.first().map_or(128, |c| c.seq);
        println!(
            "{:<32} {:>11} {:>9} {:>24} {:>32} {:>7}  {}",
            name(&m.model),
            m.params,
            m.flops_poly.map_or("-".into(), |p| format!("{:.3}", crate::export::flops_at(&p, seq) / 1e9)),
            m.accuracy.zip(m.ci95).map_or("-".into(), |(a, ci)| crate::measure::stats::percent_with_interval(a, ci)),
            m.diff_vs_first.map_or("-".into(), |d| d.short()),
            m.avg_layers.map_or("-".into(), |l| format!("{l:.2}")),
            m.pipeline
        );
    }
    if r.models.iter().any(|m| m.diff_vs_first.is_some_and(|d| !d.measurable())) {
        println!("(=): the paired interval contains 0: no measurable difference from the first model");
    }
    crate::measure::real_length::print(&r.real);
    for c in &r.cells {
        println!();
        println!("{} ({}), batch {}, seq {}, threads {}", c.runtime, c.runtime_version, c.batch, c.seq, c.threads);
        println!(
            "{:<32} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>9}",
            "model", "p50 ms", "p90 ms", "p99 ms", "seq/s", "speedup", "FLOPs÷", "peak MiB"
        );
        for m in &c.models {
            println!(
                "{:<32} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>7.2}x {:>8} {:>9}",
                name(&m.model),
                m.p50_ms,
                m.p90_ms,
                m.p99_ms,
                m.throughput,
                m.speedup_vs_first,
                m.flops_ratio_vs_first.map_or("-".into(), |f| format!("{f:.2}x")),
                m.peak_rss_mib.map_or("-".into(), |p| format!("{p:.1}"))
            );
        }
    }
    if !r.crossovers.is_empty() {
        println!();
        for c in &r.crossovers {
            println!("crossover: {}", c.describe());
        }
    }
    for m in &r.models {
        for n in &m.notes {
            println!("note: {}: {n}", m.model.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(runtime: Runtime, seq: usize, speedups: &[f64]) -> Cell {
        let models = std::iter::once(1.0)
            .chain(speedups.iter().copied())
            .enumerate()
            .map(|(i, x)| ModelTiming {
                model: PathBuf::from(format!("m{i}.onnx")),
                p50_ms: 10.0 / x,
                p90_ms: 0.0,
                p99_ms: 0.0,
                mean_ms: 0.0,
                throughput: 0.0,
                speedup_vs_first: x,
                flops: None,
                flops_ratio_vs_first: None,
                peak_rss_mib: None,
            })
            .collect();
        Cell { runtime, runtime_version: String::new(), batch: 1, seq, threads: 1, models }
    }

    #[test]
    fn the_crossover_is_the_length_from_which_a_model_stays_faster() {
        // Given out of order; m1 pays from 64 (a lucky 16 does not count), m2 everywhere, m3 never at the end.
        let cells = vec![
            cell(Runtime::Ort, 128, &[1.2, 2.0, 0.9]),
            cell(Runtime::Ort, 16, &[1.01, 1.5, 1.3]),
            cell(Runtime::Ort, 32, &[0.8, 1.6, 1.1]),
            cell(Runtime::Ort, 64, &[1.05, 1.8, 1.0]),
        ];
        let c = crossovers(&cells);
        let from: Vec<Option<usize>> = c.iter().map(|c| c.faster_from_seq).collect();
        assert_eq!(from, [Some(64), Some(16), None]);
        assert_eq!(c[0].measured.iter().map(|m| m.0).collect::<Vec<_>>(), [16, 32, 64, 128]);
        assert!(c[0].describe().contains("from 64 tokens"), "{}", c[0].describe());
        assert!(c[1].describe().contains("every measured length"));
        // One length measured: no crossover to speak of.
        assert!(crossovers(&[cell(Runtime::Tract, 128, &[0.5])]).is_empty());
    }
}
