//! tract: load the ONNX file, optionally specialise the input shapes, `into_optimized`, run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::{Data, Output, Runner, RunnerOptions, Value};

pub struct TractRunner {
    path: PathBuf,
    /// The loaded, unoptimized model, kept when plans are specialised per input shape.
    model: Option<InferenceModel>,
    /// With `fixed_shape`: one plan per set of input shapes seen (tract plans faster with known shapes).
    plans: HashMap<Vec<Vec<usize>>, Arc<TypedRunnableModel>>,
    /// Without: one plan over symbolic shapes.
    generic: Option<Arc<TypedRunnableModel>>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Optimize and plan, with `If` branches planned too (see `tract_branches`).
fn plan(model: InferenceModel, path: &Path) -> anyhow::Result<Arc<TypedRunnableModel>> {
    // BERTOPT_TRACT_PLAIN_IF=1 keeps tract's own `IfThenElse` (for measuring what planning the branches buys).
    let plain_if = std::env::var_os("BERTOPT_TRACT_PLAIN_IF").is_some_and(|v| v == "1");
    model
        .into_optimized()
        .and_then(|m| if plain_if { Ok(m) } else { super::tract_branches::plan_branches(m) })
        .and_then(|m| m.into_runnable())
        .map_err(|e| anyhow::anyhow!("tract cannot optimize {}: {e:?}", path.display()))
}

impl TractRunner {
    pub fn load(path: &Path, opts: RunnerOptions) -> anyhow::Result<Self> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| anyhow::anyhow!("tract cannot load {}: {e:?}", path.display()))?;
        let inputs: Vec<String> = model.input_outlets()?.iter().map(|o| model.node(o.node).name.clone()).collect();
        let outputs: Vec<String> = model
            .output_outlets()?
            .iter()
            .map(|o| model.outlet_label(*o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone()))
            .collect();
        let mut r =
            TractRunner { path: path.into(), model: None, plans: HashMap::new(), generic: None, inputs, outputs };
        match opts.fixed_shape {
            None => r.generic = Some(plan(model, path)?),
            Some((b, s)) => {
                // Token inputs ([batch, seq] i64) are planned now, so that load reports what cannot run;
                // other inputs (a segment's hidden state) when their shapes are first seen.
                let tokens = (0..r.inputs.len())
                    .all(|i| model.input_fact(i).is_ok_and(|f| f.datum_type.concretize() == Some(i64::datum_type())));
                r.model = Some(model);
                if tokens {
                    r.specialised(&vec![vec![b, s]; r.inputs.len()], &vec![i64::datum_type(); r.inputs.len()])?;
                }
            }
        }
        Ok(r)
    }

    /// The plan for inputs of these shapes and types (built on first use).
    fn specialised(&mut self, shapes: &[Vec<usize>], types: &[DatumType]) -> anyhow::Result<Arc<TypedRunnableModel>> {
        if let Some(p) = self.plans.get(shapes) {
            return Ok(p.clone());
        }
        let mut model = self.model.clone().expect("a specialising runner keeps its model");
        for (i, (shape, dt)) in shapes.iter().zip(types).enumerate() {
            model = model.with_input_fact(i, InferenceFact::dt_shape(*dt, shape.clone()))?;
        }
        let p = plan(model, &self.path)?;
        self.plans.insert(shapes.to_vec(), p.clone());
        Ok(p)
    }
}

impl TractRunner {
    /// The plan tract runs for these values, and the values as its inputs in order (a profiler runs the plan
    /// itself, node by node).
    pub fn prepare(&mut self, values: &[Value]) -> anyhow::Result<(Arc<TypedRunnableModel>, TVec<TValue>)> {
        let mut tv: TVec<TValue> = tvec![];
        let (mut shapes, mut types) = (vec![], vec![]);
        for name in &self.inputs {
            let v = super::find(values, name)?;
            let t = match &v.data {
                Data::I64(d) => Tensor::from_shape(&v.shape, d)?,
                Data::F32(d) => Tensor::from_shape(&v.shape, d)?,
            };
            shapes.push(v.shape.clone());
            types.push(t.datum_type());
            tv.push(t.into());
        }
        let plan = match &self.generic {
            Some(p) => p.clone(),
            None => self.specialised(&shapes, &types)?,
        };
        Ok((plan, tv))
    }
}

impl Runner for TractRunner {
    fn run_values(&mut self, values: &[Value]) -> anyhow::Result<Vec<Output>> {
        let (plan, tv) = self.prepare(values)?;
        let out = plan.run(tv).map_err(|e| anyhow::anyhow!("tract run failed: {e:?}"))?;
        out.iter()
            .zip(&self.outputs)
            .map(|(t, name)| {
                let t = t.cast_to::<f32>()?;
                Ok(Output {
                    name: name.clone(),
                    shape: t.shape().to_vec(),
                    data: t.to_plain_array_view::<f32>()?.iter().copied().collect(),
                })
            })
            .collect()
    }
}
