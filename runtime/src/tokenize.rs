//! Tokenization with the model's own `tokenizer.json`. Truncation and padding baked into the file (MiniLM's
//! pads everything to 128) are overridden: bertopt truncates to `max_len` and pads to the longest row, or to a
//! fixed length when asked.

use std::path::Path;

use bertopt_schema::Batch;
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct TextEncoder {
    tok: Tokenizer,
}

impl TextEncoder {
    pub fn from_file(path: &Path) -> Result<Self> {
        let json = bertopt_schema::read::read_capped_text(path, bertopt_schema::limits::MAX_TOKENIZER_BYTES)
            .map_err(|e| Error::model(path, format!("cannot read the tokenizer: {e}")))?;
        let tok: Tokenizer = json.parse().map_err(|e| Error::model(path, format!("not a tokenizer: {e}")))?;
        Ok(TextEncoder { tok })
    }

    pub fn from_json(json: &str) -> Result<Self> {
        let tok: Tokenizer = json.parse().map_err(|e| Error::Tokenizer(format!("bad tokenizer JSON: {e}")))?;
        Ok(TextEncoder { tok })
    }

    /// Number of tokens, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    /// Truncate to `max_len` tokens (`None`: never) and pad nothing, overriding what the file asks for.
    fn truncate_to(&mut self, max_len: Option<usize>) -> Result<()> {
        let params = max_len.map(|max_length| TruncationParams { max_length, ..Default::default() });
        self.tok.with_truncation(params).map_err(|e| Error::Tokenizer(format!("truncation: {e}")))?;
        self.tok.with_padding(None);
        Ok(())
    }

    /// Set truncation (`None`: keep every token) once, so that `encode_prepared` can run on a shared encoder
    /// (several threads, no per-call setup).
    pub fn prepared(mut self, max_len: Option<usize>) -> Result<Self> {
        self.truncate_to(max_len)?;
        Ok(self)
    }

    /// Encode texts into one batch: truncate to `max_len`, pad (id 0, mask 0) to the longest row or to
    /// `pad_to` when given.
    pub fn encode(&mut self, texts: &[&str], max_len: usize, pad_to: Option<usize>) -> Result<Batch> {
        self.truncate_to(Some(max_len))?;
        self.encode_prepared(texts, pad_to)
    }

    /// Encode with the truncation set by `prepared` (or the last `encode`), padding to the longest row or to
    /// `pad_to`.
    pub fn encode_prepared(&self, texts: &[&str], pad_to: Option<usize>) -> Result<Batch> {
        let enc = self.tok.encode_batch(texts.to_vec(), true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let longest = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(1).max(1);
        let seq = pad_to.unwrap_or(longest).max(longest);
        let batch = texts.len();
        let mut b = Batch::padding(batch, seq);
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
