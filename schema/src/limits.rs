//! Upper bounds on what a user's file may ask of bertopt, so a corrupt or hostile file fails with a message
//! instead of exhausting memory. Weights are memory-mapped and bounded by the file itself; these cover the
//! files that are read whole.

/// config.json (a real one is about 1 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// tokenizer.json (bert-base-multilingual's is about 2 MiB).
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;
/// A labelled text file for training or evaluation.
pub const MAX_DATA_BYTES: u64 = 2 << 30;
/// IR text for `optimize opt` (MiniLM's whole graph prints in about 11 KiB; inline weight data can add much more).
pub const MAX_IR_TEXT_BYTES: u64 = 256 << 20;
