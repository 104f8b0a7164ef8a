//! Tokenization with the model's own `tokenizer.json`. Truncation and padding baked into the file (MiniLM's
//! pads everything to 128) are overridden: bertopt truncates to `max_len` and pads to the longest row, or to a
//! fixed length when asked.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::batch::Batch;

pub struct TextEncoder {
    tok: Tokenizer,
}

impl TextEncoder {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let tok =
            Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()))?;
        Ok(TextEncoder { tok })
    }

    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        let tok: Tokenizer = json.parse().map_err(|e| anyhow::anyhow!("bad tokenizer JSON: {e}"))?;
        Ok(TextEncoder { tok })
    }

    /// Encode texts into one batch: truncate to `max_len`, pad (id 0, mask 0) to the longest row or to
    /// `pad_to` when given.
    pub fn encode(&mut self, texts: &[&str], max_len: usize, pad_to: Option<usize>) -> anyhow::Result<Batch> {
        self.tok
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;
        self.tok.with_padding(None);
        let enc =
            self.tok.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenization failed: {e}"))?;
        let longest = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(1).max(1);
        let seq = pad_to.unwrap_or(longest).max(longest);
        let batch = texts.len();
        let mut b = Batch {
            batch,
            seq,
            input_ids: vec![0; batch * seq],
            attention_mask: vec![0; batch * seq],
            token_type_ids: vec![0; batch * seq],
        };
        for (r, e) in enc.iter().enumerate() {
            for (c, ((&id, &m), &t)) in e.get_ids().iter().zip(e.get_attention_mask()).zip(e.get_type_ids()).enumerate()
            {
                b.input_ids[r * seq + c] = id as i64;
                b.attention_mask[r * seq + c] = m as i64;
                b.token_type_ids[r * seq + c] = t as i64;
            }
        }
        Ok(b)
    }
}
