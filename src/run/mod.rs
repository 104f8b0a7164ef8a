//! Runners: the `bertopt-runtime` crate's tract and ONNX Runtime runners behind one small interface, so parity
//! tests and benches treat both alike, plus the command-line form of the runtime choice.

pub use bertopt_runtime::{
    ensure_model, load, ort_runner, segmented, tract_branches, tract_runner, Batch, Data, Output, Plans, Runner,
    RunnerOptions, Runtime, Value,
};
