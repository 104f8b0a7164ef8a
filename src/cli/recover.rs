//! `optimize recover`: recovery fine-tuning with what a pruning pipeline removes switched off.

use std::path::PathBuf;

use clap::Args;

use super::common::{Report, TrainOpts};

/// Recovery fine-tuning after pruning: train MODEL with what the pipeline would remove switched off (heads
/// and FFN neurons for `heads`/`ffn`; weight entries for `tile`, `kgran`, `type0`, `qkv`, `vw`, `bw`) and
/// save a checkpoint in which it is zero, so that exporting it with the same pipeline cuts exactly that.
#[derive(Args)]
pub struct Recover {
    /// Fine-tuned model folder.
    model: PathBuf,
    /// The pruning pipeline, e.g. `heads(mask=head_mask.bin),ffn(ratio=0.5)`; with --schedule, `{s}` stands
    /// for each stage's sparsity: `tile(sparsity={s})`.
    #[arg(long = "pass", required = true)]
    pipeline: String,
    /// Iterative schedule: sparsities in increasing order, one training run (--epochs) per stage, each
    /// starting from the last; intermediate checkpoints go to OUT/stages/<i>.
    #[arg(long, value_delimiter = ',')]
    schedule: Vec<f64>,
    #[command(flatten)]
    opts: TrainOpts,
}

impl Recover {
    pub fn run(self) -> anyhow::Result<()> {
        let json = self.opts.json;
        let args = self.opts.into_args(crate::train_cmd::Start::Pretrained(self.model.clone()));
        let out = args.out.clone();
        let reports = crate::recover::run(&self.model, &self.pipeline, &self.schedule, args)?;
        if json {
            let stages: Vec<_> = reports.iter().map(|(p, r)| serde_json::json!({"pipeline": p, "report": r})).collect();
            println!("{}", serde_json::to_string_pretty(&stages)?);
        } else {
            for (p, r) in &reports {
                println!("{p}:");
                r.print_text();
            }
            let last = &reports.last().expect("at least one stage").0;
            println!("export it with: optimize {} --pass '{last}' -o model.onnx", out.display());
        }
        Ok(())
    }
}
