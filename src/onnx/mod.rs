//! ONNX emission: `builder` wraps the protobuf crate, `emit` lowers the IR.

pub mod builder;
pub mod emit;
pub mod segments;
pub mod validate;

pub use builder::{read_metadata, summarize, write_model, FileSummary};
pub use emit::{emit, EmitError, EmitOptions, Stream};
