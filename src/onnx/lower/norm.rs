//! `layer_norm` and `add_norm`: ONNX `LayerNormalization` (opset 17), after an `Add` of the residual.

use bertopt_ir::ops;

use super::emitter::{EmitError, Emitter};
use crate::onnx::builder::Attr;

impl Emitter<'_> {
    pub(crate) fn lower_add_norm(&mut self, op: &ops::AddNorm, a: &[&str]) -> Result<String, EmitError> {
        let x = self.b.node("Add", &format!("{}/AddResidual", op.ln), &[a[0], a[1]], &[]);
        self.layer_norm(&x, &op.ln, op.eps)
    }

    pub(crate) fn lower_layer_norm(&mut self, op: &ops::LayerNorm, a: &[&str]) -> Result<String, EmitError> {
        self.layer_norm(a[0], &op.ln, op.eps)
    }

    pub(crate) fn layer_norm(&mut self, x: &str, p: &str, eps: f32) -> Result<String, EmitError> {
        let w = self.init(&format!("{p}.weight"))?;
        let bias = self.init(&format!("{p}.bias"))?;
        Ok(self.b.node(
            "LayerNormalization",
            p,
            &[x, &w, &bias],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
        ))
    }
}
