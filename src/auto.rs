//! `optimize auto`: from a fine-tuned classifier and its data to the fastest model within an accuracy budget, in
//! one resumable command.
//!
//! The search, every choice on validation rows:
//! 1. `baseline`: the dense export and its validation accuracy.
//! 2. `scores`: Taylor importance on the training rows (`optimize score`).
//! 3. `cut-R` for each ratio R of `--schedule`, in order: heads and FFN neurons cut at ratio R (Taylor-ranked)
//!    and recovered from the previous accepted stage, distilled from the dense model (`optimize recover`). A
//!    stage whose validation accuracy is more than `--max-drop` points below dense is rejected and the cutting
//!    stops there: deepen while validation holds, keep the last stage that held.
//! 4. `exits`: DeeBERT off-ramps trained on the kept model (frozen backbone) and the entropy threshold that runs
//!    the fewest layers on validation within what is left of the budget (against dense, not against the pruned
//!    model: losses add up along the chain).
//!    `layers` (with `--layers`): the top encoder layer dropped from the kept cut (`layers(keep=L-1)`), recovered
//!    the same way; a candidate of its own when within `--max-drop` (exits are not trained on it).
//! 5. `quant`: an int8 twin of every candidate: for tract with activation ranges calibrated on the training rows
//!    (`quant(activations=static)`: tract's per-call quantizer costs more than its int8 matmuls save), for ONNX
//!    Runtime with activations quantized per call (its dynamic quantizer is fast; results.md, "int8 forms").
//! 6. `measure`: every candidate timed on the validation sentences at their own length, beside dense in one
//!    run where models take turns of 25 batches (as `bench` runs them), on `--runtime` at `--batch`. The choice:
//!    the fastest candidate within `--max-drop` points of dense on validation and not measurably worse (paired
//!    95 % interval), else dense.
//! 7. `report`: only now the test rows: test accuracy with its interval and the paired difference against dense,
//!    real-length latency at batch 1 and 8 in both runtimes, sizes; `best.onnx`, `report.json`, `report.md`,
//!    `pareto.svg`, and the plain `optimize` commands that rebuild the chosen model.
//!
//! Each stage records its result in `OUT/state.json` (written atomically) after its files are complete; a rerun
//! of the same command skips finished stages, so an interrupted run resumes at the stage it was in. Training
//! stages are not started once `--time-budget` is spent; the best model found so far is then reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::run::Runtime;
use crate::split::{Part, SplitArgs};

#[derive(clap::Args, Clone, Debug)]
pub struct AutoArgs {
    /// A fine-tuned classifier folder (config.json, model.safetensors, tokenizer.json).
    pub model: PathBuf,
    /// The data and its three-way split: training rows train, validation rows decide, test rows are read once at
    /// the end.
    #[command(flatten)]
    pub split: SplitArgs,
    /// Largest validation accuracy loss against dense accepted, in points.
    #[arg(long, default_value_t = 1.0)]
    pub max_drop: f64,
    /// The runtime the model will ship on: candidates are timed in it.
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    pub runtime: Runtime,
    /// The batch size the model will serve.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Stop starting training stages after this long (e.g. 90m, 2h, 3600s); the best model so far is reported.
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub time_budget: Duration,
    /// Head and FFN cut ratios tried in order, each recovered from the previous one.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.75")]
    pub schedule: Vec<f64>,
    /// Recovery epochs per cut stage (distilled from the dense model).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Training batch size.
    #[arg(long, default_value_t = 32)]
    pub train_batch: usize,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// Off-ramp pooling: `mean` (over real tokens; right for mean-pooled backbones such as MiniLM) or `cls`.
    #[arg(long, default_value = "mean")]
    pub exit_pooling: bertopt_models::arch::classifier::ExitPooling,
    /// Do not try early exits.
    #[arg(long)]
    pub no_exits: bool,
    /// Do not try int8.
    #[arg(long)]
    pub no_quant: bool,
    /// Also try the kept cut with its top encoder layer dropped (`layers(keep=L-1)`), recovered and distilled.
    #[arg(long)]
    pub layers: bool,
    #[arg(short, long)]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `90m`, `2h`, `3600s`, `3600` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = n.trim().parse().map_err(|_| format!("`{s}` is not a duration such as 90m, 2h or 3600s"))?;
    let k = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: the unit must be s, m or h")),
    };
    if !(n >= 0.0 && n.is_finite()) {
        return Err(format!("`{s}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(n * k))
}

/// A model the search made, with what validation says about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    /// The pass pipeline that exports it from `checkpoint`.
    pub pipeline: String,
    pub checkpoint: PathBuf,
    /// Its export (a file, or a segmented folder).
    pub file: PathBuf,
    pub val_accuracy: f64,
    pub val_ci95: [f64; 2],
    /// Per validation row, in order: right (1) or wrong (0), for paired comparisons.
    pub val_right: String,
    /// Mean latency per batch on the validation sentences (filled by `measure`).
    #[serde(default)]
    pub val_mean_ms: Option<f64>,
    /// Average layers run (early-exit models, validation rows).
    #[serde(default)]
    pub avg_layers: Option<f64>,
}

impl Candidate {
    fn right(&self) -> Vec<bool> {
        self.val_right.bytes().map(|b| b == b'1').collect()
    }
    fn drop_points(&self, dense: &Candidate) -> f64 {
        (dense.val_accuracy - self.val_accuracy) * 100.0
    }
}

/// One finished stage.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StageRecord {
    pub seconds: f64,
    /// Candidates this stage made.
    pub candidates: Vec<Candidate>,
    /// Whether the stage's candidate is kept for the next stage (cuts), and why.
    pub accepted: bool,
    pub note: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The settings the run was started with; a rerun with other settings is refused.
    settings: String,
    stages: BTreeMap<String, StageRecord>,
}

