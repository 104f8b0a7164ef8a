//! Fine-tuning: AdamW with weight decay, linear warm-up then linear decay, global gradient-norm clipping,
//! dropout, a fixed seed; evaluation on the validation split after every epoch, keeping the best checkpoint (the
//! test split is never seen here: it is for the reported figure).

pub mod ebert;
pub mod exits;
pub mod head_importance;
pub mod taylor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::arch::classifier::{BertClassifier, Result};
use crate::batch::Batch;
use crate::data::tokenize::TextEncoder;
use crate::data::{Dataset, Example};
use crate::rng::Rng;

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
    /// Knowledge distillation: weight of the teacher's softened logits in the loss (0 = plain cross-entropy).
    /// Used only when the job has a teacher.
    pub kd_alpha: f64,
    /// Softmax temperature of the distillation term (Hinton et al. 2015); its loss is scaled by T².
    pub kd_temperature: f64,
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
            kd_alpha: 0.5,
            kd_temperature: 2.0,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub samples_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub config: TrainConfig,
    pub train_examples: usize,
    pub val_examples: usize,
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

/// The training loss: cross-entropy on the labels, or with `teacher` logits `[batch, classes]`,
/// `(1 - α)·CE + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))`. The T² keeps the soft term's gradient on the
/// scale of the hard one as T changes. For recovery after pruning, the dense model is the usual teacher.
pub fn loss(
    logits: &candle_core::Tensor,
    labels: &[u32],
    teacher: Option<&candle_core::Tensor>,
    cfg: &TrainConfig,
) -> Result<candle_core::Tensor> {
    let targets = candle_core::Tensor::new(labels, logits.device())?;
    let hard = candle_nn::loss::cross_entropy(logits, &targets)?;
    let Some(teacher) = teacher.filter(|_| cfg.kd_alpha > 0.0) else { return Ok(hard) };
    let t = cfg.kd_temperature;
    let student = candle_nn::ops::log_softmax(&(logits / t)?, 1)?;
    let target = candle_nn::ops::log_softmax(&(teacher.to_device(logits.device())?.detach() / t)?, 1)?;
    let kl = (target.exp()? * (&target - &student)?)?.sum(1)?.mean_all()?;
    Ok(((hard * (1.0 - cfg.kd_alpha))? + (kl * (cfg.kd_alpha * t * t))?)?)
}

/// One optimisation step on one batch (dropout on): forward, `loss` (distilled when `teacher` holds the batch's
/// teacher logits), backward, clip, AdamW update. Returns the logits and the loss before the update.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &BertClassifier,
    opt: &mut AdamW,
    vars: &[candle_core::Var],
    b: &Batch,
    labels: &[u32],
    teacher: Option<&candle_core::Tensor>,
    rng: &mut Rng,
    cfg: &TrainConfig,
) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let logits = model.forward(b, Some(rng))?;
    let loss = loss(&logits, labels, teacher, cfg)?;
    let mut grads = loss.backward()?;
    clip_gradients(&mut grads, vars, cfg.clip)?;
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
    /// Validation rows: the best epoch is chosen on them.
    pub val: &'a Dataset,
    /// Copied into the output folder.
    pub tokenizer: &'a Path,
    pub out: &'a Path,
    /// Stored in the checkpoint's safetensors `__metadata__`.
    pub metadata: &'a BTreeMap<String, String>,
    pub progress: bool,
    /// A teacher's logits for every example of `train`, in order (`teacher_logits`): distil from them.
    pub teacher: Option<&'a candle_core::Tensor>,
}

impl TrainJob<'_> {
    /// Check that the teacher's logits, if any, have a row per training example and a column per label.
    pub fn check_teacher(&self, labels: usize) -> Result<()> {
        if let Some(t) = self.teacher {
            crate::error::ensure!(
                t.dims() == [self.train.examples.len(), labels],
                "teacher logits {:?} do not match {} training examples × {labels} labels",
                t.dims(),
                self.train.examples.len()
            );
        }
        Ok(())
    }

    /// The teacher's logits for the training examples `idx` (one batch), when distilling.
    pub fn teacher_rows(&self, idx: &[usize]) -> Result<Option<candle_core::Tensor>> {
        let Some(t) = self.teacher else { return Ok(None) };
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        Ok(Some(t.index_select(&candle_core::Tensor::new(ids.as_slice(), t.device())?, 0)?))
    }
}

/// Logits `[examples, classes]` of `teacher` (dropout off) on every example of `data`, in order: computed once,
/// so that distillation costs no teacher forward per step or epoch.
pub fn teacher_logits(
    teacher: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
    batch: usize,
) -> Result<candle_core::Tensor> {
    let mut parts = vec![];
    for chunk in data.examples.chunks(batch.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (b, _) = encode(enc, &refs, max_len)?;
        // Detached: a tracked output would keep the chunk's whole forward graph alive.
        parts.push(teacher.forward(&b, None)?.detach().to_device(&candle_core::Device::Cpu)?);
    }
    Ok(candle_core::Tensor::cat(&parts, 0)?)
}

