//! Tokenizers: the encoder every runner and the trainer share (`bertopt_runtime::tokenize`), and training a
//! WordPiece vocabulary for a model trained from scratch.

use std::path::Path;

pub use bertopt_runtime::tokenize::TextEncoder;

/// Train a BERT-style WordPiece tokenizer (lower-casing BertNormalizer, BertPreTokenizer, `[CLS] A [SEP]`) on
/// `texts` and write it as `tokenizer.json`. Special tokens take ids 0..5: `[PAD]` = 0, `[UNK]`, `[CLS]`, `[SEP]`,
/// `[MASK]`. Returns the vocabulary size reached.
pub fn train_wordpiece(texts: &[String], vocab_size: usize, out: &Path) -> crate::Result<usize> {
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
        .map_err(|e| crate::error::invalid!("template: {e}"))?
        .special_tokens(vec![("[CLS]", 2u32), ("[SEP]", 3u32)])
        .build()
        .map_err(|e| crate::error::invalid!("template: {e}"))?;
    let model = WordPiece::builder().unk_token("[UNK]".into()).build().map_err(|e| crate::error::invalid!("{e}"))?;
    let mut tok =
        TokenizerBuilder::<WordPiece, BertNormalizer, BertPreTokenizer, TemplateProcessing, WordPieceDecoder>::new()
            .with_model(model)
            .with_normalizer(Some(BertNormalizer::default()))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(template))
            .with_decoder(Some(WordPieceDecoder::default()))
            .build()
            .map_err(|e| crate::error::invalid!("{e}"))?;
    tok.train(&mut trainer, texts.iter()).map_err(|e| crate::error::invalid!("training the tokenizer: {e}"))?;
    for (i, s) in specials.iter().enumerate() {
        crate::error::ensure!(tok.get_model().token_to_id(s) == Some(i as u32), "special token {s} did not get id {i}");
    }
    let json = tok.to_string(true).map_err(|e| crate::error::invalid!("{e}"))?;
    crate::atomic::write_atomic(out, |w| w.write_all(json.as_bytes())).map_err(|e| crate::Error::io(out, e))?;
    Ok(tok.get_model().get_vocab_size())
}
