//! `optimize calibrate`: early-exit thresholds swept on validation, the chosen one tested once.

use clap::Args;

use super::common::Report;

/// Sweep early-exit thresholds (or patience) on the validation split: accuracy, average layers and tract
/// latency per setting, the fastest within --max-drop points, a table, calibration.json and calibration.svg;
/// then the chosen setting's test accuracy, once.
#[derive(Args)]
pub struct Calibrate {
    #[command(flatten)]
    args: crate::calibrate::CalibrateArgs,
    #[arg(long)]
    json: bool,
}

impl Report for crate::calibrate::Calibration {
    fn print_text(&self) {
        crate::calibrate::print(self);
    }
}

impl Calibrate {
    pub fn run(self) -> anyhow::Result<()> {
        crate::calibrate::run(&self.args, !self.json)?.show(self.json)?;
        if !self.json {
            println!("wrote {}", self.args.out.join("calibration.svg").display());
        }
        Ok(())
    }
}
