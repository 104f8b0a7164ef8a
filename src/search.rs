//! Budget mode: `optimize MODEL --latency-budget 0.5 --data FILE` searches pass settings (head ratio, FFN
//! ratio, tile sparsity, and an exit threshold when the model has off-ramps) and keeps the most accurate pipeline
//! whose *measured* latency is within the budget, as a fraction of the dense model's latency measured beside it
//! in the same bench cell. Accuracy is measured only for candidates that meet the budget.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::measure::bench::{self, BenchConfig};
use crate::run::Runtime;
use crate::split::{Part, SplitArgs};

/// The settings searched, each a list of values; 0 (or `none` for exits) means the pass is left out.
#[derive(Clone, Debug)]
pub struct Grid {
    pub heads: Vec<f64>,
    pub ffn: Vec<f64>,
    pub tile: Vec<f64>,
    /// Entropy thresholds of DeeBERT exits; used only when the model has off-ramps.
    pub exit: Vec<Option<f64>>,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            heads: vec![0.0, 0.25, 0.5],
            ffn: vec![0.0, 0.25, 0.5, 0.75],
            tile: vec![0.0, 0.5],
            exit: vec![None, Some(0.3), Some(0.6)],
        }
    }
}

impl std::str::FromStr for Grid {
    type Err = String;
    /// `heads=0,0.5;ffn=0,0.5,0.75;tile=0;exit=none,0.3`: the settings named replace the defaults.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut g = Grid::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, values) = part.split_once('=').ok_or_else(|| format!("`{part}` is not KEY=V,V,..."))?;
            let nums = || -> Result<Vec<f64>, String> {
                values
                    .split(',')
                    .map(|v| match v.trim().parse::<f64>() {
                        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                        _ => Err(format!("{key}: `{v}` is not a fraction in [0, 1]")),
                    })
                    .collect()
            };
            match key.trim() {
                "heads" => g.heads = nums()?,
                "ffn" => g.ffn = nums()?,
                "tile" => g.tile = nums()?,
                "exit" => {
                    g.exit = values
                        .split(',')
                        .map(|v| match v.trim() {
                            "none" => Ok(None),
                            t => t
                                .parse::<f64>()
                                .map(Some)
                                .map_err(|_| format!("exit: `{t}` is not none or a threshold")),
                        })
                        .collect::<Result<_, _>>()?
                }
                other => return Err(format!("unknown search setting `{other}` (heads, ffn, tile, exit)")),
            }
        }
        Ok(g)
    }
}

