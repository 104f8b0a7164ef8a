//! bertopt's model side, in the order a model goes through it: `schema` (the models' naming conventions),
//! `load` (a Hugging Face folder's config and safetensors, checked against each other, lowered to the IR),
//! `data` (labelled text and tokenizers), `arch` (the trainable candle models) and `train` (fine-tuning,
//! off-ramps, EBERT's predictors, importance scores). `load` depends on neither `arch` nor `train`.

pub mod arch;
pub mod atomic;
pub use bertopt_schema::batch;
pub mod data;
pub mod error;
pub use bertopt_schema::limits;
pub mod load;
pub mod progress;
pub mod schema;
pub use bertopt_schema::rng;
pub mod testing;
pub mod train;

pub use error::{Error, Result};
pub use load::checkpoint::{Checkpoint, Head, ModelFiles, Scheme};
pub use load::config::BertConfig;
pub use load::error::LoadError;
pub use load::lower::{load_graph, lower, LowerError};

/// What the rest of the tool needs to know about a model besides its graph.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub files: ModelFiles,
    pub config: BertConfig,
    pub labels: Vec<String>,
    pub safetensors_bytes: u64,
}

impl ModelInfo {
    pub fn of(ck: &Checkpoint) -> Self {
        let mut labels = ck.config.labels();
        if labels.len() != ck.num_labels() {
            labels = (0..ck.num_labels()).map(|i| format!("LABEL_{i}")).collect();
        }
        let safetensors_bytes = std::fs::metadata(&ck.files.weights).map(|m| m.len()).unwrap_or(0);
        ModelInfo { files: ck.files.clone(), config: ck.config.clone(), labels, safetensors_bytes }
    }
}
