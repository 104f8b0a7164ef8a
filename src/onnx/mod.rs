//! ONNX emission: `builder` wraps the protobuf crate, `emit` lowers the IR.

pub mod builder;
pub mod emit;
pub mod segments;
pub mod validate;

pub use builder::{float_param_count, read_metadata, write_model};
pub use emit::{emit, EmitError, EmitOptions};
