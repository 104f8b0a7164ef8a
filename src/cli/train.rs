//! `optimize train`: fine-tune a sequence classifier, or train one from a config.

use std::path::PathBuf;

use clap::Args;

use super::common::{Report, TrainOpts};
use crate::train_cmd::Start;

/// Fine-tune a sequence classifier (or train one from a config) and write a Hugging Face folder.
#[derive(Args)]
pub struct Train {
    /// Start from this Hugging Face folder (adds a pooler/classifier if it has none).
    #[arg(long, conflicts_with = "config")]
    from: Option<PathBuf>,
    /// Train from scratch with this config.json (needs --tokenizer).
    #[arg(long, requires = "tokenizer")]
    config: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Fine-tune with the heads this mask removes switched off (recovery after head pruning). The saved
    /// checkpoint has those heads' Q/K/V and output slices zeroed. Export it with `--pass heads(mask=...)`.
    #[arg(long)]
    head_mask: Option<PathBuf>,
    #[command(flatten)]
    opts: TrainOpts,
}

impl Train {
    pub fn run(self) -> anyhow::Result<()> {
        let start = match (self.from, self.config, self.tokenizer) {
            (Some(dir), _, _) => Start::Pretrained(dir),
            (None, Some(config), Some(tokenizer)) => Start::Scratch { config, tokenizer },
            _ => anyhow::bail!("give --from MODEL_DIR, or --config CONFIG.json with --tokenizer TOKENIZER.json"),
        };
        let json = self.opts.json;
        let mut args = self.opts.into_args(start);
        if let Some(p) = self.head_mask {
            args.head_mask = Some(bertopt_passes::mask::HeadMask::read(&p)?.keep);
        }
        crate::train_cmd::run(&args)?.show(json)
    }
}
