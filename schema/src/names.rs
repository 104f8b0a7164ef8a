//! Tensor-name prefixes that the trainer writes, the loader reads and the passes look for: one owner, so that a
//! checkpoint's off-ramps and predictors are found by the same names everywhere.

/// Off-ramp tensors: `exits.{l}.pooler.dense` (or `exits.{l}.mean_pooler.dense`) and `exits.{l}.classifier`
/// stand after encoder layer `l` (0-based).
pub const EXITS: &str = "exits.";

/// EBERT predictor tensors: `ebert.{l}.heads.*` and `ebert.{l}.ffn.*` of encoder layer `l`.
pub const EBERT: &str = "ebert.";
