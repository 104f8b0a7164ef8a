//! `optimize plot`: redraw a saved bench report's accuracy-latency plot.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Redraw the accuracy-latency plot of a saved `optimize bench --data ... --json` report, without measuring
/// again.
#[derive(Args)]
pub struct Plot {
    /// The JSON report `bench --json` printed.
    report: PathBuf,
    /// The SVG to write.
    #[arg(long)]
    svg: PathBuf,
    /// The accuracy budget below the first model within which the fastest model is ringed as recommended.
    #[arg(long, default_value_t = 1.0)]
    max_drop: f64,
}

impl Plot {
    pub fn run(self) -> anyhow::Result<()> {
        let p = self.report.display();
        let text = std::fs::read_to_string(&self.report).with_context(|| format!("reading {p}"))?;
        let r: crate::measure::bench::BenchReport =
            serde_json::from_str(&text).with_context(|| format!("{p} is not a report of `optimize bench --json`"))?;
        crate::measure::plot::pareto_svg(&r, &self.svg, self.max_drop).with_context(|| format!("plotting {p}"))?;
        println!("wrote {}", self.svg.display());
        Ok(())
    }
}
