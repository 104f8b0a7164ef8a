//! `optimize train-exits`: train off-ramps for early exit on a fine-tuned classifier (DeeBERT's second stage,
//! or ElasticBERT's joint training) and write the folder with `exits.{layer}.*` tensors beside the model's own.

use bertopt_models::arch::classifier::ExitPooling;
use bertopt_models::train::exits::{self, ExitMethod, ExitTrainReport};

use crate::train_cmd::TrainArgs;

pub fn run(args: &TrainArgs, method: ExitMethod, pooling: Option<ExitPooling>) -> anyhow::Result<ExitTrainReport> {
    // DeeBERT freezes a fine-tuned classifier; ElasticBERT may also start from a bare encoder.
    let need = if method == ExitMethod::Deebert {
        Some("DeeBERT off-ramps need a fine-tuned BERT classifier (pooler + classifier); fine-tune it first with `optimize train`, or use --method elastic")
    } else {
        None
    };
    let mut s = crate::train_cmd::Session::open(args, need, "off-ramps trained on")?;
    let report = exits::train_exits(&mut s.model, &mut s.enc, &s.data.job(args), &args.cfg, method, pooling)?;
    let json = serde_json::to_string_pretty(&report)?;
    bertopt_models::atomic::write_atomic(&args.out.join("exits.json"), |w| w.write_all(json.as_bytes()))?;
    Ok(report)
}

pub fn print(r: &ExitTrainReport) {
    println!("validation accuracy per exit point ({:?}):", r.method);
    for (layers, acc) in &r.exit_accuracy {
        let pooling = r.pooling.iter().find(|(l, _)| l == layers).map_or("final classifier".into(), |(_, p)| {
            format!("off-ramp on {}", if *p == ExitPooling::Mean { "the token mean" } else { "[CLS]" })
        });
        println!("  after layer {layers:>2}: {:.2} % ({pooling})", acc * 100.0);
    }
}
