//! `optimize train-exits`: DeeBERT or ElasticBERT off-ramps on a fine-tuned classifier.

use std::path::PathBuf;

use clap::Args;

use super::common::{Report, TrainOpts};

/// Train early-exit off-ramps (a pooler + classifier after every layer but the last) on a fine-tuned
/// classifier: `deebert` freezes the model and trains only the off-ramps; `elastic` trains everything
/// jointly (ElasticBERT). Export with `--pass exit(...)`.
#[derive(Args)]
pub struct TrainExits {
    /// Fine-tuned model folder.
    model: PathBuf,
    #[arg(long, default_value = "deebert")]
    method: bertopt_models::train::exits::ExitMethod,
    /// What new off-ramps read: `cls` (DeeBERT, ElasticBERT) or `mean`, the mean over the real tokens, for
    /// backbones trained for mean pooling (sentence-transformers' MiniLM), whose early [CLS] carries little.
    /// Off-ramps the model already has keep theirs. Default: cls.
    #[arg(long)]
    pooling: Option<bertopt_models::arch::classifier::ExitPooling>,
    #[command(flatten)]
    opts: TrainOpts,
}

impl Report for bertopt_models::train::exits::ExitTrainReport {
    fn print_text(&self) {
        crate::exit_cmd::print(self);
    }
}

impl TrainExits {
    pub fn run(self) -> anyhow::Result<()> {
        let json = self.opts.json;
        let args = self.opts.into_args(crate::train_cmd::Start::Pretrained(self.model));
        anyhow::ensure!(
            args.teacher.is_none(),
            "--teacher is for `train`, `recover` and `train-ebert`; this command does not distil"
        );
        crate::exit_cmd::run(&args, self.method, self.pooling)?.show(json)?;
        if !json {
            println!("saved to {}; export with --pass 'exit(criterion=entropy,threshold=0.3)'", args.out.display());
        }
        Ok(())
    }
}
