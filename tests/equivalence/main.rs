//! Test tier `equivalence`: pruned graphs compute what the dense model computes with the same units masked, in
//! tract and ONNX Runtime.
//! Each file is a module of the tier's one binary (`cargo test --test equivalence`): a change to the library
//! relinks four test binaries, not one per file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../passes/tests/common/mod.rs"]
mod pass_common;

mod attention_cuts;
mod combined;
mod ffn_equivalence;
mod heads_equivalence;
mod hidden;
mod layers;
mod pass_properties;
mod tile_equivalence;
