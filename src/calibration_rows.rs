//! The inputs `quant(activations=static)` calibrates on: training rows of `--data` (never validation or test
//! rows), tokenized with the model's tokenizer, one sentence per batch at its own length, as the interpreter
//! takes them (`PassContext::calibration`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::Tensor;

use crate::split::SplitArgs;

/// Longest calibration sentence in tokens (longer ones are truncated).
const MAX_LEN: usize = 128;

/// The first `rows` training rows of `split` as interpreter inputs, tokenized with `tokenizer`.
pub fn calibration_rows(
    split: &SplitArgs,
    tokenizer: Option<&Path>,
    model: &Path,
    rows: usize,
) -> anyhow::Result<Vec<HashMap<String, Tensor>>> {
    anyhow::ensure!(rows > 0, "--calibration-rows must be at least 1");
    let tokenizer =
        tokenizer.with_context(|| format!("{} has no tokenizer.json to tokenize calibration rows", model.display()))?;
    let mut enc = crate::tokenize::TextEncoder::from_file(tokenizer)?;
    let train = split.splits()?.train;
    anyhow::ensure!(!train.examples.is_empty(), "--data has no training rows to calibrate on");
    let mut out = vec![];
    for ex in train.examples.iter().take(rows) {
        let b = enc.encode(&[ex.text.as_str()], MAX_LEN, None)?;
        let mut inputs = HashMap::new();
        for name in bertopt_models::load::lower::INPUTS {
            let v = b.by_name(name).context("a tokenized batch lacks a graph input")?.to_vec();
            inputs.insert(name.to_string(), Tensor::from_vec(v, (b.batch, b.seq), &candle_core::Device::Cpu)?);
        }
        out.push(inputs);
    }
    Ok(out)
}
