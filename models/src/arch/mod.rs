//! The trainable models in candle: the BERT classifier (with its gates, masks and off-ramps) and EBERT's
//! predictors. The IR is lowered from a checkpoint, not from these; they exist to train.

pub mod classifier;
pub mod ebert;
