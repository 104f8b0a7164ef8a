//! Training EBERT's predictors with the model, as the release does: from a fine-tuned classifier, Gumbel-sigmoid
//! gates (hard 0.5 threshold, straight-through), loss = CE + λ·[(s_cur - r)² + 5·mean_l (r - p_l^heads)² +
//! 5·mean_l (r - p_l^ffn)²] with r the target FLOPs ratio, s_cur the expected FLOPs ratio (predictors included)
//! and p_l a layer's mean keep probability; the predictors have their own AdamW at a constant learning rate,
//! the backbone the fine-tuning schedule.
//!
//! The release then infers with the same threshold it trained with; the fused graph keeps a fixed top-k instead
//! (static shapes). `top_k_epochs` closes that gap: further epochs under exactly the top-k decisions the graph
//! makes (straight-through to the predictors), the sparsity terms dropped since k fixes the cost. With a teacher
//! (the dense model the run starts from, say), the cross-entropy becomes the distillation loss of
//! `train::loss`. The epoch saved is the one with the best validation top-k accuracy, as `optimize train` keeps its
//! best epoch.

use std::time::Instant;

use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::arch::classifier::{BertClassifier, Result};
use crate::arch::ebert::{ebert_forward, keep_rates, EbertGates, FlopModel, GateMode};
use crate::data::tokenize::TextEncoder;
use crate::data::{Dataset, Example};
use crate::rng::Rng;
use crate::train::{clip_gradients, encode, lr_at, TrainConfig, TrainJob};

#[derive(Clone, Debug, serde::Serialize)]
pub struct EbertConfig {
    pub train: TrainConfig,
    /// Target FLOPs ratio to the dense model (predictors included): 0.8, 0.6, 0.5.
    pub target: f64,
    pub lambda: f64,
    pub predictor_lr: f64,
    /// FFN neurons per group.
    pub group_size: usize,
    pub temperature: f32,
    /// Epochs after the `train.epochs` Gumbel ones, trained under the fused graph's top-k decisions.
    pub top_k_epochs: usize,
    /// The teacher whose logits the job distils (`train.kd_alpha`, `kd_temperature`), named for the record.
    pub teacher: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EbertEpoch {
    pub epoch: usize,
    /// `gumbel` (the release's gates and sparsity loss) or `top-k` (the fused graph's decisions).
    pub gates: String,
    pub loss: f64,
    pub cross_entropy: f64,
    /// Expected FLOPs ratio (from the keep probabilities) averaged over the epoch.
    pub expected_flops_ratio: f64,
    pub samples_per_s: f64,
    /// Held-out accuracy of the top-k rule (what the fused graph runs) after this epoch.
    pub top_k_accuracy: f64,
}

/// Held-out results of one inference rule.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EbertEval {
    pub rule: String,
    pub accuracy: f64,
    /// Average heads and FFN groups kept per layer and input.
    pub heads: f64,
    pub groups: f64,
    /// FLOPs ratio to dense at sequence 128, predictors included.
    pub flops_ratio: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EbertReport {
    pub config: EbertConfig,
    pub groups: usize,
    pub dense_accuracy: f64,
    pub epochs: Vec<EbertEpoch>,
    /// The epoch saved: the best validation top-k accuracy, as `optimize train` keeps its best epoch.
    pub best_epoch: usize,
    /// Top-k with k fixed by the target (what the fused graph runs), and the release's threshold rule.
    pub top_k: EbertEval,
    pub threshold: EbertEval,
}

/// The best epoch so far by validation top-k accuracy, with a copy of every parameter to restore.
struct BestEpoch {
    epoch: usize,
    eval: EbertEval,
    params: Vec<(String, Tensor)>,
}

/// Heads and groups kept per layer by the fused graph (`ebert(ratio=..)`) for a keep fraction.
pub fn keep_for_ratio(model: &BertClassifier, ratio: f64) -> Result<(usize, usize)> {
    let groups = model.predictor_groups().ok_or_else(|| crate::error::invalid!("the model has no EBERT predictors"))?;
    let kept = bertopt_ir::ops::kept_units;
    Ok((kept(ratio, model.config.num_attention_heads), kept(ratio, groups)))
}

/// Accuracy and kept units of the predictors' choices under `mode` on `data` (dropout off).
pub fn ebert_eval(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
    mode: GateMode,
) -> Result<EbertEval> {
    let groups = model.predictor_groups().ok_or_else(|| crate::error::invalid!("the model has no EBERT predictors"))?;
    let (mut correct, mut heads, mut kept_groups) = (0usize, 0f64, 0f64);
    for chunk in data.examples.chunks(32) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (b, labels) = encode(enc, &refs, max_len)?;
        let (logits, gates) = ebert_forward(model, &b, mode)?;
        let pred = logits.argmax(1)?.to_vec1::<u32>()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let n = chunk.len() as f64;
        let per_layer = |g: &[Tensor], units: usize| -> Result<f64> {
            Ok(keep_rates(g)?.iter().sum::<f64>() / g.len().max(1) as f64 * units as f64 * n)
        };
        heads += per_layer(&gates.head_kept, model.config.num_attention_heads)?;
        kept_groups += per_layer(&gates.ffn_kept, groups)?;
    }
    let n = data.examples.len().max(1) as f64;
    let (heads, kept_groups) = (heads / n, kept_groups / n);
    let fm = FlopModel::new(&model.config, groups, model.labels.len(), 128);
    Ok(EbertEval {
        rule: match mode {
            GateMode::TopK { heads, groups } => format!("top-k ({heads} heads, {groups} groups per layer)"),
            GateMode::Threshold => "threshold (logit >= 0)".into(),
            GateMode::Train { .. } | GateMode::TopKTrain { .. } => "training gates".into(),
        },
        accuracy: correct as f64 / n,
        heads,
        groups: kept_groups,
        flops_ratio: fm.ratio(&model.config, heads, kept_groups),
    })
}