impl Grid {
    /// Every pipeline of the grid, in the order the passes can run (`ffn` before `tile`).
    pub fn pipelines(&self, with_exits: bool) -> Vec<String> {
        let exits: Vec<Option<f64>> = if with_exits { self.exit.clone() } else { vec![None] };
        let mut out = vec![];
        for &h in &self.heads {
            for &f in &self.ffn {
                for &t in &self.tile {
                    for e in &exits {
                        let mut parts = vec![];
                        if h > 0.0 {
                            parts.push(format!("heads(ratio={h})"));
                        }
                        if f > 0.0 {
                            parts.push(format!("ffn(ratio={f})"));
                        }
                        if t > 0.0 {
                            parts.push(format!("tile(sparsity={t})"));
                        }
                        if let Some(th) = e {
                            parts.push(format!("exit(criterion=entropy,threshold={th})"));
                        }
                        out.push(parts.join(","));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub pipeline: String,
    /// p50 latency over the dense model's p50, measured in the same run.
    pub latency_ratio: f64,
    pub p50_ms: f64,
    pub flops_ratio: Option<f64>,
    /// Measured only for candidates within the budget.
    pub accuracy: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub budget: f64,
    pub runtime: Runtime,
    pub batch: usize,
    pub seq: usize,
    pub dense_p50_ms: f64,
    /// Validation accuracy of dense (candidates' `accuracy` is on the same rows).
    pub dense_accuracy: f64,
    pub candidates: Vec<Candidate>,
    /// Dense and the chosen model on the test rows, scored once after the choice.
    pub test: TestScores,
    /// The chosen pipeline (the most accurate within the budget; the faster on a tie).
    pub best: String,
    pub output: PathBuf,
}

#[derive(Debug, serde::Serialize)]
pub struct TestScores {
    pub dense: crate::measure::stats::Accuracy,
    pub best: crate::measure::stats::Accuracy,
    /// Chosen minus dense, paired on the same rows.
    pub diff: crate::measure::stats::PairedDiff,
}

pub struct SearchArgs<'a> {
    pub model: &'a Path,
    /// A pipeline run before every candidate's passes (e.g. `heads(mask=smp.bin)`); may be empty.
    pub base: &'a str,
    pub budget: f64,
    pub grid: Grid,
    /// Candidates are compared on its validation rows; the winner and dense are scored on its test rows.
    pub split: SplitArgs,
    pub runtime: Runtime,
    pub batch: usize,
    pub seq: usize,
    pub iters: usize,
    pub max_len: usize,
    pub output: &'a Path,
}

fn join(base: &str, rest: &str) -> String {
    [base, rest].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(",")
}

pub fn search(a: &SearchArgs, progress: bool) -> anyhow::Result<SearchReport> {
    anyhow::ensure!(a.budget > 0.0, "--latency-budget is a fraction of dense latency, above 0 (got {})", a.budget);
    crate::export::check_output_dir(a.output)?;
    let with_exits = !bertopt_models::Checkpoint::load(a.model)?.exit_layers().is_empty();
    let dir = tempfile::tempdir()?;
    let dense = dir.path().join("dense.onnx");
    crate::export::export(a.model, a.base, &dense)?;
    let pipelines = a.grid.pipelines(with_exits);
    let bar = bertopt_models::progress::bar(pipelines.len(), "candidates", progress);
    let cfg = BenchConfig {
        runtimes: vec![a.runtime],
        batches: vec![a.batch],
        seqs: vec![a.seq],
        warmup: 2,
        iters: a.iters,
        threads: 1,
        seed: 1,
        accuracy: None,
        real: None,
        max_len: a.max_len,
        mem_probe: None,
    };
    let mut candidates = vec![];
    let mut files = vec![];
    for (i, p) in pipelines.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.onnx"));
        crate::export::export(a.model, &join(a.base, p), &file)?;
        // Dense and candidate interleaved in one cell, so the ratio sees the same machine state.
        let r = bench::bench(&[dense.clone(), file.clone()], &cfg)?;
        let t = &r.cells[0].models;
        candidates.push(Candidate {
            pipeline: p.clone(),
            latency_ratio: t[1].p50_ms / t[0].p50_ms,
            p50_ms: t[1].p50_ms,
            flops_ratio: t[1].flops_ratio_vs_first.map(|x| 1.0 / x),
            accuracy: None,
        });
        files.push(file);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let eval_on = |model: &Path, part: Part| {
        crate::eval_cmd::run(&crate::eval_cmd::EvalArgs {
            model: model.to_path_buf(),
            split: a.split.clone(),
            part,
            runtime: a.runtime,
            batch: 32,
            max_len: a.max_len,
            tokenizer: None,
            against: None,
        })
    };
    let eval = |model: &Path| eval_on(model, Part::Val).map(|e| e.accuracy);
    for (c, f) in candidates.iter_mut().zip(&files) {
        if c.latency_ratio <= a.budget {
            c.accuracy = Some(eval(f)?);
        }
    }
    let dense_accuracy = eval(&dense)?;
    let dense_p50_ms =
        candidates.iter().find(|c| c.pipeline.is_empty()).map_or(f64::NAN, |c| c.p50_ms / c.latency_ratio);
    let best = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.accuracy?, c.latency_ratio)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(i, ..)| i)
        .ok_or_else(|| {
            let fastest = candidates.iter().map(|c| c.latency_ratio).fold(f64::MAX, f64::min);
            anyhow::anyhow!(
                "no setting meets the latency budget {} of dense (the fastest measured {fastest:.2}); widen --search or \
                 raise the budget",
                a.budget
            )
        })?;
    // The choice is made: now, once, the test rows.
    let (dense_test, best_test) = (eval_on(&dense, Part::Test)?, eval_on(&files[best], Part::Test)?);
    let test = TestScores {
        dense: dense_test.accuracy(),
        best: best_test.accuracy(),
        diff: crate::measure::stats::paired(&dense_test.right, &best_test.right),
    };
    let bytes = std::fs::read(&files[best])?;
    crate::atomic::write_atomic(a.output, |w| w.write_all(&bytes))?;
    Ok(SearchReport {
        budget: a.budget,
        runtime: a.runtime,
        batch: a.batch,
        seq: a.seq,
        dense_p50_ms,
        dense_accuracy,
        best: join(a.base, &candidates[best].pipeline),
        candidates,
        test,
        output: a.output.to_path_buf(),
    })
}

pub fn print(r: &SearchReport) {
    println!(
        "latency budget {:.2} of dense ({} batch {} seq {}); dense {:.2} % validation accuracy",
        r.budget,
        r.runtime,
        r.batch,
        r.seq,
        r.dense_accuracy * 100.0
    );
    println!("{:<70} {:>13} {:>11} {:>9}", "pipeline", "latency/dense", "FLOPs/dense", "val acc");
    for c in &r.candidates {
        println!(
            "{:<70} {:>13.2} {:>11} {:>9}",
            if c.pipeline.is_empty() { "(dense)" } else { &c.pipeline },
            c.latency_ratio,
            c.flops_ratio.map_or("-".into(), |f| format!("{f:.2}")),
            c.accuracy.map_or("over".into(), |a| format!("{:.2} %", a * 100.0))
        );
    }
    println!("best: {} -> {}", if r.best.is_empty() { "(dense)" } else { &r.best }, r.output.display());
    println!(
        "test (scored once after the choice): dense {}, best {}, difference {}",
        r.test.dense.display(),
        r.test.best.display(),
        r.test.diff.display()
    );
}

#[cfg(test)]
mod tests {
    use super::Grid;

    #[test]
    fn the_grid_names_only_what_it_changes_and_orders_passes_so_they_can_run() {
        let g: Grid = "heads=0,0.5; tile=0.5".parse().unwrap();
        assert_eq!(g.ffn, Grid::default().ffn);
        let p = g.pipelines(false);
        assert_eq!(p.len(), 2 * 4);
        assert!(p.contains(&"heads(ratio=0.5),ffn(ratio=0.75),tile(sparsity=0.5)".to_string()), "{p:?}");
        let with_exits: Grid = "heads=0;ffn=0;tile=0;exit=none,0.3".parse().unwrap();
        assert_eq!(with_exits.pipelines(true), ["", "exit(criterion=entropy,threshold=0.3)"]);
        assert_eq!(with_exits.pipelines(false), [""]);
        assert!("depth=0.5".parse::<Grid>().unwrap_err().contains("unknown search setting `depth`"));
        assert!("ffn=1.5".parse::<Grid>().unwrap_err().contains("`1.5` is not a fraction"));
        assert!("exit=low".parse::<Grid>().unwrap_err().contains("`low` is not none or a threshold"));
    }
}
