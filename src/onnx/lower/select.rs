//! `top_k` (ONNX `TopK`, the indices) and `dyn_ffn` (each row's chosen groups of FFN weights gathered into
//! per-row matrices, then batched `MatMul`s).

use bertopt_ir::ops;

use super::emitter::{EmitError, Emitter};
use crate::onnx::builder::Attr;

impl Emitter<'_> {
    pub(crate) fn lower_top_k(&mut self, op: &ops::TopK, a: &[&str]) -> String {
        let k = self.const_i64(&[op.k as i64]);
        let attrs = [("axis", Attr::Int(-1)), ("largest", Attr::Int(1)), ("sorted", Attr::Int(1))];
        self.b.node_multi("TopK", "top_k", &[a[0], &k], 2, &attrs).swap_remove(1)
    }

    pub(crate) fn lower_dyn_ffn(&mut self, op: &ops::DynFfn, a: &[&str]) -> Result<String, EmitError> {
        let ops::DynFfn { inter, out, groups, keep } = op;
        let (g, k) = (*groups, *keep as i64);
        let idx = a[1];
        let (dd, f) = self
            .weight(&format!("{inter}.weight"))?
            .dims2()
            .map_err(|source| EmitError::Tensor { name: inter.clone(), source })?;
        let size = (f / g) as i64;
        // FFN-in: the chosen groups' columns as [b, D, k*size]; FFN-out: their rows as [b, k*size, D].
        let w1 = self.derived(&format!("{inter}.weight"), "by_group", |t| t.reshape((dd, g, f / g)))?;
        let w1 = self.b.node("Gather", &format!("{inter}/GatherGroups"), &[&w1, idx], &[("axis", Attr::Int(1))]);
        let w1 =
            self.b.node("Transpose", &format!("{inter}/BatchFirst"), &[&w1], &[("perm", Attr::Ints(vec![1, 0, 2, 3]))]);
        let cols = self.const_i64(&[0, dd as i64, k * size]);
        let w1 = self.b.node("Reshape", &format!("{inter}/Reshape"), &[&w1, &cols], &[]);
        let b1 = self.derived(&format!("{inter}.bias"), "by_group", |t| t.reshape((g, f / g)))?;
        let b1 = self.b.node("Gather", &format!("{inter}/GatherBias"), &[&b1, idx], &[("axis", Attr::Int(0))]);
        let flat = self.const_i64(&[0, 1, k * size]);
        let b1 = self.b.node("Reshape", &format!("{inter}/ReshapeBias"), &[&b1, &flat], &[]);
        let y = self.b.node("MatMul", &format!("{inter}/MatMul"), &[a[0], &w1], &[]);
        let y = self.b.node("Add", &format!("{inter}/Add"), &[&y, &b1], &[]);
        let y = self.gelu(&y);
        let w2 = self.derived(&format!("{out}.weight"), "by_group", |t| t.reshape((g, f / g, dd)))?;
        let w2 = self.b.node("Gather", &format!("{out}/GatherGroups"), &[&w2, idx], &[("axis", Attr::Int(0))]);
        let rows = self.const_i64(&[0, k * size, dd as i64]);
        let w2 = self.b.node("Reshape", &format!("{out}/Reshape"), &[&w2, &rows], &[]);
        let y = self.b.node("MatMul", &format!("{out}/MatMul"), &[&y, &w2], &[]);
        let bias = self.init(&format!("{out}.bias"))?;
        Ok(self.b.node("Add", &format!("{out}/Add"), &[&y, &bias], &[]))
    }
}