/// Test-split figures of one model.
#[derive(Debug, Serialize, Deserialize)]
pub struct TestFigures {
    pub accuracy: f64,
    pub ci95: [f64; 2],
    pub examples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_vs_dense: Option<crate::measure::stats::PairedDiff>,
    pub bytes: u64,
    /// (runtime, batch) -> mean ms per batch on the test sentences at their own length.
    pub latency_ms: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AutoReport {
    pub model: PathBuf,
    pub max_drop: f64,
    pub runtime: Runtime,
    pub batch: usize,
    /// Time spent: every stage (across resumed runs) and the report.
    pub seconds: f64,
    pub stages: BTreeMap<String, StageRecord>,
    pub candidates: Vec<Candidate>,
    /// The chosen candidate's name ("dense" when nothing else qualified), and why.
    pub chosen: String,
    pub why: String,
    /// What ended the search (accuracy, time, or the schedule), and the next lever.
    pub stopped: String,
    pub best: PathBuf,
    pub dense_test: TestFigures,
    pub best_test: TestFigures,
    /// Plain `optimize` commands that rebuild the chosen model.
    pub commands: Vec<String>,
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    crate::atomic::write_atomic(path, |w| w.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// What the run's results depend on (compared on resume).
fn settings(a: &AutoArgs) -> String {
    format!(
        "model={} data={:?} eval={:?} val={:?} train_size={:?} val_size={:?} seed={} label_map={:?} max_drop={} \
         runtime={} batch={} schedule={:?} epochs={} lr={} train_batch={} max_len={} exit_pooling={:?} exits={} \
         quant={} layers={}",
        a.model.display(),
        a.split.data,
        a.split.eval,
        a.split.val,
        a.split.train_size,
        a.split.val_size,
        a.split.seed,
        a.split.label_map,
        a.max_drop,
        a.runtime,
        a.batch,
        a.schedule,
        a.epochs,
        a.lr,
        a.train_batch,
        a.max_len,
        a.exit_pooling,
        !a.no_exits,
        !a.no_quant,
        a.layers
    )
}

/// Progress: one line per stage, with its number, what it does, elapsed time and an estimate of what is left.
struct Progress {
    start: Instant,
    total: usize,
    done: usize,
    quiet: bool,
}

impl Progress {
    fn line(&self, name: &str, what: &str) {
        if self.quiet {
            return;
        }
        let el = self.start.elapsed().as_secs();
        let left = if self.done == 0 {
            String::new()
        } else {
            let per = self.start.elapsed().as_secs_f64() / self.done as f64;
            let rest = (per * (self.total - self.done) as f64) as u64;
            format!(", about {}:{:02} left", rest / 60, rest % 60)
        };
        eprintln!("[auto {}/{} {name}] {what} (elapsed {}:{:02}{left})", self.done + 1, self.total, el / 60, el % 60);
    }
}

/// `1 point`, `0.5 points`.
fn points(x: f64) -> String {
    format!("{x} point{}", if x == 1.0 { "" } else { "s" })
}

/// The choice among measured candidates (dense first): the fastest within `max_drop` points of dense on
/// validation whose paired interval against dense does not lie below 0; else dense. Returns its index and why.
pub fn choose(cands: &[Candidate], max_drop: f64) -> (usize, String) {
    let dense = &cands[0];
    let d_right = dense.right();
    let diffs: Vec<_> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (i > 0).then(|| crate::measure::stats::paired(&d_right, &c.right())))
        .collect();
    let ms: Vec<Option<f64>> = cands.iter().map(|c| c.val_mean_ms).collect();
    let any_within = (1..cands.len()).any(|i| {
        ms[i].is_some() && diffs[i].as_ref().is_some_and(|d| crate::measure::stats::within_budget(d, max_drop))
    });
    match crate::measure::stats::fastest_within_budget(&diffs, &ms, max_drop) {
        Some(i) => (
            i,
            format!(
                "the fastest of {} candidates within {} of dense on validation ({:+.2} points) and not \
                 measurably worse",
                cands.len() - 1,
                points(max_drop),
                -cands[i].drop_points(dense)
            ),
        ),
        None if !any_within => (
            0,
            format!(
                "no candidate is within {} of dense on validation without being measurably worse: dense is kept",
                points(max_drop)
            ),
        ),
        None => (0, "no candidate within the budget is faster than dense: dense is kept".into()),
    }
}

pub fn run(a: &AutoArgs) -> anyhow::Result<AutoReport> {
    anyhow::ensure!(a.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(a.max_drop >= 0.0, "--max-drop must be 0 or more points");
    anyhow::ensure!(!a.split.data.is_empty(), "optimize auto needs --data");
    let start = Instant::now();
    let out = &a.out;
    std::fs::create_dir_all(out.join("stages")).with_context(|| format!("cannot create {}", out.display()))?;
    let state_path = out.join("state.json");
    let mut state: State = if state_path.exists() {
        serde_json::from_str(&std::fs::read_to_string(&state_path)?)
            .with_context(|| format!("{} is not a state file of optimize auto", state_path.display()))?
    } else {
        State::default()
    };
    let now = settings(a);
    if !state.settings.is_empty() && state.settings != now {
        anyhow::bail!(
            "{} holds a run with other settings:\n  it has: {}\n  asked:  {}\nuse another -o, or delete the folder to start over",
            out.display(),
            state.settings,
            now
        );
    }
    state.settings = now;
    // Splits are made the same way for every step; the test rows are not read before `report`.
    let splits = a.split.splits()?;
    let mut names: Vec<String> = vec!["baseline".into(), "scores".into()];
    names.extend(a.schedule.iter().map(|r| format!("cut-{r}")));
    if !a.no_exits {
        names.push("exits".into());
    }
    if a.layers {
        names.push("layers".into());
    }
    if !a.no_quant {
        names.push(bertopt_passes::quant::INFO.name.into());
    }
    names.extend(["measure".into(), "report".into()]);
    let mut prog = Progress { start, total: names.len(), done: 0, quiet: a.json };
    let budget_over = |start: Instant| start.elapsed() >= a.time_budget;

    let val = |file: &Path| -> anyhow::Result<crate::eval_cmd::EvalReport> {
        crate::eval_cmd::run(&crate::eval_cmd::EvalArgs {
            model: file.to_path_buf(),
            split: a.split.clone(),
            part: Part::Val,
            runtime: Runtime::Tract,
            batch: 32,
            max_len: a.max_len,
            tokenizer: None,
            against: None,
        })
    };
    let candidate = |name: &str, pipeline: &str, checkpoint: &Path, file: PathBuf| -> anyhow::Result<Candidate> {
        let r = val(&file)?;
        Ok(Candidate {
            name: name.into(),
            pipeline: pipeline.into(),
            checkpoint: checkpoint.to_path_buf(),
            file,
            val_accuracy: r.accuracy,
            val_ci95: r.ci95,
            val_right: r.right.iter().map(|&x| if x { '1' } else { '0' }).collect(),
            val_mean_ms: None,
            avg_layers: r.avg_layers,
        })
    };
    let train_args = |out: PathBuf, epochs: usize, lr: f64, teacher: Option<PathBuf>| crate::train_cmd::TrainArgs {
        start: crate::train_cmd::Start::Pretrained(a.model.clone()),
        split: a.split.clone(),
        out,
        cfg: bertopt_models::train::TrainConfig {
            epochs,
            batch_size: a.train_batch,
            lr,
            max_len: a.max_len,
            seed: a.split.seed,
            ..Default::default()
        },
        head_mask: None,
        ffn_mask: None,
        layer_mask: None,
        hidden_mask: None,
        weight_masks: Default::default(),
        pruning: None,
        teacher,
        device: "cpu".into(),
        progress: !a.json,
    };
    // A cut stage's candidate: `from` recovered under `pipeline` (--epochs, distilled from MODEL) into
    // OUT/stages/STAGE and exported as OUT/STAGE.onnx; accepted when within --max-drop of dense on validation
    // (`verdict`: what the note says when it is, and when it is not).
    let recovered = |stage: &str, name: &str, from: &Path, pipeline: &str, dense: &Candidate, verdict: [&str; 2]| {
        let dir = out.join("stages").join(stage);
        let mut t = train_args(dir.clone(), a.epochs, a.lr, Some(a.model.clone()));
        t.start = crate::train_cmd::Start::Pretrained(from.to_path_buf());
        crate::recover::run(from, pipeline, &[], t)?;
        let file = out.join(format!("{stage}.onnx"));
        crate::export::export(&dir, pipeline, &file)?;
        let c = candidate(name, pipeline, &dir, file)?;
        let accepted = c.drop_points(dense) <= a.max_drop + 1e-9;
        let note = format!(
            "validation {:.2} % ({:+.2} points against dense): {}",
            c.val_accuracy * 100.0,
            -c.drop_points(dense),
            verdict[usize::from(!accepted)]
        );
        anyhow::Ok(StageRecord { candidates: vec![c], accepted, note, ..Default::default() })
    };

    // A stage: its record if finished, else run it and record it (after its files are complete).
    macro_rules! stage {
        ($name:expr, $what:expr, $training:expr, $body:expr) => {{
            let name: String = $name;
            let rec = if let Some(r) = state.stages.get(&name) {
                prog.line(&name, "done before; skipped");
                Some(r.clone())
            } else if $training && budget_over(start) {
                prog.line(&name, "not started: the time budget is spent");
                None
            } else {
                prog.line(&name, $what);
                let t = Instant::now();
                let mut r: StageRecord = $body?;
                r.seconds = t.elapsed().as_secs_f64();
                state.stages.insert(name.clone(), r.clone());
                write_json(&state_path, &state)?;
                Some(r)
            };
            prog.done += 1;
            rec
        }};
    }

    let dense_file = out.join("dense.onnx");
    let baseline = stage!("baseline".to_string(), "dense export and its validation accuracy", false, {
        crate::export::export(&a.model, "", &dense_file)?;
        anyhow::Ok(StageRecord {
            candidates: vec![candidate("dense", "", &a.model, dense_file.clone())?],
            accepted: true,
            note: String::new(),
            ..Default::default()
        })
    })
    .expect("not a training stage");
    let dense = baseline.candidates[0].clone();
    let mut cands = vec![dense.clone()];

    let scores = out.join("scores.safetensors");
    stage!("scores".to_string(), "Taylor importance on the training rows", true, {
        crate::score_cmd::run(&crate::score_cmd::ScoreArgs {
            model: a.model.clone(),
            split: a.split.clone(),
            batches: 100,
            batch: a.train_batch,
            max_len: a.max_len,
            out: scores.clone(),
            progress: !a.json,
        })?;
        anyhow::Ok(StageRecord { accepted: true, ..Default::default() })
    });

    // Deepen while validation holds.
    let cut = |r: f64| {
        let s = scores.display();
        format!("heads(ratio={r},scores={s}),ffn(ratio={r},scores={s})")
    };
    let mut kept = dense.clone();
    for &r in &a.schedule {
        if !scores.exists() || !state.stages.get("scores").is_some_and(|s| s.accepted) {
            break;
        }
        if state.stages.iter().any(|(n, s)| n.starts_with("cut-") && !s.accepted) {
            break;
        }
        let name = format!("cut-{r}");
        let from = kept.checkpoint.clone();
        let what = format!("heads and FFN at {r}, recovered {} epochs from {}, distilled", a.epochs, kept.name);
        let rec = stage!(name.clone(), &what, true, {
            recovered(
                &name,
                &name,
                &from,
                &cut(r),
                &dense,
                ["kept, cutting deeper", "beyond the budget, cutting stops"],
            )
        });
        match rec {
            Some(rec) => {
                cands.extend(rec.candidates.iter().cloned());
                if rec.accepted {
                    kept = rec.candidates[0].clone();
                } else {
                    break;
                }
            }
            None => break,
        }
    }

    if !a.no_exits {
        let left = a.max_drop - kept.drop_points(&dense);
        let base = kept.clone();
        let rec = stage!("exits".to_string(), "DeeBERT off-ramps on the kept model, threshold on validation", true, {
            if left <= 0.0 {
                anyhow::Ok(StageRecord {
                    note: format!("no budget left for exits ({:.2} points used by the cut)", kept.drop_points(&dense)),
                    ..Default::default()
                })
            } else {
                let dir = out.join("stages").join("exits");
                let mut t = train_args(dir.clone(), 2, 5e-4, None);
                t.start = crate::train_cmd::Start::Pretrained(base.checkpoint.clone());
                crate::exit_cmd::run(&t, bertopt_models::train::exits::ExitMethod::Deebert, Some(a.exit_pooling))?;
                let cal = crate::calibrate::run(
                    &crate::calibrate::CalibrateArgs {
                        model: dir.clone(),
                        split: a.split.clone(),
                        criterion: "entropy".into(),
                        values: vec![],
                        max_drop: left,
                        latency_samples: 50,
                        batch: a.batch,
                        seq: None,
                        max_len: a.max_len,
                        out: out.join("stages").join("exits-calibration"),
                        report_test: false,
                    },
                    !a.json,
                )?;
                // The setting with the fewest layers run on validation within what is left (more accurate on a
                // tie): layers, not a timing, so that the same data always gives the same candidate; the
                // candidates are timed together afterwards.
                let pick = cal
                    .settings
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| (cal.dense_accuracy - s.accuracy) * 100.0 <= left + 1e-9)
                    .min_by(|x, y| {
                        x.1.avg_layers.total_cmp(&y.1.avg_layers).then(y.1.accuracy.total_cmp(&x.1.accuracy))
                    })
                    .map(|(i, _)| i);
                match pick {
                    None => anyhow::Ok(StageRecord {
                        note: format!("no exit threshold within the {left:.2} points left"),
                        ..Default::default()
                    }),
                    Some(i) => {
                        let exit = cal.settings[i].pipeline.clone();
                        let pipeline =
                            if base.pipeline.is_empty() { exit.clone() } else { format!("{},{exit}", base.pipeline) };
                        let (file, segmented) = if a.batch > 1 {
                            (out.join("exits.segments"), true)
                        } else {
                            (out.join("exits.onnx"), false)
                        };
                        if file.is_dir() {
                            std::fs::remove_dir_all(&file)?;
                        }
                        let opts = crate::export::ExportOptions { segmented, ..Default::default() };
                        crate::export::export_with(&dir, &pipeline, &file, opts)?;
                        let c = candidate(&format!("{}+exits", base.name), &pipeline, &dir, file)?;
                        let note = format!("{exit}: validation {:.2} %", c.val_accuracy * 100.0);
                        anyhow::Ok(StageRecord { candidates: vec![c], accepted: true, note, ..Default::default() })
                    }
                }
            }
        });
        if let Some(rec) = rec {
            cands.extend(rec.candidates);
        }
    }

    if a.layers {
        let base = kept.clone();
        let what = format!("the top layer dropped from {}, recovered, distilled", base.name);
        let rec = stage!("layers".to_string(), &what, true, {
            // The config alone says how many layers there are (read only when the stage runs).
            let files = bertopt_models::ModelFiles::locate(&a.model)?;
            let config = bertopt_models::load::config::BertConfig::from_file(&files.config)?;
            match config.num_hidden_layers.saturating_sub(1) {
                0 => anyhow::Ok(StageRecord { note: "one encoder layer: none to drop".into(), ..Default::default() }),
                keep => {
                    let cut = format!("layers(keep={keep})");
                    let pipeline = if base.pipeline.is_empty() { cut } else { format!("{},{cut}", base.pipeline) };
                    let name = format!("{}-layers", base.name);
                    recovered(
                        "layers",
                        &name,
                        &base.checkpoint,
                        &pipeline,
                        &dense,
                        ["a candidate", "beyond the budget"],
                    )
                }
            }
        });
        if let Some(rec) = rec {
            cands.extend(rec.candidates);
        }
    }

    if !a.no_quant {
        let base: Vec<Candidate> = cands.clone();
        let stage_name = bertopt_passes::quant::INFO.name;
        let (quant, calibration) = match a.runtime {
            Runtime::Tract => ("quant(activations=static)", Some((a.split.clone(), 256))),
            Runtime::Ort => (stage_name, None),
        };
        let rec = stage!(stage_name.to_string(), "an int8 twin of every candidate", false, {
            let mut made = vec![];
            for c in &base {
                let pipeline =
                    if c.pipeline.is_empty() { quant.to_string() } else { format!("{},{quant}", c.pipeline) };
                let segmented = c.file.is_dir();
                let file = out.join(if segmented {
                    format!("{}-int8.segments", c.name)
                } else {
                    format!("{}-int8.onnx", c.name)
                });
                if file.is_dir() {
                    std::fs::remove_dir_all(&file)?;
                }
                let opts =
                    crate::export::ExportOptions { segmented, calibration: calibration.clone(), ..Default::default() };
                crate::export::export_with(&c.checkpoint, &pipeline, &file, opts)?;
                made.push(candidate(&format!("{}-int8", c.name), &pipeline, &c.checkpoint, file)?);
            }
            anyhow::Ok(StageRecord { candidates: made, accepted: true, ..Default::default() })
        })
        .expect("not a training stage");
        cands.extend(rec.candidates);
    }

    let what =
        format!("every candidate on the validation sentences, {} batch {}, in turns of 25 batches", a.runtime, a.batch);
    let measured = stage!("measure".to_string(), &what, false, {
        let files: Vec<PathBuf> = cands.iter().map(|c| c.file.clone()).collect();
        let texts: Vec<String> = splits.val.examples.iter().map(|e| e.text.clone()).collect();
        let cells = crate::measure::real_length::bench(
            &files,
            &texts,
            &real_config(vec![a.runtime], vec![a.batch], a.max_len),
        )?;
        let mut measured = cands.clone();
        for (c, t) in measured.iter_mut().zip(&cells[0].models) {
            c.val_mean_ms = Some(t.mean_ms);
            c.avg_layers = t.avg_layers.or(c.avg_layers);
        }
        anyhow::Ok(StageRecord { candidates: measured, accepted: true, ..Default::default() })
    })
    .expect("not a training stage");
    let cands = measured.candidates;
    let (pick, why) = choose(&cands, a.max_drop);
    let chosen = cands[pick].clone();

    // Only now the test rows.
    prog.line("report", &format!("chosen: {} ({why}); test figures", chosen.name));
    let report_start = Instant::now();
    let best = if chosen.file.is_dir() { out.join("best.segments") } else { out.join("best.onnx") };
    copy_model(&chosen.file, &best)?;
    let test_of = |file: &Path, against: Option<PathBuf>| {
        crate::eval_cmd::run(&crate::eval_cmd::EvalArgs {
            model: file.to_path_buf(),
            split: a.split.clone(),
            part: Part::Test,
            runtime: Runtime::Tract,
            batch: 32,
            max_len: a.max_len,
            tokenizer: None,
            against,
        })
    };
    let dense_eval = test_of(&dense.file, None)?;
    let best_eval = test_of(&best, Some(dense.file.clone()))?;
    let texts: Vec<String> = splits.test.examples.iter().map(|e| e.text.clone()).collect();
    let cells = crate::measure::real_length::bench(
        &[dense.file.clone(), best.clone()],
        &texts,
        &real_config(vec![Runtime::Tract, Runtime::Ort], vec![1, 8], a.max_len),
    )?;
    let latency = |j: usize| -> BTreeMap<String, f64> {
        cells.iter().map(|c| (format!("{} b{}", c.runtime, c.batch), c.models[j].mean_ms)).collect()
    };
    let figures = |e: &crate::eval_cmd::EvalReport, file: &Path, j: usize| -> anyhow::Result<TestFigures> {
        Ok(TestFigures {
            accuracy: e.accuracy,
            ci95: e.ci95,
            examples: e.examples,
            diff_vs_dense: e.against.as_ref().map(|x| x.diff),
            bytes: size_of(file)?,
            latency_ms: latency(j),
        })
    };
    let report = AutoReport {
        model: a.model.clone(),
        max_drop: a.max_drop,
        runtime: a.runtime,
        batch: a.batch,
        // Every stage's own time (across resumed runs) and this report's.
        seconds: state.stages.values().map(|s| s.seconds).sum::<f64>() + report_start.elapsed().as_secs_f64(),
        stages: state.stages.clone(),
        commands: commands(a, &chosen, &state),
        candidates: cands.clone(),
        chosen: chosen.name.clone(),
        why,
        stopped: stopped(a, &state, start.elapsed()),
        best: best.clone(),
        dense_test: figures(&dense_eval, &dense.file, 0)?,
        best_test: figures(&best_eval, &best, 1)?,
    };
    write_json(&out.join("report.json"), &report)?;
    let md = markdown(&report);
    crate::atomic::write_atomic(&out.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    let plane = val_plane(&cands, a);
    let label = "validation accuracy (%), 95 % interval";
    crate::measure::plot::pareto_svg_labelled(&plane, &out.join("pareto.svg"), a.max_drop, label)?;
    Ok(report)
}

/// Which stage ended the search, and what would go further.
fn stopped(a: &AutoArgs, state: &State, elapsed: Duration) -> String {
    let rejected = a.schedule.iter().find_map(|r| {
        let st = state.stages.get(&format!("cut-{r}"))?;
        (!st.accepted).then(|| format!("accuracy: the cut at {r} {}", st.note))
    });
    let missing: Vec<String> = ["scores".to_string()]
        .into_iter()
        .chain(a.schedule.iter().map(|r| format!("cut-{r}")))
        .chain((!a.no_exits).then(|| "exits".to_string()))
        .chain(a.layers.then(|| "layers".to_string()))
        .filter(|n| !state.stages.contains_key(n))
        .collect();
    let next = "next levers: more recovery epochs per stage, a finer --schedule, jointly trained (ElasticBERT) \
                off-ramps, cuts of the hidden size or of whole layers (--layers drops one)";
    match rejected {
        Some(why) => format!("{why}; {next}."),
        None if elapsed >= a.time_budget && !missing.is_empty() => {
            format!(
                "time: the budget ran out before {}; rerun with a larger --time-budget to continue.",
                missing.join(", ")
            )
        }
        None => format!(
            "the schedule: every cut in it held on validation; a deeper --schedule (e.g. {:.2}) may go further.",
            (a.schedule.last().copied().unwrap_or(0.5) + 1.0) / 2.0
        ),
    }
}

fn real_config(
    runtimes: Vec<Runtime>,
    batches: Vec<usize>,
    max_len: usize,
) -> crate::measure::real_length::RealLengthConfig {
    crate::measure::real_length::RealLengthConfig {
        runtimes,
        batches,
        tract_plans: vec![crate::measure::real_length::TractPlans::PerBatch],
        max_len,
        repeat: 1,
        warmup: 2,
        threads: 1,
        bucket: 16,
        block: 25,
    }
}

fn size_of(p: &Path) -> anyhow::Result<u64> {
    if p.is_dir() {
        let mut n = 0;
        for e in std::fs::read_dir(p)? {
            n += e?.metadata()?.len();
        }
        Ok(n)
    } else {
        Ok(std::fs::metadata(p)?.len())
    }
}

fn copy_model(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_dir() {
        if to.exists() {
            std::fs::remove_dir_all(to)?;
        }
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    } else {
        let bytes = std::fs::read(from)?;
        crate::atomic::write_atomic(to, |w| w.write_all(&bytes))?;
    }
    Ok(())
}

/// The validation plane for the plot: every candidate's validation accuracy (interval, paired difference against
/// dense) at its measured latency, as a bench report with one real-length cell.
fn val_plane(cands: &[Candidate], a: &AutoArgs) -> crate::measure::bench::BenchReport {
    let d = cands[0].right();
    let models = cands
        .iter()
        .enumerate()
        .map(|(i, c)| crate::measure::bench::ModelSummary {
            model: PathBuf::from(format!("{}.onnx", c.name)),
            pipeline: c.pipeline.clone(),
            params: 0,
            flops_poly: None,
            notes: vec![],
            accuracy: Some(c.val_accuracy),
            ci95: Some(c.val_ci95),
            diff_vs_first: (i > 0).then(|| crate::measure::stats::paired(&d, &c.right())),
            examples: Some(d.len()),
            avg_layers: c.avg_layers,
            exit_histogram: vec![],
        })
        .collect();
    let timing = cands
        .iter()
        .map(|c| crate::measure::real_length::RealTiming {
            model: PathBuf::from(format!("{}.onnx", c.name)),
            mean_ms: c.val_mean_ms.unwrap_or(f64::NAN),
            p50_ms: c.val_mean_ms.unwrap_or(f64::NAN),
            p90_ms: f64::NAN,
            p99_ms: f64::NAN,
            sentences_per_s: f64::NAN,
            mean_tokens: f64::NAN,
            mean_padded_tokens: f64::NAN,
            speedup_mean: cands[0].val_mean_ms.unwrap_or(f64::NAN) / c.val_mean_ms.unwrap_or(f64::NAN),
            speedup_p50: f64::NAN,
            avg_layers: c.avg_layers,
            warmup_s: 0.0,
            plans: None,
        })
        .collect();
    crate::measure::bench::BenchReport {
        machine: crate::measure::machine::machine(),
        warmup: 2,
        iters: 1,
        models,
        cells: vec![],
        inputs: None,
        real: vec![crate::measure::real_length::RealCell {
            runtime: a.runtime,
            runtime_version: crate::measure::machine::runtime_version(a.runtime),
            tract_plans: None,
            bucket: 0,
            block: 1,
            batch: a.batch,
            threads: 1,
            rows: d.len(),
            batches: 0,
            models: timing,
        }],
        crossovers: vec![],
    }
}

/// A word for a POSIX shell: as is when plain, else single-quoted.
fn sh(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./=,:+-@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Plain commands that rebuild the chosen model (paths as this run used them, quoted for a POSIX shell).
fn commands(a: &AutoArgs, chosen: &Candidate, state: &State) -> Vec<String> {
    let mut data = String::new();
    for d in &a.split.data {
        data.push_str(&format!(" --data {}", sh(&d.display().to_string())));
    }
    if let Some(e) = &a.split.eval {
        data.push_str(&format!(" --eval {}", sh(&e.display().to_string())));
    }
    if let Some(n) = a.split.train_size {
        data.push_str(&format!(" --train-size {n}"));
    }
    if let Some(n) = a.split.val_size {
        data.push_str(&format!(" --val-size {n}"));
    }
    data.push_str(&format!(" --seed {}", a.split.seed));
    let m = sh(&a.model.display().to_string());
    let mut cmds = vec![];
    // The cut the chosen model carries, and the accepted stages up to it (each recovered from the one before).
    let ratio: Option<f64> = chosen
        .pipeline
        .split("heads(ratio=")
        .nth(1)
        .and_then(|rest| rest.split([',', ')']).next())
        .and_then(|r| r.parse().ok());
    let mut from = m.clone();
    if let Some(ratio) = ratio {
        let ratios: Vec<String> = a
            .schedule
            .iter()
            .filter(|&&r| r <= ratio && state.stages.get(&format!("cut-{r}")).is_some_and(|s| s.accepted))
            .map(|r| r.to_string())
            .collect();
        cmds.push(format!(
            "optimize score {m}{data} --batch {} --max-len {} -o scores.safetensors",
            a.train_batch, a.max_len
        ));
        cmds.push(format!(
            "optimize recover {m} --pass \"heads(ratio={{s}},scores=scores.safetensors),ffn(ratio={{s}},scores=scores.safetensors)\" --schedule {} --epochs {} --lr {} --batch {} --max-len {} --teacher {m}{data} -o pruned",
            ratios.join(","),
            a.epochs,
            a.lr,
            a.train_batch,
            a.max_len
        ));
        from = "pruned".into();
    }
    let local = |p: &str| p.replace(&format!("{}", a.out.join("scores.safetensors").display()), "scores.safetensors");
    if let Some(at) = chosen.pipeline.find("layers(keep=") {
        // The `layers` stage: the kept cut and the layer drop, recovered from the kept model.
        let end = at + chosen.pipeline[at..].find(')').map_or(0, |i| i + 1);
        cmds.push(format!(
            "optimize recover {from} --pass \"{}\" --epochs {} --lr {} --batch {} --max-len {} --teacher {m}{data} -o layers",
            local(&chosen.pipeline[..end]),
            a.epochs,
            a.lr,
            a.train_batch,
            a.max_len
        ));
        from = "layers".into();
    }
    if chosen.pipeline.contains("exit(") {
        let pooling = match a.exit_pooling {
            bertopt_models::arch::classifier::ExitPooling::Mean => "mean",
            bertopt_models::arch::classifier::ExitPooling::Cls => "cls",
        };
        cmds.push(format!(
            "optimize train-exits {from} --method deebert --pooling {pooling}{data} --epochs 2 --lr 5e-4 --batch {} --max-len {} -o exits",
            a.train_batch,
            a.max_len
        ));
        from = "exits".into();
    }
    let pipeline = local(&chosen.pipeline);
    // Static int8 calibrates on the training rows of the same split.
    let mut seg = if chosen.file.is_dir() { " --segmented".to_string() } else { String::new() };
    if pipeline.contains("activations=static") {
        seg.push_str(&data);
    }
    if pipeline.is_empty() {
        cmds.push(format!("optimize {from} -o model.onnx"));
    } else {
        cmds.push(format!("optimize {from} --pass \"{pipeline}\"{seg} -o model.onnx"));
    }
    cmds
}

fn markdown(r: &AutoReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# optimize auto: {}\n\nBudget: {} of validation accuracy against dense; runtime {}, batch {}; {:.0} s.\n\n",
        r.model.display(),
        points(r.max_drop),
        r.runtime,
        r.batch,
        r.seconds
    ));
    s.push_str("## Candidates (validation)\n\n| candidate | pipeline | validation accuracy [95 %] | vs dense | mean latency | layers |\n|---|---|---|---|---|---|\n");
    let dense = &r.candidates[0];
    for c in &r.candidates {
        let mark = if c.name == r.chosen { " (chosen)" } else { "" };
        s.push_str(&format!(
            "| {}{mark} | `{}` | {:.2} % [{:.1}, {:.1}] | {} | {} | {} |\n",
            c.name,
            if c.pipeline.is_empty() { "-" } else { &c.pipeline },
            c.val_accuracy * 100.0,
            c.val_ci95[0] * 100.0,
            c.val_ci95[1] * 100.0,
            if c.name == dense.name { "-".to_string() } else { format!("{:+.2}", 0.0 - c.drop_points(dense)) },
            c.val_mean_ms.map_or("-".into(), |m| format!("{m:.2} ms ({:.2}x)", dense.val_mean_ms.unwrap_or(m) / m)),
            c.avg_layers.map_or("-".into(), |l| format!("{l:.2}"))
        ));
    }
    s.push_str(&format!("\nChosen: **{}**: {}.\n\nWhat ended the search: {}\n\n", r.chosen, r.why, r.stopped));
    s.push_str("## Test (read once, after every choice)\n\n");
    s.push_str("| model | test accuracy [95 %] | vs dense, paired [95 %] | size |");
    let keys: Vec<&String> = r.dense_test.latency_ms.keys().collect();
    for k in &keys {
        s.push_str(&format!(" {k} |"));
    }
    s.push_str("\n|---|---|---|---|");
    for _ in &keys {
        s.push_str("---|");
    }
    s.push('\n');
    for (name, t) in [("dense", &r.dense_test), (r.chosen.as_str(), &r.best_test)] {
        let diff = t.diff_vs_dense.map_or("-".into(), |d| {
            format!(
                "{:+.2} [{:+.1}, {:+.1}]{}",
                d.diff * 100.0,
                d.ci95[0] * 100.0,
                d.ci95[1] * 100.0,
                if d.ci95[0] <= 0.0 && 0.0 <= d.ci95[1] { " (=)" } else { "" }
            )
        });
        s.push_str(&format!(
            "| {name} | {:.2} % [{:.1}, {:.1}] | {diff} | {:.1} MiB |",
            t.accuracy * 100.0,
            t.ci95[0] * 100.0,
            t.ci95[1] * 100.0,
            t.bytes as f64 / 1048576.0
        ));
        for k in &keys {
            let (d, m) = (r.dense_test.latency_ms[*k], t.latency_ms[*k]);
            s.push_str(&format!(" {m:.2} ms ({:.2}x) |", d / m));
        }
        s.push('\n');
    }
    s.push_str(
        "\nLatency: mean per batch on the test sentences at their own length, one thread.\n\n## Rebuild it\n\n```sh\n",
    );
    for c in &r.commands {
        s.push_str(c);
        s.push('\n');
    }
    s.push_str("```\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, acc: f64, right: &str, ms: f64) -> Candidate {
        Candidate {
            name: name.into(),
            pipeline: String::new(),
            checkpoint: PathBuf::new(),
            file: PathBuf::new(),
            val_accuracy: acc,
            val_ci95: [0.0, 1.0],
            val_right: right.into(),
            val_mean_ms: Some(ms),
            avg_layers: None,
        }
    }

    #[test]
    fn the_choice_is_the_fastest_within_budget_and_not_measurably_worse() {
        let dense = cand("dense", 0.8, "1111111100", 10.0);
        // 2 rows worse: 20 points below, beyond a 1-point budget.
        let worse = cand("worse", 0.6, "1111110000", 2.0);
        let same = cand("same", 0.8, "1111111100", 5.0);
        let same_faster = cand("same-faster", 0.8, "1111111010", 4.0);
        let (i, why) = choose(&[dense.clone(), worse.clone(), same, same_faster], 1.0);
        assert_eq!(i, 3, "{why}");
        // Nothing within budget: dense, and it says so.
        let (i, why) = choose(&[dense.clone(), worse.clone()], 0.0);
        assert_eq!(i, 0);
        assert!(why.contains("dense is kept"), "{why}");
        // Within budget but slower than dense: dense.
        let (i, why) = choose(&[dense, cand("slow", 0.8, "1111111100", 12.0)], 1.0);
        assert_eq!(i, 0);
        assert!(why.contains("faster"), "{why}");
    }

    #[test]
    fn the_rebuild_commands_recover_the_layer_drop_and_calibrate_static_int8() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: AutoArgs,
        }
        use clap::Parser;
        let args = ["auto", "m", "--data", "d.csv", "--train-size", "60", "--schedule", "0.25,0.5", "-o", "o"];
        let a = Cli::try_parse_from(args).unwrap().a;
        let s = a.out.join("scores.safetensors").display().to_string();
        let mut state = State { settings: String::new(), stages: BTreeMap::new() };
        state.stages.insert("cut-0.25".into(), StageRecord { accepted: true, ..Default::default() });
        let mut chosen = cand("cut-0.25-layers-int8", 0.8, "1", 1.0);
        chosen.pipeline =
            format!("heads(ratio=0.25,scores={s}),ffn(ratio=0.25,scores={s}),layers(keep=5),quant(activations=static)");
        chosen.file = PathBuf::from("x.onnx");
        let cmds = commands(&a, &chosen, &state);
        let cut = "heads(ratio=0.25,scores=scores.safetensors),ffn(ratio=0.25,scores=scores.safetensors)";
        assert_eq!(cmds.len(), 4, "{cmds:#?}");
        assert!(cmds[1].starts_with("optimize recover m --pass") && cmds[1].ends_with("-o pruned"), "{cmds:#?}");
        assert!(cmds[2].starts_with(&format!("optimize recover pruned --pass \"{cut},layers(keep=5)\" ")), "{cmds:#?}");
        assert!(cmds[2].ends_with(" --teacher m --data d.csv --train-size 60 --seed 42 -o layers"), "{cmds:#?}");
        assert_eq!(
            cmds[3],
            format!(
                "optimize layers --pass \"{cut},layers(keep=5),quant(activations=static)\" --data d.csv \
                 --train-size 60 --seed 42 -o model.onnx"
            )
        );
    }

    #[test]
    fn shell_words_are_quoted_when_they_need_it() {
        assert_eq!(sh("target/protocol/dense"), "target/protocol/dense");
        assert_eq!(sh("polarity-en-pang&lee2.csv"), "'polarity-en-pang&lee2.csv'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh(""), "''");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
