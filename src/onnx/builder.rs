//! With `validate`, the only module that touches `onnx-protobuf`: a small builder for ONNX models and the atomic
//! file writer. Everything else speaks in names, shapes and `Attr`s, so the protobuf crate can be swapped here alone.

use std::path::Path;

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// The ONNX opset bertopt emits: 17 is the first with `LayerNormalization`.
pub const OPSET: i64 = 17;
/// IR version 8 goes with opset 17.
pub const IR_VERSION: i64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
}

impl Elem {
    fn code(self) -> i32 {
        match self {
            Elem::F32 => DataType::FLOAT as i32,
            Elem::I64 => DataType::INT64 as i32,
        }
    }
}

/// A dimension of a graph input or output.
#[derive(Clone, Debug)]
pub enum DimSpec {
    Fixed(usize),
    Named(String),
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

#[derive(Default)]
pub struct OnnxBuilder {
    graph: GraphProto,
    /// Open subgraphs (`If` branches), innermost last: nodes go to the innermost, initializers to the model.
    scopes: Vec<GraphProto>,
    /// The number of each open subgraph (parallel to `scopes`), and the last number given.
    scope_ids: Vec<usize>,
    scopes_opened: usize,
    /// Operator domains besides the default one that nodes use (`com.microsoft`), imported at version 1.
    domains: std::collections::BTreeSet<String>,
    used_names: std::collections::HashMap<String, usize>,
    fresh: usize,
}

impl OnnxBuilder {
    pub fn new(name: &str) -> Self {
        let mut b = OnnxBuilder::default();
        b.graph.name = name.to_string();
        b
    }

    fn value_info(name: &str, elem: Elem, dims: &[DimSpec]) -> ValueInfoProto {
        let mut shape = TensorShapeProto::new();
        for d in dims {
            let mut dim = tensor_shape_proto::Dimension::new();
            dim.value = Some(match d {
                DimSpec::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                DimSpec::Named(s) => tensor_shape_proto::dimension::Value::DimParam(s.clone()),
            });
            shape.dim.push(dim);
        }
        let mut tensor = type_proto::Tensor::new();
        tensor.elem_type = elem.code();
        tensor.shape = Some(shape).into();
        let mut ty = TypeProto::new();
        ty.value = Some(type_proto::Value::TensorType(tensor));
        let mut vi = ValueInfoProto::new();
        vi.name = name.to_string();
        vi.type_ = Some(ty).into();
        vi
    }

    pub fn input(&mut self, name: &str, elem: Elem, dims: &[DimSpec]) {
        self.graph.input.push(Self::value_info(name, elem, dims));
    }

    pub fn output(&mut self, name: &str, elem: Elem, dims: &[DimSpec]) {
        self.graph.output.push(Self::value_info(name, elem, dims));
    }

    pub fn initializer_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = Elem::F32.code();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.graph.initializer.push(t);
    }

    /// An int8 initializer (quantized weights: one byte per value).
    pub fn initializer_i8(&mut self, name: &str, dims: &[usize], data: &[i8]) {
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = DataType::INT8 as i32;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = data.iter().map(|&x| x as u8).collect();
        self.graph.initializer.push(t);
    }

    /// A uint8 initializer (static activation zero points).
    pub fn initializer_u8(&mut self, name: &str, dims: &[usize], data: &[u8]) {
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = DataType::UINT8 as i32;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = data.to_vec();
        self.graph.initializer.push(t);
    }

    /// Put the node just added in operator domain `domain` (e.g. ONNX Runtime's `com.microsoft` contrib ops),
    /// imported by the model.
    pub fn in_domain(&mut self, domain: &str) {
        if let Some(n) = self.current().node.last_mut() {
            n.domain = domain.to_string();
        }
        self.domains.insert(domain.to_string());
    }

    /// Which subgraph nodes go to now: 0 for the model's graph, a number unique to each opened subgraph else.
    pub fn current_scope(&self) -> usize {
        self.scope_ids.last().copied().unwrap_or(0)
    }

