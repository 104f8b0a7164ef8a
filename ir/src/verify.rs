//! The verifier: runs after lowering and after every pass. It re-infers every node's type from its operands and
//! the weights, and checks the graph's shape as a whole (acyclic, arity, inputs, outputs, weight data). It reports
//! every problem it finds, each with where it is (a value, an input, an output, a weight, or the whole graph).

use std::collections::BTreeSet;

use crate::graph::Graph;
use crate::ops::Op;
use crate::print::ValueNames;
use crate::quant::{input_params_group, is_quantized, row_scale_name, scale_name, QMAX};
use crate::types::{DType, ValueType};

/// Where a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The graph as a whole (a cycle, no outputs).
    Graph,
    /// A node, by its value's name in the text form (`%3`, `%logits`), as printed with the graph.
    Value(String),
    /// A graph input, by name.
    Input(String),
    /// A graph output, by name.
    Output(String),
    /// A weight, by full tensor name.
    Weight(String),
}

/// One thing wrong with a graph, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    /// What is wrong, naming the place as the text form does.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every problem the verifier found in one graph.
#[derive(Debug, thiserror::Error)]
#[error("IR verification failed in graph `{graph}`: {}", join(problems))]
pub struct VerifyError {
    pub graph: String,
    pub problems: Vec<Problem>,
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
}

fn problem(at: Location, message: String) -> Problem {
    Problem { at, message }
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let fail = |p: Vec<Problem>| VerifyError { graph: g.name.clone(), problems: p };
    let order = g.topo_order().map_err(|e| fail(vec![problem(Location::Graph, e)]))?;
    let names = ValueNames::new(g, &order);
    let mut problems = vec![];

    let mut seen_inputs = BTreeSet::new();
    for &i in &g.inputs {
        match g.dag.node_weight(i).map(|n| &n.op) {
            Some(Op::Input(crate::ops::Input { name })) if seen_inputs.insert(name.clone()) => {}
            Some(Op::Input(crate::ops::Input { name })) => {
                problems.push(problem(Location::Input(name.clone()), format!("input %{name} declared twice")))
            }
            _ => problems.push(problem(Location::Value(names.get(i)), "a graph input is not an input node".into())),
        }
    }
    for n in g.dag.node_indices() {
        let node = &g.dag[n];
        let here = names.get(n);
        let at = || Location::Value(here.clone());
        if let Op::Input(_) = node.op {
            if !g.inputs.contains(&n) {
                problems.push(problem(at(), format!("{here} is an input node that is not a graph input")));
            }
            continue;
        }
        let ops = g.operand_values(n);
        let positions: Vec<usize> = {
            let mut p: Vec<usize> =
                g.dag.edges_directed(n, petgraph::Direction::Incoming).map(|e| e.weight().operand).collect();
            p.sort();
            p
        };
        if positions != (0..ops.len()).collect::<Vec<_>>() {
            problems.push(problem(at(), format!("{here}: operand positions {positions:?} are not 0..{}", ops.len())));
            continue;
        }
        let Some(tys) = ops.iter().map(|&o| g.value_type(o)).collect::<Option<Vec<&ValueType>>>() else {
            problems.push(problem(at(), format!("{here}: an operand reads a result its node does not have")));
            continue;
        };
        let message = match node.op.infer_results(&tys, &g.weights) {
            Ok((t, more)) if t == node.ty && more == node.more => continue,
            Ok((t, more)) => {
                let show = |first: &ValueType, rest: &[ValueType]| {
                    std::iter::once(first).chain(rest).map(ValueType::to_string).collect::<Vec<_>>().join(", ")
                };
                let (declared, inferred) = (show(&node.ty, &node.more), show(&t, &more));
                format!("{here} = {}: declared {declared} but inferred {inferred}", node.op.mnemonic())
            }
            Err(e) => format!("{here} = {}: {e}", node.op.mnemonic()),
        };
        problems.push(problem(at(), message));
    }
    let mut seen_out = BTreeSet::new();
    for (name, o) in &g.outputs {
        let at = || Location::Output(name.clone());
        if !seen_out.insert(name) {
            problems.push(problem(at(), format!("output `{name}` declared twice")));
        }
        if g.value_type(*o).is_none() {
            problems.push(problem(at(), format!("output `{name}` refers to a removed value")));
        }
    }
    if g.outputs.is_empty() {
        problems.push(problem(Location::Graph, "graph has no outputs".into()));
    }
    for (name, w) in &g.weights.0 {
        if let Some(t) = &w.data {
            if t.dims() != w.ty.known_dims().unwrap_or_default().as_slice() {
                let message = format!("weight @{name} is declared {} but holds {:?}", w.ty, t.dims());
                problems.push(problem(Location::Weight(name.clone()), message));
            }
        }
    }
    problems.extend(quant_problems(&g.weights));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(fail(problems))
    }
}

