//! bertopt's model side: Hugging Face config and safetensors loading (checked against each other), and
//! lowering to the IR.

pub mod atomic;
pub use bertopt_schema::batch;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod data;
pub mod ebert;
pub mod ebert_train;
pub mod error;
pub mod exit_train;
pub mod head_importance;
pub use bertopt_schema::limits;
pub mod lower;
pub mod progress;
pub mod schema;
pub use bertopt_schema::rng;
pub mod taylor;
pub mod testing;
pub mod tokenize;
pub mod train;

pub use checkpoint::{Checkpoint, Head, ModelFiles, Scheme};
pub use config::BertConfig;
pub use error::LoadError;
pub use lower::{load_graph, lower, LowerError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Lower(#[from] LowerError),
}

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