    pub fn initializer_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) {
        let mut t = TensorProto::new();
        t.name = name.to_string();
        t.data_type = Elem::I64.code();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.raw_data = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.graph.initializer.push(t);
    }

    /// Start a subgraph: nodes added from now on go into it until `end_scope`. It may read any value of the
    /// scopes around it.
    pub fn begin_scope(&mut self) {
        self.scopes.push(GraphProto::new());
        self.scopes_opened += 1;
        self.scope_ids.push(self.scopes_opened);
    }

    /// Close the innermost subgraph; `outputs` are values produced inside it, with their types.
    pub fn end_scope(&mut self, name: &str, outputs: &[(&str, Elem, &[DimSpec])]) -> GraphProto {
        let mut g = self.scopes.pop().expect("end_scope matches a begin_scope");
        self.scope_ids.pop();
        g.name = name.to_string();
        for (v, elem, dims) in outputs {
            g.output.push(Self::value_info(v, *elem, dims));
        }
        g
    }

    /// An ONNX `If` on a one-element bool `cond`; returns its output names (as many as the branches have).
    pub fn if_node(&mut self, name: &str, cond: &str, then_branch: GraphProto, else_branch: GraphProto) -> Vec<String> {
        let outputs: Vec<String> = (0..then_branch.output.len()).map(|_| self.fresh(name)).collect();
        let mut n = NodeProto::new();
        n.op_type = "If".into();
        n.name = self.unique_name(name);
        n.input = vec![cond.to_string()];
        n.output = outputs.clone();
        for (key, g) in [("then_branch", then_branch), ("else_branch", else_branch)] {
            let mut a = AttributeProto::new();
            a.name = key.into();
            a.type_ = AttributeType::GRAPH.into();
            a.g = Some(g).into();
            n.attribute.push(a);
        }
        self.current().node.push(n);
        outputs
    }

    fn current(&mut self) -> &mut GraphProto {
        self.scopes.last_mut().unwrap_or(&mut self.graph)
    }

    fn unique_name(&mut self, name: &str) -> String {
        let count = self.used_names.entry(name.to_string()).or_insert(0);
        *count += 1;
        if *count == 1 {
            name.to_string()
        } else {
            format!("{name}_{}", *count - 1)
        }
    }

    /// A value name not used before, derived from `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.fresh += 1;
        format!("{hint}:{}", self.fresh)
    }

    /// Add a node; returns its output name. `name` is made unique by a numeric suffix when repeated.
    pub fn node(&mut self, op_type: &str, name: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(name);
        self.node_into(op_type, name, inputs, &out, attrs);
        out
    }

    /// Add a node with `outputs` outputs; returns their names.
    pub fn node_multi(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: &[(&str, Attr)],
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs).map(|i| self.fresh(&format!("{name}/{i}"))).collect();
        self.node_into(op_type, name, inputs, &outs[0], attrs);
        if let Some(n) = self.current().node.last_mut() {
            n.output = outs.clone();
        }
        outs
    }

    /// Add a node writing to a chosen output name.
    pub fn node_into(&mut self, op_type: &str, name: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) {
        let unique = self.unique_name(name);
        let mut n = NodeProto::new();
        n.op_type = op_type.to_string();
        n.name = unique;
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![output.to_string()];
        for (k, v) in attrs {
            let mut a = AttributeProto::new();
            a.name = k.to_string();
            match v {
                Attr::Int(i) => {
                    a.type_ = AttributeType::INT.into();
                    a.i = *i;
                }
                Attr::Ints(is) => {
                    a.type_ = AttributeType::INTS.into();
                    a.ints = is.clone();
                }
                Attr::Float(f) => {
                    a.type_ = AttributeType::FLOAT.into();
                    a.f = *f;
                }
            }
            n.attribute.push(a);
        }
        self.current().node.push(n);
    }

    pub fn finish(self, metadata: &[(&str, String)]) -> ModelProto {
        let mut m = ModelProto::new();
        m.ir_version = IR_VERSION;
        let mut op = OperatorSetIdProto::new();
        op.domain = String::new();
        op.version = OPSET;
        m.opset_import.push(op);
        for d in &self.domains {
            let mut op = OperatorSetIdProto::new();
            op.domain = d.clone();
            op.version = 1;
            m.opset_import.push(op);
        }
        m.producer_name = "bertopt".into();
        m.producer_version = env!("CARGO_PKG_VERSION").into();
        m.graph = Some(self.graph).into();
        for (k, v) in metadata {
            let mut e = StringStringEntryProto::new();
            e.key = k.to_string();
            e.value = v.clone();
            m.metadata_props.push(e);
        }
        m
    }
}

/// Write the model to a temporary file beside `path`, then rename it into place: an interrupted or failed
/// write leaves the old file or nothing, never a partial model.
pub fn write_model(model: &ModelProto, path: &Path) -> std::io::Result<()> {
    crate::atomic::write_atomic(path, |w| model.write_to_writer(w).map_err(std::io::Error::other))
}

/// Parse an ONNX file (whole-file read, capped: protobuf limits ONNX files to 2 GiB; anything longer is not one).
pub(super) fn read_proto(path: &Path) -> std::io::Result<ModelProto> {
    let bytes = bertopt_ir::read_capped(path, 2 << 30)?;
    ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an ONNX model: {e}")))
}

/// What a reader of one ONNX file needs without interpreting its graph, from one parse.
pub struct FileSummary {
    /// Metadata entries (tokenizer, labels, pipeline, FLOPs).
    pub metadata: Vec<(String, String)>,
    /// Weights: floating-point and int8 initializer elements (an int8 matrix counts as many parameters as its f32
    /// twin, its scales add theirs); index tensors are not counted.
    pub weight_params: u64,
}

pub fn summarize(file: &Path) -> std::io::Result<FileSummary> {
    let m = read_proto(file)?;
    let weights =
        [DataType::FLOAT, DataType::FLOAT16, DataType::BFLOAT16, DataType::DOUBLE, DataType::INT8, DataType::UINT8]
            .map(|t| t as i32);
    let weight_params = m
        .graph
        .initializer
        .iter()
        .filter(|t| weights.contains(&t.data_type))
        .map(|t| t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>())
        .sum();
    Ok(FileSummary { metadata: m.metadata_props.into_iter().map(|e| (e.key, e.value)).collect(), weight_params })
}

/// Read an ONNX model's metadata entries (tokenizer, labels) without interpreting the graph; for a segmented
/// model, its first stage's.
pub fn read_metadata(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    bertopt_runtime::metadata::read(path).map_err(std::io::Error::other)
}
