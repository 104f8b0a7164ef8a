//! `optimize train-ebert`: add EBERT predictors to a fine-tuned classifier, train them with the model toward a
//! target FLOPs ratio, and write the folder (predictors as `ebert.{layer}.*` tensors) plus `ebert.json`.

use bertopt_models::train::ebert::{self, EbertConfig, EbertReport};

use crate::train_cmd::TrainArgs;

/// EBERT's own settings, beside the usual training options.
#[derive(clap::Args, Clone, Debug)]
pub struct EbertArgs {
    /// Target FLOPs ratio to the dense model, predictors included (0.8, 0.6, 0.5); also the fraction of heads
    /// and FFN groups the fused graph keeps (`ebert(ratio=...)`).
    #[arg(long, default_value_t = 0.6)]
    pub target: f64,
    /// Weight of the sparsity terms in the loss.
    #[arg(long, default_value_t = 4.0)]
    pub lambda: f64,
    /// Learning rate of the predictors' own AdamW (constant).
    #[arg(long, default_value_t = 0.02)]
    pub predictor_lr: f64,
    /// FFN neurons per group (a group is kept or skipped as a whole).
    #[arg(long, default_value_t = 64)]
    pub group_size: usize,
    /// Gumbel-sigmoid temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Epochs after the --epochs Gumbel ones, trained under the top-k decisions the fused graph makes (the
    /// release trains with a threshold; the graph keeps a fixed k, and this closes the gap).
    #[arg(long, default_value_t = 0)]
    pub top_k_epochs: usize,
}

pub fn run(args: &TrainArgs, e: &EbertArgs) -> anyhow::Result<EbertReport> {
    let need = Some("EBERT starts from a fine-tuned BERT classifier; fine-tune it first with `optimize train`");
    let mut s = crate::train_cmd::Session::open(args, need, "EBERT predictors trained on")?;
    let (soft, teacher) = match &args.teacher {
        Some(dir) => {
            let (t, what) =
                crate::train_cmd::distil_from(dir, &s.model, &mut s.enc, &s.data.train, &args.cfg, args.progress)?;
            s.data.metadata.insert("distilled_from".into(), what.clone());
            (Some(t), Some(what))
        }
        None => (None, None),
    };
    let cfg = EbertConfig {
        train: args.cfg.clone(),
        target: e.target,
        lambda: e.lambda,
        predictor_lr: e.predictor_lr,
        group_size: e.group_size,
        temperature: e.temperature,
        top_k_epochs: e.top_k_epochs,
        teacher,
    };
    let job = bertopt_models::train::TrainJob { teacher: soft.as_ref(), ..s.data.job(args) };
    let report = ebert::train_ebert(&mut s.model, &mut s.enc, &job, &cfg)?;
    let json = serde_json::to_string_pretty(&report)?;
    bertopt_models::atomic::write_atomic(&args.out.join("ebert.json"), |w| w.write_all(json.as_bytes()))?;
    Ok(report)
}

pub fn print(r: &EbertReport) {
    println!("dense validation accuracy {:.2} % ({} FFN groups per layer)", r.dense_accuracy * 100.0, r.groups);
    for e in &r.epochs {
        println!(
            "  epoch {} ({}): CE {:.4}, expected FLOPs ratio {:.3}, validation top-k accuracy {:.2} %",
            e.epoch,
            e.gates,
            e.cross_entropy,
            e.expected_flops_ratio,
            e.top_k_accuracy * 100.0
        );
    }
    for e in [&r.top_k, &r.threshold] {
        println!(
            "  {:<40} accuracy {:.2} %, {:.2} heads and {:.2} groups per layer, FLOPs ratio {:.3}",
            e.rule,
            e.accuracy * 100.0,
            e.heads,
            e.groups,
            e.flops_ratio
        );
    }
}
