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
        let json = bertopt_ir::read_capped_text(path, crate::limits::MAX_TOKENIZER_BYTES)
            .map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()))?;
        let tok: Tokenizer = json.parse().map_err(|e| anyhow::anyhow!("bad tokenizer {}: {e}", path.display()))?;
        Ok(TextEncoder { tok })
    }

    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        let tok: Tokenizer = json.parse().map_err(|e| anyhow::anyhow!("bad tokenizer JSON: {e}"))?;
        Ok(TextEncoder { tok })
    }

    /// Number of tokens, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
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

/// Train a BERT-style WordPiece tokenizer (lower-casing BertNormalizer, BertPreTokenizer, `[CLS] A [SEP]`) on
/// `texts` and write it as `tokenizer.json`. Special tokens take ids 0..5: `[PAD]` = 0, `[UNK]`, `[CLS]`, `[SEP]`,
/// `[MASK]`. Returns the vocabulary size reached.
pub fn train_wordpiece(texts: &[String], vocab_size: usize, out: &Path) -> anyhow::Result<usize> {
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, Model, TokenizerBuilder};

    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let mut trainer = WordPieceTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.iter().map(|s| AddedToken::from(*s, true)).collect())
        .build();
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| anyhow::anyhow!("template: {e}"))?
        .special_tokens(vec![("[CLS]", 2u32), ("[SEP]", 3u32)])
        .build()?;
    let model = WordPiece::builder().unk_token("[UNK]".into()).build().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tok =
        TokenizerBuilder::<WordPiece, BertNormalizer, BertPreTokenizer, TemplateProcessing, WordPieceDecoder>::new()
            .with_model(model)
            .with_normalizer(Some(BertNormalizer::default()))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(template))
            .with_decoder(Some(WordPieceDecoder::default()))
            .build()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.train(&mut trainer, texts.iter()).map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    for (i, s) in specials.iter().enumerate() {
        anyhow::ensure!(tok.get_model().token_to_id(s) == Some(i as u32), "special token {s} did not get id {i}");
    }
    let json = tok.to_string(true).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::atomic::write_atomic(out, |w| w.write_all(json.as_bytes()))?;
    Ok(tok.get_model().get_vocab_size())
}
