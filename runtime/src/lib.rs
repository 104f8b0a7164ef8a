//! bertopt-runtime: run what `optimize` exports, in an application. Load a model file or a segmented
//! early-exit folder, classify text with the tokenizer and labels the export embedded, from one thread or many:
//!
//! ```no_run
//! let model = bertopt_runtime::Classifier::load("model.onnx")?;
//! let p = model.classify("a gripping, funny film")?;
//! println!("{} ({:.2})", p.label, p.probabilities[p.index]);
//! # Ok::<(), bertopt_runtime::Error>(())
//! ```
//!
//! Lower level, `load` gives a `Runner` over named tensors (what the `optimize` binary's benches and checks
//! use). tract is the runtime; ONNX Runtime is a second one behind the `ort` feature.

pub mod classifier;
pub mod error;
pub mod metadata;
#[cfg(feature = "ort")]
pub mod ort_runner;
pub mod segmented;
pub mod tokenize;
pub mod tract_branches;
pub mod tract_runner;
pub mod value;

use std::path::Path;

pub use bertopt_schema::Batch;
pub use classifier::{Classifier, Options, Planning, Prediction};
pub use error::{Error, Result};
pub use value::{Data, Output, Runner, Value};

/// Which runtime runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Tract,
    /// ONNX Runtime (needs the `ort` feature and `ORT_DYLIB_PATH`).
    Ort,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runtime::Tract => "tract",
            Runtime::Ort => "ort",
        })
    }
}

impl std::str::FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tract" => Ok(Runtime::Tract),
            "ort" => Ok(Runtime::Ort),
            _ => Err(format!("unknown runtime `{s}` (tract or ort)")),
        }
    }
}

/// How tract plans a model (ONNX Runtime plans on its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plans {
    /// One plan per batch size seen, over a symbolic sequence length (the batch-1 plan made at load). With the
    /// batch known and the length asserted to be at least 1, tract can prove its tensors large enough for its
    /// fast element-wise kernels and fuses residual and bias additions into the matrix products; over a
    /// symbolic batch too it cannot. On MiniLM + MR this runs 1.1-1.3x faster than `Symbolic` at real lengths
    /// (docs/results.md, "Planning tract for real lengths"); a server that sees n batch sizes holds n plans (the
    /// later stages of a segmented exit model see every number of rows up to the batch, each planned once).
    #[default]
    PerBatch,
    /// One plan over a symbolic batch and sequence length, made at load.
    Symbolic,
    /// One plan per input shape, starting with this `[batch, seq]` at load (a pause to plan each new shape).
    PerShape(usize, usize),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunnerOptions {
    /// How tract plans (ignored by ONNX Runtime).
    pub plans: Plans,
    /// Intra-op threads (ONNX Runtime); tract runs on the calling thread.
    pub threads: usize,
}

/// Fail with a clear message unless `path` is an ONNX file or a segmented model's folder.
pub fn ensure_model(path: &Path) -> Result<()> {
    if path.is_file() || segmented::folder(path).is_some() {
        return Ok(());
    }
    let problem = if path.exists() {
        format!("not an ONNX file or a segmented model folder (with {})", bertopt_schema::MANIFEST)
    } else {
        "no such file or folder".to_string()
    };
    Err(Error::model(path, problem))
}

/// Load a model: an ONNX file, or a segmented early-exit model's folder (or its `segments.json`).
pub fn load(runtime: Runtime, path: &Path, opts: RunnerOptions) -> Result<Box<dyn Runner>> {
    if let Some(dir) = segmented::folder(path) {
        return Ok(Box::new(segmented::SegmentedRunner::load(runtime, &dir, opts)?));
    }
    Ok(match runtime {
        Runtime::Tract => Box::new(tract_runner::TractRunner::load(path, opts)?),
        #[cfg(feature = "ort")]
        Runtime::Ort => Box::new(ort_runner::OrtRunner::load(path, opts)?),
        #[cfg(not(feature = "ort"))]
        Runtime::Ort => return Err(Error::model(path, "ONNX Runtime: bertopt-runtime was built without `ort`")),
    })
}
