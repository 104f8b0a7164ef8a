//! `optimize score`: first-order Taylor importance of every encoder weight.

use clap::Args;

use super::common::Report;

/// First-order Taylor importance of every encoder weight of a fine-tuned classifier, over calibration batches
/// of the training split; passes rank by it with `scores=PATH`.
#[derive(Args)]
pub struct Score {
    #[command(flatten)]
    args: crate::score_cmd::ScoreArgs,
    #[arg(long)]
    json: bool,
}

impl Report for crate::score_cmd::ScoreReport {
    fn print_text(&self) {
        println!(
            "wrote {} ({} tensors, {} over {} batches / {} examples) in {:.1}s",
            self.output.display(),
            self.tensors,
            self.method,
            self.batches,
            self.examples,
            self.seconds
        );
    }
}

impl Score {
    pub fn run(mut self) -> anyhow::Result<()> {
        self.args.progress = !self.json;
        crate::score_cmd::run(&self.args)?.show(self.json)
    }
}
