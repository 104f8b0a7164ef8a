//! First-order Taylor importance of every encoder weight, as the TileSparsity work scores weights: a mask m = 1
//! multiplies each weight, and the score of a weight is Σ over calibration batches of (∂L/∂m)², where
//! ∂L/∂m = ∂L/∂W ⊙ W. No weight is updated. The pruning passes sum these scores over the unit they remove (a
//! head's slices, a neuron's row and column, a tile's row segment) instead of using weight magnitude.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::arch::classifier::{BertClassifier, Result};
use crate::data::tokenize::TextEncoder;
use crate::data::{Dataset, Example};

/// Whether `name` (Hugging Face naming) is an encoder matrix the passes prune.
fn scored(name: &str) -> bool {
    name.starts_with("bert.encoder.layer.") && name.ends_with(".weight") && !name.contains("LayerNorm")
}

/// Taylor scores for every encoder matrix, keyed by Hugging Face name, in PyTorch layout `[out, in]`. Uses at
/// most `max_batches` batches of `batch` examples from `data`; `progress` gets the batches done.
pub fn taylor_scores(
    model: &BertClassifier,
    enc: &mut TextEncoder,
    data: &Dataset,
    max_len: usize,
    batch: usize,
    max_batches: usize,
    mut progress: impl FnMut(usize),
) -> Result<BTreeMap<String, Tensor>> {
    crate::error::ensure!(!data.examples.is_empty(), "Taylor scores need at least one labelled example");
    let mut acc: BTreeMap<String, Tensor> = BTreeMap::new();
    for (i, chunk) in data.examples.chunks(batch.max(1)).take(max_batches.max(1)).enumerate() {
        let refs: Vec<&Example> = chunk.iter().collect();
        let texts: Vec<&str> = refs.iter().map(|e| e.text.as_str()).collect();
        let b = enc.encode(&texts, max_len, None)?;
        let labels: Vec<u32> = refs.iter().map(|e| e.label as u32).collect();
        let targets = Tensor::new(labels.as_slice(), &model.device)?;
        let loss = candle_nn::loss::cross_entropy(&model.forward(&b, None)?, &targets)?;
        let grads = loss.backward()?;
        for (name, var) in model.params.iter().filter(|(n, _)| scored(n)) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let s = (g * var.as_tensor())?.sqr()?;
            let sum = match acc.remove(name) {
                Some(prev) => (prev + s)?,
                None => s,
            };
            acc.insert(name.clone(), sum);
        }
        progress(i + 1);
    }
    // Back to the CPU for saving.
    acc.into_iter().map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?))).collect()
}