/// The sparsity term of the loss for one batch's gates, and the expected FLOPs ratio.
fn sparsity_loss(gates: &EbertGates, fm: &FlopModel, target: f64) -> Result<(Tensor, f64)> {
    let layers = gates.head_probs.len();
    crate::error::ensure!(layers > 0 && gates.ffn_probs.len() == layers, "the predictors did not run on every layer");
    // Expected units kept per layer: sum over units of the keep probability, averaged over the batch.
    let mut expected = Tensor::new(((fm.fixed + fm.predictors) / fm.dense) as f32, gates.head_probs[0].device())?;
    let (mut head_term, mut ffn_term) = (vec![], vec![]);
    for (h, f) in gates.head_probs.iter().zip(&gates.ffn_probs) {
        let heads = h.sum(1)?.mean(0)?;
        let groups = f.sum(1)?.mean(0)?;
        expected = (expected + ((heads * (fm.head / fm.dense))? + (groups * (fm.group / fm.dense))?)?)?;
        head_term.push(((h.mean_all()? - target)?.sqr()?).unsqueeze(0)?);
        ffn_term.push(((f.mean_all()? - target)?.sqr()?).unsqueeze(0)?);
    }
    let ratio = expected.to_scalar::<f32>()? as f64;
    let loss = ((expected - target)?.sqr()?
        + (Tensor::cat(&head_term, 0)?.mean_all()? * 5.0)?
        + (Tensor::cat(&ffn_term, 0)?.mean_all()? * 5.0)?)?;
    Ok((loss, ratio))
}

