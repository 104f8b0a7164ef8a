//! Budget mode: `optimize MODEL --latency-budget 0.5 --data FILE` searches pass settings (head ratio, FFN
//! ratio, tile sparsity, and an exit threshold when the model has off-ramps) and keeps the most accurate pipeline
//! whose *measured* latency is within the budget, as a fraction of the dense model's latency measured beside it
//! in the same bench cell. Accuracy is measured only for candidates that meet the budget.

use std::path::{Path, PathBuf};

use serde::Serialize;

use bertopt_passes::{exit, registry};

use crate::measure::bench::{self, BenchConfig};
use crate::run::Runtime;
use crate::split::{Part, SplitArgs};

/// The settings searched, each a list of values; 0 (or `none` for exits) means the pass is left out. The cuts
/// and their default values come from the registry (`PassInfo::search`), so every cut can be searched.
#[derive(Clone, Debug)]
pub struct Grid {
    /// Per searchable cut, in registry order: the pass, the argument varied and the fractions tried.
    pub cuts: Vec<(&'static str, &'static str, Vec<f64>)>,
    /// Entropy thresholds of DeeBERT exits; used only when the model has off-ramps.
    pub exit: Vec<Option<f64>>,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            cuts: registry::searchable()
                .map(|(p, s)| (p.name, s.arg, std::iter::once(0.0).chain(s.values.iter().copied()).collect()))
                .collect(),
            exit: vec![None, Some(0.3), Some(0.6)],
        }
    }
}

impl std::str::FromStr for Grid {
    type Err = String;
    /// `heads=0,0.5;ffn=0,0.5,0.75;tile=0;exit=none,0.3`: the settings named replace the defaults.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut g = Grid::default();
        let exit = exit::INFO.name;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, values) = part.split_once('=').ok_or_else(|| format!("`{part}` is not KEY=V,V,..."))?;
            let key = key.trim();
            if key == exit {
                g.exit = values
                    .split(',')
                    .map(|v| match v.trim() {
                        "none" => Ok(None),
                        t => {
                            t.parse::<f64>().map(Some).map_err(|_| format!("{exit}: `{t}` is not none or a threshold"))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                continue;
            }
            let Some(cut) = g.cuts.iter_mut().find(|c| c.0 == key) else {
                let known: Vec<_> = g.cuts.iter().map(|c| c.0).chain([exit]).collect();
                return Err(format!("unknown search setting `{key}` ({})", known.join(", ")));
            };
            cut.2 = values
                .split(',')
                .map(|v| match v.trim().parse::<f64>() {
                    Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                    _ => Err(format!("{key}: `{v}` is not a fraction in [0, 1]")),
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(g)
    }
}

impl Grid {
    /// The fractions tried for the cut `pass` (empty if it is not searchable).
    pub fn values(&self, pass: &str) -> &[f64] {
        self.cuts.iter().find(|c| c.0 == pass).map_or(&[], |c| &c.2)
    }

    /// Every pipeline of the grid, each naming its cuts in registry order (the order passes run in) and the exit
    /// last; sorted, without repeats.
    pub fn pipelines(&self, with_exits: bool) -> Vec<String> {
        let exits: Vec<Option<f64>> = if with_exits { self.exit.clone() } else { vec![None] };
        // The cartesian product, one cut at a time: each partial pipeline extended by each value of the next cut.
        let mut partial: Vec<Vec<String>> = vec![vec![]];
        for (name, arg, values) in &self.cuts {
            partial = partial
                .iter()
                .flat_map(|p| {
                    values.iter().map(move |&v| {
                        let mut p = p.clone();
                        if v > 0.0 {
                            p.push(format!("{name}({arg}={v})"));
                        }
                        p
                    })
                })
                .collect();
        }
        let mut out: Vec<String> = partial
            .iter()
            .flat_map(|p| {
                exits.iter().map(move |e| {
                    let mut p = p.clone();
                    if let Some(th) = e {
                        p.push(format!("{}(criterion=entropy,threshold={th})", exit::INFO.name));
                    }
                    p.join(",")
                })
            })
            .collect();
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
    /// Pipelines of the grid that cannot be built (e.g. two cuts in an order the passes refuse), with why.
    pub skipped: Vec<Skipped>,
    /// Dense and the chosen model on the test rows, scored once after the choice.
    pub test: TestScores,
    /// The chosen pipeline (the most accurate within the budget; the faster on a tie).
    pub best: String,
    pub output: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub pipeline: String,
    pub reason: String,
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
    let mut skipped = vec![];
    for (i, p) in pipelines.iter().enumerate() {
        let file = dir.path().join(format!("c{i}.onnx"));
        if let Err(e) = crate::export::export(a.model, &join(a.base, p), &file) {
            // A combination the passes refuse is the grid's problem, not the model's: record it and go on.
            skipped.push(Skipped { pipeline: p.clone(), reason: format!("{e:#}") });
            bar.inc(1);
            continue;
        }
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
        skipped,
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
    for k in &r.skipped {
        println!("{:<70} skipped: {}", k.pipeline, k.reason);
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
        assert_eq!(g.values("ffn"), Grid::default().values("ffn"));
        let p = g.pipelines(false);
        assert_eq!(p.len(), 2 * 4);
        assert!(p.contains(&"heads(ratio=0.5),ffn(ratio=0.75),tile(sparsity=0.5)".to_string()), "{p:?}");
        let with_exits: Grid = "heads=0;ffn=0;tile=0;exit=none,0.3".parse().unwrap();
        assert_eq!(with_exits.pipelines(true), ["", "exit(criterion=entropy,threshold=0.3)"]);
        assert_eq!(with_exits.pipelines(false), [""]);
        let err = "depth=0.5".parse::<Grid>().unwrap_err();
        assert!(err.contains("unknown search setting `depth`") && err.contains("type0"), "{err}");
        assert!("ffn=1.5".parse::<Grid>().unwrap_err().contains("`1.5` is not a fraction"));
        assert!("exit=low".parse::<Grid>().unwrap_err().contains("`low` is not none or a threshold"));
    }

    #[test]
    fn every_cut_can_be_searched_and_each_candidate_is_a_pipeline_the_registry_builds() {
        let cuts: Vec<&str> = bertopt_passes::registry::searchable().map(|(p, _)| p.name).collect();
        for cut in ["heads", "ffn", "tile", "kgran", "head-size", "type0", "qkv", "vw", "bw"] {
            assert!(cuts.contains(&cut), "{cut} is not searchable: {cuts:?}");
        }
        for cut in &cuts {
            let g: Grid = format!("heads=0;ffn=0;tile=0;{cut}=0,0.5").parse().unwrap();
            let p = g.pipelines(false);
            assert_eq!(p.len(), 2, "{cut}: {p:?}");
            assert!(p[0].is_empty() && p[1].starts_with(&format!("{cut}(")), "{cut}: {p:?}");
            for spec in bertopt_passes::parse_pipeline(&p[1]).unwrap() {
                bertopt_passes::registry::build(&spec).unwrap_or_else(|e| panic!("{cut}: {}: {e}", p[1]));
            }
        }
        // Two cuts named together run in registry order, whatever order --search names them in.
        let g: Grid = "qkv=0.5;heads=0.5;ffn=0;tile=0".parse().unwrap();
        assert_eq!(g.pipelines(false), ["heads(ratio=0.5),qkv(sparsity=0.5)"]);
    }
}
