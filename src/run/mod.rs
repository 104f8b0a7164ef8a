//! Runners: execute an ONNX file in tract or ONNX Runtime behind one small interface, so parity tests and
//! benches treat both alike.

pub mod ort_runner;
pub mod tract_branches;
pub mod tract_runner;

use std::path::Path;

pub use bertopt_models::batch::Batch;

/// One named output as plain f32 data.
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub trait Runner {
    fn run(&mut self, batch: &Batch) -> anyhow::Result<Vec<Output>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Tract,
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

#[derive(Clone, Copy, Debug, Default)]
pub struct RunnerOptions {
    /// Specialise the model to this `[batch, seq]` before optimizing (tract plans faster with known shapes).
    pub fixed_shape: Option<(usize, usize)>,
    /// Intra-op threads (ONNX Runtime); tract runs on one.
    pub threads: usize,
}

pub fn load(runtime: Runtime, path: &Path, opts: RunnerOptions) -> anyhow::Result<Box<dyn Runner>> {
    Ok(match runtime {
        Runtime::Tract => Box::new(tract_runner::TractRunner::load(path, opts)?),
        Runtime::Ort => Box::new(ort_runner::OrtRunner::load(path, opts)?),
    })
}
