//! `optimize`: the bertopt command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bertopt::bench::{self, BenchConfig};
use bertopt::run::{self, RunnerOptions, Runtime};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "optimize",
    version,
    about = "Optimize a BERT-family model: safetensors -> IR -> passes -> ONNX",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    export: ExportArgs,
}

#[derive(Args)]
struct ExportArgs {
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
    /// name only those to change; exit thresholds apply when the model has off-ramps).
    #[arg(long, default_value = "")]
    search: String,
    /// Budget mode's accuracy data: candidates are compared on its validation rows.
    #[command(flatten)]
    split: bertopt::split::SplitArgs,
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

/// Options shared by `train` and `recover`.
#[derive(Args)]
struct TrainOpts {
    /// The data and its split (training rows, validation rows for the best epoch; test rows are not read).
    /// `--seed` also seeds training.
    #[command(flatten)]
    split: bertopt::split::SplitArgs,
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
    json: bool,
}

impl TrainOpts {
    fn into_args(self, start: bertopt::train_cmd::Start) -> (bertopt::train_cmd::TrainArgs, bool) {
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
        let args = bertopt::train_cmd::TrainArgs {
            start,
            split: self.split,
            out: self.out,
            cfg,
            head_mask: None,
            ffn_mask: None,
            weight_masks: Default::default(),
            pruning: None,
            teacher: self.teacher,
            device: self.device,
            progress: !self.json,
        };
        (args, self.json)
    }
}

fn print_train_report(report: &bertopt_models::train::TrainReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "best validation accuracy {:.2} % (epoch {}), saved to {}",
            report.best_accuracy * 100.0,
            report.best_epoch,
            report.output.display()
        );
    }
    Ok(())
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an ONNX model on text and print the outputs or the predicted label.
    Run {
        model: PathBuf,
        /// Input sentence(s); each is one row of the batch.
        #[arg(long, required = true)]
        text: Vec<String>,
        #[arg(long, value_enum, default_value_t = Runtime::Tract)]
        runtime: Runtime,
        /// tokenizer.json to use instead of the one embedded in the model.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Truncate to this many tokens.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        #[arg(long)]
        json: bool,
    },
    /// Fine-tune a sequence classifier (or train one from a config) and write a Hugging Face folder.
    Train {
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
    },
    /// Recovery fine-tuning after pruning: train MODEL with what the pipeline would remove switched off (heads
    /// and FFN neurons for `heads`/`ffn`; weight entries for `tile`, `kgran`, `type0`, `qkv`, `vw`, `bw`) and
    /// save a checkpoint in which it is zero, so that exporting it with the same pipeline cuts exactly that.
    Recover {
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
    },
    /// Train early-exit off-ramps (a pooler + classifier after every layer but the last) on a fine-tuned
    /// classifier: `deebert` freezes the model and trains only the off-ramps; `elastic` trains everything
    /// jointly (ElasticBERT). Export with `--pass exit(...)`.
    TrainExits {
        /// Fine-tuned model folder.
        model: PathBuf,
        #[arg(long, default_value = "deebert")]
        method: bertopt_models::exit_train::ExitMethod,
        /// What new off-ramps read: `cls` (DeeBERT, ElasticBERT) or `mean`, the mean over the real tokens, for
        /// backbones trained for mean pooling (sentence-transformers' MiniLM), whose early [CLS] carries little.
        /// Off-ramps the model already has keep theirs. Default: cls.
        #[arg(long)]
        pooling: Option<bertopt_models::classifier::ExitPooling>,
        #[command(flatten)]
        opts: TrainOpts,
    },
    /// Add EBERT predictors to a fine-tuned classifier (per layer: which heads and FFN groups each input runs)
    /// and train them with the model toward a target FLOPs ratio. Export with `--pass ebert(ratio=...)`.
    TrainEbert {
        /// Fine-tuned model folder.
        model: PathBuf,
        #[command(flatten)]
        ebert: bertopt::ebert_cmd::EbertArgs,
        #[command(flatten)]
        opts: TrainOpts,
    },
    /// Sweep early-exit thresholds (or patience) on the validation split: accuracy, average layers and tract
    /// latency per setting, the fastest within --max-drop points, a table, calibration.json and calibration.svg;
    /// then the chosen setting's test accuracy, once.
    Calibrate {
        #[command(flatten)]
        args: bertopt::calibrate::CalibrateArgs,
        #[arg(long)]
        json: bool,
    },
    /// Score the attention heads of a fine-tuned classifier in one shot (gradient importance, Michel et al.
    /// 2019) on the training split and write a head mask in SMP's format (True = keep).
    HeadMask {
        #[command(flatten)]
        args: bertopt::head_mask_cmd::HeadMaskArgs,
        #[arg(long)]
        json: bool,
    },
    /// First-order Taylor importance of every encoder weight of a fine-tuned classifier, over calibration batches
    /// of the training split; passes rank by it with `scores=PATH`.
    Score {
        #[command(flatten)]
        args: bertopt::score_cmd::ScoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of an ONNX classifier on labelled data with its 95 % interval: the test rows of the
    /// --train-size/--val-size/--seed split (or --eval FILE), --split val for the validation rows, in tract or
    /// ONNX Runtime. Refuses test rows the model recorded as training or validation rows.
    Eval {
        #[command(flatten)]
        args: bertopt::eval_cmd::EvalArgs,
        #[arg(long)]
        json: bool,
    },
    /// Train a WordPiece tokenizer (BERT normalisation) on labelled data files and write tokenizer.json.
    Tokenizer {
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[arg(long, default_value_t = 4000)]
        vocab_size: usize,
        /// Use only the first N examples after the --seed shuffle (the training split of `optimize train`).
        #[arg(long)]
        train_size: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Check any ONNX file: structural validation, then tract vs ONNX Runtime on seeded random inputs.
    /// Exit code 1 if it is malformed, a runtime refuses it, or an output differs beyond --tol.
    Check {
        #[command(flatten)]
        args: bertopt::check_cmd::CheckArgs,
        #[arg(long)]
        json: bool,
    },
    /// Where tract spends its time: every node of the optimized plan timed over --iters runs, summed by
    /// operator kind; several models side by side (the first is the reference). Per-node timing adds overhead:
    /// take latencies from `bench`, and from here which operators a pass made cheaper and which stayed.
    Profile {
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// tract (every node of its plan timed) or ort (ONNX Runtime's own profiler, per kernel).
        #[arg(long, value_enum, default_value_t = Runtime::Tract)]
        runtime: Runtime,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 128)]
        seq: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        #[arg(long)]
        json: bool,
    },
    /// From a fine-tuned classifier and its data to the fastest model within an accuracy budget: cut heads and
    /// FFN deeper while validation holds (each stage recovered, distilled), off-ramps, int8, every candidate
    /// timed on real validation sentences; the test rows read once, at the end. Resumable: rerun to continue.
    Auto {
        #[command(flatten)]
        args: bertopt::auto::AutoArgs,
    },
    /// Redraw the accuracy-latency plot of a saved `optimize bench --data ... --json` report, without measuring
    /// again.
    Plot {
        /// The JSON report `bench --json` printed.
        report: PathBuf,
        /// The SVG to write.
        #[arg(long)]
        svg: PathBuf,
        /// The accuracy budget below the first model within which the fastest model is ringed as recommended.
        #[arg(long, default_value_t = 1.0)]
        max_drop: f64,
    },
    /// Load a model, run it once, print the process's peak resident memory in KiB (used by `bench`).
    #[command(hide = true)]
    MemProbe {
        model: PathBuf,
        #[arg(long, value_enum)]
        runtime: Runtime,
        #[arg(long)]
        batch: usize,
        #[arg(long)]
        seq: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Benchmark models against the first (the dense one) over a grid of runtimes, batch sizes and sequence
    /// lengths, interleaved after warm-up: p50/p90/p99, throughput, speedup, FLOPs, parameters, peak memory; with
    /// --data also accuracy (and average layers for early-exit models), and --svg a Pareto plot.
    Bench {
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// One or more of tract, ort (comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "tract")]
        runtime: Vec<Runtime>,
        /// Batch sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        batch: Vec<usize>,
        /// Synthetic fixed sequence lengths (comma-separated), for kernel-level comparisons; default 128 when
        /// no --inputs are given.
        #[arg(long, value_delimiter = ',')]
        seq: Vec<usize>,
        /// Real sentences to time at their own length (the primary latency figure): labelled data files whose
        /// --split rows are batched in order, each batch padded only to its longest row.
        #[arg(long)]
        inputs: Vec<PathBuf>,
        /// Which rows of --inputs (and of --data for accuracy, always its test rows): test, val or all.
        #[arg(long = "split", value_enum, default_value_t = bertopt::split::Part::Test)]
        part: bertopt::split::Part,
        /// How tract is planned for real lengths: one symbolic-length plan (a server's default), a plan per
        /// input shape, or batches padded to a multiple of --bucket tokens with a plan per padded shape; several
        /// for comparison: `symbolic,per-length,buckets`.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "symbolic")]
        tract_plans: Vec<bertopt::real_length::TractPlans>,
        /// Bucket width in tokens for `--tract-plans buckets`.
        #[arg(long, default_value_t = 16)]
        bucket: usize,
        /// Timed passes over the --inputs rows.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long, default_value_t = 30)]
        iters: usize,
        /// Intra-op threads for ONNX Runtime (tract runs on one).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Accuracy data: its test rows, with 95 % intervals and paired differences against the first model.
        #[command(flatten)]
        split: bertopt::split::SplitArgs,
        /// Tokens per example (accuracy and real-length rows are truncated to it).
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Write an SVG plot of accuracy against latency (needs --data).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// The accuracy budget, in points below the first model, within which the plot rings the fastest model
        /// that is not measurably worse as the recommended one.
        #[arg(long, default_value_t = 1.0)]
        max_drop: f64,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    bertopt::alloc::tune();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        None => export(cli.export),
        Some(Cmd::Run { model, text, runtime, tokenizer, max_len, json }) => {
            run_text(&model, &text, runtime, tokenizer.as_deref(), max_len, json)
        }
        Some(Cmd::Train { from, config, tokenizer, head_mask, opts }) => {
            let start = match (from, config, tokenizer) {
                (Some(dir), _, _) => bertopt::train_cmd::Start::Pretrained(dir),
                (None, Some(config), Some(tokenizer)) => bertopt::train_cmd::Start::Scratch { config, tokenizer },
                _ => anyhow::bail!("give --from MODEL_DIR, or --config CONFIG.json with --tokenizer TOKENIZER.json"),
            };
            let (mut args, json) = opts.into_args(start);
            if let Some(p) = head_mask {
                args.head_mask = Some(bertopt_passes::mask::HeadMask::read(&p)?.keep);
            }
            print_train_report(&bertopt::train_cmd::run(&args)?, json)
        }
        Some(Cmd::Recover { model, pipeline, schedule, opts }) => {
            let (args, json) = opts.into_args(bertopt::train_cmd::Start::Pretrained(model.clone()));
            let out = args.out.clone();
            let reports = bertopt::recover::run(&model, &pipeline, &schedule, args)?;
            if json {
                let stages: Vec<_> =
                    reports.iter().map(|(p, r)| serde_json::json!({"pipeline": p, "report": r})).collect();
                println!("{}", serde_json::to_string_pretty(&stages)?);
            } else {
                for (p, r) in &reports {
                    println!("{p}:");
                    print_train_report(r, false)?;
                }
                let last = &reports.last().expect("at least one stage").0;
                println!("export it with: optimize {} --pass '{last}' -o model.onnx", out.display());
            }
            Ok(())
        }
        Some(Cmd::TrainExits { model, method, pooling, opts }) => {
            let (args, json) = opts.into_args(bertopt::train_cmd::Start::Pretrained(model));
            anyhow::ensure!(
                args.teacher.is_none(),
                "--teacher is for `train`, `recover` and `train-ebert`; this command does not distil"
            );
            let r = bertopt::exit_cmd::run(&args, method, pooling)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                bertopt::exit_cmd::print(&r);
                println!("saved to {}; export with --pass 'exit(criterion=entropy,threshold=0.3)'", args.out.display());
            }
            Ok(())
        }
        Some(Cmd::TrainEbert { model, ebert, opts }) => {
            let (args, json) = opts.into_args(bertopt::train_cmd::Start::Pretrained(model));
            let r = bertopt::ebert_cmd::run(&args, &ebert)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                bertopt::ebert_cmd::print(&r);
                println!("saved to {}; export with --pass 'ebert(ratio={})'", args.out.display(), ebert.target);
            }
            Ok(())
        }
        Some(Cmd::Calibrate { args, json }) => {
            let c = bertopt::calibrate::run(&args, !json)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                bertopt::calibrate::print(&c);
                println!("wrote {}", args.out.join("calibration.svg").display());
            }
            Ok(())
        }
        Some(Cmd::HeadMask { mut args, json }) => {
            args.progress = !json;
            let r = bertopt::head_mask_cmd::run(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                bertopt::head_mask_cmd::print(&r);
            }
            Ok(())
        }
        Some(Cmd::Score { mut args, json }) => {
            args.progress = !json;
            let r = bertopt::score_cmd::run(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {} ({} tensors, {} over {} batches / {} examples) in {:.1}s",
                    r.output.display(),
                    r.tensors,
                    r.method,
                    r.batches,
                    r.examples,
                    r.seconds
                );
            }
            Ok(())
        }
        Some(Cmd::Eval { args, json }) => {
            let r = bertopt::eval_cmd::run(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} accuracy {} ({} of {}) in {} ({:.1}s)",
                    r.model.display(),
                    r.split,
                    r.accuracy().display(),
                    r.correct,
                    r.examples,
                    r.runtime,
                    r.seconds
                );
                if let Some(b) = &r.against {
                    println!("  {}: {}; difference {}", b.model.display(), b.accuracy.display(), b.diff.display());
                }
                if let Some(avg) = r.avg_layers {
                    let hist: Vec<String> = r.exit_histogram.iter().map(|(l, n)| format!("{l}: {n}")).collect();
                    println!("average layers run {avg:.2}; inputs leaving per layer {}", hist.join(", "));
                }
            }
            Ok(())
        }
        Some(Cmd::Tokenizer { data, vocab_size, train_size, seed, out }) => {
            let parts = data.iter().map(|p| bertopt_models::data::Dataset::read(p)).collect::<Result<Vec<_>, _>>()?;
            let mut all = bertopt_models::data::Dataset::concat(parts);
            if let Some(n) = train_size {
                all = all.split(n, seed).0;
            }
            let texts: Vec<String> = all.examples.into_iter().map(|e| e.text).collect();
            let n = bertopt_models::tokenize::train_wordpiece(&texts, vocab_size, &out)?;
            println!("wrote {} ({n} tokens, trained on {} texts)", out.display(), texts.len());
            Ok(())
        }
        Some(Cmd::Check { args, json }) => {
            let r = bertopt::check_cmd::check(&args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                bertopt::check_cmd::print(&r);
            }
            anyhow::ensure!(r.ok, "{} did not pass the check", args.model.display());
            Ok(())
        }
        Some(Cmd::Auto { args }) => {
            let r = bertopt::auto::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", std::fs::read_to_string(args.out.join("report.md"))?);
                println!("\nwrote {} and {}", r.best.display(), args.out.join("report.md").display());
            }
            Ok(())
        }
        Some(Cmd::Plot { report, svg, max_drop }) => {
            let text = std::fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
            let r: bench::BenchReport = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a report of `optimize bench --json`", report.display()))?;
            bertopt::plot::pareto_svg(&r, &svg, max_drop).with_context(|| format!("plotting {}", report.display()))?;
            println!("wrote {}", svg.display());
            Ok(())
        }
        Some(Cmd::Profile { models, runtime, batch, seq, warmup, iters, json }) => {
            let profiles = models
                .iter()
                .map(|m| match runtime {
                    Runtime::Tract => bertopt::profile::profile(m, batch, seq, warmup, iters),
                    Runtime::Ort => bertopt::profile::profile_ort(m, batch, seq, warmup, iters),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else {
                bertopt::profile::print_table(&profiles);
            }
            Ok(())
        }
        Some(Cmd::MemProbe { model, runtime, batch, seq, threads }) => {
            println!("{}", bench::mem_probe(&model, runtime, batch, seq, threads)?);
            Ok(())
        }
        Some(Cmd::Bench {
            models,
            runtime,
            batch,
            mut seq,
            inputs,
            part,
            tract_plans,
            bucket,
            repeat,
            warmup,
            iters,
            threads,
            split,
            max_len,
            svg,
            max_drop,
            json,
        }) => {
            let real = if inputs.is_empty() {
                if seq.is_empty() {
                    seq = vec![128];
                }
                None
            } else {
                let rows = bertopt::split::SplitArgs { data: inputs.clone(), eval: None, val: None, ..split.clone() };
                let texts = rows.splits()?.part(part).examples.into_iter().map(|e| e.text).collect();
                let rc = bertopt::real_length::RealLengthConfig {
                    runtimes: runtime.clone(),
                    batches: batch.clone(),
                    tract_plans,
                    max_len,
                    repeat,
                    warmup,
                    threads,
                    bucket,
                };
                Some((bench::Inputs { files: inputs, split: part, texts }, rc))
            };
            let accuracy = split.given();
            anyhow::ensure!(svg.is_none() || accuracy.is_some(), "--svg plots accuracy against latency: give --data");
            let cfg = BenchConfig {
                runtimes: runtime,
                batches: batch,
                seqs: seq,
                warmup,
                iters,
                threads,
                seed: 1,
                accuracy,
                real,
                max_len,
                mem_probe: std::env::current_exe().ok(),
            };
            let r = bench::bench(&models, &cfg)?;
            if let Some(p) = &svg {
                bertopt::plot::pareto_svg(&r, p, max_drop)?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                bench::print_table(&r);
                if let Some(p) = &svg {
                    println!("plot: {}", p.display());
                }
            }
            Ok(())
        }
    }
}

