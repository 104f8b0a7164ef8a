//! `optimize head-mask`: one-shot gradient head importance written as an SMP head mask.

use clap::Args;

use super::common::Report;

/// Score the attention heads of a fine-tuned classifier in one shot (gradient importance, Michel et al.
/// 2019) on the training split and write a head mask in SMP's format (True = keep).
#[derive(Args)]
pub struct HeadMask {
    #[command(flatten)]
    args: crate::head_mask_cmd::HeadMaskArgs,
    #[arg(long)]
    json: bool,
}

impl Report for crate::head_mask_cmd::HeadMaskReport {
    fn print_text(&self) {
        crate::head_mask_cmd::print(self);
    }
}

impl HeadMask {
    pub fn run(mut self) -> anyhow::Result<()> {
        self.args.progress = !self.json;
        crate::head_mask_cmd::run(&self.args)?.show(self.json)
    }
}
