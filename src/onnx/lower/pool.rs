//! `take_cls` (a `Gather` of position 0) and `masked_mean` (mask-weighted `ReduceSum` over the sequence, divided
//! by the count of kept positions, at least one).

use bertopt_ir::NodeIndex;

use super::emitter::{EmitError, Emitter};
use crate::onnx::builder::Attr;

impl Emitter<'_> {
    pub(crate) fn lower_take_cls(&mut self, n: NodeIndex, a: &[&str]) -> Result<String, EmitError> {
        let x = self.batched(a[0], self.g.operands(n)[0])?;
        let zero = self.const_scalar_i64(0);
        Ok(self.b.node("Gather", "take_cls", &[&x, &zero], &[("axis", Attr::Int(1))]))
    }

    pub(crate) fn lower_masked_mean(&mut self, n: NodeIndex, a: &[&str]) -> Result<String, EmitError> {
        let x = self.batched(a[0], self.g.operands(n)[0])?;
        let m = self.b.node("Cast", "masked_mean/Cast", &[a[1]], &[("to", Attr::Int(1))]);
        let axes2 = self.const_i64(&[2]);
        let m = self.b.node("Unsqueeze", "masked_mean/Unsqueeze", &[&m, &axes2], &[]);
        let xm = self.b.node("Mul", "masked_mean/Mul", &[&x, &m], &[]);
        let axes1 = self.const_i64(&[1]);
        let keep = [("keepdims", Attr::Int(0))];
        let sum = self.b.node("ReduceSum", "masked_mean/Sum", &[&xm, &axes1], &keep);
        let count = self.b.node("ReduceSum", "masked_mean/Count", &[&m, &axes1], &keep);
        let one = self.const_f32(1.0);
        let count = self.b.node("Max", "masked_mean/AtLeastOne", &[&count, &one], &[]);
        Ok(self.b.node("Div", "masked_mean/Div", &[&sum, &count], &[]))
    }
}
