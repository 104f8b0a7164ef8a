//! `optimize train-ebert`: EBERT predictors trained with the model toward a FLOPs ratio.

use std::path::PathBuf;

use clap::Args;

use super::common::{Report, TrainOpts};

/// Add EBERT predictors to a fine-tuned classifier (per layer: which heads and FFN groups each input runs)
/// and train them with the model toward a target FLOPs ratio. Export with `--pass ebert(ratio=...)`.
#[derive(Args)]
pub struct TrainEbert {
    /// Fine-tuned model folder.
    model: PathBuf,
    #[command(flatten)]
    ebert: crate::ebert_cmd::EbertArgs,
    #[command(flatten)]
    opts: TrainOpts,
}

impl Report for bertopt_models::train::ebert::EbertReport {
    fn print_text(&self) {
        crate::ebert_cmd::print(self);
    }
}

impl TrainEbert {
    pub fn run(self) -> anyhow::Result<()> {
        let json = self.opts.json;
        let args = self.opts.into_args(crate::train_cmd::Start::Pretrained(self.model));
        crate::ebert_cmd::run(&args, &self.ebert)?.show(json)?;
        if !json {
            println!("saved to {}; export with --pass 'ebert(ratio={})'", args.out.display(), self.ebert.target);
        }
        Ok(())
    }
}
