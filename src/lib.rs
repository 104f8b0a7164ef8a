//! bertopt: the library behind the `optimize` binary. Wires the IR, the models and the passes to ONNX
//! emission, the tract and ONNX Runtime runners, and benchmarks.

pub mod alloc;
pub mod auto;
pub use bertopt_models::atomic;
pub mod calibrate;
pub mod calibration_rows;
pub mod check_cmd;
pub mod cli;
pub mod ebert_cmd;
pub mod eval_cmd;
pub mod exit_cmd;
pub mod export;
pub mod head_mask_cmd;
pub mod measure;
pub mod onnx;
pub mod recover;
pub mod run;
pub mod score_cmd;
pub mod search;
pub mod split;
pub mod tokenize;
pub mod train_cmd;
