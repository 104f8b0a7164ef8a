//! The reference interpreter: executes any verified IR graph with candle tensor ops, op by op, as plainly as
//! possible (each op's meaning is its `OpDef::eval`; this binds inputs and walks the graph). It is the ground
//! truth that passes and the ONNX lowering are compared against.

use std::collections::HashMap;

use candle_core::{DType as CDType, Device, Tensor};

use crate::graph::{Graph, Value};
pub use crate::ops::attention::{softmax, MASK_NEG};
pub use crate::ops::exit::exit_point;
pub use crate::ops::linear::linear;
pub use crate::ops::norm::layer_norm;
use crate::ops::{EvalError, Input, Op};
use crate::types::{DType, Dim};

#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("input `{name}`: expected {expected}, got dtype {dtype:?} dims {dims:?}")]
    BadInput { name: String, expected: String, dtype: CDType, dims: Vec<usize> },
    #[error("weight @{0} has no data (a graph parsed from text must have its weights attached)")]
    NoData(String),
    #[error("{0}")]
    Graph(String),
    #[error("at `{op}`: {source}")]
    Candle { op: String, source: candle_core::Error },
}

/// Run the graph on named inputs (i64 tensors for ids and masks). Returns the outputs in declaration order.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, InterpError> {
    let order = g.topo_order().map_err(InterpError::Graph)?;
    let mut vals: HashMap<Value, Tensor> = HashMap::new();
    let mut syms: HashMap<String, usize> = HashMap::new();
    for n in order {
        let node = &g.dag[n];
        let args: Vec<&Tensor> = g.operand_values(n).iter().map(|o| &vals[o]).collect();
        let results = match &node.op {
            Op::Input(Input { name }) => {
                let t = inputs.get(name).ok_or_else(|| InterpError::MissingInput(name.clone()))?;
                check_input(name, t, &node.ty, &mut syms)?;
                vec![t.clone()]
            }
            op => op.eval_results(&g.weights, &args).map_err(|e| located(op, e))?,
        };
        for (result, t) in results.into_iter().enumerate() {
            vals.insert(Value { node: n, result }, t);
        }
    }
    Ok(g.outputs.iter().map(|(name, v)| (name.clone(), vals[v].clone())).collect())
}

fn check_input(
    name: &str,
    t: &Tensor,
    ty: &crate::types::ValueType,
    syms: &mut HashMap<String, usize>,
) -> Result<(), InterpError> {
    let want_dtype = match ty.dtype {
        DType::F32 => CDType::F32,
        DType::I64 => CDType::I64,
        DType::I8 => return Err(InterpError::Graph(format!("input {name} is i8: only weights are"))),
    };
    let bad = || InterpError::BadInput {
        name: name.into(),
        expected: ty.to_string(),
        dtype: t.dtype(),
        dims: t.dims().to_vec(),
    };
    if t.dtype() != want_dtype || t.rank() != ty.rank() {
        return Err(bad());
    }
    for (d, &actual) in ty.shape.iter().zip(t.dims()) {
        match d {
            Dim::Known(k) if *k != actual => return Err(bad()),
            Dim::Sym(s) if *syms.entry(s.clone()).or_insert(actual) != actual => return Err(bad()),
            _ => {}
        }
    }
    Ok(())
}

/// Evaluate one op's result 0 on operand values (used by constant folding).
pub fn eval_op(g: &Graph, op: &Op, a: &[&Tensor]) -> Result<Tensor, InterpError> {
    op.eval(&g.weights, a).map_err(|e| located(op, e))
}

/// An op's evaluation error, naming the op.
fn located(op: &Op, e: EvalError) -> InterpError {
    match e {
        EvalError::Candle(source) => InterpError::Candle { op: op.mnemonic().into(), source },
        EvalError::NoData(name) => InterpError::NoData(name),
        EvalError::Graph(msg) => InterpError::Graph(msg),
    }
}

/// The CPU device the interpreter uses.
pub fn device() -> Device {
    Device::Cpu
}
