//! `optimize calibrate`: sweep early-exit thresholds (or patience values) on the validation split and pick the
//! fastest setting within an accuracy budget. Accuracy and average layers come from every exit's logits,
//! computed once with the candle model (per-input exits); latency is measured by exporting each setting and
//! running it in tract on validation sentences at their own length (or padded to `--seq`): at batch 1 the
//! nested-`If` model, at a larger `--batch` the segmented model and its per-row driver. Once the choice is made,
//! the chosen setting and the final classifier are scored on the test rows, with intervals and their paired
//! difference. Writes a table, JSON and an SVG plot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use plotters::prelude::*;

use crate::measure::plot::Panel;
use bertopt_ir::exit::{row_exits, ExitRule};
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Example;
use bertopt_models::train::exits::{exit_logits, exit_points};

use crate::run::{self, RunnerOptions, Runtime};
use crate::split::Part;

/// The exit rule a sweep pipeline string names.
fn rule_of(pipeline: &str) -> Option<ExitRule> {
    let inner = pipeline.strip_prefix("exit(")?.strip_suffix(')')?;
    let get = |k: &str| inner.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
    match get("criterion")? {
        "entropy" => Some(ExitRule::Entropy { threshold: get("threshold")?.parse().ok()? }),
        "patience" => Some(ExitRule::Patience { patience: get("patience")?.parse().ok()? }),
        _ => None,
    }
}

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Model folder with off-ramps (from `optimize train-exits`).
    pub model: PathBuf,
    #[command(flatten)]
    pub split: crate::split::SplitArgs,
    /// entropy or patience.
    #[arg(long, default_value = "entropy")]
    pub criterion: String,
    /// Values to sweep, comma-separated (default: entropy 0 to 0.7 by 0.1; patience 1 to layers - 1).
    #[arg(long, value_delimiter = ',')]
    pub values: Vec<f32>,
    /// Largest accuracy loss accepted, in points, against the final classifier.
    #[arg(long, default_value_t = 1.0)]
    pub max_drop: f64,
    /// Held-out batches timed per setting (tract).
    #[arg(long, default_value_t = 100)]
    pub latency_samples: usize,
    /// Batch size of the timed inputs; above 1 each setting is exported segmented and run by the per-row driver.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Pad the timed inputs to this length (default: each batch at its own length, as a server sees them).
    #[arg(long)]
    pub seq: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// Output folder: calibration.json, calibration.svg and one ONNX per setting.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Score the chosen setting on the test rows once the choice is made (the command does; `optimize auto`,
    /// which reports test figures only at its end, does not).
    #[arg(skip = true)]
    pub report_test: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct Setting {
    pub pipeline: String,
    pub accuracy: f64,
    pub avg_layers: f64,
    /// Share of inputs leaving at each exit point (layers run, fraction).
    pub histogram: Vec<(usize, f64)>,
    pub p50_ms: f64,
    pub mean_ms: f64,
    pub speedup: f64,
    /// layers / average layers run: the speedup a perfect runtime would give.
    pub layer_speedup: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct Calibration {
    pub model: PathBuf,
    pub examples: usize,
    pub layers: usize,
    /// Batch size of the latency measurements.
    pub batch: usize,
    pub dense_accuracy: f64,
    pub dense_p50_ms: f64,
    pub dense_mean_ms: f64,
    pub settings: Vec<Setting>,
    /// Index into `settings` of the fastest one within `max_drop`, if any.
    pub chosen: Option<usize>,
    pub max_drop: f64,
    /// Test rows, scored once after the choice.
    pub test: TestReport,
}

/// The chosen setting against the final classifier on the test rows.
#[derive(Debug, serde::Serialize)]
pub struct TestReport {
    pub examples: usize,
    pub dense: crate::measure::stats::Accuracy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen: Option<crate::measure::stats::Accuracy>,
    /// Chosen minus final classifier, paired on the same rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<crate::measure::stats::PairedDiff>,
}

/// exits[j][i]: logits of exit point j for example i.
fn all_exit_logits(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &[Example],
    max_len: usize,
    what: &str,
    progress: bool,
) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let bar = bertopt_models::progress::bar(data.len(), what, progress);
    let mut exits: Vec<Vec<Vec<f32>>> = vec![vec![]; exit_points(model).len()];
    for chunk in data.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(|e: &Example| e.text.as_str()).collect();
        let b = enc.encode(&texts, max_len, None)?;
        for (j, l) in exit_logits(model, &b)?.into_iter().enumerate() {
            exits[j].extend(l);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(exits)
}

/// Per row: whether the exit point it leaves at under `rule` (the final classifier for `None`) is right.
fn right_rows(exits: &[Vec<Vec<f32>>], gold: &[usize], rule: Option<ExitRule>) -> Vec<bool> {
    let last = exits.len() - 1;
    let leave = match rule {
        Some(r) => row_exits(r, exits),
        None => vec![last; gold.len()],
    };
    gold.iter().enumerate().map(|(i, &g)| bertopt_ir::exit::argmax(&exits[leave[i]][i]) == g).collect()
}

fn time_model(path: &Path, batches: &[bertopt_models::batch::Batch]) -> anyhow::Result<(f64, f64)> {
    let r = run::load(Runtime::Tract, path, RunnerOptions::default())?;
    r.run(&batches[0])?;
    let mut ms = vec![];
    for b in batches {
        let t = Instant::now();
        r.run(b)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], mean))
}

