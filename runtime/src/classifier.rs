//! `Classifier`: an exported model with its tokenizer and labels, ready to classify text. This is the one
//! implementation of tokenization, batching and exit driving that `optimize run`, `eval` and `bench` also use.
//!
//! Planning: by default (`Planning::PerBatch`) tract plans the model once per batch size seen, over a symbolic
//! sequence length (batch 1 at load), and every call of that batch size runs that plan: knowing the batch lets
//! tract fuse the residual additions into the matrix products, which a plan over a symbolic batch and length
//! (`Planning::Symbolic`) cannot (docs/results.md, "How the bench runs models, and how tract plans them").
//! `Planning::PerShape` plans once per input shape seen (a planning pause and tens of MiB per new shape);
//! `Planning::Buckets(n)` pads each batch (masked) to a multiple of n tokens and plans once per bucket, so a few
//! plans serve every length (docs/results.md, "Planning tract for real lengths").
//! Early-exit models: a single-file export's `If` branches are planned at load (`tract_branches`), a segmented
//! folder is driven row by row (`segmented`).

use std::path::{Path, PathBuf};

use bertopt_schema::meta;

use crate::error::{Error, Result};
use crate::tokenize::TextEncoder;
use crate::{Plans, Runner, RunnerOptions, Runtime};

/// The longest input of a model whose export does not record `bertopt.max_len` (bertopt's own default).
pub const FALLBACK_MAX_LEN: usize = 128;

/// How tract plans the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Planning {
    /// One plan per batch size seen over a symbolic sequence length (`Plans::PerBatch`), batch 1 planned at load.
    #[default]
    PerBatch,
    /// One plan over a symbolic batch and sequence length, made at load.
    Symbolic,
    /// One plan per input shape, made when that shape is first seen.
    PerShape,
    /// Batches padded (masked) to a multiple of this many tokens, one plan per padded shape.
    Buckets(usize),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runtime: Runtime,
    pub planning: Planning,
    /// Intra-op threads of ONNX Runtime (tract runs each call on the calling thread).
    pub threads: usize,
    /// Longest input in tokens; defaults to the model's limit (`bertopt.max_len`).
    pub max_len: Option<usize>,
    /// Cut longer inputs to `max_len` (default) or refuse them with `Error::InputTooLong`.
    pub truncate: bool,
    /// A tokenizer.json to use instead of the one embedded in the model.
    pub tokenizer: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runtime: Runtime::Tract,
            planning: Planning::PerBatch,
            threads: 1,
            max_len: None,
            truncate: true,
            tokenizer: None,
        }
    }
}

/// One classified text.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The predicted class's name (its index when the model names none).
    pub label: String,
    pub index: usize,
    pub logits: Vec<f32>,
    /// Softmax of the logits.
    pub probabilities: Vec<f32>,
    /// For early-exit models: the layer (1-based) whose exit gave the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_layer: Option<usize>,
}

/// A loaded classifier. `classify` takes `&self`: share one across threads (e.g. in an `Arc`).
pub struct Classifier {
    path: PathBuf,
    runner: Box<dyn Runner>,
    encoder: TextEncoder,
    labels: Vec<String>,
    max_len: usize,
    truncate: bool,
    /// With `Planning::Buckets`: pad every batch to a multiple of this many tokens.
    bucket: Option<usize>,
}

