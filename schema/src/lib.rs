//! The contract between `optimize`, which writes models, and whatever runs them (the `bertopt-runtime` crate,
//! the `optimize` runners, the trainer): metadata keys, the segmented model's manifest, the early-exit rules, the
//! token batch, and the file-size limits for files read whole. Nothing here depends on a tensor library or a
//! runtime.

pub mod batch;
pub mod exit;
pub mod limits;
pub mod manifest;
pub mod meta;
pub mod names;
pub mod read;
pub mod rng;

pub use batch::Batch;
pub use exit::ExitRule;
pub use manifest::{FileError, Manifest, StageSpec, MANIFEST};
