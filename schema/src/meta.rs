//! Metadata keys bertopt writes into every ONNX model it emits (`metadata_props`). A runtime reads the
//! tokenizer and labels from them, so an exported file is self-describing.

/// The `tokenizer.json` text the model was trained with.
pub const TOKENIZER: &str = "bertopt.tokenizer";
/// The class names as a JSON list, in logit order.
pub const LABELS: &str = "bertopt.labels";
/// The pass pipeline that produced the file.
pub const PIPELINE: &str = "bertopt.pipeline";
pub const VOCAB: &str = "bertopt.vocab_size";
/// The longest input in tokens (the model's position embeddings), special tokens included.
pub const MAX_LEN: &str = "bertopt.max_len";
/// FLOPs per sequence as `[c0, c1, c2]`, FLOPs(seq) = c0 + c1 seq + c2 seq², from the IR cost model (the
/// attention scores are quadratic in the sequence, the rest linear, the classifier head constant).
pub const FLOPS: &str = "bertopt.flops_poly";
/// The data splits the checkpoint was trained on (JSON list of split records), so `eval` and `bench` can
/// refuse to report test accuracy on rows the model trained or was validated on.
pub const SPLITS: &str = "bertopt.splits";