/// Add predictors to a fine-tuned classifier, train them (and the model) toward the target, and save.
pub fn train_ebert(
    model: &mut BertClassifier,
    enc: &mut TextEncoder,
    job: &TrainJob,
    cfg: &EbertConfig,
) -> Result<EbertReport> {
    let TrainJob { train, val: eval, tokenizer, out, metadata, progress, .. } = *job;
    let tc = &cfg.train;
    crate::error::ensure!(
        !train.examples.is_empty() && !eval.examples.is_empty(),
        "training and validation sets must not be empty"
    );
    crate::error::ensure!(cfg.target > 0.0 && cfg.target <= 1.0, "target FLOPs ratio {} is not in (0, 1]", cfg.target);
    let f = model.config.intermediate_size;
    crate::error::ensure!(
        cfg.group_size >= 1 && f.is_multiple_of(cfg.group_size),
        "group size {} does not divide the {f} FFN neurons",
        cfg.group_size
    );
    job.check_teacher(model.labels.len())?;
    let groups = f / cfg.group_size;
    model.add_predictors(groups, tc.seed)?;
    model.dropout = tc.dropout;
    let dense_accuracy = crate::train::evaluate(model, enc, eval, tc.max_len, 32)?;
    let (kh, kg) = keep_for_ratio(model, cfg.target)?;
    let backbone = model.backbone_vars();
    let predictors = model.predictor_vars();
    let all: Vec<candle_core::Var> = backbone.iter().chain(&predictors).cloned().collect();
    let mut opt = AdamW::new(backbone, ParamsAdamW { lr: tc.lr, weight_decay: tc.weight_decay, ..Default::default() })?;
    let mut opt_pred =
        AdamW::new(predictors, ParamsAdamW { lr: cfg.predictor_lr, weight_decay: 0.0, ..Default::default() })?;
    let steps_per_epoch = train.examples.len().div_ceil(tc.batch_size);
    let epochs_total = tc.epochs + cfg.top_k_epochs;
    let total = steps_per_epoch * epochs_total;
    let mut rng = Rng::new(tc.seed);
    let mut gate_rng = Rng::new(tc.seed ^ 0x6a7e);
    let mut epochs = vec![];
    let mut best: Option<BestEpoch> = None;
    let mut step = 0;
    for epoch in 1..=epochs_total {
        let gumbel = epoch <= tc.epochs;
        let mode = if gumbel {
            GateMode::Train { temperature: cfg.temperature }
        } else {
            GateMode::TopKTrain { heads: kh, groups: kg }
        };
        let phase = if gumbel { "gumbel" } else { "top-k" };
        let mut order: Vec<usize> = (0..train.examples.len()).collect();
        rng.shuffle(&mut order);
        let bar =
            crate::progress::bar(train.examples.len(), &format!("ebert {epoch}/{epochs_total} {phase}"), progress);
        let start = Instant::now();
        let (mut loss_sum, mut ce_sum, mut ratio_sum, mut seen) = (0f64, 0f64, 0f64, 0usize);
        for idx in order.chunks(tc.batch_size) {
            let ex: Vec<&Example> = idx.iter().map(|&i| &train.examples[i]).collect();
            let (b, labels) = encode(enc, &ex, tc.max_len)?;
            let targets = Tensor::new(labels.as_slice(), &model.device)?;
            opt.set_learning_rate(lr_at(tc, step, total));
            let fm = FlopModel::new(&model.config, groups, model.labels.len(), b.seq);
            let mut gates = EbertGates::new(model, mode, Some(&mut gate_rng))?;
            let logits = model.forward_dynamic(&b, Some(&mut rng), &mut gates)?;
            let ce = candle_nn::loss::cross_entropy(&logits, &targets)?;
            let soft = job.teacher_rows(idx)?;
            let task = crate::train::loss(&logits, &labels, soft.as_ref(), tc)?;
            let (loss, ratio) = if gumbel {
                let (sparsity, ratio) = sparsity_loss(&gates, &fm, cfg.target)?;
                ((&task + (sparsity * cfg.lambda)?)?, ratio)
            } else {
                (task, fm.ratio(&model.config, kh as f64, kg as f64))
            };
            let mut grads = loss.backward()?;
            clip_gradients(&mut grads, &all, tc.clip)?;
            opt.step(&grads)?;
            opt_pred.step(&grads)?;
            // BatchNorm running statistics, as PyTorch keeps them (top-k epochs use them as they stand).
            for (prefix, mean, var) in std::mem::take(&mut gates.bn_batch) {
                for (stat, batch) in [("running_mean", mean), ("running_var", var)] {
                    let v = &model.params[&format!("{prefix}.{stat}")];
                    let m = crate::arch::ebert::BN_MOMENTUM;
                    v.set(&((v.as_tensor() * (1.0 - m))? + (batch * m)?)?)?;
                }
            }
            step += 1;
            let n = ex.len() as f64;
            loss_sum += loss.to_scalar::<f32>()? as f64 * n;
            ce_sum += ce.to_scalar::<f32>()? as f64 * n;
            ratio_sum += ratio * n;
            seen += ex.len();
            bar.inc(ex.len() as u64);
            bar.set_message(format!("ce {:.4} flops {:.3}", ce_sum / seen as f64, ratio_sum / seen as f64));
        }
        bar.finish_and_clear();
        let samples_per_s = seen as f64 / start.elapsed().as_secs_f64();
        let top_k = ebert_eval(model, enc, eval, tc.max_len, GateMode::TopK { heads: kh, groups: kg })?;
        let top_k_accuracy = top_k.accuracy;
        if best.as_ref().is_none_or(|b| top_k.accuracy > b.eval.accuracy) {
            let params =
                model.params.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?))).collect::<Result<_>>()?;
            best = Some(BestEpoch { epoch, eval: top_k, params });
        }
        let e = EbertEpoch {
            epoch,
            gates: phase.into(),
            loss: loss_sum / seen as f64,
            cross_entropy: ce_sum / seen as f64,
            expected_flops_ratio: ratio_sum / seen as f64,
            samples_per_s,
            top_k_accuracy,
        };
        if progress {
            eprintln!(
                "ebert epoch {epoch}/{epochs_total} ({phase}): loss {:.4}, CE {:.4}, expected FLOPs ratio {:.3}, \
                 {:.1} samples/s, validation top-k accuracy {:.2} %",
                e.loss,
                e.cross_entropy,
                e.expected_flops_ratio,
                e.samples_per_s,
                e.top_k_accuracy * 100.0
            );
        }
        epochs.push(e);
    }
    let (best_epoch, top_k) = match best {
        Some(BestEpoch { epoch, eval, params }) => {
            for (name, t) in params {
                model.params[&name].set(&t)?;
            }
            (epoch, eval)
        }
        None => (0, ebert_eval(model, enc, eval, tc.max_len, GateMode::TopK { heads: kh, groups: kg })?),
    };
    let threshold = ebert_eval(model, enc, eval, tc.max_len, GateMode::Threshold)?;
    let report = EbertReport { config: cfg.clone(), groups, dense_accuracy, epochs, best_epoch, top_k, threshold };
    let mut meta = metadata.clone();
    meta.insert("ebert".into(), serde_json::to_string(&report)?);
    model.save(out, tokenizer, &meta)?;
    Ok(report)
}
