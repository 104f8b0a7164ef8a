//! The models' tensor-name conventions beyond Hugging Face's: off-ramps (`exits.*`, and what each one pools) and
//! EBERT predictors (`ebert.*`, their shapes). The checkpoint loader, the lowering and the trainable model all
//! read them from here, so none of them depends on another for a name.

use crate::load::config::BertConfig;

pub use bertopt_schema::names::{EBERT, EXITS};

/// Width of a predictor's hidden layer.
pub const WIDTH: usize = 64;

/// Names and shapes of every predictor tensor of a model with `groups` FFN groups per layer.
pub fn predictor_shapes(c: &BertConfig, groups: usize) -> Vec<(String, Vec<usize>)> {
    let d = c.hidden_size;
    let mut v = vec![];
    for l in 0..c.num_hidden_layers {
        for (kind, units) in [("heads", c.num_attention_heads), ("ffn", groups)] {
            let p = format!("{EBERT}{l}.{kind}");
            v.push((format!("{p}.fc1.weight"), vec![WIDTH, d]));
            v.push((format!("{p}.fc1.bias"), vec![WIDTH]));
            for part in ["weight", "bias", "running_mean", "running_var"] {
                v.push((format!("{p}.bn.{part}"), vec![WIDTH]));
            }
            v.push((format!("{p}.fc2.weight"), vec![units, WIDTH]));
            v.push((format!("{p}.fc2.bias"), vec![units]));
        }
    }
    v
}

/// What an off-ramp reads of its layer's output: the [CLS] vector (DeeBERT, ElasticBERT), or the mean over the
/// real tokens, for backbones trained to be mean-pooled (sentence-transformers' MiniLM), whose [CLS] in early
/// layers says next to nothing about the input. Stored in the tensor names: `exits.{l}.pooler.dense` or
/// `exits.{l}.mean_pooler.dense`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitPooling {
    #[default]
    Cls,
    Mean,
}

impl ExitPooling {
    /// The pooling of the off-ramp after layer `l`, given which tensor names exist: mean iff its pooler is named so.
    pub fn of_ramp(l: usize, has: impl Fn(&str) -> bool) -> ExitPooling {
        if has(&format!("{}{l}.{}.weight", EXITS, ExitPooling::Mean.pooler())) {
            ExitPooling::Mean
        } else {
            ExitPooling::Cls
        }
    }

    /// The off-ramp's pooler, under `exits.{l}.`.
    pub fn pooler(self) -> &'static str {
        match self {
            ExitPooling::Cls => "pooler.dense",
            ExitPooling::Mean => "mean_pooler.dense",
        }
    }
}

impl std::fmt::Display for ExitPooling {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            ExitPooling::Cls => "cls",
            ExitPooling::Mean => "mean",
        })
    }
}

impl std::str::FromStr for ExitPooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cls" => Ok(ExitPooling::Cls),
            "mean" => Ok(ExitPooling::Mean),
            _ => Err(format!("unknown off-ramp pooling `{s}` (cls, mean)")),
        }
    }
}
