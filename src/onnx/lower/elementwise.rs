//! `gelu` (in the erf form ONNX Runtime fuses), `relu`, `tanh` and `add`: one ONNX op each, GELU five.

use super::emitter::Emitter;

impl Emitter<'_> {
    pub(crate) fn lower_unary(&mut self, onnx_op: &str, name: &str, a: &[&str]) -> String {
        self.b.node(onnx_op, name, &[a[0]], &[])
    }

    pub(crate) fn lower_add(&mut self, a: &[&str]) -> String {
        self.b.node("Add", "add", &[a[0], a[1]], &[])
    }

    /// x * 0.5 * (1 + erf(x / sqrt 2)): the exact GELU, as ONNX Runtime's fusion recognises it.
    pub(crate) fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.const_f32(std::f32::consts::SQRT_2);
        let one = self.const_f32(1.0);
        let half = self.const_f32(0.5);
        let y = self.b.node("Div", "gelu/Div", &[x, &sqrt2], &[]);
        let y = self.b.node("Erf", "gelu/Erf", &[&y], &[]);
        let y = self.b.node("Add", "gelu/Add", &[&y, &one], &[]);
        let y = self.b.node("Mul", "gelu/Mul", &[x, &y], &[]);
        self.b.node("Mul", "gelu/MulHalf", &[&y, &half], &[])
    }
}
