//! ONNX emission: `builder` wraps the protobuf crate, `emit` lowers a graph through `lower` (one file per op
//! family), `segments` writes an early-exit graph as one model per exit point.

pub mod builder;
pub mod emit;
pub(crate) mod lower;
pub mod segments;
pub mod validate;

pub use builder::{read_metadata, summarize, write_model, FileSummary};
pub use emit::{emit, EmitError, EmitOptions, Int8Form, Int8Tiles, Qkv, Stream};
