//! Training off-ramps for early exit. DeeBERT's second stage: the fine-tuned backbone and final classifier are
//! frozen (the off-ramps read detached hidden states, so backward only runs through them) and the off-ramps
//! learn from the sum of their cross-entropies. ElasticBERT: everything trains jointly on the sum of every exit's
//! cross-entropy, the final classifier's included, with its gradient rescaling.

use std::time::Instant;

use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::arch::classifier::{BertClassifier, ExitGradients, ExitPooling, Result};
use crate::data::tokenize::TextEncoder;
use crate::data::{Dataset, Example};
use crate::rng::Rng;
use crate::train::{clip_gradients, encode, lr_at, TrainConfig, TrainJob};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitMethod {
    /// Frozen backbone, off-ramps trained on the sum of their losses (DeeBERT stage 2).
    Deebert,
    /// Joint training of backbone and every exit, gradient-rescaled (ElasticBERT).
    Elastic,
}

impl std::str::FromStr for ExitMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "deebert" => Ok(ExitMethod::Deebert),
            "elastic" | "elasticbert" => Ok(ExitMethod::Elastic),
            _ => Err(format!("unknown exit training method `{s}` (deebert, elastic)")),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ExitEpoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub samples_per_s: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ExitTrainReport {
    pub method: ExitMethod,
    /// What the off-ramps pool, per exit point before the last (layers run, pooling).
    pub pooling: Vec<(usize, ExitPooling)>,
    pub config: TrainConfig,
    pub epochs: Vec<ExitEpoch>,
    /// Held-out accuracy of each exit point: (layers run, accuracy), the final classifier last.
    pub exit_accuracy: Vec<(usize, f64)>,
}

/// Logits of every exit point for a batch, dropout off: `[exit][row][label]`.
pub fn exit_logits(model: &BertClassifier, b: &crate::batch::Batch) -> Result<Vec<Vec<Vec<f32>>>> {
    model.forward_exits(b, None, ExitGradients::Detached)?.iter().map(|t| Ok(t.to_vec2::<f32>()?)).collect()
}

/// The layer count of each exit point: off-ramps, then the final layer.
pub fn exit_points(model: &BertClassifier) -> Vec<usize> {
    let mut v: Vec<usize> = model.exit_layers().iter().map(|l| l + 1).collect();
    v.push(model.config.num_hidden_layers);
    v
}

/// Held-out accuracy of every exit point.
pub fn exit_accuracy(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
) -> Result<Vec<f64>> {
    let points = exit_points(model).len();
    let mut correct = vec![0usize; points];
    for chunk in data.examples.chunks(32) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (b, labels) = encode(enc, &refs, max_len)?;
        for (j, logits) in exit_logits(model, &b)?.iter().enumerate() {
            correct[j] +=
                logits.iter().zip(&labels).filter(|(r, &l)| bertopt_ir::exit::argmax(r) == l as usize).count();
        }
    }
    Ok(correct.into_iter().map(|c| c as f64 / data.examples.len().max(1) as f64).collect())
}

