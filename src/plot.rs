//! SVG plots (plotters, SVG backend only: no system fonts or image libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::calibrate::Calibration;

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Two panels: accuracy against average layers run, and against mean tract latency; the final classifier (no
/// exit) is the reference point in both.
pub fn calibration_svg(c: &Calibration, path: &Path) -> anyhow::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(480);
        let acc: Vec<f64> = c.settings.iter().map(|s| s.accuracy * 100.0).chain([c.dense_accuracy * 100.0]).collect();
        let (lo, hi) = acc.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let y = (lo - 1.0)..(hi + 1.0);
        let latency = format!("mean latency, tract batch {} (ms)", c.batch);
        let panels: [(&Panel, &str, Vec<f64>, f64); 2] = [
            (&left, "average layers run", c.settings.iter().map(|s| s.avg_layers).collect(), c.layers as f64),
            (&right, &latency, c.settings.iter().map(|s| s.mean_ms).collect(), c.dense_mean_ms),
        ];
        for (area, xlabel, xs, dense_x) in panels {
            let xmax = xs.iter().copied().fold(dense_x, f64::max) * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption("accuracy vs cost", ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..xmax, y.clone())?;
            chart.configure_mesh().x_desc(xlabel).y_desc("held-out accuracy (%)").draw()?;
            let pts: Vec<(f64, f64)> = xs.iter().zip(&acc).map(|(&x, &a)| (x, a)).collect();
            chart.draw_series(LineSeries::new(pts.clone(), &BLUE))?.label("early exit settings");
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
            chart
                .draw_series([Circle::new((dense_x, c.dense_accuracy * 100.0), 5, RED.filled())])?
                .label("no exit (final classifier)");
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        }
        root.present()?;
    }
    crate::atomic::write_atomic(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}
