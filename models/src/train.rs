//! Fine-tuning: AdamW with weight decay, linear warm-up then linear decay, global gradient-norm clipping,
//! dropout, a fixed seed; evaluation on a held-out split after every epoch, keeping the best checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::batch::Batch;
use crate::classifier::{BertClassifier, Result};
use crate::data::{Dataset, Example};
use crate::rng::Rng;
use crate::tokenize::TextEncoder;

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Fraction of all steps spent warming the learning rate up from 0.
    pub warmup: f64,
    pub max_len: usize,
    pub clip: f64,
    pub dropout: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 5e-5,
            weight_decay: 0.01,
            warmup: 0.1,
            max_len: 64,
            clip: 1.0,
            dropout: 0.1,
            seed: 42,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub eval_accuracy: f64,
    pub samples_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub config: TrainConfig,
    pub train_examples: usize,
    pub eval_examples: usize,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    pub best_accuracy: f64,
    pub output: PathBuf,
}

/// The learning rate at `step` of `total`: linear warm-up over `warmup * total` steps, then linear decay to 0.
pub fn lr_at(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warm = ((cfg.warmup * total as f64).round() as usize).max(1);
    if step < warm {
        cfg.lr * (step + 1) as f64 / warm as f64
    } else {
        cfg.lr * (total.saturating_sub(step)) as f64 / (total - warm).max(1) as f64
    }
}

pub(crate) fn encode(enc: &mut TextEncoder, ex: &[&Example], max_len: usize) -> Result<(Batch, Vec<u32>)> {
    let texts: Vec<&str> = ex.iter().map(|e| e.text.as_str()).collect();
    Ok((enc.encode(&texts, max_len, None)?, ex.iter().map(|e| e.label as u32).collect()))
}

/// Accuracy of the model (dropout off) on a data set.
pub fn evaluate(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
    batch: usize,
) -> Result<f64> {
    let mut correct = 0usize;
    for chunk in data.examples.chunks(batch.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (b, labels) = encode(enc, &refs, max_len)?;
        let pred = model.forward(&b, None)?.argmax(1)?.to_vec1::<u32>()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / data.examples.len().max(1) as f64)
}

/// Clip the global L2 norm of all gradients to `max_norm`. Returns the norm before clipping.
pub(crate) fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[candle_core::Var],
    max_norm: f64,
) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * scale)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

/// One optimisation step on one batch (dropout on): forward, cross-entropy, backward, clip, AdamW update.
/// Returns the logits and the loss before the update.
pub fn train_step(
    model: &BertClassifier,
    opt: &mut AdamW,
    vars: &[candle_core::Var],
    b: &Batch,
    labels: &[u32],
    rng: &mut Rng,
    clip: f64,
) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let targets = candle_core::Tensor::new(labels, &model.device)?;
    let logits = model.forward(b, Some(rng))?;
    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
    let mut grads = loss.backward()?;
    clip_gradients(&mut grads, vars, clip)?;
    opt.step(&grads)?;
    model.apply_weight_masks()?;
    Ok((logits, loss))
}

/// AdamW over all of the model's parameters, as `train` uses it.
pub fn optimizer(model: &BertClassifier, cfg: &TrainConfig) -> Result<AdamW> {
    Ok(AdamW::new(model.vars(), ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?)
}

/// What a training run reads and writes besides the model and its hyper-parameters.
pub struct TrainJob<'a> {
    pub train: &'a Dataset,
    pub eval: &'a Dataset,
    /// Copied into the output folder.
    pub tokenizer: &'a Path,
    pub out: &'a Path,
    /// Stored in the checkpoint's safetensors `__metadata__`.
    pub metadata: &'a BTreeMap<String, String>,
    pub progress: bool,
}

/// Train `model` on `job.train`, evaluate on `job.eval` after every epoch, and save the best epoch to `job.out`.
pub fn train(
    model: &mut BertClassifier,
    enc: &mut TextEncoder,
    job: &TrainJob,
    cfg: &TrainConfig,
) -> Result<TrainReport> {
    let TrainJob { train, eval, tokenizer, out, metadata, progress } = *job;
    anyhow::ensure!(
        !train.examples.is_empty() && !eval.examples.is_empty(),
        "training and evaluation sets must not be empty"
    );
    model.dropout = cfg.dropout;
    let vars = model.vars();
    let mut opt = optimizer(model, cfg)?;
    let steps_per_epoch = train.examples.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let mut rng = Rng::new(cfg.seed);
    let mut reports = vec![];
    let (mut best_epoch, mut best_acc) = (0, -1.0);
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let mut order: Vec<usize> = (0..train.examples.len()).collect();
        rng.shuffle(&mut order);
        let bar = crate::progress::bar(train.examples.len(), &format!("epoch {epoch}/{}", cfg.epochs), progress);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for idx in order.chunks(cfg.batch_size) {
            let ex: Vec<&Example> = idx.iter().map(|&i| &train.examples[i]).collect();
            let (b, labels) = encode(enc, &ex, cfg.max_len)?;
            opt.set_learning_rate(lr_at(cfg, step, total));
            let (logits, loss) = train_step(model, &mut opt, &vars, &b, &labels, &mut rng, cfg.clip)?;
            step += 1;
            let pred = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            loss_sum += loss.to_scalar::<f32>()? as f64 * ex.len() as f64;
            seen += ex.len();
            bar.inc(ex.len() as u64);
            // Without a terminal the bar is hidden: log a line about every tenth of an epoch instead.
            let tenth = (steps_per_epoch / 10).max(1);
            if progress && !std::io::IsTerminal::is_terminal(&std::io::stderr()) && step % tenth == 0 {
                eprintln!(
                    "epoch {epoch}/{}: {seen}/{} examples, loss {:.4}, acc {:.3}, {:.1} samples/s",
                    cfg.epochs,
                    train.examples.len(),
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                    seen as f64 / start.elapsed().as_secs_f64()
                );
            }
            bar.set_message(format!(
                "loss {:.4} acc {:.3} {:.1} samples/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
        }
        let samples_per_s = seen as f64 / start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let acc = evaluate(model, enc, eval, cfg.max_len, cfg.batch_size)?;
        let r = EpochReport { epoch, train_loss: loss_sum / seen as f64, eval_accuracy: acc, samples_per_s };
        if progress {
            eprintln!(
                "epoch {epoch}/{}: train loss {:.4}, held-out accuracy {:.2} %, {:.1} samples/s",
                cfg.epochs,
                r.train_loss,
                acc * 100.0,
                samples_per_s
            );
        }
        reports.push(r);
        if acc > best_acc {
            best_acc = acc;
            best_epoch = epoch;
            let mut meta = metadata.clone();
            meta.insert("epochs_run".into(), epoch.to_string());
            meta.insert("eval_accuracy".into(), format!("{acc:.4}"));
            meta.insert("train_config".into(), serde_json::to_string(cfg)?);
            model.save(out, tokenizer, &meta)?;
        }
    }
    Ok(TrainReport {
        config: cfg.clone(),
        train_examples: train.examples.len(),
        eval_examples: eval.examples.len(),
        epochs: reports,
        best_epoch,
        best_accuracy: best_acc,
        output: out.to_path_buf(),
    })
}
