//! ONNX Runtime through the `ort` crate, loading `libonnxruntime.so` from `ORT_DYLIB_PATH` (no download:
//! `scripts/fetch-assets` extracts it from the PyPI wheel).

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::error::{Error, Result};
use crate::{Data, Output, Runner, RunnerOptions, Value};

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Load the ONNX Runtime library once per process.
fn environment() -> Result<&'static ort::environment::Environment> {
    ENV.get_or_init(|| {
        let path = std::env::var("ORT_DYLIB_PATH").map_err(|_| {
            "ORT_DYLIB_PATH is not set: run `eval $(scripts/fetch-assets)` to fetch libonnxruntime from the \
             onnxruntime==1.31.1 wheel and point ORT_DYLIB_PATH at it"
                .to_string()
        })?;
        if !Path::new(&path).is_file() {
            return Err(format!("ORT_DYLIB_PATH={path} is not a file: run `eval $(scripts/fetch-assets)`"));
        }
        ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {path}: {e}"))?
            .with_name("bertopt")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| Error::Unavailable { runtime: "ONNX Runtime", why: e.clone() })
}

fn ort_err(e: impl std::fmt::Display) -> Error {
    Error::Run { runtime: "ONNX Runtime", message: e.to_string() }
}

pub struct OrtRunner {
    /// `Session::run` takes `&mut`: concurrent calls on one loaded model take turns.
    session: Mutex<Session>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl OrtRunner {
    pub fn load(path: &Path, opts: RunnerOptions) -> Result<Self> {
        Self::load_profiled(path, opts, None)
    }

    /// With `profile`: ONNX Runtime's profiler on, its trace written under that file prefix by
    /// [`OrtRunner::end_profiling`].
    pub fn load_profiled(path: &Path, opts: RunnerOptions, profile: Option<&Path>) -> Result<Self> {
        let env = environment()?;
        let threads = if opts.threads == 0 { 1 } else { opts.threads };
        let session = Session::builder(env)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3).map_err(Into::into))
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|b| match profile {
                Some(p) => b.with_profiling(p).map_err(Into::into),
                None => Ok(b),
            })
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| Error::model(path, format!("ONNX Runtime cannot load it: {e}")))?;
        let inputs = session.inputs().iter().map(|i| i.name().to_string()).collect();
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(OrtRunner { session: Mutex::new(session), inputs, outputs })
    }
}

impl OrtRunner {
    /// Stop the profiler and return the path of the JSON trace it wrote (Chrome trace events).
    pub fn end_profiling(&self) -> Result<String> {
        self.session.lock().expect("ONNX Runtime session").end_profiling().map_err(ort_err)
    }
}

impl Runner for OrtRunner {
    fn output_names(&self) -> Vec<String> {
        self.outputs.clone()
    }

    fn run_values(&self, values: &[Value]) -> Result<Vec<Output>> {
        let mut feeds = vec![];
        for name in &self.inputs {
            let v = crate::value::find(values, name)?;
            let t: ort::value::DynValue = match &v.data {
                Data::I64(d) => Tensor::from_array((v.shape.clone(), d.clone())).map_err(ort_err)?.into(),
                Data::F32(d) => Tensor::from_array((v.shape.clone(), d.clone())).map_err(ort_err)?.into(),
            };
            feeds.push((name.clone(), t));
        }
        let mut session = self.session.lock().expect("ONNX Runtime session");
        let out = session.run(feeds).map_err(ort_err)?;
        self.outputs
            .iter()
            .map(|name| {
                let value = &out[name.as_str()];
                // Integer outputs (an early-exit model's `exit_layer`) come back as f32 like everything else.
                let (shape, data) = match value.try_extract_tensor::<f32>() {
                    Ok((shape, data)) => (shape.to_vec(), data.to_vec()),
                    Err(_) => {
                        let (shape, data) = value.try_extract_tensor::<i64>().map_err(ort_err)?;
                        (shape.to_vec(), data.iter().map(|&x| x as f32).collect())
                    }
                };
                Ok(Output { name: name.clone(), shape: shape.iter().map(|&d| d as usize).collect(), data })
            })
            .collect()
    }
}
