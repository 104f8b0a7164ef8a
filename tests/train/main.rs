//! Test tier `train`: fine-tuning, recovery under every kind of cut, the checkpoints they write.
//! Each file is a module of the tier's one binary (`cargo test --test train`): a change to the library relinks four
//! test binaries, not one per file.

#[path = "../common/mod.rs"]
mod common;

mod recover;
mod train;
