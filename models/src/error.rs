//! The crate's one error type. Loading has its own (`LoadError` names the file and the tensor; `LowerError` the
//! op), kept as variants; the trainable models and training refuse bad settings with `Invalid` (a message that
//! names the setting and the value), and pass candle's, the file system's and the tokenizer library's errors up.

use std::path::PathBuf;

use crate::load::error::LoadError;
use crate::load::lower::LowerError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// A setting, mask or model the operation cannot work with.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Encoding text (the runtime crate's tokenizer).
    #[error(transparent)]
    Runtime(#[from] bertopt_runtime::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("writing safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

impl Error {
    /// A file system error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Error::Invalid` from a format string.
macro_rules! invalid {
    ($($t:tt)*) => { $crate::error::Error::Invalid(format!($($t)*)) };
}

/// Return `Error::Invalid` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            return Err($crate::error::invalid!($($t)*).into());
        }
    };
}

/// Return `Error::Invalid` now.
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::error::invalid!($($t)*).into()) };
}

pub(crate) use {bail, ensure, invalid};
