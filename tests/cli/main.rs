//! Test tier `cli`: the command-line contract (subcommands, their errors and reports, the documentation's commands,
//! the tree's layout).
//! Each file is a module of the tier's one binary (`cargo test --test cli`): a change to the library relinks four
//! test binaries, not one per file.

#[path = "../common/mod.rs"]
mod common;

mod auto;
mod bundled_model;
mod check;
mod cli;
mod docs;
mod head_mask;
mod layout;
mod score;
