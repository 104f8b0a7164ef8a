//! `config.json` of a Hugging Face BERT-family model: the fields the graph depends on.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::load::error::LoadError;

#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
}

fn default_model_type() -> String {
    "bert".into()
}
fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Sizes past which a config is taken as corrupt rather than as a model (guards allocation and overflow).
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 1024;

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text =
            bertopt_ir::read_capped_text(path, crate::limits::MAX_CONFIG_BYTES).map_err(|e| LoadError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parse and check config text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LoadError> {
        let cfg: BertConfig =
            serde_json::from_str(text).map_err(|e| LoadError::Config { path: path.into(), problem: e.to_string() })?;
        cfg.check(path)?;
        Ok(cfg)
    }

    /// Checks that need only the config (consistency with the weights is checked by the loader).
    pub fn check(&self, path: &Path) -> Result<(), LoadError> {
        let bad = |problem: String| Err(LoadError::Config { path: path.into(), problem });
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 || v > MAX_DIM {
                return bad(format!("{name} = {v} is outside 1..={MAX_DIM}"));
            }
        }
        if self.num_hidden_layers > MAX_LAYERS {
            return bad(format!("num_hidden_layers = {} is over {MAX_LAYERS}", self.num_hidden_layers));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "num_attention_heads = {} does not divide hidden_size = {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_python") {
            return bad(format!(
                "hidden_act `{}` is not supported (supported: gelu, the exact erf form)",
                self.hidden_act
            ));
        }
        if !matches!(self.model_type.as_str(), "bert" | "roberta") {
            return bad(format!("model_type `{}` is not supported (supported: bert, roberta)", self.model_type));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// RoBERTa numbers positions from padding_idx + 1; BERT from 0.
    pub fn position_offset(&self) -> usize {
        if self.model_type == "roberta" {
            self.pad_token_id + 1
        } else {
            0
        }
    }

    /// Label names by index, if the config has them.
    pub fn labels(&self) -> Vec<String> {
        let Some(m) = &self.id2label else {
            return vec![];
        };
        let mut v: Vec<(usize, String)> = m.iter().filter_map(|(k, l)| Some((k.parse().ok()?, l.clone()))).collect();
        v.sort();
        v.into_iter().map(|(_, l)| l).collect()
    }
}
