//! `optimize score`: first-order Taylor importance of every encoder weight of a fine-tuned classifier, over
//! calibration batches of the training split, saved once as safetensors under the IR's weight names and
//! layout (K×N), so every pruning pass can rank by it with `scores=PATH`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::{Checkpoint, Head, ModelInfo};

/// Arguments of `optimize score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Fine-tuned model folder (with a classifier and tokenizer.json).
    pub model: PathBuf,
    /// Labelled data, split as `optimize train` splits it; only its training rows are read.
    #[command(flatten)]
    pub split: crate::split::SplitArgs,
    /// Calibration batches (the TileSparsity release uses 100).
    #[arg(long, default_value_t = 100)]
    pub batches: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    #[arg(short, long, default_value = "scores.safetensors")]
    pub out: PathBuf,
    /// Show a progress bar (the CLI turns it off with --json).
    #[arg(skip)]
    pub progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct ScoreReport {
    pub method: &'static str,
    pub tensors: usize,
    pub batches: usize,
    pub examples: usize,
    pub seconds: f64,
    pub output: PathBuf,
}

pub fn run(a: &ScoreArgs) -> anyhow::Result<ScoreReport> {
    let start = Instant::now();
    let ck = Checkpoint::load(&a.model)?;
    anyhow::ensure!(
        matches!(ck.head, Head::BertClassifier { .. }),
        "{} has no trained classifier: Taylor scores are gradients of the task loss, so fine-tune it first",
        ck.files.dir.display()
    );
    let info = ModelInfo::of(&ck);
    let tokenizer =
        info.files.tokenizer.clone().with_context(|| format!("{} has no tokenizer.json", ck.files.dir.display()))?;
    let train = a.split.splits()?.train;
    let train = crate::train_cmd::align_labels(train, &info.labels, &info.files.dir)?;
    let model = BertClassifier::from_checkpoint(ck, info.labels.clone(), a.split.seed)?;
    let mut enc = TextEncoder::from_file(&tokenizer)?;
    let batches = a.batches.min(train.examples.len().div_ceil(a.batch.max(1)));
    let bar = bertopt_models::progress::bar(batches, "taylor scores", a.progress);
    let scores =
        bertopt_models::train::taylor::taylor_scores(&model, &mut enc, &train, a.max_len, a.batch, batches, |n| {
            bar.set_position(n as u64)
        })?;
    bar.finish_and_clear();
    // Hugging Face name and [out, in] layout -> IR name and [in, out] (K x N) layout.
    let mut owned = vec![];
    for (name, t) in &scores {
        let ir = name.strip_prefix("bert.").unwrap_or(name).to_string();
        let t = t.t()?.contiguous()?;
        let bytes: Vec<u8> = t.flatten_all()?.to_vec1::<f32>()?.into_iter().flat_map(f32::to_le_bytes).collect();
        owned.push((ir, t.dims().to_vec(), bytes));
    }
    let views = owned
        .iter()
        .map(|(n, d, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, d.clone(), b)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let examples = (batches * a.batch).min(train.examples.len());
    let meta = HashMap::from([
        ("bertopt.scores".to_string(), "first-order Taylor, sum over batches of (dL/dW * W)^2".to_string()),
        ("batches".to_string(), batches.to_string()),
        ("examples".to_string(), examples.to_string()),
    ]);
    let data = safetensors::serialize(views, Some(meta))?;
    crate::atomic::write_atomic(&a.out, |w| w.write_all(&data))
        .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(ScoreReport {
        method: "first-order Taylor (dL/dW * W)^2",
        tensors: owned.len(),
        batches,
        examples,
        seconds: start.elapsed().as_secs_f64(),
        output: a.out.clone(),
    })
}
