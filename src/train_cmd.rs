//! `optimize train`: read data, split it, fine-tune (or train from a config), and write a Hugging Face folder
//! plus `training.json` with what was done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bertopt_models::arch::classifier::BertClassifier;
use bertopt_models::data::tokenize::TextEncoder;
use bertopt_models::data::Dataset;
use bertopt_models::train::{self, TrainConfig, TrainReport};
use bertopt_models::BertConfig;

use crate::split::{SplitArgs, SplitRecord};

/// Where the model starts from.
pub enum Start {
    /// A Hugging Face folder (its tokenizer.json is used); a missing pooler or classifier is added.
    Pretrained(PathBuf),
    /// A config.json for a model trained from scratch, with a tokenizer.json.
    Scratch { config: PathBuf, tokenizer: PathBuf },
}

pub struct TrainArgs {
    pub start: Start,
    /// The data and its three-way split; its seed is also the training seed.
    pub split: SplitArgs,
    pub out: PathBuf,
    pub cfg: TrainConfig,
    /// Fine-tune with these heads switched off (True = keep): recovery training for a head-pruned model.
    pub head_mask: Option<Vec<Vec<bool>>>,
    /// Fine-tune with these FFN neurons switched off (`[layer][neuron]`, True = keep).
    pub ffn_mask: Option<Vec<Vec<bool>>>,
    /// Encoder layers kept (`layers` recovery); a dropped one is skipped in training.
    pub layer_mask: Option<Vec<bool>>,
    /// Keep-flags per hidden feature (recovery after `hidden`): every LayerNorm normalises the kept ones only.
    pub hidden_mask: Option<Vec<bool>>,
    /// Fixed 0/1 masks on single weights (parameter name -> mask of its shape), see `recover`.
    pub weight_masks: BTreeMap<String, candle_core::Tensor>,
    /// The pruning pipeline the masks come from (recorded in the metadata).
    pub pruning: Option<String>,
    /// A fine-tuned classifier to distil from (`TrainConfig::kd_alpha`, `kd_temperature`), e.g. the dense model
    /// a recovery starts from.
    pub teacher: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub progress: bool,
}

/// The splits a model folder records (`crate::split::META_SPLITS` in its checkpoint metadata): those of every
/// training run in its history. Empty for a folder bertopt did not train.
pub fn recorded_splits(dir: &Path) -> anyhow::Result<Vec<SplitRecord>> {
    let files = bertopt_models::ModelFiles::locate(dir)?;
    let meta = bertopt_models::load::checkpoint::read_safetensors_metadata(&files.weights)?;
    crate::split::parse_recorded(meta.get(crate::split::META_SPLITS).map(String::as_str))
        .with_context(|| format!("{}", files.weights.display()))
}

/// Record `own` after the starting folder's splits in `meta` (`splits`) and say it in words (`split`).
fn record_split(meta: &mut BTreeMap<String, String>, start: Option<&Path>, own: &SplitRecord) -> anyhow::Result<()> {
    let parents = match start {
        Some(dir) => recorded_splits(dir)?,
        None => vec![],
    };
    meta.insert(crate::split::META_SPLITS.into(), serde_json::to_string(&crate::split::lineage(parents, own))?);
    meta.insert("split".into(), own.to_string());
    Ok(())
}

