//! tract: load the ONNX file, type it over symbolic shapes, plan once per batch size (or once, or once per input
//! shape: `Plans`), run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::{Data, Output, Plans, Runner, RunnerOptions, Value};

pub struct TractRunner {
    path: PathBuf,
    /// The typed model over symbolic shapes, kept when plans are made per batch size or per input shape.
    model: Option<TypedModel>,
    /// `Plans::PerBatch`: a plan per batch size seen (the key holds each input's first dimension);
    /// `Plans::PerShape`: a plan per set of input shapes seen.
    plans: Mutex<HashMap<Vec<Vec<usize>>, Arc<TypedRunnableModel>>>,
    /// `Plans::Symbolic`: one plan over symbolic shapes.
    generic: Option<Arc<TypedRunnableModel>>,
    /// Substitute only the batch (each input's first dimension) when planning.
    per_batch: bool,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Optimize and plan a typed model, with `If` branches planned too (see `tract_branches`).
fn plan(model: TypedModel, path: &Path) -> Result<Arc<TypedRunnableModel>> {
    // BERTOPT_TRACT_PLAIN_IF=1 keeps tract's own `IfThenElse` (for measuring what planning the branches buys).
    let plain_if = std::env::var_os("BERTOPT_TRACT_PLAIN_IF").is_some_and(|v| v == "1");
    model
        .into_optimized()
        .and_then(|m| if plain_if { Ok(m) } else { crate::tract_branches::plan_branches(m) })
        .and_then(|m| m.into_runnable())
        .map_err(|e| Error::model(path, format!("tract cannot optimize it: {e:?}")))
}

/// Tell tract that every symbolic input dimension is at least 1. Without it tract cannot prove a tensor over a
/// symbolic length large enough for its fast element-wise kernels (and so cannot fuse a residual addition into
/// the matrix product before it). An assertion over the product of two symbols makes tract's prover run for
/// minutes, so a symbolic batch times a symbolic length stays unproven: `Plans::PerBatch` fixes the batch.
fn assert_dims_positive(model: &TypedModel, path: &Path) -> Result<()> {
    let mut named = std::collections::BTreeSet::new();
    for i in 0..model.inputs.len() {
        let fact = model.input_fact(i).map_err(|e| Error::model(path, format!("input {i}: {e:?}")))?;
        named.extend(fact.shape.iter().filter_map(|d| match d {
            TDim::Sym(sym) => Some(sym.to_string()),
            _ => None,
        }));
    }
    for sym in named {
        model
            .symbols
            .add_assertion(format!("{sym}>=1"))
            .map_err(|e| Error::model(path, format!("tract rejects the assertion {sym} >= 1: {e:?}")))?;
    }
    Ok(())
}

impl TractRunner {
    pub fn load(path: &Path, opts: RunnerOptions) -> Result<Self> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| Error::model(path, format!("tract cannot load it: {e:?}")))?;
        let names = |m: &InferenceModel| -> TractResult<(Vec<String>, Vec<String>)> {
            let inputs = m.input_outlets()?.iter().map(|o| m.node(o.node).name.clone()).collect();
            let outputs = m
                .output_outlets()?
                .iter()
                .map(|o| m.outlet_label(*o).map(str::to_string).unwrap_or_else(|| m.node(o.node).name.clone()))
                .collect();
            Ok((inputs, outputs))
        };
        let (inputs, outputs) = names(&model).map_err(|e| Error::model(path, format!("{e:?}")))?;
        let mut r = TractRunner {
            path: path.into(),
            model: None,
            plans: Mutex::new(HashMap::new()),
            generic: None,
            per_batch: opts.plans == Plans::PerBatch,
            inputs,
            outputs,
        };
        // Typed over symbolic shapes first; a plan per shape substitutes the symbols in the typed model. Fixing
        // the input facts before typing instead lets tract's `If` import report the then branch's constant
        // outputs (an exit's layer number, constant once the batch is) as the whole `If`'s, and fold them.
        let typed = model.into_typed().map_err(|e| Error::model(path, format!("tract cannot type it: {e:?}")))?;
        assert_dims_positive(&typed, path)?;
        // Token inputs ([batch, seq] i64) are planned at load, so that load reports what cannot run; other inputs
        // (a segment's hidden state) when their shapes are first seen.
        let tokens = (0..r.inputs.len()).all(|i| typed.input_fact(i).is_ok_and(|f| f.datum_type == i64::datum_type()));
        let first = match opts.plans {
            Plans::Symbolic => {
                r.generic = Some(plan(typed, path)?);
                return Ok(r);
            }
            Plans::PerBatch => (1, 1),
            Plans::PerShape(b, s) => (b, s),
        };
        r.model = Some(typed);
        if tokens {
            r.specialised(&vec![vec![first.0, first.1]; r.inputs.len()])?;
        }
        Ok(r)
    }

    /// The plan for inputs of these shapes (built on first use): with `per_batch` the symbols of the inputs'
    /// first dimension are substituted and the length stays symbolic, otherwise every symbol is.
    fn specialised(&self, shapes: &[Vec<usize>]) -> Result<Arc<TypedRunnableModel>> {
        let model = self.model.as_ref().expect("a specialising runner keeps its model");
        // Checked before the cache: a plan per batch size is found by the first dimension alone.
        for (i, shape) in shapes.iter().enumerate() {
            let fact = model.input_fact(i).map_err(|e| Error::Input(format!("input {i}: {e:?}")))?;
            if fact.rank() != shape.len() {
                return Err(Error::Input(format!("input {i} has shape {shape:?}; the model takes {:?}", fact.shape)));
            }
        }
        let key: Vec<Vec<usize>> = match self.per_batch {
            true => shapes.iter().map(|s| s.iter().take(1).copied().collect()).collect(),
            false => shapes.to_vec(),
        };
        if let Some(p) = self.plans.lock().expect("plan cache").get(&key) {
            return Ok(p.clone());
        }
        // Planned outside the lock: another thread may plan the same shape meanwhile; either plan serves.
        let mut subs = std::collections::HashMap::new();
        for (i, shape) in shapes.iter().enumerate() {
            let fact = model.input_fact(i).map_err(|e| Error::Input(format!("input {i}: {e:?}")))?;
            let fixed = if self.per_batch { 1 } else { shape.len() };
            for (d, &n) in fact.shape.iter().zip(shape).take(fixed) {
                if let TDim::Sym(sym) = d {
                    subs.insert(sym.clone(), TDim::Val(n as i64));
                }
            }
        }
        let model = model.set_symbols(&subs).map_err(|e| Error::Input(format!("shapes {shapes:?}: {e:?}")))?;
        let p = plan(model, &self.path)?;
        self.plans.lock().expect("plan cache").insert(key, p.clone());
        Ok(p)
    }

    /// Number of plans made so far (1 for a symbolic plan; one per batch size or input shape seen otherwise).
    pub fn plans(&self) -> usize {
        if self.generic.is_some() {
            1
        } else {
            self.plans.lock().expect("plan cache").len()
        }
    }

    /// The plan tract runs for these values, and the values as its inputs in order (a profiler runs the plan
    /// itself, node by node).
    pub fn prepare(&self, values: &[Value]) -> Result<(Arc<TypedRunnableModel>, TVec<TValue>)> {
        let mut tv: TVec<TValue> = tvec![];
        let mut shapes = vec![];
        for name in &self.inputs {
            let v = crate::value::find(values, name)?;
            let t = match &v.data {
                Data::I64(d) => Tensor::from_shape(&v.shape, d),
                Data::F32(d) => Tensor::from_shape(&v.shape, d),
            }
            .map_err(|e| Error::Input(format!("input `{name}` of shape {:?}: {e:?}", v.shape)))?;
            shapes.push(v.shape.clone());
            tv.push(t.into());
        }
        let plan = match &self.generic {
            Some(p) => p.clone(),
            None => self.specialised(&shapes)?,
        };
        Ok((plan, tv))
    }
}

impl Runner for TractRunner {
    fn output_names(&self) -> Vec<String> {
        self.outputs.clone()
    }

    fn run_values(&self, values: &[Value]) -> Result<Vec<Output>> {
        let (plan, tv) = self.prepare(values)?;
        let out = plan.run(tv).map_err(Error::tract)?;
        out.iter()
            .zip(&self.outputs)
            .map(|(t, name)| {
                let t = t.cast_to::<f32>().map_err(Error::tract)?;
                let data = t.to_plain_array_view::<f32>().map_err(Error::tract)?.iter().copied().collect();
                Ok(Output { name: name.clone(), shape: t.shape().to_vec(), data })
            })
            .collect()
    }
}
