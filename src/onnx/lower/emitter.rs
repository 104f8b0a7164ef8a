//! The state of one lowering (`Emitter`: the ONNX builder, the name of each IR value, what was emitted once and
//! is shared) and what every op's lowering uses: initializers, small constants, the hidden-state layout.

use std::collections::HashMap;

use bertopt_ir::{DType, Dim, Graph, NodeIndex, Op, Value};
use candle_core::Tensor;

use crate::onnx::builder::{Attr, DimSpec, Elem, OnnxBuilder};

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("weight @{0} has no data to emit")]
    NoData(String),
    #[error("weight @{name}: {source}")]
    Tensor { name: String, source: candle_core::Error },
    #[error("IR graph is not valid: {0}")]
    Graph(String),
}

/// A quantized activation's identity: the value, the subgraph, and the static (scale bits, zero point) if any.
pub(crate) type QuantizedKey = (String, usize, Option<(u32, u8)>);

pub(crate) struct Emitter<'g> {
    pub(crate) g: &'g Graph,
    pub(crate) b: OnnxBuilder,
    /// The ONNX name of each IR value.
    pub(crate) vals: HashMap<Value, String>,
    /// Additive attention mask per IR mask value, computed once and shared by every layer.
    pub(crate) masks: HashMap<NodeIndex, String>,
    consts: HashMap<String, String>,
    /// Quantized activations `(xq, scale, zero)` per (value, subgraph, static parameters as bits), so int8
    /// projections reading one value share them.
    pub(crate) quantized_inputs: HashMap<QuantizedKey, (String, String, String)>,
    /// `DequantizeLinear` of a quantized activation (`Int8Form::Qdq`), per quantized value.
    pub(crate) dequantized_inputs: HashMap<String, String>,
    /// Feature gathers by (value, indices), so projections that read the same features share one.
    pub(crate) gathers: HashMap<(String, Vec<i64>), String>,
    /// Each value's feature-major form (`[K, tokens]`), made once for all the tiled linears that read it.
    pub(crate) feature_major: HashMap<String, String>,
    /// Hidden states as rows (`Stream::Rows`): then `tokens` is the `[batch, seq]` shape of the input ids.
    pub(crate) rows: bool,
    /// How int8 tiled groups are written.
    pub(crate) int8_tiles: crate::onnx::Int8Tiles,
    /// Which ops int8 groups are written with.
    pub(crate) int8_form: crate::onnx::Int8Form,
    /// Write each layer's Q, K and V projections as one linear and a `Split` (`Qkv::Fused`).
    pub(crate) fuse_qkv: bool,
    pub(crate) tokens: Option<String>,
    /// Shape tensors built from `tokens`, per (tail, subgraph).
    shapes: HashMap<(Vec<i64>, usize), String>,
}

pub(crate) fn elem(d: DType) -> Elem {
    match d {
        DType::F32 => Elem::F32,
        DType::I64 => Elem::I64,
        // Only weights are i8, and they are emitted by `quantized_linear`, never as values.
        DType::I8 => Elem::F32,
    }
}

pub(crate) fn dims(shape: &[Dim]) -> Vec<DimSpec> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Known(n) => DimSpec::Fixed(*n),
            Dim::Sym(s) => DimSpec::Named(s.clone()),
        })
        .collect()
}

pub(crate) fn data(t: &Tensor, name: &str) -> Result<Vec<f32>, EmitError> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|source| EmitError::Tensor { name: name.into(), source })
}

impl<'g> Emitter<'g> {
    pub(crate) fn new(g: &'g Graph, name: &str) -> Self {
        Emitter {
            g,
            b: OnnxBuilder::new(name),
            vals: HashMap::new(),
            masks: HashMap::new(),
            consts: HashMap::new(),
            gathers: HashMap::new(),
            feature_major: HashMap::new(),
            quantized_inputs: HashMap::new(),
            dequantized_inputs: HashMap::new(),
            int8_form: Default::default(),
            fuse_qkv: false,
            rows: false,
            int8_tiles: Default::default(),
            tokens: None,
            shapes: HashMap::new(),
        }
    }

    /// Whether node `n`'s value is a hidden state emitted as rows: `[batch·seq, D]` for the IR's `[batch, seq, D]`.
    pub(crate) fn is_rows(&self, n: NodeIndex) -> bool {
        let node = &self.g.dag[n];
        self.rows && node.ty.rank() == 3 && !matches!(node.op, Op::Input(_) | Op::Const(_))
    }

    /// `[batch, seq, tail..]` as a shape tensor (rows mode), one per tail and subgraph.
    pub(crate) fn tokens_shape(&mut self, tail: &[i64]) -> Result<String, EmitError> {
        let key = (tail.to_vec(), self.b.current_scope());
        if let Some(s) = self.shapes.get(&key) {
            return Ok(s.clone());
        }
        let tokens = self.tokens.clone().ok_or_else(|| EmitError::Graph("rows before the embeddings".into()))?;
        let tail_name = self.const_i64(tail);
        let s = self.b.node("Concat", "tokens/Shape", &[&tokens, &tail_name], &[("axis", Attr::Int(0))]);
        self.shapes.insert(key, s.clone());
        Ok(s)
    }

