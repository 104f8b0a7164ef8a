//! Importance of each weight for the pruning passes: weight magnitude (W², the fallback that needs no data) or
//! saved scores (`optimize score`: first-order Taylor, one tensor per IR weight name, same K×N layout). A pass
//! sums the element importances over the unit it removes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bertopt_ir::Graph;
use candle_core::{Device, Tensor};

use crate::error::PassError;

pub enum Importance {
    Magnitude,
    Scores { path: PathBuf, tensors: BTreeMap<String, Tensor> },
}

/// A score file larger than this is not one bertopt wrote for a BERT-sized model.
const MAX_BYTES: u64 = 4 << 30;

impl Importance {
    /// `scores=PATH` if given, else magnitude. `pass` names the pass in errors.
    pub fn from_arg(pass: &str, path: Option<&String>) -> Result<Self, PassError> {
        let Some(p) = path else { return Ok(Importance::Magnitude) };
        let path = PathBuf::from(p);
        let fail = |problem: String| PassError::BadArg {
            pass: pass.into(),
            arg: "scores".into(),
            problem: format!("{}: {problem}", path.display()),
        };
        let bytes = bertopt_ir::read_capped(&path, MAX_BYTES).map_err(|e| fail(format!("cannot read: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| fail(format!("not a safetensors score file ({e})")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(fail(format!("{name} is {:?}; scores are f32", view.dtype())));
            }
            let v: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let t = Tensor::from_vec(v, view.shape(), &Device::Cpu).map_err(|e| fail(e.to_string()))?;
            tensors.insert(name, t);
        }
        Ok(Importance::Scores { path, tensors })
    }

    /// Element importance of weight `name` (same shape as the weight).
    pub fn of(&self, g: &Graph, pass: &str, name: &str) -> Result<Tensor, PassError> {
        let fail = |problem: String| PassError::Failed { pass: pass.into(), problem };
        let w = crate::rewrite::weight(g, pass, name)?;
        match self {
            Importance::Magnitude => w.sqr().map_err(|e| fail(e.to_string())),
            Importance::Scores { path, tensors } => {
                let s = tensors
                    .get(name)
                    .ok_or_else(|| fail(format!("score file {} has no scores for @{name}", display(path))))?;
                if s.dims() != w.dims() {
                    return Err(fail(format!(
                        "score file {}: @{name} is {:?} but the weight is {:?} (scored on another model, or after \
                         a pass that changed it?)",
                        display(path),
                        s.dims(),
                        w.dims()
                    )));
                }
                Ok(s.clone())
            }
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