fn export(a: ExportArgs) -> anyhow::Result<()> {
    if a.list_passes {
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
    let model = a.model.context("a model path is required")?;
    if let Some(budget) = a.latency_budget {
        let split = a.split.given().context("--latency-budget measures accuracy: give --data FILE")?;
        anyhow::ensure!(!a.segmented, "--latency-budget writes one ONNX file; --segmented is not searched");
        let grid: bertopt::search::Grid = a.search.parse().map_err(|e| anyhow::anyhow!("--search: {e}"))?;
        let r = bertopt::search::search(
            &bertopt::search::SearchArgs {
                model: &model,
                base: &a.pipeline,
                budget,
                grid,
                split,
                runtime: a.runtime,
                batch: a.batch,
                seq: a.seq,
                iters: a.iters,
                max_len: a.seq,
                output: &a.output,
            },
            !a.json,
        )?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            bertopt::search::print(&r);
        }
        return Ok(());
    }
    let opts = bertopt::export::ExportOptions { keep_ir: a.print_ir, segmented: a.segmented };
    let report = bertopt::export::export_with(&model, &a.pipeline, &a.output, opts)?;
    if let Some(ir) = &report.ir {
        print!("{ir}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.passes {
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
            report.output.display(),
            report.onnx_bytes as f64 / 1e6,
            report.params,
            report.flops_seq128 as f64 / 1e9,
            report.seconds_load + report.seconds_passes + report.seconds_emit,
            report.seconds_load,
            report.seconds_passes,
            report.seconds_emit
        );
    }
    Ok(())
}

