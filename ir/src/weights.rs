//! Weights: the named constants a graph holds beside its DAG, by full tensor name. Ops read them by name
//! (their attributes name parameter groups, see `ops`), so this file knows nothing of ops.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::types::{DType, ValueType};

/// A named constant. `data` is absent for a graph parsed from text, which declares weights by type only.
#[derive(Clone, Debug)]
pub struct Weight {
    pub ty: ValueType,
    pub data: Option<Tensor>,
}

impl Weight {
    /// A weight with data; its type is read off the tensor (f32 or i64).
    pub fn from_tensor(t: Tensor) -> Self {
        let dtype = match t.dtype() {
            candle_core::DType::I64 => DType::I64,
            _ => DType::F32,
        };
        Weight { ty: ValueType::known(dtype, t.dims()), data: Some(t) }
    }
}

/// All weights by full tensor name, in name order (so printing is stable).
#[derive(Clone, Debug, Default)]
pub struct Weights(pub BTreeMap<String, Weight>);

impl Weights {
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.0.insert(name.into(), Weight::from_tensor(t));
    }
    pub fn get(&self, name: &str) -> Option<&Weight> {
        self.0.get(name)
    }
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name).and_then(|w| w.data.as_ref())
    }
    /// A weight's declared type (what type inference checks against).
    pub fn weight_type(&self, name: &str) -> Option<&ValueType> {
        self.0.get(name).map(|w| &w.ty)
    }
    /// Whether a tensor of this name exists (the projection forms and int8 groups are told by presence).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.0.values().filter_map(|w| w.ty.num_elements()).sum()
    }
}
