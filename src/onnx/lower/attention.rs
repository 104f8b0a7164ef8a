//! `attention` and `dyn_attention`: projections (the score scale folded into the query's), a head split by
//! `Reshape` + `Transpose`, `MatMul`, the additive mask (built once per mask), `Softmax`, `MatMul`, the merge and
//! the output projection; `dyn_attention` gathers each row's heads' slices of the weights first.

use bertopt_ir::{interp::MASK_NEG, ops, NodeIndex};

use super::emitter::{EmitError, Emitter};
use crate::onnx::builder::Attr;

impl Emitter<'_> {
    pub(crate) fn lower_attention(
        &mut self,
        n: NodeIndex,
        op: &ops::Attention,
        a: &[&str],
    ) -> Result<String, EmitError> {
        let ops::Attention { heads, head_dim, query, key, value, output, tiles } = op;
        let scope = query.trim_end_matches(".self.query").to_string();
        let mask_node = self.g.operands(n)[1];
        let mask = self.additive_mask(mask_node);
        // Q, K and V read the hidden states; the output projection the heads' contexts.
        let d = bertopt_ir::ops::def::width(&self.g.dag[self.g.operands(n)[0]].ty) as usize;
        let inner = heads * head_dim;
        // The 1/sqrt(d) score scale is folded into the query projection.
        let scale = 1.0 / (*head_dim as f32).sqrt();
        let names = [query.as_str(), key.as_str(), value.as_str()];
        let quantized = names.iter().any(|p| bertopt_ir::quant::is_quantized(|n| self.g.weights.has(n), p));
        let [q, k, v] = if self.fuse_qkv && tiles[..3] == [0, 0, 0] && !quantized {
            self.fused_qkv(a[0], names, scale)?
        } else {
            [
                self.projection(a[0], query, tiles[0], d, Some(scale))?,
                self.projection(a[0], key, tiles[1], d, None)?,
                self.projection(a[0], value, tiles[2], d, None)?,
            ]
        };
        let c = self.multi_head(&scope, names, [&q, &k, &v], &mask, *heads as i64, *head_dim as i64)?;
        self.projection(&c, output, tiles[3], inner, None)
    }

    pub(crate) fn lower_dyn_attention(
        &mut self,
        n: NodeIndex,
        op: &ops::DynAttention,
        a: &[&str],
    ) -> Result<String, EmitError> {
        let ops::DynAttention { heads, head_dim, keep, query, key, value, output } = op;
        let scope = query.trim_end_matches(".self.query").to_string();
        let mask = self.additive_mask(self.g.operands(n)[1]);
        let (h, d, k) = (*heads, *head_dim, *keep as i64);
        let idx = a[2];
        // Each projection: the row's chosen heads' columns as one [b, D, k*d] matrix, one matmul; then
        // the same head split and attention as the dense lowering, over k heads.
        let scale = 1.0 / (d as f32).sqrt();
        let q = self.head_projection(a[0], idx, query, h, d, k, scale)?;
        let kk = self.head_projection(a[0], idx, key, h, d, k, 1.0)?;
        let v = self.head_projection(a[0], idx, value, h, d, k, 1.0)?;
        let names = [query.as_str(), key.as_str(), value.as_str()];
        let c = self.multi_head(&scope, names, [&q, &kk, &v], &mask, k, d as i64)?;
        // The output projection: the chosen heads' rows, [b, k*d, D].
        let wo = self.derived(&format!("{output}.weight"), "by_head", |t| t.reshape((h, d, t.dim(1)?)))?;
        let wo = self.b.node("Gather", &format!("{output}/GatherHeads"), &[&wo, idx], &[("axis", Attr::Int(0))]);
        let dd = self
            .weight(&format!("{output}.weight"))?
            .dim(1)
            .map_err(|source| EmitError::Tensor { name: output.clone(), source })? as i64;
        let rows = self.const_i64(&[0, k * d as i64, dd]);
        let wo = self.b.node("Reshape", &format!("{output}/Reshape"), &[&wo, &rows], &[]);
        let y = self.b.node("MatMul", &format!("{output}/MatMul"), &[&c, &wo], &[]);
        let bias = self.init(&format!("{output}.bias"))?;
        Ok(self.b.node("Add", &format!("{output}/Add"), &[&y, &bias], &[]))
    }

    /// Q, K and V of dense f32 projections `names` as one linear over `[W_q·scale | W_k | W_v]` and a `Split`.
    fn fused_qkv(&mut self, x: &str, names: [&str; 3], scale: f32) -> Result<[String; 3], EmitError> {
        let mut w = vec![];
        let mut b = vec![];
        for (i, p) in names.iter().enumerate() {
            let s = if i == 0 { scale as f64 } else { 1.0 };
            let t = |n: String| -> Result<candle_core::Tensor, EmitError> {
                (self.weight(&n)? * s).map_err(|source| EmitError::Tensor { name: n.clone(), source })
            };
            w.push(t(format!("{p}.weight"))?);
            b.push(t(format!("{p}.bias"))?);
        }
        let fused = |parts: &[candle_core::Tensor], axis: usize| {
            candle_core::Tensor::cat(parts, axis).map_err(|source| EmitError::Tensor { name: names[0].into(), source })
        };
        let (w, b) = (fused(&w, 1)?, fused(&b, 0)?);
        let scope = names[0].trim_end_matches(".query");
        let wn = self.computed_f32(&format!("{scope}.qkv.weight"), w.dims(), &super::emitter::data(&w, scope)?);
        let bn = self.computed_f32(&format!("{scope}.qkv.bias"), b.dims(), &super::emitter::data(&b, scope)?);
        let y = if self.rows {
            self.b.node("Gemm", &format!("{scope}.qkv/Gemm"), &[x, &wn, &bn], &[])
        } else {
            let mm = self.b.node("MatMul", &format!("{scope}.qkv/MatMul"), &[x, &wn], &[]);
            self.b.node("Add", &format!("{scope}.qkv/Add"), &[&mm, &bn], &[])
        };
        // Opset 17's Split without sizes cuts the last axis into three equal parts.
        let parts = self.b.node_multi("Split", &format!("{scope}.qkv/Split"), &[&y], 3, &[("axis", Attr::Int(-1))]);
        Ok([parts[0].clone(), parts[1].clone(), parts[2].clone()])
    }

    /// `(1 - mask) * MASK_NEG` shaped `[batch, 1, 1, seq]`.
    pub(crate) fn additive_mask(&mut self, mask_node: NodeIndex) -> String {
        if let Some(m) = self.masks.get(&mask_node) {
            return m.clone();
        }
        let mask = self.vals[&mask_node.into()].clone();
        let f = self.b.node("Cast", "attention_mask/Cast", &[&mask], &[("to", Attr::Int(1))]);
        let one = self.const_f32(1.0);
        let inv = self.b.node("Sub", "attention_mask/Sub", &[&one, &f], &[]);
        let neg = self.const_f32(MASK_NEG);
        let add = self.b.node("Mul", "attention_mask/Mul", &[&inv, &neg], &[]);
        let axes = self.const_i64(&[1, 2]);
        let out = self.b.node("Unsqueeze", "attention_mask/Unsqueeze", &[&add, &axes], &[]);
        self.masks.insert(mask_node, out.clone());
        out
    }

    /// Scaled dot-product attention over `heads` heads of size `d`, from projected `q`, `k`, `v` (`[b, s, heads*d]`,
    /// the score scale already in `q`) to the merged context `[b, s, heads*d]`.
    /// As rows (`Stream::Rows`), the projections are `[b·s, heads*d]` and so is the context.
    pub(crate) fn multi_head(
        &mut self,
        scope: &str,
        names: [&str; 3],
        qkv: [&str; 3],
        mask: &str,
        heads: i64,
        d: i64,
    ) -> Result<String, EmitError> {
        let (split, merge) = if self.rows {
            (self.tokens_shape(&[heads, d])?, self.const_i64(&[-1, heads * d]))
        } else {
            (self.const_i64(&[0, 0, heads, d]), self.const_i64(&[0, 0, heads * d]))
        };
        let perms = [vec![0, 2, 1, 3], vec![0, 2, 3, 1], vec![0, 2, 1, 3]];
        let mut parts = vec![];
        for ((name, x), perm) in names.iter().zip(qkv).zip(perms) {
            let x = self.b.node("Reshape", &format!("{name}/Reshape"), &[x, &split], &[]);
            parts.push(self.b.node("Transpose", &format!("{name}/Transpose"), &[&x], &[("perm", Attr::Ints(perm))]));
        }
        let s = self.b.node("MatMul", &format!("{scope}.scores/MatMul"), &[&parts[0], &parts[1]], &[]);
        let s = self.b.node("Add", &format!("{scope}.scores/AddMask"), &[&s, mask], &[]);
        let p = self.b.node("Softmax", &format!("{scope}.probs/Softmax"), &[&s], &[("axis", Attr::Int(-1))]);
        let c = self.b.node("MatMul", &format!("{scope}.context/MatMul"), &[&p, &parts[2]], &[]);
        let c = self.b.node(
            "Transpose",
            &format!("{scope}.context/Transpose"),
            &[&c],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        Ok(self.b.node("Reshape", &format!("{scope}.context/Reshape"), &[&c, &merge], &[]))
    }

    /// One projection of `dyn_attention`: `x` `[b, s, D]` times each row's chosen heads' columns (`[D, H, d]`
    /// gathered along H to `[D, b, k, d]`, moved to `[b, D, k*d]`) plus their biases: `[b, s, k*d]`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn head_projection(
        &mut self,
        x: &str,
        idx: &str,
        p: &str,
        h: usize,
        d: usize,
        k: i64,
        scale: f32,
    ) -> Result<String, EmitError> {
        let tag = if scale == 1.0 { "by_head".to_string() } else { format!("by_head_scaled_{scale}") };
        let dd = self
            .weight(&format!("{p}.weight"))?
            .dim(0)
            .map_err(|source| EmitError::Tensor { name: p.into(), source })?;
        let w = self.derived(&format!("{p}.weight"), &tag, |t| t.reshape((dd, h, d))? * scale as f64)?;
        let b = self.derived(&format!("{p}.bias"), &tag, |t| t.reshape((h, d))? * scale as f64)?;
        let w = self.b.node("Gather", &format!("{p}/GatherHeads"), &[&w, idx], &[("axis", Attr::Int(1))]);
        let w = self.b.node("Transpose", &format!("{p}/BatchFirst"), &[&w], &[("perm", Attr::Ints(vec![1, 0, 2, 3]))]);
        let cols = self.const_i64(&[0, dd as i64, k * d as i64]);
        let w = self.b.node("Reshape", &format!("{p}/Reshape"), &[&w, &cols], &[]);
        let b = self.b.node("Gather", &format!("{p}/GatherBias"), &[&b, idx], &[("axis", Attr::Int(0))]);
        let flat = self.const_i64(&[0, 1, k * d as i64]);
        let b = self.b.node("Reshape", &format!("{p}/ReshapeBias"), &[&b, &flat], &[]);
        let y = self.b.node("MatMul", &format!("{p}/MatMul"), &[x, &w], &[]);
        Ok(self.b.node("Add", &format!("{p}/Add"), &[&y, &b], &[]))
    }
}