pub fn run(a: &CalibrateArgs, progress: bool) -> anyhow::Result<Calibration> {
    let splits = a.split.splits()?;
    let trained_on = crate::train_cmd::recorded_splits(&a.model)?;
    crate::split::check_disjoint(&trained_on, &splits.record, Part::Val)
        .map_err(|why| anyhow::anyhow!("refusing to calibrate {} on these rows: {why}", a.model.display()))?;
    let files = bertopt_models::ModelFiles::locate(&a.model)?;
    let tokenizer =
        files.tokenizer.clone().with_context(|| format!("{} has no tokenizer.json", files.dir.display()))?;
    let ck = bertopt_models::Checkpoint::load(&a.model)?;
    anyhow::ensure!(
        !ck.exit_layers().is_empty(),
        "{} has no off-ramps: train them with `optimize train-exits`",
        a.model.display()
    );
    let labels = bertopt_models::ModelInfo::of(&ck).labels;
    let eval = crate::train_cmd::align_labels(splits.val.clone(), &labels, &a.model)?;
    let model = BertClassifier::from_checkpoint(ck, labels.clone(), a.split.seed)?;
    let mut enc = TextEncoder::from_file(&tokenizer)?;
    let points = exit_points(&model);
    let layers = *points.last().expect("the final classifier is an exit point");
    let exits = all_exit_logits(&model, &mut enc, &eval.examples, a.max_len, "exit logits (validation)", progress)?;
    let gold: Vec<usize> = eval.examples.iter().map(|e| e.label).collect();
    let n = gold.len() as f64;
    let accuracy =
        |pred: &dyn Fn(usize) -> usize| gold.iter().enumerate().filter(|(i, &g)| pred(*i) == g).count() as f64 / n;
    let last = points.len() - 1;
    let dense_accuracy = accuracy(&|i| bertopt_ir::exit::argmax(&exits[last][i]));

    // Pad to --seq (at most the positions the model has), or leave each batch at its own length.
    let positions = model.config.max_position_embeddings.saturating_sub(model.config.position_offset());
    let seq = a.seq.map(|s| s.min(positions));
    anyhow::ensure!(a.batch >= 1, "--batch must be at least 1");
    let sample: Vec<&str> =
        eval.examples.iter().cycle().take(a.latency_samples.max(1) * a.batch).map(|e| e.text.as_str()).collect();
    let timed: Vec<bertopt_models::batch::Batch> = sample
        .chunks(a.batch)
        .map(|c| enc.encode(c, seq.map_or(a.max_len, |s| a.max_len.min(s)).min(positions), seq))
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let dense_path = a.out.join("dense.onnx");
    crate::export::export(&a.model, "", &dense_path)?;
    let (dense_p50_ms, dense_mean_ms) = time_model(&dense_path, &timed)?;

    let values: Vec<f32> = match (a.criterion.as_str(), a.values.is_empty()) {
        ("entropy", true) => (0..8).map(|i| i as f32 / 10.0).collect(),
        ("patience", true) => (1..points.len().max(2) as u32).map(|p| p as f32).collect(),
        ("entropy" | "patience", false) => a.values.clone(),
        (other, _) => anyhow::bail!("--criterion {other}: use entropy or patience"),
    };
    let bar = bertopt_models::progress::bar(values.len(), "settings", progress);
    let mut settings = vec![];
    for v in values {
        let (rule, pipeline) = if a.criterion == "entropy" {
            (ExitRule::Entropy { threshold: v }, format!("exit(criterion=entropy,threshold={v})"))
        } else {
            anyhow::ensure!(v >= 1.0 && v.fract() == 0.0, "patience {v} is not a whole number >= 1");
            (ExitRule::Patience { patience: v as usize }, format!("exit(criterion=patience,patience={v})"))
        };
        // Each example on its own (batch 1): the exit point it leaves at.
        let leave = row_exits(rule, &exits);
        let acc = accuracy(&|i| bertopt_ir::exit::argmax(&exits[leave[i]][i]));
        let avg_layers = leave.iter().map(|&j| points[j] as f64).sum::<f64>() / n;
        let histogram = points
            .iter()
            .enumerate()
            .map(|(j, &p)| (p, leave.iter().filter(|&&x| x == j).count() as f64 / n))
            .collect();
        let path = if a.batch == 1 {
            let path = a.out.join(format!("{}-{v}.onnx", a.criterion));
            crate::export::export(&a.model, &pipeline, &path)?;
            path
        } else {
            let path = a.out.join(format!("{}-{v}.segments", a.criterion));
            let opts = crate::export::ExportOptions { segmented: true, ..Default::default() };
            crate::export::export_with(&a.model, &pipeline, &path, opts)?;
            path
        };
        let (p50_ms, mean_ms) = time_model(&path, &timed)?;
        settings.push(Setting {
            pipeline,
            accuracy: acc,
            avg_layers,
            histogram,
            p50_ms,
            mean_ms,
            speedup: dense_mean_ms / mean_ms,
            layer_speedup: layers as f64 / avg_layers,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let chosen = settings
        .iter()
        .enumerate()
        .filter(|(_, s)| (dense_accuracy - s.accuracy) * 100.0 <= a.max_drop + 1e-9)
        .min_by(|x, y| x.1.mean_ms.total_cmp(&y.1.mean_ms))
        .map(|(i, _)| i);
    // Every choice is made: now, once, the test rows.
    let test = if a.report_test {
        splits.test.clone()
    } else {
        bertopt_models::data::Dataset { examples: vec![], labels: splits.test.labels.clone() }
    };
    if a.report_test {
        crate::split::check_disjoint(&trained_on, &splits.record, Part::Test)
            .map_err(|why| anyhow::anyhow!("refusing to report test accuracy of {}: {why}", a.model.display()))?;
    }
    let test = crate::train_cmd::align_labels(test, &labels, &a.model)?;
    let test_exits = all_exit_logits(&model, &mut enc, &test.examples, a.max_len, "exit logits (test)", progress)?;
    let test_gold: Vec<usize> = test.examples.iter().map(|e| e.label).collect();
    let dense_right = right_rows(&test_exits, &test_gold, None);
    let chosen_right = chosen.map(|i| {
        let rule = rule_of(&settings[i].pipeline).expect("the sweep wrote this pipeline");
        right_rows(&test_exits, &test_gold, Some(rule))
    });
    let test = TestReport {
        examples: test_gold.len(),
        dense: crate::measure::stats::Accuracy::of_rows(&dense_right),
        chosen: chosen_right.as_deref().map(crate::measure::stats::Accuracy::of_rows),
        diff: chosen_right.as_deref().map(|c| crate::measure::stats::paired(&dense_right, c)),
    };
    let c = Calibration {
        model: a.model.clone(),
        examples: gold.len(),
        layers,
        batch: a.batch,
        dense_accuracy,
        dense_p50_ms,
        dense_mean_ms,
        settings,
        chosen,
        max_drop: a.max_drop,
        test,
    };
    let json = serde_json::to_string_pretty(&c)?;
    crate::atomic::write_atomic(&a.out.join("calibration.json"), |w| w.write_all(json.as_bytes()))?;
    calibration_svg(&c, &a.out.join("calibration.svg"))?;
    Ok(c)
}

pub fn print(c: &Calibration) {
    println!(
        "{} validation examples, {} layers; final classifier {:.2} %, tract batch {} mean {:.2} ms (p50 {:.2})",
        c.examples,
        c.layers,
        c.dense_accuracy * 100.0,
        c.batch,
        c.dense_mean_ms,
        c.dense_p50_ms
    );
    println!(
        "{:<42} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}",
        "setting", "acc %", "layers", "mean ms", "p50 ms", "speedup", "L/layers"
    );
    for (i, s) in c.settings.iter().enumerate() {
        let mark = if Some(i) == c.chosen { " <- chosen" } else { "" };
        println!(
            "{:<42} {:>8.2} {:>8.2} {:>9.2} {:>9.2} {:>7.2}x {:>8.2}x{mark}",
            s.pipeline,
            s.accuracy * 100.0,
            s.avg_layers,
            s.mean_ms,
            s.p50_ms,
            s.speedup,
            s.layer_speedup
        );
    }
    if c.chosen.is_none() {
        println!("no setting stays within {} point(s) of the final classifier", c.max_drop);
    }
    println!(
        "test ({} rows, scored once after the choice): final classifier {}",
        c.test.examples,
        c.test.dense.display()
    );
    if let (Some(a), Some(d), Some(i)) = (c.test.chosen, c.test.diff, c.chosen) {
        println!("  {}: {}, vs final classifier {}", c.settings[i].pipeline, a.display(), d.display());
    }
}

/// Two panels: validation accuracy (with its 95 % Wilson interval as a bar) against average layers run, and
/// against mean tract latency; the final classifier (no exit) is the reference point in both.
pub fn calibration_svg(c: &Calibration, path: &Path) -> anyhow::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(480);
        let acc: Vec<f64> = c.settings.iter().map(|s| s.accuracy * 100.0).chain([c.dense_accuracy * 100.0]).collect();
        let ci: Vec<(f64, f64)> = acc
            .iter()
            .map(|a| {
                let (l, h) =
                    crate::measure::stats::wilson((a / 100.0 * c.examples as f64).round() as usize, c.examples);
                (l * 100.0, h * 100.0)
            })
            .collect();
        let (lo, hi) = ci.iter().fold((f64::MAX, f64::MIN), |(a, b), &(l, h)| (a.min(l), b.max(h)));
        let y = (lo - 1.0)..(hi + 1.0);
        let latency = format!("mean latency, tract batch {} (ms)", c.batch);
        let panels: [(&Panel, &str, Vec<f64>, f64); 2] = [
            (&left, "average layers run", c.settings.iter().map(|s| s.avg_layers).collect(), c.layers as f64),
            (&right, &latency, c.settings.iter().map(|s| s.mean_ms).collect(), c.dense_mean_ms),
        ];
        for (area, xlabel, xs, dense_x) in panels {
            let xmax = xs.iter().copied().fold(dense_x, f64::max) * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption("accuracy vs cost", ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..xmax, y.clone())?;
            chart.configure_mesh().x_desc(xlabel).y_desc("validation accuracy (%)").draw()?;
            let pts: Vec<(f64, f64)> = xs.iter().zip(&acc).map(|(&x, &a)| (x, a)).collect();
            chart.draw_series(LineSeries::new(pts.clone(), &BLUE))?.label("early exit settings");
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
            for (&x, &(l, h)) in xs.iter().chain([&dense_x]).zip(&ci) {
                chart.draw_series(LineSeries::new([(x, l), (x, h)], BLUE.mix(0.4)))?;
            }
            chart
                .draw_series([Circle::new((dense_x, c.dense_accuracy * 100.0), 5, RED.filled())])?
                .label("no exit (final classifier)");
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        }
        root.present()?;
    }
    crate::atomic::write_atomic(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}
