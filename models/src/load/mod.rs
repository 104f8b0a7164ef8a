//! From a Hugging Face folder to what the rest of the tool reads: the config, the checked checkpoint, and the IR
//! graph lowered from it. Nothing here depends on the trainable model (`arch`), so loading and exporting need
//! no training code.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod lower;