pub fn run(a: &TrainArgs) -> anyhow::Result<TrainReport> {
    let splits = a.split.splits()?;
    let (train_set, val_set) = (&splits.train, &splits.val);
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
    model.to_device(&bertopt_models::arch::classifier::device_from_name(&a.device)?)?;
    let mut enc = TextEncoder::from_file(&tokenizer)?;
    let mut meta = BTreeMap::new();
    meta.insert("device".to_string(), a.device.clone());
    if let Some(mask) = &a.head_mask {
        model.set_head_gate(mask.clone())?;
        meta.insert("head_mask".to_string(), serde_json::to_string(mask)?);
    }
    if let Some(mask) = &a.ffn_mask {
        model.set_ffn_gate(mask.clone())?;
        let kept: Vec<usize> = mask.iter().map(|r| r.iter().filter(|k| **k).count()).collect();
        meta.insert("ffn_neurons_kept".to_string(), serde_json::to_string(&kept)?);
    }
    if let Some(mask) = &a.layer_mask {
        model.set_layer_gate(mask.clone())?;
        let dropped: Vec<usize> = (0..mask.len()).filter(|&l| !mask[l]).collect();
        meta.insert("layers_dropped".to_string(), serde_json::to_string(&dropped)?);
    }
    if let Some(mask) = &a.hidden_mask {
        model.set_hidden_gate(mask.clone())?;
        let removed: Vec<usize> = (0..mask.len()).filter(|&i| !mask[i]).collect();
        meta.insert("hidden_removed".to_string(), serde_json::to_string(&removed)?);
    }
    if !a.weight_masks.is_empty() {
        model.set_weight_masks(a.weight_masks.clone())?;
        let mut zeros = 0f64;
        for m in a.weight_masks.values() {
            zeros += (m.elem_count() as f64) - m.sum_all()?.to_scalar::<f32>()? as f64;
        }
        meta.insert("weights_masked".to_string(), format!("{} entries in {} tensors", zeros, a.weight_masks.len()));
    }
    if let Some(p) = &a.pruning {
        meta.insert("pruning".to_string(), p.clone());
    }
    let start_dir = match &a.start {
        Start::Pretrained(d) => Some(d.as_path()),
        Start::Scratch { .. } => None,
    };
    record_split(&mut meta, start_dir, &splits.record)?;
    meta.insert("seed".into(), a.cfg.seed.to_string());
    meta.insert(
        "start".into(),
        match &a.start {
            Start::Pretrained(d) => format!("fine-tuned from {}", display_name(d)),
            Start::Scratch { config, .. } => format!("trained from scratch, config {}", display_name(config)),
        },
    );
    let soft = match &a.teacher {
        Some(dir) => {
            let (t, what) = distil_from(dir, &model, &mut enc, train_set, &a.cfg, a.progress)?;
            meta.insert("distilled_from".into(), what);
            Some(t)
        }
        None => None,
    };
    let job = train::TrainJob {
        train: train_set,
        val: val_set,
        tokenizer: &tokenizer,
        out: &a.out,
        metadata: &meta,
        progress: a.progress,
        teacher: soft.as_ref(),
    };
    let report = train::train(&mut model, &mut enc, &job, &a.cfg)?;
    let mut record = serde_json::to_value(&report)?;
    record["metadata"] = serde_json::to_value(&meta)?;
    let json = serde_json::to_string_pretty(&record)?;
    bertopt_models::atomic::write_atomic(&a.out.join("training.json"), |w| w.write_all(json.as_bytes()))?;
    Ok(report)
}

/// `teacher_logits`, saying so when `progress` is on, and the teacher as the metadata records it:
/// "name (alpha a, temperature t)".
pub fn distil_from(
    dir: &Path,
    student: &BertClassifier,
    enc: &mut TextEncoder,
    train_set: &Dataset,
    cfg: &TrainConfig,
    progress: bool,
) -> anyhow::Result<(candle_core::Tensor, String)> {
    if progress {
        eprintln!("teacher {}: logits on {} training examples", dir.display(), train_set.examples.len());
    }
    let t = teacher_logits(dir, student, enc, train_set, cfg)?;
    Ok((t, format!("{} (alpha {}, temperature {})", display_name(dir), cfg.kd_alpha, cfg.kd_temperature)))
}

/// The logits of the fine-tuned classifier at `dir` on every training example, after checking that it can teach
/// `student`: same labels in the same order, same vocabulary.
fn teacher_logits(
    dir: &Path,
    student: &BertClassifier,
    enc: &mut TextEncoder,
    train_set: &Dataset,
    cfg: &TrainConfig,
) -> anyhow::Result<candle_core::Tensor> {
    let ck = bertopt_models::Checkpoint::load(dir)?;
    anyhow::ensure!(
        matches!(ck.head, bertopt_models::Head::BertClassifier { .. }),
        "--teacher {}: not a fine-tuned classifier (no classifier head): distillation needs its logits",
        dir.display()
    );
    let labels = bertopt_models::ModelInfo::of(&ck).labels;
    anyhow::ensure!(
        labels == student.labels,
        "--teacher {}: its labels {labels:?} differ from the model's {:?}",
        dir.display(),
        student.labels
    );
    anyhow::ensure!(
        ck.config.vocab_size == student.config.vocab_size,
        "--teacher {}: vocabulary of {} tokens, the model's has {}: they must share a tokenizer",
        dir.display(),
        ck.config.vocab_size,
        student.config.vocab_size
    );
    let mut teacher = BertClassifier::from_checkpoint(ck, labels, cfg.seed)?;
    teacher.to_device(&student.device)?;
    Ok(train::teacher_logits(&teacher, enc, train_set, cfg.max_len, cfg.batch_size)?)
}

