//! What can go wrong running an exported model, as a type an application can match on.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or folder cannot be used as a model: unreadable, not ONNX, a runtime refuses it, a segment
    /// missing from a segmented folder.
    #[error(transparent)]
    Model(#[from] bertopt_schema::FileError),
    /// The model lacks metadata that `optimize` writes into every export.
    #[error(
        "{}: no `{key}` metadata; {what} (files written by `optimize` carry it; give it explicitly for others)",
        path.display()
    )]
    MissingMetadata { path: PathBuf, key: &'static str, what: &'static str },
    /// Metadata present but unusable (a tokenizer that does not parse, labels that are not a list).
    #[error("{}: metadata `{key}` is unusable: {problem}", path.display())]
    BadMetadata { path: PathBuf, key: &'static str, problem: String },
    /// An input longer than the model takes, with truncation turned off.
    #[error("input {row} has {tokens} tokens; the model takes at most {max} (turn truncation on to cut it)")]
    InputTooLong { row: usize, tokens: usize, max: usize },
    #[error("tokenization failed: {0}")]
    Tokenizer(String),
    /// The values fed do not match what the model takes.
    #[error("{0}")]
    Input(String),
    /// The runtime cannot be started (ONNX Runtime's library not found or not loadable).
    #[error("{runtime} is not available: {why}")]
    Unavailable { runtime: &'static str, why: String },
    /// The runtime failed while running a loaded model.
    #[error("{runtime} run failed: {message}")]
    Run { runtime: &'static str, message: String },
}

impl Error {
    pub(crate) fn model(path: &std::path::Path, problem: impl Into<String>) -> Self {
        Error::Model(bertopt_schema::FileError::new(path, problem))
    }
    pub(crate) fn tract(e: impl std::fmt::Debug) -> Self {
        Error::Run { runtime: "tract", message: format!("{e:?}") }
    }
}
