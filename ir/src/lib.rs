//! bertopt's IR: a typed dataflow graph (petgraph) of a few structural ops, with a verifier, a text form that
//! round-trips, and a reference interpreter.

pub use bertopt_schema::exit;
pub use bertopt_schema::names;
pub mod calibrate;
pub mod cost;
pub mod graph;
pub mod interp;
pub mod observe;
pub mod ops;
pub mod parse;
pub mod print;
pub mod quant;
pub use bertopt_schema::read;
pub mod seeded;
pub mod types;
pub mod verify;
pub mod weights;

pub use exit::ExitRule;
pub use graph::{Graph, Node, Value};
pub use ops::{Attr, Op};
pub use parse::{parse, ParseError};
pub use petgraph::stable_graph::NodeIndex;
pub use print::print;
pub use read::{read_capped, read_capped_text};
pub use types::{DType, Dim, ValueType};
pub use verify::{verify, Location, Problem, VerifyError};
pub use weights::{Weight, Weights};
