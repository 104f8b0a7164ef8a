//! What an application embedding bertopt-runtime sees: start-up (load, then the first classification) and
//! steady-state latency over the lines of standard input, classified one call at a time as a server would.
//!
//! ```text
//! cargo run --release -p bertopt-runtime --example latency -- MODEL [--symbolic | --per-shape | --buckets N] [--batch N] < lines.txt
//! ```
//!
//! Prints one JSON object: load_ms, first_ms, calls, mean_ms, p50_ms, p90_ms, p99_ms, and mean layers run for
//! early-exit models. `scripts/runtime-footprint` runs it.

use std::io::BufRead;
use std::time::Instant;

use bertopt_runtime::{Classifier, Options, Planning};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path =
        args.first().ok_or("usage: latency MODEL [--symbolic | --per-shape | --buckets N] [--batch N] < lines")?;
    let planning = match args.iter().position(|a| a == "--buckets") {
        Some(i) => Planning::Buckets(args.get(i + 1).ok_or("--buckets needs a width")?.parse()?),
        None if args.iter().any(|a| a == "--per-shape") => Planning::PerShape,
        None if args.iter().any(|a| a == "--symbolic") => Planning::Symbolic,
        None => Planning::PerBatch,
    };
    let batch: usize = match args.iter().position(|a| a == "--batch") {
        Some(i) => args.get(i + 1).ok_or("--batch needs a number")?.parse()?,
        None => 1,
    };
    let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    let texts: Vec<&str> = lines.iter().map(String::as_str).filter(|l| !l.trim().is_empty()).collect();
    if texts.is_empty() {
        return Err("no lines on standard input".into());
    }

    let t0 = Instant::now();
    let model = Classifier::load_with(path, Options { planning, ..Default::default() })?;
    let load = t0.elapsed();
    let t1 = Instant::now();
    model.classify_batch(&texts[..batch.min(texts.len())])?;
    let first = t1.elapsed();

    let mut ms = vec![];
    let mut layers = vec![];
    for chunk in texts.chunks(batch.max(1)) {
        let t = Instant::now();
        let out = model.classify_batch(chunk)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        layers.extend(out.iter().filter_map(|p| p.exit_layer));
    }
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let pct = |q: f64| ms[((q * (ms.len() - 1) as f64).round() as usize).min(ms.len() - 1)];
    let mean_layers = (!layers.is_empty()).then(|| layers.iter().sum::<usize>() as f64 / layers.len() as f64);
    let report = serde_json::json!({
        "model": path, "planning": format!("{planning:?}"), "batch": batch,
        "load_ms": load.as_secs_f64() * 1e3, "first_ms": first.as_secs_f64() * 1e3,
        "calls": ms.len(), "mean_ms": mean, "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
        "mean_layers": mean_layers,
    });
    println!("{report}");
    Ok(())
}
