//! The files a pipeline names (`scores=`, `mask=`), read by the driver once, before any pass is built: passes do
//! no file I/O, and two passes that name the same file (`heads(scores=s),ffn(scores=s)`) share one copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::PassError;
use crate::mask::HeadMask;
use crate::pipeline::PassSpec;

/// Saved importance scores: one f32 tensor per IR weight name (what `optimize score` writes).
pub type Scores = BTreeMap<String, Tensor>;

/// Every file a pipeline's arguments name, decoded, by the path as written in the pipeline.
#[derive(Default)]
pub struct Inputs {
    scores: BTreeMap<String, Arc<Scores>>,
    masks: BTreeMap<String, Arc<HeadMask>>,
}

/// A score file larger than this is not one bertopt wrote for a BERT-sized model.
const MAX_SCORE_BYTES: u64 = 4 << 30;

/// The inputs of a pipeline that names no file.
pub static NONE: Inputs = Inputs { scores: BTreeMap::new(), masks: BTreeMap::new() };

impl Inputs {
    /// Read every `scores=` and `mask=` file of `specs`, each once; an error names the first pass that names it.
    pub fn load(specs: &[PassSpec]) -> Result<Self, PassError> {
        let mut inputs = Inputs::default();
        for spec in specs {
            if let Some(p) = spec.args.get("scores") {
                if !inputs.scores.contains_key(p) {
                    inputs.scores.insert(p.clone(), Arc::new(read_scores(&spec.name, p)?));
                }
            }
            if let Some(p) = spec.args.get("mask") {
                if !inputs.masks.contains_key(p) {
                    let mask = HeadMask::read(&PathBuf::from(p))
                        .map_err(|e| PassError::Failed { pass: spec.name.clone(), problem: e.to_string() })?;
                    inputs.masks.insert(p.clone(), Arc::new(mask));
                }
            }
        }
        Ok(inputs)
    }

    /// The scores read from `path` (as the pipeline wrote it), if `load` read it.
    pub fn scores(&self, path: &str) -> Option<Arc<Scores>> {
        self.scores.get(path).cloned()
    }

    /// The head mask read from `path`, if `load` read it.
    pub fn mask(&self, path: &str) -> Option<Arc<HeadMask>> {
        self.masks.get(path).cloned()
    }
}

fn read_scores(pass: &str, p: &str) -> Result<Scores, PassError> {
    let fail = |problem: String| PassError::BadArg {
        pass: pass.into(),
        arg: "scores".into(),
        problem: format!("{p}: {problem}"),
    };
    let bytes =
        bertopt_ir::read_capped(&PathBuf::from(p), MAX_SCORE_BYTES).map_err(|e| fail(format!("cannot read: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors score file ({e})")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(fail(format!("{name} is {:?}; scores are f32", view.dtype())));
        }
        let v: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let t = Tensor::from_vec(v, view.shape(), &Device::Cpu).map_err(|e| fail(e.to_string()))?;
        tensors.insert(name, t);
    }
    Ok(tensors)
}