/// Train the model's off-ramps (adding one after every layer but the last, pooling as `pooling` says, if it has
/// none; `None` is [CLS]) and save it. Off-ramps it has already keep their pooling; asking for another is an error.
pub fn train_exits(
    model: &mut BertClassifier,
    enc: &mut TextEncoder,
    job: &TrainJob,
    cfg: &TrainConfig,
    method: ExitMethod,
    pooling: Option<ExitPooling>,
) -> Result<ExitTrainReport> {
    let TrainJob { train, val: eval, tokenizer, out, metadata, progress, .. } = *job;
    crate::error::ensure!(
        !train.examples.is_empty() && !eval.examples.is_empty(),
        "training and validation sets must not be empty"
    );
    if model.exit_layers().is_empty() {
        let all: Vec<usize> = (0..model.config.num_hidden_layers.saturating_sub(1)).collect();
        model.add_exits(&all, cfg.seed, pooling.unwrap_or_default())?;
    } else if let Some(want) = pooling {
        for l in model.exit_layers() {
            let has = model.exit_pooling(l);
            crate::error::ensure!(
                has == want,
                "the model's off-ramp after layer {} has `{has}` pooling, not `{want}`: train from a model \
                 without off-ramps to change it",
                l + 1
            );
        }
    }
    model.dropout = cfg.dropout;
    let vars: Vec<candle_core::Var> = match method {
        ExitMethod::Deebert => model
            .params
            .iter()
            .filter(|(k, _)| k.starts_with(crate::load::lower::EXITS))
            .map(|(_, v)| v.clone())
            .collect(),
        ExitMethod::Elastic => model.vars(),
    };
    let mut opt =
        AdamW::new(vars.clone(), ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let mode = match method {
        ExitMethod::Deebert => ExitGradients::Detached,
        ExitMethod::Elastic => ExitGradients::Rescaled,
    };
    let steps_per_epoch = train.examples.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let mut rng = Rng::new(cfg.seed);
    let mut epochs = vec![];
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let mut order: Vec<usize> = (0..train.examples.len()).collect();
        rng.shuffle(&mut order);
        let bar = crate::progress::bar(train.examples.len(), &format!("exits {epoch}/{}", cfg.epochs), progress);
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        for idx in order.chunks(cfg.batch_size) {
            let ex: Vec<&Example> = idx.iter().map(|&i| &train.examples[i]).collect();
            let (b, labels) = encode(enc, &ex, cfg.max_len)?;
            let targets = candle_core::Tensor::new(labels.as_slice(), &model.device)?;
            opt.set_learning_rate(lr_at(cfg, step, total));
            let logits = model.forward_exits(&b, Some(&mut rng), mode)?;
            // DeeBERT trains only the off-ramps: the final classifier's loss is left out.
            let used = match method {
                ExitMethod::Deebert => &logits[..logits.len() - 1],
                ExitMethod::Elastic => &logits[..],
            };
            let mut loss = candle_nn::loss::cross_entropy(&used[0], &targets)?;
            for l in &used[1..] {
                loss = (loss + candle_nn::loss::cross_entropy(l, &targets)?)?;
            }
            let mut grads = loss.backward()?;
            clip_gradients(&mut grads, &vars, cfg.clip)?;
            opt.step(&grads)?;
            step += 1;
            loss_sum += loss.to_scalar::<f32>()? as f64 * ex.len() as f64;
            seen += ex.len();
            bar.inc(ex.len() as u64);
            bar.set_message(format!(
                "loss {:.4} {:.1} samples/s",
                loss_sum / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
        }
        bar.finish_and_clear();
        let e = ExitEpoch {
            epoch,
            train_loss: loss_sum / seen as f64,
            samples_per_s: seen as f64 / start.elapsed().as_secs_f64(),
        };
        if progress {
            eprintln!(
                "exits epoch {epoch}/{}: summed loss {:.4}, {:.1} samples/s",
                cfg.epochs, e.train_loss, e.samples_per_s
            );
        }
        epochs.push(e);
    }
    let acc = exit_accuracy(model, enc, eval, cfg.max_len)?;
    let exit_accuracy: Vec<(usize, f64)> = exit_points(model).into_iter().zip(acc).collect();
    let mut meta = metadata.clone();
    meta.insert("exit_method".into(), serde_json::to_string(&method)?);
    meta.insert("exit_accuracy".into(), serde_json::to_string(&exit_accuracy)?);
    meta.insert("exit_train_config".into(), serde_json::to_string(cfg)?);
    model.save(out, tokenizer, &meta)?;
    let pooling = model.exit_layers().into_iter().map(|l| (l + 1, model.exit_pooling(l))).collect();
    Ok(ExitTrainReport { method, pooling, config: cfg.clone(), epochs, exit_accuracy })
}
