//! Measurement: latency and memory of exported models against dense in one interleaved run (`bench`, with its
//! real-length runner `real_length`), per-node time in each runtime (`profile`), accuracy intervals and paired
//! differences (`stats`), the accuracy-latency plot (`plot`), and what each figure ran on (`machine`).

pub mod bench;
pub mod machine;
pub mod plot;
pub mod profile;
pub mod real_length;
pub mod stats;
