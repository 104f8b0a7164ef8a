//! Test tier `export`: lowering and export (the IR against an independent reference, the ONNX files in both
//! runtimes, int8, early exit, EBERT).
//! Each file is a module of the tier's one binary (`cargo test --test export`): a change to the library relinks four
//! test binaries, not one per file.

#[path = "../common/mod.rs"]
mod common;

mod early_exit;
mod ebert;
mod lowering;
mod onnx_checker;
mod parity;
mod qkv;
mod quant;
mod runtime;
mod stream;
