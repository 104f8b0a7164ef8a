//! `optimize train`: read data, split it, fine-tune (or train from a config), and write a Hugging Face folder
//! plus `training.json` with what was done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bertopt_models::classifier::BertClassifier;
use bertopt_models::data::Dataset;
use bertopt_models::tokenize::TextEncoder;
use bertopt_models::train::{self, TrainConfig, TrainReport};
use bertopt_models::BertConfig;

/// Where the model starts from.
pub enum Start {
    /// A Hugging Face folder (its tokenizer.json is used); a missing pooler or classifier is added.
    Pretrained(PathBuf),
    /// A config.json for a model trained from scratch, with a tokenizer.json.
    Scratch { config: PathBuf, tokenizer: PathBuf },
}

pub struct TrainArgs {
    pub start: Start,
    pub data: Vec<PathBuf>,
    pub eval: Option<PathBuf>,
    pub train_size: Option<usize>,
    pub out: PathBuf,
    pub cfg: TrainConfig,
    pub progress: bool,
}

pub fn run(a: &TrainArgs) -> anyhow::Result<TrainReport> {
    anyhow::ensure!(!a.data.is_empty(), "give at least one --data FILE");
    let parts = a.data.iter().map(|p| Dataset::read(p)).collect::<Result<Vec<_>, _>>()?;
    let all = Dataset::concat(parts);
    let (train_set, eval_set) = match (&a.eval, a.train_size) {
        (Some(e), _) => (all, Dataset::read(e)?),
        (None, Some(n)) => {
            anyhow::ensure!(
                n < all.examples.len(),
                "--train-size {n} leaves nothing of {} examples for evaluation",
                all.examples.len()
            );
            all.split(n, a.cfg.seed)
        }
        (None, None) => {
            let n = all.examples.len() * 4 / 5;
            all.split(n, a.cfg.seed)
        }
    };
    let labels = train_set.labels.clone();
    let (mut model, tokenizer) = match &a.start {
        Start::Pretrained(dir) => {
            let files = bertopt_models::ModelFiles::locate(dir)?;
            let tok =
                files.tokenizer.clone().with_context(|| format!("{} has no tokenizer.json", files.dir.display()))?;
            (BertClassifier::from_pretrained(dir, labels, a.cfg.seed)?, tok)
        }
        Start::Scratch { config, tokenizer } => {
            // A model trained from scratch takes its vocabulary size from its tokenizer.
            let mut cfg = BertConfig::from_file(config)?;
            cfg.vocab_size = TextEncoder::from_file(tokenizer)?.vocab_size();
            (BertClassifier::random(cfg, labels, a.cfg.seed)?, tokenizer.clone())
        }
    };
    let mut enc = TextEncoder::from_file(&tokenizer)?;
    let mut meta = BTreeMap::new();
    meta.insert("data".to_string(), a.data.iter().map(|p| display_name(p)).collect::<Vec<_>>().join(","));
    let split = match &a.eval {
        Some(e) => format!("eval file {}", display_name(e)),
        None => format!(
            "{} train / {} eval, shuffled with seed {}",
            train_set.examples.len(),
            eval_set.examples.len(),
            a.cfg.seed
        ),
    };
    meta.insert("split".into(), split);
    meta.insert("seed".into(), a.cfg.seed.to_string());
    meta.insert(
        "start".into(),
        match &a.start {
            Start::Pretrained(d) => format!("fine-tuned from {}", display_name(d)),
            Start::Scratch { config, .. } => format!("trained from scratch, config {}", display_name(config)),
        },
    );
    let job = train::TrainJob {
        train: &train_set,
        eval: &eval_set,
        tokenizer: &tokenizer,
        out: &a.out,
        metadata: &meta,
        progress: a.progress,
    };
    let report = train::train(&mut model, &mut enc, &job, &a.cfg)?;
    let mut record = serde_json::to_value(&report)?;
    record["metadata"] = serde_json::to_value(&meta)?;
    let json = serde_json::to_string_pretty(&record)?;
    bertopt_models::atomic::write_atomic(&a.out.join("training.json"), |w| w.write_all(json.as_bytes()))?;
    Ok(report)
}

fn display_name(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| p.display().to_string())
}
