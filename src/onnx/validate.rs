//! Structural validation of any ONNX file, whoever wrote it: what `onnx.checker` checks about a graph's
//! wiring, done in Rust so that `optimize check` needs no Python. Every node input must be defined before it is
//! read (graph input, initializer, an earlier node, or an enclosing graph for `If`/`Loop` bodies), every name
//! is defined once, initializer data matches its dims and type, and the graph's inputs and outputs are typed.
//! Operator semantics (attribute values, type rules) are left to the runtimes, which `optimize check` loads.

use std::collections::HashSet;
use std::path::Path;

use onnx_protobuf::{tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto};
use protobuf::Enum;

use super::builder::DimSpec;

/// A graph input as the file declares it.
#[derive(Clone, Debug)]
pub struct InputDecl {
    pub name: String,
    /// ONNX `TensorProto.DataType` code (1 = float, 7 = int64, ...).
    pub elem_type: i32,
    pub dims: Vec<DimSpec>,
}

/// What validation found: the problems (empty = valid) and the model's interface.
#[derive(Clone, Debug)]
pub struct Validation {
    pub problems: Vec<String>,
    pub ir_version: i64,
    /// Version of the default (`ai.onnx`) operator set.
    pub opset: Option<i64>,
    pub nodes: usize,
    pub initializers: usize,
    pub inputs: Vec<InputDecl>,
    pub outputs: Vec<String>,
    /// The ops in the graph (branches included) that round activations to integers, sorted and unique.
    pub rounding_ops: Vec<String>,
}

/// Ops whose outputs are activations rounded to an integer grid: a graph with any of them is a discontinuous
/// function of its input, so two runtimes can differ by whole quantization steps where one value sits within
/// an f32 rounding error of a step boundary.
const ROUNDING_OPS: [&str; 6] = [
    "QuantizeLinear",
    "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "QLinearConv",
];

fn rounding_ops(g: &GraphProto, found: &mut std::collections::BTreeSet<String>) {
    for node in &g.node {
        if ROUNDING_OPS.contains(&node.op_type.as_str()) {
            found.insert(node.op_type.clone());
        }
        for a in &node.attribute {
            for body in a.g.as_ref().into_iter().chain(a.graphs.iter()) {
                rounding_ops(body, found);
            }
        }
    }
}

/// Read and validate a file. Errors only when it cannot be read or is not an ONNX protobuf at all.
pub fn validate_file(path: &Path) -> anyhow::Result<Validation> {
    let model = super::builder::read_proto(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => anyhow::anyhow!("{} is {e}", path.display()),
        _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    })?;
    Ok(validate(&model))
}

pub fn validate(model: &ModelProto) -> Validation {
    let mut problems = vec![];
    if model.ir_version < 3 {
        problems.push(format!("ir_version {} is below 3, the first with operator set imports", model.ir_version));
    }
    let opset = model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map(|o| o.version);
    match opset {
        None => problems.push("no operator set is imported for the default domain (ai.onnx)".into()),
        Some(v) if v < 1 => problems.push(format!("the default operator set has version {v}")),
        _ => {}
    }
    let Some(graph) = model.graph.as_ref() else {
        problems.push("the model has no graph".into());
        return Validation {
            problems,
            ir_version: model.ir_version,
            opset,
            nodes: 0,
            initializers: 0,
            inputs: vec![],
            outputs: vec![],
            rounding_ops: vec![],
        };
    };
    if graph.output.is_empty() {
        problems.push("the graph has no outputs".into());
    }
    let mut nodes = 0;
    check_graph(graph, "graph", &HashSet::new(), true, &mut nodes, &mut problems);
    let initialized: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initialized.contains(i.name.as_str()))
        .map(|i| {
            let (elem_type, dims) = match &i.type_.value {
                Some(type_proto::Value::TensorType(t)) => (
                    t.elem_type,
                    t.shape
                        .dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(tensor_shape_proto::dimension::Value::DimValue(n)) => {
                                DimSpec::Fixed((*n).max(0) as usize)
                            }
                            Some(tensor_shape_proto::dimension::Value::DimParam(s)) => DimSpec::Named(s.clone()),
                            _ => DimSpec::Named(String::new()),
                        })
                        .collect(),
                ),
                _ => (0, vec![]),
            };
            InputDecl { name: i.name.clone(), elem_type, dims }
        })
        .collect();
    Validation {
        problems,
        ir_version: model.ir_version,
        opset,
        nodes,
        initializers: graph.initializer.len(),
        inputs,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
        rounding_ops: {
            let mut found = std::collections::BTreeSet::new();
            rounding_ops(graph, &mut found);
            found.into_iter().collect()
        },
    }
}