fn run_text(
    model: &std::path::Path,
    text: &[String],
    runtime: Runtime,
    tokenizer: Option<&std::path::Path>,
    max_len: usize,
    json: bool,
) -> anyhow::Result<()> {
    run::ensure_model(model)?;
    let texts: Vec<&str> = text.iter().map(String::as_str).collect();
    let runner = run::load(runtime, model, RunnerOptions::default())?;
    let rows = if runner.output_names().iter().any(|n| n == "logits") {
        // A classifier: the runtime crate's own path, so `run` shows what an application embedding it gets.
        let opts = bertopt_runtime::Options {
            tokenizer: tokenizer.map(Into::into),
            max_len: Some(max_len),
            ..Default::default()
        };
        let classifier = bertopt_runtime::Classifier::with_runner(model, runner, &opts)?;
        let predictions = classifier.classify_batch(&texts)?;
        texts
            .iter()
            .zip(predictions)
            .map(|(t, p)| {
                let mut row = serde_json::json!({ "text": t, "label": p.label, "logits": p.logits,
                    "probabilities": p.probabilities });
                if let Some(l) = p.exit_layer {
                    row["exit_layer"] = l.into();
                }
                row
            })
            .collect()
    } else {
        hidden_rows(model, &texts, runner.as_ref(), tokenizer, max_len)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for row in rows {
            match row.get("label") {
                Some(l) => println!("{}\t{}", l.as_str().unwrap_or(""), row["text"].as_str().unwrap_or("")),
                None => println!("{row}"),
            }
        }
    }
    Ok(())
}

/// `run` on a base model (no classifier head): each row's pooled vector and [CLS] hidden state.
fn hidden_rows(
    model: &std::path::Path,
    texts: &[&str],
    runner: &dyn run::Runner,
    tokenizer: Option<&std::path::Path>,
    max_len: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut enc = bertopt::tokenize::for_model(model, tokenizer)?;
    let batch = enc.encode(texts, max_len, None)?;
    let outputs = runner.run(&batch)?;
    let mut rows = vec![];
    for (r, t) in texts.iter().enumerate() {
        let mut row = serde_json::json!({ "text": t });
        for o in &outputs {
            let per_row = o.data.len() / batch.batch.max(1);
            let slice = &o.data[r * per_row..(r + 1) * per_row];
            if o.name == "pooler_output" || o.shape.len() == 2 {
                row[&o.name] = slice.to_vec().into();
            } else {
                // last_hidden_state: print the [CLS] vector and the shape; the full tensor is rarely wanted here.
                let d = *o.shape.last().unwrap_or(&1);
                row[format!("{}[cls]", o.name)] = slice[..d.min(slice.len())].to_vec().into();
                row[format!("{}.shape", o.name)] = serde_json::json!([1, batch.seq, d]);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
