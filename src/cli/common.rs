//! What several subcommands share: the training options of `train`, `recover`, `train-exits` and
//! `train-ebert`, and `Report`, how a subcommand's result prints as text or as JSON (`--json`).

use std::path::PathBuf;

use clap::Args;

/// A subcommand's result: printed for a person, or as JSON with `--json`.
pub trait Report: serde::Serialize {
    /// The text a person reads.
    fn print_text(&self);

    /// Print as JSON when `json`, else as text.
    fn show(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            self.print_text();
        }
        Ok(())
    }
}

/// Options shared by `train` and `recover`.
#[derive(Args)]
pub struct TrainOpts {
    /// The data and its split (training rows, validation rows for the best epoch; test rows are not read).
    /// `--seed` also seeds training.
    #[command(flatten)]
    split: crate::split::SplitArgs,
    #[arg(short, long)]
    out: PathBuf,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    #[arg(long, default_value_t = 0.1)]
    dropout: f32,
    /// `cpu`, or `cuda` / `cuda:N` with a build that has the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Distil from this fine-tuned classifier (same labels and tokenizer): the loss mixes cross-entropy with
    /// the teacher's softened logits. For `recover` and `train-ebert`, the starting dense model is the natural
    /// teacher.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Weight of the distillation term (with --teacher).
    #[arg(long, default_value_t = 0.5)]
    kd_alpha: f64,
    /// Softmax temperature of the distillation term (with --teacher).
    #[arg(long, default_value_t = 2.0)]
    kd_temperature: f64,
    #[arg(long)]
    pub json: bool,
}

impl TrainOpts {
    /// The library's training arguments, starting from `start`.
    pub fn into_args(self, start: crate::train_cmd::Start) -> crate::train_cmd::TrainArgs {
        let cfg = bertopt_models::train::TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            max_len: self.max_len,
            clip: 1.0,
            dropout: self.dropout,
            seed: self.split.seed,
            kd_alpha: self.kd_alpha,
            kd_temperature: self.kd_temperature,
        };
        crate::train_cmd::TrainArgs {
            start,
            split: self.split,
            out: self.out,
            cfg,
            head_mask: None,
            ffn_mask: None,
            layer_mask: None,
            hidden_mask: None,
            weight_masks: Default::default(),
            pruning: None,
            teacher: self.teacher,
            device: self.device,
            progress: !self.json,
        }
    }
}

impl Report for bertopt_models::train::TrainReport {
    fn print_text(&self) {
        println!(
            "best validation accuracy {:.2} % (epoch {}), saved to {}",
            self.best_accuracy * 100.0,
            self.best_epoch,
            self.output.display()
        );
    }
}
