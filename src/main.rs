//! `optimize`: the bertopt command line. The subcommands live in `bertopt::cli`, one file each.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    bertopt::alloc::tune();
    match bertopt::cli::run(bertopt::cli::Cli::parse()) {
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
