//! Loading errors: each names the file and, where there is one, the tensor.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is missing: a model folder needs config.json and model.safetensors{hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("bad config {path}: {problem}")]
    Config { path: PathBuf, problem: String },
    #[error("{path} is not a valid safetensors file: {problem}")]
    Safetensors { path: PathBuf, problem: String },
    #[error("{path}: tensor `{tensor}` has shape {actual:?}, but config.json implies {expected:?}")]
    Shape { path: PathBuf, tensor: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("{path}: tensor `{tensor}` is missing{hint}")]
    MissingTensor { path: PathBuf, tensor: String, hint: String },
    #[error("{path}: {problem}")]
    Mismatch { path: PathBuf, problem: String },
    #[error("{path}: tensor `{tensor}`: {problem}")]
    Tensor { path: PathBuf, tensor: String, problem: String },
}

impl LoadError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        LoadError::Io { path: path.into(), source }
    }
}
