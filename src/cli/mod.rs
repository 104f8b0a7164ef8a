//! The `optimize` command line. One file per subcommand, each owning its clap arguments, its `run` and how its
//! report prints; this file only lists them and dispatches, one line a subcommand (as `clif-util` does). The
//! work itself lives in the library modules the subcommands call.

use clap::{Parser, Subcommand};

pub mod auto;
pub mod bench;
pub mod calibrate;
pub mod check;
pub mod common;
pub mod eval;
pub mod export;
pub mod head_mask;
pub mod mem_probe;
pub mod opt;
pub mod plot;
pub mod profile;
pub mod recover;
pub mod run;
pub mod score;
pub mod tokenizer;
pub mod train;
pub mod train_ebert;
pub mod train_exits;

pub use common::Report;

#[derive(Parser)]
#[command(
    name = "optimize",
    version,
    about = "Optimize a BERT-family model: safetensors -> IR -> passes -> ONNX",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Without a subcommand: export a model through a pass pipeline.
    #[command(flatten)]
    export: export::Export,
}

#[derive(Subcommand)]
enum Cmd {
    Run(run::Run),
    Train(train::Train),
    Recover(recover::Recover),
    TrainExits(train_exits::TrainExits),
    TrainEbert(train_ebert::TrainEbert),
    Calibrate(calibrate::Calibrate),
    HeadMask(head_mask::HeadMask),
    Score(score::Score),
    Eval(eval::Eval),
    Tokenizer(tokenizer::Tokenizer),
    Check(check::Check),
    Profile(profile::Profile),
    Auto(auto::Auto),
    Plot(plot::Plot),
    Opt(opt::Opt),
    #[command(hide = true)]
    MemProbe(mem_probe::MemProbe),
    Bench(bench::Bench),
}

/// Run the command line `cli` describes.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        None => cli.export.run(),
        Some(Cmd::Run(c)) => c.run(),
        Some(Cmd::Train(c)) => c.run(),
        Some(Cmd::Recover(c)) => c.run(),
        Some(Cmd::TrainExits(c)) => c.run(),
        Some(Cmd::TrainEbert(c)) => c.run(),
        Some(Cmd::Calibrate(c)) => c.run(),
        Some(Cmd::HeadMask(c)) => c.run(),
        Some(Cmd::Score(c)) => c.run(),
        Some(Cmd::Eval(c)) => c.run(),
        Some(Cmd::Tokenizer(c)) => c.run(),
        Some(Cmd::Check(c)) => c.run(),
        Some(Cmd::Profile(c)) => c.run(),
        Some(Cmd::Auto(c)) => c.run(),
        Some(Cmd::Plot(c)) => c.run(),
        Some(Cmd::Opt(c)) => c.run(),
        Some(Cmd::MemProbe(c)) => c.run(),
        Some(Cmd::Bench(c)) => c.run(),
    }
}
