//! Training throughput (samples/s) of fine-tuning all-MiniLM-L6-v2 as a classifier on the CPU: batch 32, every
//! sequence 64 tokens long (the `--max-len 64` ceiling, so the figure is a floor for real data), AdamW with
//! clipping and dropout, exactly the step `optimize train` runs. Forward-only throughput is printed beside it.
//!
//! `eval "$(scripts/fetch-assets)"; cargo bench --bench train_throughput` (BERTOPT_MINILM points at the model).
//! Settings: BENCH_BATCH, BENCH_SEQ, BENCH_STEPS, BENCH_DEVICE (cpu, cuda with the `cuda` feature);
//! BENCH_DEFAULT_MALLOC=1 skips `optimize`'s allocator tuning, to measure what it buys.

use std::time::Instant;

use bertopt_models::arch::classifier::{device_from_name, BertClassifier};
use bertopt_models::batch::Batch;
use bertopt_models::rng::Rng;
use bertopt_models::train::{optimizer, train_step, TrainConfig};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("BENCH_DEFAULT_MALLOC").is_none() {
        bertopt::alloc::tune();
    }
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let dir = std::env::var("BERTOPT_MINILM").map_err(|_| {
        anyhow::anyhow!("BERTOPT_MINILM is not set: run `eval \"$(scripts/fetch-assets)\"` first (it fetches MiniLM)")
    })?;
    let (batch, seq, steps) = (env_or("BENCH_BATCH", 32), env_or("BENCH_SEQ", 64), env_or("BENCH_STEPS", 8));
    let device_name = std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let cfg = TrainConfig { batch_size: batch, max_len: seq, ..TrainConfig::default() };
    let mut model = BertClassifier::from_pretrained(dir.as_ref(), vec!["0".into(), "1".into()], cfg.seed)?;
    model.to_device(&device_from_name(&device_name)?)?;
    model.dropout = cfg.dropout;
    let mut rng = Rng::new(1);
    let vocab = model.config.vocab_size;
    let mut b = Batch::padding(batch, seq);
    for (i, id) in b.input_ids.iter_mut().enumerate() {
        *id = if i % seq == 0 { 101 } else { 1000 + rng.below(vocab - 1000) as i64 };
    }
    b.attention_mask.iter_mut().for_each(|m| *m = 1);
    let labels: Vec<u32> = (0..batch).map(|i| (i % 2) as u32).collect();
    let vars = model.vars();
    let mut opt = optimizer(&model, &cfg)?;

    let mut time = |steps: usize, train: bool| -> anyhow::Result<f64> {
        let start = Instant::now();
        for _ in 0..steps {
            if train {
                let (_, loss) = train_step(&model, &mut opt, &vars, &b, &labels, None, &mut rng, &cfg)?;
                loss.to_scalar::<f32>()?;
            } else {
                model.forward(&b, None)?.to_vec2::<f32>()?;
            }
        }
        Ok(start.elapsed().as_secs_f64() / steps as f64)
    };
    time(2, true)?; // warm-up: allocator, caches, thread pool
    let train_s = time(steps, true)?;
    time(1, false)?;
    let fwd_s = time(steps, false)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "train_throughput minilm-l6 batch {batch} seq {seq} device {device_name} ({threads} cores): \
         train {:.1} samples/s ({:.0} ms/step), forward only {:.1} samples/s, train/forward time {:.2}x",
        batch as f64 / train_s,
        train_s * 1e3,
        batch as f64 / fwd_s,
        train_s / fwd_s
    );
    println!(
        "{}",
        serde_json::json!({"bench": "train_throughput", "model": "all-MiniLM-L6-v2", "batch": batch, "seq": seq,
            "device": device_name, "cores": threads, "steps": steps,
            "train_samples_per_s": batch as f64 / train_s, "forward_samples_per_s": batch as f64 / fwd_s})
    );
    Ok(())
}
