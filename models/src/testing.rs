//! Small randomly initialised models written as real Hugging Face folders, so that most tests run in
//! milliseconds through exactly the same loading path as a real checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::load::checkpoint::Scheme;
use crate::rng::Rng;

/// Shape and naming of a generated model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    pub scheme: Scheme,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    /// Classifier labels; 0 = encoder with pooler.
    pub labels: usize,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            scheme: Scheme::Bare,
            layers: 2,
            hidden: 32,
            heads: 4,
            intermediate: 64,
            vocab: WORDS.len() + SPECIALS.len(),
            max_positions: 64,
            labels: 0,
            seed: 7,
        }
    }
}

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const WORDS: [&str; 27] = [
    "the", "a", "movie", "film", "was", "is", "good", "bad", "great", "terrible", "i", "loved", "hated", "it", "plot",
    "acting", "fun", "boring", "not", "very", ".", ",", "!", "##s", "##ly", "and", "but",
];

/// A tensor of `center + scale * U(-1, 1)` values.
fn uniform_tensor(rng: &mut Rng, dims: &[usize], center: f32, scale: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| center + scale * (rng.uniform() * 2.0 - 1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("shape matches data")
}

/// Write `config.json`, `model.safetensors` and `tokenizer.json` for a random model into `dir`.
pub fn write_tiny_model(dir: &Path, spec: &TinySpec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(spec.seed);
    let (d, i) = (spec.hidden, spec.intermediate);
    let prefix = match spec.scheme {
        Scheme::Bare => "",
        Scheme::Bert => "bert.",
        Scheme::Roberta => "roberta.",
    };
    let type_vocab = if spec.scheme == Scheme::Roberta { 1 } else { 2 };
    let mut t: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut put = |name: String, x: Tensor| {
        t.insert(name, x);
    };
    put(format!("{prefix}embeddings.word_embeddings.weight"), uniform_tensor(&mut rng, &[spec.vocab, d], 0.0, 1.0));
    put(
        format!("{prefix}embeddings.position_embeddings.weight"),
        uniform_tensor(&mut rng, &[spec.max_positions, d], 0.0, 0.5),
    );
    put(
        format!("{prefix}embeddings.token_type_embeddings.weight"),
        uniform_tensor(&mut rng, &[type_vocab, d], 0.0, 0.5),
    );
    let norm = |rng: &mut Rng, p: String, put: &mut dyn FnMut(String, Tensor)| {
        put(format!("{p}.weight"), uniform_tensor(rng, &[d], 1.0, 0.2));
        put(format!("{p}.bias"), uniform_tensor(rng, &[d], 0.0, 0.1));
    };
    let lin = |rng: &mut Rng, p: String, n: usize, k: usize, put: &mut dyn FnMut(String, Tensor)| {
        let scale = (3.0 / k as f32).sqrt();
        put(format!("{p}.weight"), uniform_tensor(rng, &[n, k], 0.0, scale));
        put(format!("{p}.bias"), uniform_tensor(rng, &[n], 0.0, 0.1));
    };
    norm(&mut rng, format!("{prefix}embeddings.LayerNorm"), &mut put);
    for l in 0..spec.layers {
        let p = format!("{prefix}encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            lin(&mut rng, format!("{p}.attention.self.{m}"), d, d, &mut put);
        }
        lin(&mut rng, format!("{p}.attention.output.dense"), d, d, &mut put);
        norm(&mut rng, format!("{p}.attention.output.LayerNorm"), &mut put);
        lin(&mut rng, format!("{p}.intermediate.dense"), i, d, &mut put);
        lin(&mut rng, format!("{p}.output.dense"), d, i, &mut put);
        norm(&mut rng, format!("{p}.output.LayerNorm"), &mut put);
    }
    match (spec.scheme, spec.labels) {
        (Scheme::Roberta, 0) => {}
        (Scheme::Roberta, n) => {
            lin(&mut rng, "classifier.dense".into(), d, d, &mut put);
            lin(&mut rng, "classifier.out_proj".into(), n, d, &mut put);
        }
        (_, 0) => lin(&mut rng, format!("{prefix}pooler.dense"), d, d, &mut put),
        (_, n) => {
            lin(&mut rng, format!("{prefix}pooler.dense"), d, d, &mut put);
            lin(&mut rng, "classifier".into(), n, d, &mut put);
        }
    }
    let t: std::collections::HashMap<String, Tensor> = t.into_iter().collect();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).map_err(std::io::Error::other)?;

    let (model_type, arch) = match (spec.scheme, spec.labels) {
        (Scheme::Roberta, 0) => ("roberta", "RobertaModel"),
        (Scheme::Roberta, _) => ("roberta", "RobertaForSequenceClassification"),
        (_, 0) => ("bert", "BertModel"),
        (_, _) => ("bert", "BertForSequenceClassification"),
    };
    let mut cfg = serde_json::json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": spec.vocab,
        "hidden_size": d,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "intermediate_size": i,
        "hidden_act": "gelu",
        "max_position_embeddings": spec.max_positions,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": if spec.scheme == Scheme::Roberta { 1 } else { 0 },
    });
    if spec.labels > 0 {
        let id2label: BTreeMap<String, String> =
            (0..spec.labels).map(|k| (k.to_string(), format!("class_{k}"))).collect();
        cfg["id2label"] = serde_json::to_value(id2label)?;
        cfg["num_labels"] = spec.labels.into();
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    std::fs::write(dir.join("tokenizer.json"), tiny_tokenizer_json())?;
    Ok(())
}

/// A WordPiece tokenizer over the tiny vocabulary, in the `tokenizers` JSON format.
pub fn tiny_tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        SPECIALS.iter().chain(WORDS.iter()).enumerate().map(|(i, w)| (w.to_string(), i.into())).collect();
    let cls = SPECIALS.iter().position(|s| *s == "[CLS]").expect("listed");
    let sep = SPECIALS.iter().position(|s| *s == "[SEP]").expect("listed");
    serde_json::to_string_pretty(&serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                        "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    }))
    .expect("static JSON serialises")
}

/// A model folder as one byte string, `u32 LE config length | config.json | model.safetensors`: the input format
/// of the `model_folder` fuzz target, so that the fuzzer mutates both files together.
pub fn pack_folder(dir: &Path) -> std::io::Result<Vec<u8>> {
    let config = std::fs::read(dir.join("config.json"))?;
    let weights = std::fs::read(dir.join("model.safetensors"))?;
    let mut out = (config.len() as u32).to_le_bytes().to_vec();
    out.extend(config);
    out.extend(weights);
    Ok(out)
}

/// The inverse of `pack_folder`: (config text, weights), or None if the bytes do not split so.
pub fn unpack_folder(data: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let rest = &data[4..];
    let config = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((config, &rest[len..]))
}
