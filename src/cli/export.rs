//! The default command, `optimize MODEL --pass PIPELINE -o OUT.onnx`: load, lower, run the pipeline, emit ONNX;
//! with `--latency-budget`, budget mode searches pass settings for the most accurate model within it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::common::Report;
use crate::run::Runtime;

/// The default command: export a model through a pass pipeline (or, with --latency-budget, search for one).
#[derive(Args)]
pub struct Export {
    /// Model folder (config.json, model.safetensors, tokenizer.json) or its model.safetensors.
    #[arg(required_unless_present = "list_passes")]
    model: Option<PathBuf>,
    /// Pass pipeline, e.g. `dce,fold`. Unknown passes and arguments are errors that list what exists.
    #[arg(long = "pass", default_value = "")]
    pipeline: String,
    /// Output ONNX file (written to a temporary file and renamed).
    #[arg(short, long, default_value = "model.onnx")]
    output: PathBuf,
    /// Print the IR after the pipeline to stdout.
    #[arg(long)]
    print_ir: bool,
    /// With an `exit` pass: write a folder (-o DIR) of one ONNX per exit point and `segments.json`, which
    /// `run`, `bench` and `eval` drive per row, so inputs of one batch leave at different layers.
    #[arg(long)]
    segmented: bool,
    /// How hidden states travel between ONNX ops: `batched` (`[batch, seq, D]`, MatMul + Add per linear) or
    /// `rows` (`[batch·seq, D]`, one Gemm per linear). Per-row weight gathers (`ebert`) and --segmented stay
    /// batched.
    #[arg(long, value_enum, default_value_t = crate::onnx::Stream::Batched)]
    stream: crate::onnx::Stream,
    /// How int8 tiles (`tile`, `type0` or `qkv`, then `quant`) are written: `dense` (the tiles in one int8
    /// matrix with zeros, one MatMulInteger: faster at real length in both runtimes) or `gather` (per tile a
    /// Gather and a MatMulInteger on fewer MACs).
    #[arg(long, value_enum, default_value_t = crate::onnx::Int8Tiles::Dense)]
    int8_tiles: crate::onnx::Int8Tiles,
    /// Which ops int8 groups (`quant`) are written with: `integer` (MatMulInteger; both runtimes), `qdq`
    /// (QuantizeLinear/DequantizeLinear around an f32 MatMul) or `ort` (ONNX Runtime's contrib ops; not tract).
    #[arg(long, value_enum, default_value_t = crate::onnx::Int8Form::Integer)]
    int8_form: crate::onnx::Int8Form,
    /// How each layer's query, key and value projections are written: `separate` (three linears) or `fused`
    /// (one linear over the three weights and a Split; tiled and int8 projections stay separate).
    #[arg(long, value_enum, default_value_t = crate::onnx::Qkv::Separate)]
    qkv: crate::onnx::Qkv,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List the registered passes and exit.
    #[arg(long)]
    list_passes: bool,
    /// Budget mode: search pass settings (--search) and write the most accurate pipeline whose measured p50
    /// latency is at most this fraction of dense (measured beside it). `--pass` becomes a prefix of every
    /// candidate. Needs --data.
    #[arg(long)]
    latency_budget: Option<f64>,
    /// The settings searched: `heads=0,0.25,0.5;ffn=0,0.25,0.5,0.75;tile=0,0.5;exit=none,0.3,0.6` (the default;
    /// name only those to change). Every cut can be named with the fractions to try (`type0=0,0.5`, `qkv=0,0.5`,
    /// `head-size`, `kgran`, `vw`, `bw`); exit thresholds apply when the model has off-ramps.
    #[arg(long, default_value = "")]
    search: String,
    /// Budget mode's accuracy data: candidates are compared on its validation rows. Otherwise the data whose
    /// training rows `quant(activations=static)` calibrates on.
    #[command(flatten)]
    split: crate::split::SplitArgs,
    /// Training rows `quant(activations=static)` calibrates on (each at its own length).
    #[arg(long, default_value_t = 256)]
    calibration_rows: usize,
    /// Budget mode: the runtime, batch and sequence length the latency is measured at.
    #[arg(long, value_enum, default_value_t = Runtime::Tract)]
    runtime: Runtime,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
}

impl Export {
    pub fn run(self) -> anyhow::Result<()> {
        if self.list_passes {
            for p in bertopt_passes::registry::passes() {
                let args: Vec<&str> = p.args.iter().map(|(k, _)| *k).collect();
                println!(
                    "{:<10} {}{}",
                    p.name,
                    p.about,
                    if args.is_empty() { String::new() } else { format!(" (args: {})", args.join(", ")) }
                );
            }
            return Ok(());
        }
        let model = self.model.context("a model path is required")?;
        if let Some(budget) = self.latency_budget {
            let split = self.split.given().context("--latency-budget measures accuracy: give --data FILE")?;
            anyhow::ensure!(!self.segmented, "--latency-budget writes one ONNX file; --segmented is not searched");
            let grid: crate::search::Grid = self.search.parse().map_err(|e| anyhow::anyhow!("--search: {e}"))?;
            let r = crate::search::search(
                &crate::search::SearchArgs {
                    model: &model,
                    base: &self.pipeline,
                    budget,
                    grid,
                    split,
                    runtime: self.runtime,
                    batch: self.batch,
                    seq: self.seq,
                    iters: self.iters,
                    max_len: self.seq,
                    output: &self.output,
                },
                !self.json,
            )?;
            r.show(self.json)?;
            return Ok(());
        }
        let opts = crate::export::ExportOptions {
            calibration: self.split.clone().given().map(|s| (s, self.calibration_rows)),
            keep_ir: self.print_ir,
            segmented: self.segmented,
            stream: self.stream,
            int8_tiles: self.int8_tiles,
            int8_form: self.int8_form,
            qkv: self.qkv,
        };
        let report = crate::export::export_with(&model, &self.pipeline, &self.output, opts)?;
        if let Some(ir) = &report.ir {
            print!("{ir}");
        }
        report.show(self.json)
    }
}

impl Report for crate::export::ExportReport {
    fn print_text(&self) {
        for p in &self.passes {
            println!(
                "pass {:<8} params {} -> {}, FLOPs@128 {} -> {}, {:?}",
                p.pass, p.params_before, p.params_after, p.flops_before, p.flops_after, p.changed
            );
            if let Some(note) = p.note {
                println!("  note: {note}");
            }
        }
        println!(
            "wrote {} ({:.1} MB, {} params, {:.2} GFLOPs at seq 128) in {:.2}s (load {:.2}s, passes {:.2}s, emit {:.2}s)",
            self.output.display(),
            self.onnx_bytes as f64 / 1e6,
            self.params,
            self.flops_seq128 as f64 / 1e9,
            self.seconds_load + self.seconds_passes + self.seconds_emit,
            self.seconds_load,
            self.seconds_passes,
            self.seconds_emit
        );
    }
}

impl Report for crate::search::SearchReport {
    fn print_text(&self) {
        crate::search::print(self);
    }
}
