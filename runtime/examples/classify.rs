//! Classify lines from standard input with a model `optimize` exported:
//!
//! ```text
//! cargo run --release -p bertopt-runtime --example classify -- model.onnx < sentences.txt
//! ```
//!
//! Prints one line per input: the label, its probability, the exit layer for early-exit models, the text.

use std::io::BufRead;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: classify MODEL.onnx|SEGMENTED_DIR < lines")?;
    let model = bertopt_runtime::Classifier::load(&path)?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let p = model.classify(&line)?;
        let exit = p.exit_layer.map(|l| format!("\tlayer {l}")).unwrap_or_default();
        println!("{}\t{:.3}{exit}\t{line}", p.label, p.probabilities[p.index]);
    }
    Ok(())
}
