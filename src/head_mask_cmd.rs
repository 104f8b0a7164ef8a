//! `optimize head-mask`: score every attention head of a fine-tuned classifier in one shot (gradient head
//! importance, Michel et al. 2019) on the training split, keep the best, and write the mask in SMP's pickle
//! format or JSON. `--random` writes a random mask of the same ratio, the baseline the criterion must beat.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::train::head_importance::{self, Scope};
use bertopt_models::{Checkpoint, Head, ModelInfo};
use bertopt_passes::mask::HeadMask;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskFormat {
    /// SMP's `head_mask.bin`: a pickle of L lists of H `numpy.bool_`.
    Pickle,
    /// `[[true, false, ...], ...]`.
    Json,
}

/// Arguments of `optimize head-mask`.
#[derive(clap::Args)]
pub struct HeadMaskArgs {
    /// Fine-tuned model folder (with a classifier and tokenizer.json).
    pub model: PathBuf,
    /// Labelled data, split as `optimize train` splits it; only its training rows are read.
    #[command(flatten)]
    pub split: crate::split::SplitArgs,
    /// Fraction of heads removed (SMP's convention: 0.5 removes 6 of 12 per layer).
    #[arg(long, default_value_t = 0.5)]
    pub ratio: f64,
    /// `layer`: every layer keeps the same number of heads; `global`: one ranking over all heads.
    #[arg(long, default_value = "layer")]
    pub scope: Scope,
    /// Write a random mask of the same ratio (seeded by --seed) instead of scoring.
    #[arg(long)]
    pub random: bool,
    /// Score on at most this many training examples (the first after the shuffle).
    #[arg(long)]
    pub max_examples: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub max_len: usize,
    #[arg(long, value_enum, default_value_t = MaskFormat::Pickle)]
    pub format: MaskFormat,
    #[arg(short, long, default_value = "head_mask.bin")]
    pub out: PathBuf,
    /// Show a progress bar (the CLI turns it off with --json).
    #[arg(skip)]
    pub progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct HeadMaskReport {
    pub method: &'static str,
    pub ratio: f64,
    pub scope: Scope,
    pub layers: usize,
    pub heads: usize,
    pub kept: usize,
    /// Normalised importance per `[layer][head]` (absent for `--random`).
    pub scores: Option<Vec<Vec<f32>>>,
    pub keep: Vec<Vec<bool>>,
    pub calibration_examples: usize,
    pub seconds: f64,
    pub output: PathBuf,
}

pub fn run(a: &HeadMaskArgs) -> anyhow::Result<HeadMaskReport> {
    let start = Instant::now();
    let ck = Checkpoint::load(&a.model)?;
    let (layers, heads) = (ck.config.num_hidden_layers, ck.config.num_attention_heads);
    let (keep, scores, examples) = if a.random {
        (head_importance::random_mask(layers, heads, a.ratio, a.scope, a.split.seed)?, None, 0)
    } else {
        anyhow::ensure!(
            matches!(ck.head, Head::BertClassifier { .. }),
            "{} has no trained classifier: head importance is the gradient of the task loss, so the model must \
             be fine-tuned first (optimize train --from {})",
            ck.files.dir.display(),
            ck.files.dir.display()
        );
        let info = ModelInfo::of(&ck);
        let tokenizer = info.files.tokenizer.clone().with_context(|| {
            format!("{} has no tokenizer.json, needed to encode the calibration data", ck.files.dir.display())
        })?;
        let train = a.split.splits()?.train;
        let mut train = crate::train_cmd::align_labels(train, &info.labels, &info.files.dir)?;
        if let Some(n) = a.max_examples {
            train.examples.truncate(n);
        }
        let model = BertClassifier::from_checkpoint(ck, info.labels.clone(), a.split.seed)?;
        let mut enc = TextEncoder::from_file(&tokenizer)?;
        let bar = bertopt_models::progress::bar(train.examples.len(), "head importance", a.progress);
        let scores = head_importance::head_importance(&model, &mut enc, &train, a.max_len, a.batch, |n| {
            bar.set_position(n as u64)
        })?;
        bar.finish_and_clear();
        let keep = head_importance::select(&scores, a.ratio, a.scope)?;
        (keep, Some(scores), train.examples.len())
    };
    let mask = HeadMask { keep };
    let bytes = match a.format {
        MaskFormat::Pickle => mask.to_pickle(),
        MaskFormat::Json => mask.to_json().into_bytes(),
    };
    crate::atomic::write_atomic(&a.out, |w| w.write_all(&bytes))
        .with_context(|| format!("writing {}", a.out.display()))?;
    Ok(HeadMaskReport {
        method: if a.random { "random" } else { "gradient head importance (Michel et al. 2019)" },
        ratio: a.ratio,
        scope: a.scope,
        layers,
        heads,
        kept: mask.kept(),
        scores,
        keep: mask.keep,
        calibration_examples: examples,
        seconds: start.elapsed().as_secs_f64(),
        output: a.out.clone(),
    })
}

/// The mask as a small grid (one row per layer, `#` kept, `.` removed) with each head's score.
pub fn print(r: &HeadMaskReport) {
    for (l, row) in r.keep.iter().enumerate() {
        let grid: String = row.iter().map(|k| if *k { '#' } else { '.' }).collect();
        let scores = r.scores.as_ref().map(|s| s[l].iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" "));
        println!("layer {l:>2}  {grid}  {}", scores.unwrap_or_default());
    }
    println!(
        "kept {} of {} heads ({}, ratio {} removed, scope {:?}); wrote {} in {:.1}s",
        r.kept,
        r.layers * r.heads,
        r.method,
        r.ratio,
        r.scope,
        r.output.display(),
        r.seconds
    );
}