/// Bytes per element of the fixed-size data types (None: strings and unknown codes).
fn elem_size(code: i32) -> Option<usize> {
    use DataType::*;
    let t = DataType::from_i32(code)?;
    Some(match t {
        FLOAT | INT32 | UINT32 => 4,
        UINT8 | INT8 | BOOL => 1,
        UINT16 | INT16 | FLOAT16 | BFLOAT16 => 2,
        INT64 | UINT64 | DOUBLE | COMPLEX64 => 8,
        COMPLEX128 => 16,
        _ => return None,
    })
}

/// Check one graph (the main one or a branch body). `outer` holds the names enclosing graphs define.
fn check_graph(
    g: &GraphProto,
    scope: &str,
    outer: &HashSet<String>,
    main: bool,
    nodes: &mut usize,
    problems: &mut Vec<String>,
) {
    let mut defined: HashSet<String> = HashSet::new();
    let define = |name: &str, what: &str, problems: &mut Vec<String>, defined: &mut HashSet<String>| {
        if name.is_empty() {
            return;
        }
        if !defined.insert(name.to_string()) {
            problems.push(format!("{scope}: `{name}` ({what}) is defined more than once"));
        }
    };
    for t in &g.initializer {
        define(&t.name, "initializer", problems, &mut defined);
        check_initializer(t, scope, problems);
    }
    let initialized: HashSet<String> = defined.clone();
    for i in &g.input {
        if !initialized.contains(&i.name) {
            define(&i.name, "graph input", problems, &mut defined);
        }
        if main {
            check_typed(i, scope, "input", problems);
        }
    }
    for (k, node) in g.node.iter().enumerate() {
        *nodes += 1;
        let label = if node.name.is_empty() { format!("#{k}") } else { format!("`{}`", node.name) };
        if node.op_type.is_empty() {
            problems.push(format!("{scope}: node {label} has no op_type"));
        }
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(input) && !outer.contains(input) {
                problems.push(format!(
                    "{scope}: node {label} ({}) reads `{input}`, which nothing defines before it (nodes must be in \
                     topological order)",
                    node.op_type
                ));
            }
        }
        for a in &node.attribute {
            let visible: HashSet<String> = outer.union(&defined).cloned().collect();
            let bodies = a.g.as_ref().into_iter().chain(a.graphs.iter());
            for (b, body) in bodies.enumerate() {
                let name = format!("{scope} > node {label} ({}) attribute {} #{b}", node.op_type, a.name);
                check_graph(body, &name, &visible, false, nodes, problems);
            }
        }
        for out in &node.output {
            define(out, &format!("output of node {label}"), problems, &mut defined);
        }
    }
    for o in &g.output {
        if !defined.contains(&o.name) && !outer.contains(&o.name) {
            problems.push(format!("{scope}: output `{}` is not computed by any node", o.name));
        }
        if main {
            check_typed(o, scope, "output", problems);
        }
    }
}

fn check_typed(v: &onnx_protobuf::ValueInfoProto, scope: &str, what: &str, problems: &mut Vec<String>) {
    match &v.type_.value {
        Some(type_proto::Value::TensorType(t)) if t.elem_type != 0 => {}
        Some(type_proto::Value::TensorType(_)) => {
            problems.push(format!("{scope}: {what} `{}` has no element type", v.name))
        }
        _ => problems.push(format!("{scope}: {what} `{}` is not declared as a tensor", v.name)),
    }
}

