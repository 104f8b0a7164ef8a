//! Every way building or running a pipeline fails; each says which pass and what, in the user's words.

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("unknown pass `{name}` (passes: {known})")]
    UnknownPass { name: String, known: String },
    #[error("pass `{pass}` has no argument `{arg}` (arguments: {known})")]
    UnknownArg { pass: String, arg: String, known: String },
    #[error("pass `{pass}`, argument `{arg}`: {problem}")]
    BadArg { pass: String, arg: String, problem: String },
    #[error("bad pipeline `{pipeline}` at column {col}: {problem}")]
    Syntax { pipeline: String, col: usize, problem: String },
    #[error("pass `{pass}` failed: {problem}")]
    Failed { pass: String, problem: String },
    #[error("after pass `{pass}`: {source}")]
    Verify { pass: String, source: bertopt_ir::VerifyError },
}

/// A pass's own failure, with the pass named as the user wrote it.
pub fn failed(pass: &str, problem: impl Into<String>) -> PassError {
    PassError::Failed { pass: pass.into(), problem: problem.into() }
}
