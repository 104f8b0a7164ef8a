//! Shared by the fine-grained passes (`vw`, `bw`): they zero weights in place and leave every shape as it is,
//! because their patterns (4 of 16 along K, scattered 32×32 blocks) cannot be made into smaller dense matrices.
//! A dense runtime (tract, ONNX Runtime) gains nothing from them; they exist to measure accuracy and to feed
//! runtimes with sparse kernels.

/// The note every report of a zeros-only pass carries.
pub const NO_DENSE_SPEEDUP: &str = "zeros only: shapes unchanged, a dense runtime runs no faster";