/// Static activation parameters `P.input_qparams` belong to an int8 group (dense or tiled) and hold
/// `[scale > 0, zero point in 0..=255]`.
fn push_input_params_problems(
    weights: &crate::weights::Weights,
    p: &str,
    w: &crate::Weight,
    push: &mut impl FnMut(String),
) {
    let name = crate::quant::input_params_name(p);
    let has = |x: &str| weights.0.contains_key(x);
    if !is_quantized(has, p) && !is_quantized(has, &crate::ops::tile_group(p, 0)) {
        push(format!("@{name} gives static activation parameters, but @{p} is not an int8 group"));
    }
    if w.ty != ValueType::known(DType::F32, &[2]) {
        push(format!("@{name} is {}, want f32[2] (scale, zero point)", w.ty));
        return;
    }
    if let Some(v) = w.data.as_ref().and_then(|t| t.to_vec1::<f32>().ok()) {
        let (scale, zero) = (v[0], v[1]);
        if !(scale.is_finite() && scale > 0.0) || zero.fract() != 0.0 || !(0.0..=255.0).contains(&zero) {
            push(format!("@{name} = [{scale}, {zero}]: want a scale > 0 and a whole zero point in 0..=255"));
        }
    }
}

/// Problems with the int8 weights of a graph: every i8 weight has its scales (per column for a linear, per row
/// for an embedding table) of the right shape, and holds whole numbers in [-127, 127].
fn quant_problems(weights: &crate::weights::Weights) -> Vec<Problem> {
    let mut problems = vec![];
    for (name, w) in &weights.0 {
        let mut push = |message: String| problems.push(problem(Location::Weight(name.clone()), message));
        if let Some(p) = input_params_group(name) {
            push_input_params_problems(weights, p, w, &mut push);
            continue;
        }
        let (columns, rows) = (scale_name(name.trim_end_matches(".weight")), row_scale_name(name));
        let scale = match (weights.get(&columns), weights.get(&rows)) {
            (Some(s), _) => Some((s, &columns, 1)),
            (None, Some(s)) => Some((s, &rows, 0)),
            (None, None) => None,
        };
        let Some((s, sname, axis)) = scale else {
            if w.ty.dtype == DType::I8 {
                push(format!("weight @{name} is i8 but has no scale @{columns} or @{rows}"));
            }
            continue;
        };
        let (wd, sd) = (w.ty.known_dims().unwrap_or_default(), s.ty.known_dims().unwrap_or_default());
        if w.ty.dtype != DType::I8 || wd.len() != 2 || sd != [wd[axis]] {
            let per = if axis == 1 { "column" } else { "row" };
            push(format!("@{sname} is {} but @{name} is {}: want an i8 matrix, one scale per {per}", s.ty, w.ty));
        }
        if let Some(t) = &w.data {
            match t.flatten_all().and_then(|t| t.to_vec1::<f32>()) {
                Ok(v) => match v.iter().filter(|x| x.fract() != 0.0 || x.abs() > QMAX).count() {
                    0 => {}
                    n => push(format!("@{name} is quantized but {n} values are not whole numbers in [-127, 127]")),
                },
                Err(e) => push(format!("@{name}: {e}")),
            }
        }
    }
    problems
}
