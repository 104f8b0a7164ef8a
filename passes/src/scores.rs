//! Importance of each weight for the pruning passes: weight magnitude (W², the fallback that needs no data) or
//! saved scores (`optimize score`: first-order Taylor, one tensor per IR weight name, same K×N layout). A pass
//! sums the element importances over the unit it removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bertopt_ir::Graph;
use candle_core::Tensor;

use crate::error::PassError;
use crate::inputs::{Inputs, Scores};

pub enum Importance {
    Magnitude,
    /// Saved scores, as `Inputs` read them from `path`.
    Scores {
        path: PathBuf,
        tensors: Arc<Scores>,
    },
}

impl Importance {
    /// `scores=PATH` if given (read by the driver into `inputs`), else magnitude. `pass` names the pass in errors.
    pub fn from_arg(pass: &str, path: Option<&String>, inputs: &Inputs) -> Result<Self, PassError> {
        let Some(p) = path else { return Ok(Importance::Magnitude) };
        let tensors = inputs.scores(p).ok_or_else(|| PassError::BadArg {
            pass: pass.into(),
            arg: "scores".into(),
            problem: format!("{p}: not read by the pipeline driver (build passes with `Pipeline::parse`)"),
        })?;
        Ok(Importance::Scores { path: PathBuf::from(p), tensors })
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