fn check_initializer(t: &onnx_protobuf::TensorProto, scope: &str, problems: &mut Vec<String>) {
    let name = &t.name;
    if t.dims.iter().any(|d| *d < 0) {
        problems.push(format!("{scope}: initializer `{name}` has a negative dimension {:?}", t.dims));
        return;
    }
    let Some(count) = t.dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d as usize)) else {
        problems.push(format!("{scope}: initializer `{name}` has dims {:?} whose product overflows", t.dims));
        return;
    };
    if t.data_location.enum_value() == Ok(onnx_protobuf::tensor_proto::DataLocation::EXTERNAL) {
        problems.push(format!("{scope}: initializer `{name}` keeps its data in an external file (not supported)"));
        return;
    }
    let Some(size) = elem_size(t.data_type) else {
        if DataType::from_i32(t.data_type).is_none() {
            problems.push(format!("{scope}: initializer `{name}` has unknown data type {}", t.data_type));
        }
        return;
    };
    let typed = [t.float_data.len(), t.int32_data.len(), t.int64_data.len(), t.double_data.len(), t.uint64_data.len()]
        .into_iter()
        .max()
        .unwrap_or(0);
    let held = if !t.raw_data.is_empty() {
        if t.raw_data.len() != count.saturating_mul(size) {
            problems.push(format!(
                "{scope}: initializer `{name}` holds {} raw bytes, dims {:?} of {} need {}",
                t.raw_data.len(),
                t.dims,
                data_type_name(t.data_type),
                count.saturating_mul(size)
            ));
        }
        return;
    } else {
        typed
    };
    // Complex numbers take two entries each.
    let per =
        if matches!(DataType::from_i32(t.data_type), Some(DataType::COMPLEX64 | DataType::COMPLEX128)) { 2 } else { 1 };
    // 16-bit and smaller integer types may also be packed into int32_data one per entry; either way one entry each.
    if held != count * per {
        problems.push(format!(
            "{scope}: initializer `{name}` holds {held} values, dims {:?} need {}",
            t.dims,
            count * per
        ));
    }
}

fn data_type_name(code: i32) -> String {
    DataType::from_i32(code).map_or_else(|| format!("type {code}"), |t| format!("{t:?}").to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{Elem, OnnxBuilder};

    fn small() -> ModelProto {
        let mut b = OnnxBuilder::new("t");
        b.input("x", Elem::F32, &[DimSpec::Named("batch".into()), DimSpec::Fixed(2)]);
        b.initializer_f32("w", &[2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let y = b.node("MatMul", "y", &["x", "w"], &[]);
        b.output(&y, Elem::F32, &[DimSpec::Named("batch".into()), DimSpec::Fixed(2)]);
        b.finish(&[])
    }

    #[test]
    fn a_well_formed_model_has_no_problems_and_its_interface_is_read() {
        let v = validate(&small());
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.nodes, v.initializers, v.inputs.len()), (1, 1, 1));
        assert_eq!(v.inputs[0].elem_type, DataType::FLOAT as i32);
    }

    #[test]
    fn broken_wiring_and_data_are_each_named() {
        let mut m = small();
        let g = m.graph.as_mut().unwrap();
        g.node[0].input[1] = "nowhere".into();
        g.initializer[0].raw_data.truncate(3);
        g.initializer[0].float_data.clear();
        let extra = g.node[0].clone();
        g.node.push(extra);
        m.opset_import.clear();
        let p = validate(&m).problems.join("\n");
        assert!(p.contains("reads `nowhere`, which nothing defines before it"), "{p}");
        assert!(p.contains("is defined more than once"), "{p}");
        assert!(p.contains("no operator set is imported"), "{p}");
    }
}
