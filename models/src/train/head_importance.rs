//! Single-shot head importance (Michel, Levy and Neubig, "Are Sixteen Heads Really Better than One?", 2019): a
//! gate ξ of ones multiplies every head's context; the importance of a head is the mean over calibration
//! batches of |∂L/∂ξ|, L the task's cross-entropy. Scores are then normalised per layer (L2), which lets one
//! threshold rank heads across layers. No weight is updated.

use candle_core::{Tensor, Var};

use crate::arch::classifier::{BertClassifier, Result};
use crate::data::tokenize::TextEncoder;
use crate::data::{Dataset, Example};

/// Which heads compete for the kept places.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every layer keeps the same number of heads (as SMP does).
    Layer,
    /// One ranking over all heads; a layer may lose all of its heads.
    Global,
}

/// Mean |∂L/∂ξ| per `[layer][head]` over `data`, in batches of `batch`, each layer normalised to unit L2 norm.
/// `progress` is called with the number of examples done after each batch.
pub fn head_importance(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>> {
    crate::error::ensure!(!data.examples.is_empty(), "head importance needs at least one labelled example");
    let (l, h) = (model.config.num_hidden_layers, model.config.num_attention_heads);
    let dev = &model.device;
    let gate = Var::ones((l, h), candle_core::DType::F32, dev)?;
    let mut total = Tensor::zeros((l, h), candle_core::DType::F32, dev)?;
    let mut done = 0;
    for chunk in data.examples.chunks(batch.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let texts: Vec<&str> = refs.iter().map(|e| e.text.as_str()).collect();
        let b = enc.encode(&texts, max_len, None)?;
        let labels: Vec<u32> = refs.iter().map(|e| e.label as u32).collect();
        let targets = Tensor::new(labels.as_slice(), dev)?;
        let logits = model.forward_gated(&b, None, Some(gate.as_tensor()))?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let grads = loss.backward()?;
        let g =
            grads.get(gate.as_tensor()).ok_or_else(|| crate::error::invalid!("the head gate received no gradient"))?;
        // The loss is a batch mean; weigh each batch by its size so that the result is a mean over examples.
        total = (total + (g.abs()? * chunk.len() as f64)?)?;
        done += chunk.len();
        progress(done);
    }
    let mean = (total / done as f64)?.to_vec2::<f32>()?;
    Ok(mean.into_iter().map(normalise).collect())
}

/// Scale a layer's scores to unit L2 norm (all-zero stays zero).
fn normalise(row: Vec<f32>) -> Vec<f32> {
    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
    row.into_iter().map(|x| x / (norm + 1e-20)).collect()
}

/// Which heads to keep: `ratio` is the fraction removed, SMP's convention (0.5 removes 6 of 12 heads in every
/// layer with `Scope::Layer`; `int(L·H·ratio)` heads over the whole model with `Scope::Global`). The lowest
/// scores go; ties go to the lower head index first, so the result is deterministic.
pub fn select(scores: &[Vec<f32>], ratio: f64, scope: Scope) -> Result<Vec<Vec<bool>>> {
    crate::error::ensure!(
        (0.0..1.0).contains(&ratio),
        "--ratio {ratio} must be in [0, 1): it is the fraction of heads removed"
    );
    let mut keep: Vec<Vec<bool>> = scores.iter().map(|r| vec![true; r.len()]).collect();
    let drop = |cands: Vec<(usize, usize)>, n: usize, keep: &mut Vec<Vec<bool>>| {
        let mut cands = cands;
        cands.sort_by(|a, b| scores[a.0][a.1].total_cmp(&scores[b.0][b.1]).then(a.cmp(b)));
        for (l, h) in cands.into_iter().take(n) {
            keep[l][h] = false;
        }
    };
    match scope {
        Scope::Layer => {
            for (l, row) in scores.iter().enumerate() {
                let n = (row.len() as f64 * ratio) as usize;
                drop((0..row.len()).map(|h| (l, h)).collect(), n, &mut keep);
            }
        }
        Scope::Global => {
            let all: Vec<(usize, usize)> =
                scores.iter().enumerate().flat_map(|(l, r)| (0..r.len()).map(move |h| (l, h))).collect();
            let n = (all.len() as f64 * ratio) as usize;
            drop(all, n, &mut keep);
        }
    }
    Ok(keep)
}

/// A mask that removes the same number of heads as `select` would, chosen uniformly at random: the baseline a
/// pruning criterion has to beat.
pub fn random_mask(layers: usize, heads: usize, ratio: f64, scope: Scope, seed: u64) -> Result<Vec<Vec<bool>>> {
    let mut rng = crate::rng::Rng::new(seed);
    let scores: Vec<Vec<f32>> = (0..layers).map(|_| (0..heads).map(|_| rng.uniform()).collect()).collect();
    select(&scores, ratio, scope)
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "layer" => Ok(Scope::Layer),
            "global" => Ok(Scope::Global),
            _ => Err(format!("unknown scope {s:?}: use layer or global")),
        }
    }
}
