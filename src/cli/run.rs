//! `optimize run`: a model on text, its predicted labels (or hidden states for a base model).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::run::{self, RunnerOptions, Runtime};

/// Run an ONNX model on text and print the outputs or the predicted label.
#[derive(Args)]
pub struct Run {
    model: PathBuf,
    /// Input sentence(s); each is one row of the batch.
    #[arg(long, required = true)]
    text: Vec<String>,
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    runtime: Runtime,
    /// tokenizer.json to use instead of the one embedded in the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Truncate to this many tokens.
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    #[arg(long)]
    json: bool,
}

impl Run {
    pub fn run(self) -> anyhow::Result<()> {
        run_text(&self.model, &self.text, self.runtime, self.tokenizer.as_deref(), self.max_len, self.json)
    }
}

fn run_text(
    model: &Path,
    text: &[String],
    runtime: Runtime,
    tokenizer: Option<&Path>,
    max_len: usize,
    json: bool,
) -> anyhow::Result<()> {
    run::ensure_model(model)?;
    let texts: Vec<&str> = text.iter().map(String::as_str).collect();
    let runner = run::load(runtime, model, RunnerOptions::default())?;
    let rows = if runner.output_names().iter().any(|n| n == "logits") {
        // A classifier: the runtime crate's own path, so `run` shows what an application embedding it gets.
        let opts = bertopt_runtime::Options {
            tokenizer: tokenizer.map(Into::into),
            max_len: Some(max_len),
            ..Default::default()
        };
        let classifier = bertopt_runtime::Classifier::with_runner(model, runner, &opts)?;
        let predictions = classifier.classify_batch(&texts)?;
        texts
            .iter()
            .zip(predictions)
            .map(|(t, p)| {
                let mut row = serde_json::json!({ "text": t, "label": p.label, "logits": p.logits,
                    "probabilities": p.probabilities });
                if let Some(l) = p.exit_layer {
                    row["exit_layer"] = l.into();
                }
                row
            })
            .collect()
    } else {
        hidden_rows(model, &texts, runner.as_ref(), tokenizer, max_len)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for row in rows {
            match row.get("label") {
                Some(l) => println!("{}\t{}", l.as_str().unwrap_or(""), row["text"].as_str().unwrap_or("")),
                None => println!("{row}"),
            }
        }
    }
    Ok(())
}

/// `run` on a base model (no classifier head): each row's pooled vector and [CLS] hidden state.
fn hidden_rows(
    model: &Path,
    texts: &[&str],
    runner: &dyn run::Runner,
    tokenizer: Option<&Path>,
    max_len: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut enc = crate::tokenize::for_model(model, tokenizer)?;
    let batch = enc.encode(texts, max_len, None)?;
    let outputs = runner.run(&batch)?;
    let mut rows = vec![];
    for (r, t) in texts.iter().enumerate() {
        let mut row = serde_json::json!({ "text": t });
        for o in &outputs {
            let per_row = o.data.len() / batch.batch.max(1);
            let slice = &o.data[r * per_row..(r + 1) * per_row];
            if o.name == "pooler_output" || o.shape.len() == 2 {
                row[&o.name] = slice.to_vec().into();
            } else {
                // last_hidden_state: print the [CLS] vector and the shape; the full tensor is rarely wanted here.
                let d = *o.shape.last().unwrap_or(&1);
                row[format!("{}[cls]", o.name)] = slice[..d.min(slice.len())].to_vec().into();
                row[format!("{}.shape", o.name)] = serde_json::json!([1, batch.seq, d]);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
