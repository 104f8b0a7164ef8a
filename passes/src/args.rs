//! A pass's arguments: the `k=v` pairs of its pipeline entry, with typed accessors whose errors name the pass
//! and the argument.

use std::collections::BTreeMap;

use crate::error::PassError;
use crate::inputs::Inputs;

/// A pass's arguments with typed accessors that name the pass and argument on error, and the files the
/// pipeline's arguments name, already read by the driver.
pub struct Args<'a> {
    pub pass: String,
    pub map: BTreeMap<String, String>,
    pub inputs: &'a Inputs,
}

impl Args<'static> {
    /// Arguments that name no file.
    pub fn bare(pass: &str, map: BTreeMap<String, String>) -> Self {
        Args { pass: pass.into(), map, inputs: &crate::inputs::NONE }
    }
}

impl Args<'_> {
    /// A fraction in [0, 1) (a sparsity: all of a unit cannot go), `default` when absent.
    pub fn sparsity(&self, key: &str, default: f64) -> Result<f64, PassError> {
        let v: f64 = self.get(key, default)?;
        if !(0.0..1.0).contains(&v) {
            return Err(self.bad(key, format!("{v} is not in [0, 1)")));
        }
        Ok(v)
    }

    /// A count of at least 1, `default` when absent.
    pub fn positive(&self, key: &str, default: usize) -> Result<usize, PassError> {
        let v: usize = self.get(key, default)?;
        if v == 0 {
            return Err(self.bad(key, "must be at least 1".into()));
        }
        Ok(v)
    }

    /// A `BadArg` error for this pass.
    pub fn bad(&self, key: &str, problem: String) -> PassError {
        PassError::BadArg { pass: self.pass.clone(), arg: key.into(), problem }
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, PassError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| PassError::BadArg {
                pass: self.pass.clone(),
                arg: key.into(),
                problem: format!("cannot read `{v}` as {}", std::any::type_name::<T>()),
            }),
        }
    }

    /// How the cut ranks its units: `scores=PATH` (saved Taylor scores), else weight magnitude.
    pub fn importance(&self) -> Result<crate::scores::Importance, PassError> {
        crate::scores::Importance::from_arg(&self.pass, self.map.get("scores"), self.inputs)
    }
}