    /// Hidden state `x` of node `n` as `[batch, seq, D]` again, where it is held as rows.
    pub(crate) fn batched(&mut self, x: &str, n: NodeIndex) -> Result<String, EmitError> {
        if !self.is_rows(n) {
            return Ok(x.to_string());
        }
        let shape = self.tokens_shape(&[-1])?;
        Ok(self.b.node("Reshape", &format!("{x}/Batched"), &[x, &shape], &[]))
    }

    pub(crate) fn weight(&self, name: &str) -> Result<&'g Tensor, EmitError> {
        self.g.weights.tensor(name).ok_or_else(|| EmitError::NoData(name.into()))
    }

    /// Emit a weight as an initializer under its IR name (once).
    pub(crate) fn init(&mut self, name: &str) -> Result<String, EmitError> {
        if !self.consts.contains_key(name) {
            let t = self.weight(name)?;
            self.b.initializer_f32(name, t.dims(), &data(t, name)?);
            self.consts.insert(name.into(), name.into());
        }
        Ok(name.to_string())
    }

    /// Emit an i64 weight (a tiled linear's kept rows) as an initializer under its IR name (once).
    pub(crate) fn init_i64(&mut self, name: &str) -> Result<String, EmitError> {
        if !self.consts.contains_key(name) {
            let t = self.weight(name)?;
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<i64>())
                .map_err(|source| EmitError::Tensor { name: name.into(), source })?;
            self.b.initializer_i64(name, t.dims(), &v);
            self.consts.insert(name.into(), name.into());
        }
        Ok(name.to_string())
    }

    /// Emit an i8 weight (whole numbers held as f32 in the IR) as an INT8 initializer under its name (once).
    pub(crate) fn init_i8(&mut self, name: &str) -> Result<String, EmitError> {
        if !self.consts.contains_key(name) {
            let t = self.weight(name)?;
            let v: Vec<i8> = data(t, name)?.into_iter().map(|x| x as i8).collect();
            self.b.initializer_i8(name, t.dims(), &v);
            self.consts.insert(name.into(), name.into());
        }
        Ok(name.to_string())
    }

    /// Weight `name` as an initializer, multiplied by `scale` when given (under `name_scaled`).
    pub(crate) fn scaled_init(&mut self, name: &str, scale: Option<f32>) -> Result<String, EmitError> {
        let Some(s) = scale else { return self.init(name) };
        let t = self.weight(name)?;
        let scaled = format!("{name}_scaled");
        let v: Vec<f32> = data(t, name)?.into_iter().map(|x| x * s).collect();
        self.b.initializer_f32(&scaled, t.dims(), &v);
        Ok(scaled)
    }

    /// An f32 initializer computed by the lowering (not an IR weight) under `name`, emitted once.
    pub(crate) fn computed_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        if !self.consts.contains_key(name) {
            self.b.initializer_f32(name, dims, v);
            self.consts.insert(name.into(), name.into());
        }
        name.to_string()
    }

    /// An int8 initializer computed by the lowering under `name`, emitted once.
    pub(crate) fn computed_i8(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        if !self.consts.contains_key(name) {
            self.b.initializer_i8(name, dims, v);
            self.consts.insert(name.into(), name.into());
        }
        name.to_string()
    }

    /// A uint8 initializer computed by the lowering under `name`, emitted once.
    pub(crate) fn computed_u8(&mut self, name: &str, dims: &[usize], v: &[u8]) -> String {
        if !self.consts.contains_key(name) {
            self.b.initializer_u8(name, dims, v);
            self.consts.insert(name.into(), name.into());
        }
        name.to_string()
    }

    /// A scalar or small constant, shared by value.
    pub(crate) fn const_f32(&mut self, v: f32) -> String {
        let key = format!("const.f32.{v:?}");
        if !self.consts.contains_key(&key) {
            self.b.initializer_f32(&key, &[], &[v]);
            self.consts.insert(key.clone(), key.clone());
        }
        key
    }

    pub(crate) fn const_i64(&mut self, v: &[i64]) -> String {
        let key = format!("const.i64.{v:?}").replace([' ', '[', ']'], "").replace(',', "_");
        if !self.consts.contains_key(&key) {
            self.b.initializer_i64(&key, &[v.len()], v);
            self.consts.insert(key.clone(), key.clone());
        }
        key
    }

    pub(crate) fn const_scalar_i64(&mut self, v: i64) -> String {
        let key = format!("const.i64.scalar.{v}");
        if !self.consts.contains_key(&key) {
            self.b.initializer_i64(&key, &[], &[v]);
            self.consts.insert(key.clone(), key.clone());
        }
        key
    }

    /// An initializer computed from weight `src` (a per-head or per-group layout), named `{src}.{tag}`, once.
    pub(crate) fn derived(
        &mut self,
        src: &str,
        tag: &str,
        make: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<String, EmitError> {
        let name = format!("{src}.{tag}");
        if !self.consts.contains_key(&name) {
            let t = make(self.weight(src)?).map_err(|source| EmitError::Tensor { name: src.into(), source })?;
            self.b.initializer_f32(&name, t.dims(), &data(&t, src)?);
            self.consts.insert(name.clone(), name.clone());
        }
        Ok(name)
    }
}
