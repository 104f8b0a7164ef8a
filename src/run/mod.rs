//! Runners: execute an ONNX file in tract or ONNX Runtime behind one small interface, so parity tests and
//! benches treat both alike.

pub mod ort_runner;
pub mod segmented;
pub mod tract_branches;
pub mod tract_runner;

use std::path::Path;

pub use bertopt_models::batch::Batch;

/// One named output as plain f32 data.
#[derive(Clone, Debug)]
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
pub(crate) fn find<'a>(values: &'a [Value], name: &str) -> anyhow::Result<&'a Value> {
    values.iter().find(|v| v.name == name).ok_or_else(|| {
        let have: Vec<&str> = values.iter().map(|v| v.name.as_str()).collect();
        anyhow::anyhow!("model input `{name}` is not among the values fed ({})", have.join(", "))
    })
}

pub trait Runner {
    /// Run on named values; the model takes those its inputs name and ignores the rest.
    fn run_values(&mut self, inputs: &[Value]) -> anyhow::Result<Vec<Output>>;

    fn run(&mut self, batch: &Batch) -> anyhow::Result<Vec<Output>> {
        self.run_values(&Value::from_batch(batch))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Tract,
    Ort,
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runtime::Tract => "tract",
            Runtime::Ort => "ort",
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunnerOptions {
    /// Specialise the model to this `[batch, seq]` before optimizing (tract plans faster with known shapes).
    pub fixed_shape: Option<(usize, usize)>,
    /// Intra-op threads (ONNX Runtime); tract runs on one.
    pub threads: usize,
}

/// Fail with a clear message unless `path` is an ONNX file or a segmented model's folder.
pub fn ensure_model(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.is_file() || segmented::folder(path).is_some(),
        "{} is not an ONNX file or a segmented model folder (with {})",
        path.display(),
        crate::onnx::segments::MANIFEST
    );
    Ok(())
}

/// Load a model: an ONNX file, or a segmented early-exit model's folder (or its `segments.json`).
pub fn load(runtime: Runtime, path: &Path, opts: RunnerOptions) -> anyhow::Result<Box<dyn Runner>> {
    if let Some(dir) = segmented::folder(path) {
        return Ok(Box::new(segmented::SegmentedRunner::load(runtime, &dir, opts)?));
    }
    Ok(match runtime {
        Runtime::Tract => Box::new(tract_runner::TractRunner::load(path, opts)?),
        Runtime::Ort => Box::new(ort_runner::OrtRunner::load(path, opts)?),
    })
}
