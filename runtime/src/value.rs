//! Tensors in and out of a runner as plain row-major data, and the `Runner` interface that tract, ONNX Runtime
//! and the segmented driver share.

use bertopt_schema::Batch;

use crate::error::{Error, Result};

/// One named output as plain f32 data.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A named input tensor, row-major; axis 0 is the batch.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

#[derive(Clone, Debug)]
pub enum Data {
    I64(Vec<i64>),
    F32(Vec<f32>),
}

impl Value {
    /// The batch's three inputs (a model takes those it names).
    pub fn from_batch(b: &Batch) -> Vec<Value> {
        ["input_ids", "attention_mask", "token_type_ids"]
            .into_iter()
            .filter_map(|n| b.by_name(n).map(|d| (n, d)))
            .map(|(n, d)| Value { name: n.into(), shape: vec![b.batch, b.seq], data: Data::I64(d.to_vec()) })
            .collect()
    }

    /// An output fed on as an input (a segment's hidden state), without copying its data.
    pub fn from_output(o: Output) -> Value {
        Value { name: o.name, shape: o.shape, data: Data::F32(o.data) }
    }

    /// The rows at `rows` (indices along axis 0), in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Value {
        let per_row = self.shape.iter().skip(1).product::<usize>();
        fn pick<T: Copy>(v: &[T], rows: &[usize], n: usize) -> Vec<T> {
            rows.iter().flat_map(|&r| v[r * n..(r + 1) * n].iter().copied()).collect()
        }
        let mut shape = self.shape.clone();
        shape[0] = rows.len();
        let data = match &self.data {
            Data::I64(v) => Data::I64(pick(v, rows, per_row)),
            Data::F32(v) => Data::F32(pick(v, rows, per_row)),
        };
        Value { name: self.name.clone(), shape, data }
    }
}

/// Find the value a model input names.
pub fn find<'a>(values: &'a [Value], name: &str) -> Result<&'a Value> {
    values.iter().find(|v| v.name == name).ok_or_else(|| {
        let have: Vec<&str> = values.iter().map(|v| v.name.as_str()).collect();
        Error::Input(format!("model input `{name}` is not among the values fed ({})", have.join(", ")))
    })
}

/// A loaded model. Runs take `&self` so that one loaded model serves several threads at once.
pub trait Runner: Send + Sync {
    /// Run on named values; the model takes those its inputs name and ignores the rest.
    fn run_values(&self, inputs: &[Value]) -> Result<Vec<Output>>;

    /// The names of the outputs `run_values` returns, in order.
    fn output_names(&self) -> Vec<String>;

    fn run(&self, batch: &Batch) -> Result<Vec<Output>> {
        self.run_values(&Value::from_batch(batch))
    }
}
