//! `optimize eval`: accuracy of an ONNX classifier with its interval.

use clap::Args;

use super::common::Report;

/// Accuracy of an ONNX classifier on labelled data with its 95 % interval: the test rows of the
/// --train-size/--val-size/--seed split (or --eval FILE), --split val for the validation rows, in tract or
/// ONNX Runtime. Refuses test rows the model recorded as training or validation rows.
#[derive(Args)]
pub struct Eval {
    #[command(flatten)]
    args: crate::eval_cmd::EvalArgs,
    #[arg(long)]
    json: bool,
}

impl Report for crate::eval_cmd::EvalReport {
    fn print_text(&self) {
        println!(
            "{}: {} accuracy {} ({} of {}) in {} ({:.1}s)",
            self.model.display(),
            self.split,
            self.accuracy().display(),
            self.correct,
            self.examples,
            self.runtime,
            self.seconds
        );
        if let Some(b) = &self.against {
            println!("  {}: {}; difference {}", b.model.display(), b.accuracy.display(), b.diff.display());
        }
        if let Some(avg) = self.avg_layers {
            let hist: Vec<String> = self.exit_histogram.iter().map(|(l, n)| format!("{l}: {n}")).collect();
            println!("average layers run {avg:.2}; inputs leaving per layer {}", hist.join(", "));
        }
    }
}

impl Eval {
    pub fn run(self) -> anyhow::Result<()> {
        crate::eval_cmd::run(&self.args)?.show(self.json)
    }
}