impl Classifier {
    /// Load an exported model (an ONNX file or a segmented model's folder) with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, Options::default())
    }

    pub fn load_with(path: impl AsRef<Path>, opts: Options) -> Result<Self> {
        let path = path.as_ref();
        crate::ensure_model(path)?;
        let (props, max_len) = read_limits(path, &opts)?;
        let plans = match opts.planning {
            Planning::PerBatch => Plans::PerBatch,
            Planning::Symbolic => Plans::Symbolic,
            // A first shape to plan at load; later shapes are planned when first seen.
            Planning::PerShape => Plans::PerShape(1, 16.min(max_len)),
            Planning::Buckets(n) => Plans::PerShape(1, n.clamp(1, max_len)),
        };
        let runner = crate::load(opts.runtime, path, RunnerOptions { plans, threads: opts.threads })?;
        let mut c = Self::build(path, runner, &opts, props, max_len)?;
        if let (Planning::Buckets(n), Runtime::Tract) = (opts.planning, opts.runtime) {
            c.bucket = Some(n.max(1));
        }
        Ok(c)
    }

    /// A classifier over a runner already loaded from `path` (`opts.runtime`, `planning` and `threads` are
    /// the runner's business and are not read).
    pub fn with_runner(path: &Path, runner: Box<dyn Runner>, opts: &Options) -> Result<Self> {
        let (props, max_len) = read_limits(path, opts)?;
        Self::build(path, runner, opts, props, max_len)
    }

    fn build(
        path: &Path,
        runner: Box<dyn Runner>,
        opts: &Options,
        props: Vec<(String, String)>,
        max_len: usize,
    ) -> Result<Self> {
        if !runner.output_names().iter().any(|n| n == "logits") {
            return Err(Error::model(path, "not a classifier: it has no `logits` output"));
        }
        let encoder = crate::metadata::tokenizer(path, &props, opts.tokenizer.as_deref())?;
        let labels = match crate::metadata::get(&props, meta::LABELS) {
            Some(v) => serde_json::from_str(v).map_err(|e| Error::BadMetadata {
                path: path.into(),
                key: meta::LABELS,
                problem: format!("not a JSON list of names: {e}"),
            })?,
            None => vec![],
        };
        Ok(Classifier {
            path: path.into(),
            runner,
            // Without truncation a too-long row is seen in the batch itself (`classify_batch`), in one encoding.
            encoder: encoder.prepared(opts.truncate.then_some(max_len))?,
            labels,
            max_len,
            truncate: opts.truncate,
            bucket: None,
        })
    }

    /// Class names in logit order (empty when the model names none).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The longest input in tokens, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many tokens the model reads for `text` (special tokens included, after truncation).
    pub fn tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encoder.encode_prepared(&[text], None)?.seq)
    }

    pub fn classify(&self, text: &str) -> Result<Prediction> {
        Ok(self.classify_batch(&[text])?.remove(0))
    }

    /// Classify texts as one batch, padded to its longest row.
    pub fn classify_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let batch = self.encoder.encode_prepared(texts, None)?;
        if !self.truncate {
            for (row, mask) in batch.attention_mask.chunks(batch.seq).enumerate() {
                let tokens = mask.iter().filter(|&&m| m != 0).count();
                if tokens > self.max_len {
                    return Err(Error::InputTooLong { row, tokens, max: self.max_len });
                }
            }
        }
        let batch = match self.bucket {
            Some(n) => batch.padded_to_bucket(n, self.max_len),
            None => batch,
        };
        let outputs = self.runner.run(&batch)?;
        let logits = outputs.iter().find(|o| o.name == "logits").expect("checked at load");
        let exits = outputs.iter().find(|o| o.name == "exit_layer");
        let n = logits.data.len() / texts.len();
        Ok(logits
            .data
            .chunks(n.max(1))
            .enumerate()
            .map(|(r, row)| {
                let index = bertopt_schema::exit::argmax(row);
                Prediction {
                    label: self.labels.get(index).cloned().unwrap_or_else(|| index.to_string()),
                    index,
                    logits: row.to_vec(),
                    probabilities: softmax(row),
                    exit_layer: exits.and_then(|e| e.data.get(r)).map(|&l| l as usize),
                }
            })
            .collect())
    }
}

/// The model's metadata and the input length to use: `opts.max_len` capped by the model's limit.
fn read_limits(path: &Path, opts: &Options) -> Result<(Vec<(String, String)>, usize)> {
    let props = crate::metadata::read(path)?;
    let limit = match crate::metadata::get(&props, meta::MAX_LEN) {
        Some(v) => v.parse().map_err(|e| Error::BadMetadata {
            path: path.into(),
            key: meta::MAX_LEN,
            problem: format!("`{v}` is not a length: {e}"),
        })?,
        None => FALLBACK_MAX_LEN,
    };
    Ok((props, opts.max_len.unwrap_or(limit).min(limit).max(1)))
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}
