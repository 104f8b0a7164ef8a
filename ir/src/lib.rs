//! bertopt's IR: a typed dataflow graph (petgraph) of a few structural ops, with a verifier, a text form that
//! round-trips, and a reference interpreter.

pub use bertopt_schema::exit;
pub use bertopt_schema::names;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod op;
pub mod parse;
pub mod print;
pub mod quant;
pub use bertopt_schema::read;
pub mod seeded;
pub mod types;
pub mod verify;

pub use exit::ExitRule;
pub use graph::{Graph, Node, Weight, Weights};
pub use op::{Attr, Op};
pub use parse::{parse, ParseError};
pub use petgraph::stable_graph::NodeIndex;
pub use print::print;
pub use read::{read_capped, read_capped_text};
pub use types::{DType, Dim, ValueType};
pub use verify::{verify, VerifyError};
