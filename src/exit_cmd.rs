//! `optimize train-exits`: train off-ramps for early exit on a fine-tuned classifier (DeeBERT's second stage,
//! or ElasticBERT's joint training) and write the folder with `exits.{layer}.*` tensors beside the model's own.

use std::collections::BTreeMap;

use anyhow::Context;
use bertopt_models::classifier::BertClassifier;
use bertopt_models::exit_train::{self, ExitMethod, ExitTrainReport};
use bertopt_models::tokenize::TextEncoder;
use bertopt_models::train::TrainJob;

use crate::train_cmd::{split_data, Start, TrainArgs};

pub fn run(args: &TrainArgs, method: ExitMethod) -> anyhow::Result<ExitTrainReport> {
    let Start::Pretrained(dir) = &args.start else {
        anyhow::bail!("train-exits starts from a fine-tuned model folder")
    };
    let (train_set, eval_set) = split_data(&args.data, args.eval.as_deref(), args.train_size, args.cfg.seed)?;
    let files = bertopt_models::ModelFiles::locate(dir)?;
    let tokenizer =
        files.tokenizer.clone().with_context(|| format!("{} has no tokenizer.json", files.dir.display()))?;
    let ck = bertopt_models::Checkpoint::load(dir)?;
    let fine_tuned = matches!(ck.head, bertopt_models::Head::BertClassifier { .. });
    // DeeBERT freezes a fine-tuned classifier; ElasticBERT may also start from a bare encoder.
    anyhow::ensure!(
        fine_tuned || method == ExitMethod::Elastic,
        "{}: DeeBERT off-ramps need a fine-tuned BERT classifier (pooler + classifier); fine-tune it first with \
         `optimize train`, or use --method elastic",
        dir.display()
    );
    let labels = if fine_tuned { bertopt_models::ModelInfo::of(&ck).labels } else { train_set.labels.clone() };
    let train_set = crate::train_cmd::align_labels(train_set, &labels, dir)?;
    let eval_set = crate::train_cmd::align_labels(eval_set, &labels, dir)?;
    let mut model = BertClassifier::from_checkpoint(ck, labels, args.cfg.seed)?;
    model.to_device(&bertopt_models::classifier::device_from_name(&args.device)?)?;
    let mut enc = TextEncoder::from_file(&tokenizer)?;
    let mut meta = BTreeMap::new();
    meta.insert("start".to_string(), format!("off-ramps trained on {}", dir.display()));
    meta.insert("seed".into(), args.cfg.seed.to_string());
    let job = TrainJob {
        train: &train_set,
        eval: &eval_set,
        tokenizer: &tokenizer,
        out: &args.out,
        metadata: &meta,
        progress: args.progress,
    };
    let report = exit_train::train_exits(&mut model, &mut enc, &job, &args.cfg, method)?;
    let json = serde_json::to_string_pretty(&report)?;
    bertopt_models::atomic::write_atomic(&args.out.join("exits.json"), |w| w.write_all(json.as_bytes()))?;
    Ok(report)
}

pub fn print(r: &ExitTrainReport) {
    println!("held-out accuracy per exit point ({:?}):", r.method);
    for (layers, acc) in &r.exit_accuracy {
        println!("  after layer {layers:>2}: {:.2} %", acc * 100.0);
    }
}
