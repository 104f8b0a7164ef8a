//! `embed`: `Gather`s from the three tables (the word table possibly int8), the position rows as a `Slice`, two
//! `Add`s and `LayerNormalization`; as rows, one `Reshape` to `[batch·seq, D]` before the norm.

use bertopt_ir::ops;

use super::emitter::{EmitError, Emitter};
use crate::onnx::builder::Attr;

impl Emitter<'_> {
    pub(crate) fn lower_embed(&mut self, op: &ops::Embed, a: &[&str]) -> Result<String, EmitError> {
        let ops::Embed { word, position, token_type, ln, eps, position_offset } = op;
        let scope = ln.trim_end_matches(".LayerNorm");
        let tt_table = self.init(token_type)?;
        let pos_table = self.init(position)?;
        let we = self.word_embeddings(word, scope, a[0])?;
        let te = self.b.node("Gather", &format!("{scope}.token_type_embeddings"), &[&tt_table, a[1]], &[]);
        // positions offset..offset+seq, as a slice of the table.
        let seq = self.b.node(
            "Shape",
            &format!("{scope}.position_embeddings/Shape"),
            &[a[0]],
            &[("start", Attr::Int(1)), ("end", Attr::Int(2))],
        );
        let start = self.const_i64(&[*position_offset as i64]);
        let end = self.b.node("Add", &format!("{scope}.position_embeddings/End"), &[&seq, &start], &[]);
        let axes = self.const_i64(&[0]);
        let pe = self.b.node("Slice", &format!("{scope}.position_embeddings"), &[&pos_table, &start, &end, &axes], &[]);
        let x = self.b.node("Add", &format!("{scope}/Add"), &[&we, &te], &[]);
        let mut x = self.b.node("Add", &format!("{scope}/AddPosition"), &[&x, &pe], &[]);
        if self.rows {
            let tokens = self.b.node("Shape", &format!("{scope}/Tokens"), &[a[0]], &[]);
            self.tokens = Some(tokens);
            let d =
                self.weight(position)?.dim(1).map_err(|source| EmitError::Tensor { name: position.clone(), source })?;
            let rows = self.const_i64(&[-1, d as i64]);
            x = self.b.node("Reshape", &format!("{scope}/Rows"), &[&x, &rows], &[]);
        }
        self.layer_norm(&x, ln, *eps)
    }

    /// The word embeddings of `ids`: a `Gather` from the table, or, for an int8 table (see `quant`), a `Gather`
    /// of the int8 rows and of their scales, then `Cast` and one `Mul`.
    pub(crate) fn word_embeddings(&mut self, word: &str, scope: &str, ids: &str) -> Result<String, EmitError> {
        let scale = bertopt_ir::quant::row_scale_name(word);
        if !self.g.weights.0.contains_key(&scale) {
            let table = self.init(word)?;
            return Ok(self.b.node("Gather", &format!("{scope}.word_embeddings"), &[&table, ids], &[]));
        }
        self.init_i8(word)?;
        let s = self.init(&scale)?;
        let rows = self.b.node("Gather", &format!("{scope}.word_embeddings"), &[word, ids], &[]);
        let rows = self.b.node("Cast", &format!("{scope}.word_embeddings/Cast"), &[&rows], &[("to", Attr::Int(1))]);
        let s = self.b.node("Gather", &format!("{scope}.word_embeddings/GatherScale"), &[&s, ids], &[]);
        let axes = self.const_i64(&[2]);
        let s = self.b.node("Unsqueeze", &format!("{scope}.word_embeddings/Unsqueeze"), &[&s, &axes], &[]);
        Ok(self.b.node("Mul", &format!("{scope}.word_embeddings/Dequantize"), &[&rows, &s], &[]))
    }
}
