//! `optimize eval`: accuracy of an ONNX classifier on labelled data, run in tract or ONNX Runtime. It measures
//! the model that ships (after every pass), not the training-time model it came from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bertopt_models::data::Example;

use crate::run::{self, RunnerOptions, Runtime};

/// Arguments of `optimize eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub split: crate::train_cmd::HeldOutArgs,
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    pub runtime: Runtime,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    /// tokenizer.json to use instead of the one embedded in the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, serde::Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub runtime: Runtime,
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub seconds: f64,
    /// For an early-exit model: the average number of layers run, and (layer, inputs that left there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg_layers: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_histogram: Vec<(usize, usize)>,
}

/// The model's label names from its ONNX metadata (generic `LABEL_i` when it has none).
fn model_labels(model: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let named: Option<Vec<String>> = crate::onnx::read_metadata(model)?
        .into_iter()
        .find(|(k, _)| k == crate::export::META_LABELS)
        .and_then(|(_, v)| serde_json::from_str(&v).ok());
    Ok(named.unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect()))
}

pub fn run(a: &EvalArgs) -> anyhow::Result<EvalReport> {
    run::ensure_model(&a.model)?;
    let start = Instant::now();
    let data = a.split.held_out()?;
    let labels = model_labels(&a.model, data.labels.len())?;
    let data = crate::train_cmd::align_labels(data, &labels, &a.model)?;
    let mut enc = crate::tokenize::for_model(&a.model, a.tokenizer.as_deref())?;
    let mut runner = run::load(a.runtime, &a.model, RunnerOptions::default())?;
    let mut correct = 0;
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
            correct += (best == e.label) as usize;
        }
        if let Some(layer) = outputs.iter().find(|o| o.name == "exit_layer") {
            for &l in &layer.data {
                *exits.entry(l as usize).or_default() += 1;
            }
        }
    }
    let examples = data.examples.len();
    Ok(EvalReport {
        model: a.model.clone(),
        runtime: a.runtime,
        examples,
        correct,
        accuracy: correct as f64 / examples.max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
        avg_layers: (!exits.is_empty())
            .then(|| exits.iter().map(|(l, n)| (l * n) as f64).sum::<f64>() / exits.values().sum::<usize>() as f64),
        exit_histogram: exits.into_iter().collect(),
    })
}