fn display_name(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| p.display().to_string())
}

/// Re-number `data`'s labels to a model's label order, matching by name. A model whose labels are the generic
/// `LABEL_i` (no names) is taken to use the data's order; a data label the model does not have is an error.
pub fn align_labels(mut data: Dataset, model_labels: &[String], model: &Path) -> anyhow::Result<Dataset> {
    let generic = model_labels.iter().enumerate().all(|(i, l)| *l == format!("LABEL_{i}"));
    // Only labels that rows carry matter: a file of 0..7 labels numbers the classes it lacks too.
    let used = data.used_labels().into_iter().map(str::to_string).collect::<Vec<_>>();
    if generic || model_labels == data.labels.as_slice() {
        if let Some(l) =
            used.iter().find(|l| data.labels.iter().position(|d| d == *l).unwrap_or(0) >= model_labels.len())
        {
            anyhow::bail!(
                "the data has label {l:?} but {} has {} labels: {model_labels:?}",
                model.display(),
                model_labels.len()
            );
        }
        return Ok(data);
    }
    let map: Vec<usize> = data
        .labels
        .iter()
        .map(|l| match model_labels.iter().position(|m| m == l) {
            Some(i) => Ok(i),
            None if !used.contains(l) => Ok(0),
            None => {
                Err(anyhow::anyhow!("the data has label {l:?} but {} knows only {model_labels:?}", model.display()))
            }
        })
        .collect::<anyhow::Result<_>>()?;
    for e in &mut data.examples {
        e.label = map[e.label];
    }
    data.labels = model_labels.to_vec();
    Ok(data)
}

/// What a training command on a fine-tuned model needs: the split, the model on its device, the tokenizer.
pub struct Session {
    pub model: bertopt_models::arch::classifier::BertClassifier,
    pub enc: bertopt_models::data::tokenize::TextEncoder,
    pub data: SessionData,
}

/// The data half of a `Session` (borrowed apart from the model while training).
pub struct SessionData {
    pub train: bertopt_models::data::Dataset,
    /// The validation rows: every choice (best epoch) is made on them.
    pub val: bertopt_models::data::Dataset,
    pub tokenizer: PathBuf,
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl Session {
    /// Load the starting folder of `args` and split its data. With `need_classifier`, a folder without a
    /// fine-tuned BERT classifier is an error with that message; `what` starts the provenance metadata.
    pub fn open(args: &TrainArgs, need_classifier: Option<&str>, what: &str) -> anyhow::Result<Session> {
        let Start::Pretrained(dir) = &args.start else { anyhow::bail!("this command starts from a model folder") };
        let splits = args.split.splits()?;
        let (train, val) = (splits.train, splits.val);
        let files = bertopt_models::ModelFiles::locate(dir)?;
        let tokenizer =
            files.tokenizer.clone().with_context(|| format!("{} has no tokenizer.json", files.dir.display()))?;
        let ck = bertopt_models::Checkpoint::load(dir)?;
        let fine_tuned = matches!(ck.head, bertopt_models::Head::BertClassifier { .. });
        if let (false, Some(msg)) = (fine_tuned, need_classifier) {
            anyhow::bail!("{}: {msg}", dir.display());
        }
        let labels = if fine_tuned { bertopt_models::ModelInfo::of(&ck).labels } else { train.labels.clone() };
        let train = align_labels(train, &labels, dir)?;
        let val = align_labels(val, &labels, dir)?;
        let mut model = bertopt_models::arch::classifier::BertClassifier::from_checkpoint(ck, labels, args.cfg.seed)?;
        model.to_device(&bertopt_models::arch::classifier::device_from_name(&args.device)?)?;
        let enc = bertopt_models::data::tokenize::TextEncoder::from_file(&tokenizer)?;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("start".to_string(), format!("{what} {}", dir.display()));
        metadata.insert("seed".into(), args.cfg.seed.to_string());
        record_split(&mut metadata, Some(dir), &splits.record)?;
        Ok(Session { model, enc, data: SessionData { train, val, tokenizer, metadata } })
    }
}

impl SessionData {
    pub fn job<'a>(&'a self, args: &'a TrainArgs) -> bertopt_models::train::TrainJob<'a> {
        bertopt_models::train::TrainJob {
            train: &self.train,
            val: &self.val,
            tokenizer: &self.tokenizer,
            out: &args.out,
            metadata: &self.metadata,
            progress: args.progress,
            teacher: None,
        }
    }
}
