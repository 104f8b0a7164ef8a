//! tract: load the ONNX file, optionally fix the input shapes, `into_optimized`, run.

use std::path::Path;

use anyhow::Context;
use tract_onnx::prelude::*;

use super::{Batch, Output, Runner, RunnerOptions};

pub struct TractRunner {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl TractRunner {
    pub fn load(path: &Path, opts: RunnerOptions) -> anyhow::Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| anyhow::anyhow!("tract cannot load {}: {e:?}", path.display()))?;
        let inputs: Vec<String> = model.input_outlets()?.iter().map(|o| model.node(o.node).name.clone()).collect();
        let outputs: Vec<String> = model
            .output_outlets()?
            .iter()
            .map(|o| model.outlet_label(*o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone()))
            .collect();
        if let Some((b, s)) = opts.fixed_shape {
            for i in 0..inputs.len() {
                model = model.with_input_fact(i, i64::fact([b, s]).into())?;
            }
        }
        // BERTOPT_TRACT_PLAIN_IF=1 keeps tract's own `IfThenElse` (for measuring what planning the branches buys).
        let plain_if = std::env::var_os("BERTOPT_TRACT_PLAIN_IF").is_some_and(|v| v == "1");
        let plan = model
            .into_optimized()
            .and_then(|m| if plain_if { Ok(m) } else { super::tract_branches::plan_branches(m) })
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("tract cannot optimize {}: {e:?}", path.display()))?;
        Ok(TractRunner { plan, inputs, outputs })
    }
}

impl Runner for TractRunner {
    fn run(&mut self, b: &Batch) -> anyhow::Result<Vec<Output>> {
        let mut tv: TVec<TValue> = tvec![];
        for name in &self.inputs {
            let data = b.by_name(name).with_context(|| format!("model input `{name}` is not one bertopt feeds"))?;
            tv.push(Tensor::from_shape(&[b.batch, b.seq], data)?.into());
        }
        let out = self.plan.run(tv).map_err(|e| anyhow::anyhow!("tract run failed: {e:?}"))?;
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