/// Train `model` on `job.train`, evaluate on `job.val` after every epoch, and save the best epoch to `job.out`.
pub fn train(
    model: &mut BertClassifier,
    enc: &mut TextEncoder,
    job: &TrainJob,
    cfg: &TrainConfig,
) -> Result<TrainReport> {
    let TrainJob { train, val, tokenizer, out, metadata, progress, .. } = *job;
    job.check_teacher(model.labels.len())?;
    crate::error::ensure!(
        !train.examples.is_empty() && !val.examples.is_empty(),
        "training and validation sets must not be empty"
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
            let soft = job.teacher_rows(idx)?;
            let (logits, loss) = train_step(model, &mut opt, &vars, &b, &labels, soft.as_ref(), &mut rng, cfg)?;
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
        let acc = evaluate(model, enc, val, cfg.max_len, cfg.batch_size)?;
        let r = EpochReport { epoch, train_loss: loss_sum / seen as f64, val_accuracy: acc, samples_per_s };
        if progress {
            eprintln!(
                "epoch {epoch}/{}: train loss {:.4}, validation accuracy {:.2} %, {:.1} samples/s",
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
            meta.insert("val_accuracy".into(), format!("{acc:.4}"));
            meta.insert("train_config".into(), serde_json::to_string(cfg)?);
            model.save(out, tokenizer, &meta)?;
        }
    }
    Ok(TrainReport {
        config: cfg.clone(),
        train_examples: train.examples.len(),
        val_examples: val.examples.len(),
        epochs: reports,
        best_epoch,
        best_accuracy: best_acc,
        output: out.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::{loss, TrainConfig};
    use candle_core::{Device, Tensor};

    /// log softmax of `x / t`, in f64, by hand.
    fn log_softmax(x: &[f64], t: f64) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::MIN, f64::max) / t;
        let z = x.iter().map(|v| (v / t - m).exp()).sum::<f64>().ln() + m;
        x.iter().map(|v| v / t - z).collect()
    }

    fn reference(s: &[Vec<f64>], t: &[Vec<f64>], y: &[usize], alpha: f64, temp: f64) -> f64 {
        let n = s.len() as f64;
        let ce = s.iter().zip(y).map(|(r, &c)| -log_softmax(r, 1.0)[c]).sum::<f64>() / n;
        let kl = s
            .iter()
            .zip(t)
            .map(|(sr, tr)| {
                let (ls, lt) = (log_softmax(sr, temp), log_softmax(tr, temp));
                lt.iter().zip(&ls).map(|(a, b)| a.exp() * (a - b)).sum::<f64>()
            })
            .sum::<f64>()
            / n;
        (1.0 - alpha) * ce + alpha * temp * temp * kl
    }

    fn tensor(rows: &[Vec<f64>]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_distillation_loss_is_the_weighted_sum_of_cross_entropy_and_tempered_kl() {
        let s = vec![vec![1.5, -0.3, 0.2], vec![-2.0, 0.7, 3.1], vec![0.0, 0.0, 0.4]];
        let t = vec![vec![2.5, 0.1, -1.0], vec![-0.5, 0.2, 1.1], vec![1.0, -3.0, 0.4]];
        let y = [0u32, 2, 1];
        let yu: Vec<usize> = y.iter().map(|v| *v as usize).collect();
        for (alpha, temp) in [(0.5, 2.0), (0.9, 4.0), (1.0, 1.0)] {
            let cfg = TrainConfig { kd_alpha: alpha, kd_temperature: temp, ..TrainConfig::default() };
            let got = loss(&tensor(&s), &y, Some(&tensor(&t)), &cfg).unwrap().to_scalar::<f32>().unwrap() as f64;
            let want = reference(&s, &t, &yu, alpha, temp);
            assert!((got - want).abs() < 1e-5, "alpha {alpha} T {temp}: {got} vs {want}");
        }
        // A teacher that agrees with the student leaves only the hard term.
        let cfg = TrainConfig::default();
        let same = loss(&tensor(&s), &y, Some(&tensor(&s)), &cfg).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((same - (1.0 - cfg.kd_alpha) * reference(&s, &s, &yu, 0.0, 1.0)).abs() < 1e-5);
    }

    #[test]
    fn without_a_teacher_or_with_alpha_zero_the_loss_is_cross_entropy() {
        let s = vec![vec![1.5, -0.3], vec![-2.0, 0.7]];
        let t = vec![vec![-5.0, 5.0], vec![5.0, -5.0]];
        let y = [1u32, 0];
        let want = reference(&s, &t, &[1, 0], 0.0, 1.0);
        let off = TrainConfig { kd_alpha: 0.0, ..TrainConfig::default() };
        for (teacher, cfg) in [(None, TrainConfig::default()), (Some(tensor(&t)), off)] {
            let got = loss(&tensor(&s), &y, teacher.as_ref(), &cfg).unwrap().to_scalar::<f32>().unwrap() as f64;
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
