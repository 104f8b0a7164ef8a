//! `optimize eval`: accuracy of an ONNX classifier on labelled data, run in tract or ONNX Runtime. It measures
//! the model that ships (after every pass), not the training-time model it came from. It reports the test rows
//! (or `--split val`) with a 95 % interval, and refuses to call rows "test" that the model trained or was
//! validated on, by the split the model records.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bertopt_models::data::Example;

use crate::measure::stats::Accuracy;
use crate::run::{self, RunnerOptions, Runtime};
use crate::split::Part;

/// Arguments of `optimize eval`.
#[derive(clap::Args, Clone)]
pub struct EvalArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub split: crate::split::SplitArgs,
    /// Which rows: `test` (the figure to report), `val` (what choices are made on), or `all` rows of the files
    /// (out-of-domain data the model never saw).
    #[arg(long = "split", value_enum, default_value_t = Part::Test)]
    pub part: Part,
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    pub runtime: Runtime,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// tokenizer.json to use instead of the one embedded in the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Also evaluate this model (e.g. the dense one) on the same rows and report the paired difference.
    #[arg(long)]
    pub against: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub runtime: Runtime,
    /// The rows evaluated.
    pub split: Part,
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95 % Wilson interval of `accuracy`.
    pub ci95: [f64; 2],
    pub seconds: f64,
    /// Per row (in data order): whether the model was right, for paired comparisons.
    #[serde(skip)]
    pub right: Vec<bool>,
    /// For an early-exit model: the average number of layers run, and (layer, inputs that left there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_layers: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_histogram: Vec<(usize, usize)>,
    /// With `--against`: that model's accuracy on the same rows, and this model's minus it, paired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<Against>,
}

#[derive(Debug, serde::Serialize)]
pub struct Against {
    pub model: PathBuf,
    pub accuracy: Accuracy,
    pub diff: crate::measure::stats::PairedDiff,
}

/// The model's label names from its ONNX metadata (generic `LABEL_i` when it has none).
fn model_labels(meta: &[(String, String)], n: usize) -> Vec<String> {
    let named: Option<Vec<String>> =
        meta.iter().find(|(k, _)| k == crate::export::META_LABELS).and_then(|(_, v)| serde_json::from_str(v).ok());
    named.unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect())
}

impl EvalReport {
    pub fn accuracy(&self) -> Accuracy {
        Accuracy::of(self.correct, self.examples)
    }
}

pub fn run(a: &EvalArgs) -> anyhow::Result<EvalReport> {
    let mut r = run_one(a)?;
    if let Some(base) = &a.against {
        let b = run_one(&EvalArgs { model: base.clone(), against: None, tokenizer: None, ..a.clone() })?;
        r.against = Some(Against {
            model: base.clone(),
            accuracy: b.accuracy(),
            diff: crate::measure::stats::paired(&b.right, &r.right),
        });
    }
    Ok(r)
}

fn run_one(a: &EvalArgs) -> anyhow::Result<EvalReport> {
    run::ensure_model(&a.model)?;
    let start = Instant::now();
    // Labels, recorded splits and tokenizer from one read of the metadata.
    let meta = crate::onnx::read_metadata(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let recorded = meta.iter().find(|(k, _)| k == crate::export::META_SPLITS).map(|(_, v)| v.as_str());
    let trained_on = crate::split::parse_recorded(recorded).with_context(|| format!("{}", a.model.display()))?;
    let data = a.split.rows_for(a.part, &a.model, &trained_on)?;
    let labels = model_labels(&meta, data.labels.len());
    let data = crate::train_cmd::align_labels(data, &labels, &a.model)?;
    let mut enc = crate::tokenize::from_metadata(&a.model, &meta, a.tokenizer.as_deref())?;
    let runner = run::load(a.runtime, &a.model, RunnerOptions::default())?;
    let mut right = Vec::with_capacity(data.examples.len());
    let mut exits: std::collections::BTreeMap<usize, usize> = Default::default();
    for chunk in data.examples.chunks(a.batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|e: &Example| e.text.as_str()).collect();
        let batch = enc.encode(&texts, a.max_len, None)?;
        let outputs = runner.run(&batch)?;
        let logits = outputs
            .iter()
            .find(|o| o.name == "logits")
            .ok_or_else(|| anyhow::anyhow!("{} has no `logits` output: it is not a classifier", a.model.display()))?;
        let labels = logits.data.len() / chunk.len();
        for (row, e) in logits.data.chunks(labels).zip(chunk) {
            let best = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            right.push(best == e.label);
        }
        if let Some(layer) = outputs.iter().find(|o| o.name == "exit_layer") {
            for &l in &layer.data {
                *exits.entry(l as usize).or_default() += 1;
            }
        }
    }
    let acc = Accuracy::of_rows(&right);
    Ok(EvalReport {
        model: a.model.clone(),
        runtime: a.runtime,
        split: a.part,
        examples: acc.rows,
        correct: acc.correct,
        accuracy: acc.accuracy,
        ci95: acc.ci95,
        right,
        seconds: start.elapsed().as_secs_f64(),
        avg_layers: (!exits.is_empty())
            .then(|| exits.iter().map(|(l, n)| (l * n) as f64).sum::<f64>() / exits.values().sum::<usize>() as f64),
        exit_histogram: exits.into_iter().collect(),
        against: None,
    })
}
