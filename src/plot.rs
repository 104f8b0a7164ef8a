//! SVG plots (plotters, SVG backend only: no system fonts or image libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::calibrate::Calibration;

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Two panels: validation accuracy (with its 95 % Wilson interval as a bar) against average layers run, and
/// against mean tract latency; the final classifier (no exit) is the reference point in both.
pub fn calibration_svg(c: &Calibration, path: &Path) -> anyhow::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(480);
        let acc: Vec<f64> = c.settings.iter().map(|s| s.accuracy * 100.0).chain([c.dense_accuracy * 100.0]).collect();
        let ci: Vec<(f64, f64)> = acc
            .iter()
            .map(|a| {
                let (l, h) = crate::stats::wilson((a / 100.0 * c.examples as f64).round() as usize, c.examples);
                (l * 100.0, h * 100.0)
            })
            .collect();
        let (lo, hi) = ci.iter().fold((f64::MAX, f64::MIN), |(a, b), &(l, h)| (a.min(l), b.max(h)));
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
            chart.configure_mesh().x_desc(xlabel).y_desc("validation accuracy (%)").draw()?;
            let pts: Vec<(f64, f64)> = xs.iter().zip(&acc).map(|(&x, &a)| (x, a)).collect();
            chart.draw_series(LineSeries::new(pts.clone(), &BLUE))?.label("early exit settings");
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
            for (&x, &(l, h)) in xs.iter().chain([&dense_x]).zip(&ci) {
                chart.draw_series(LineSeries::new([(x, l), (x, h)], BLUE.mix(0.4)))?;
            }
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

/// The benchmark's accuracy-latency plane: one panel per cell (real-length cells when the bench has them, by mean
/// latency; else the synthetic cells, by p50), each model a labelled point at (latency, accuracy) with its 95 %
/// interval drawn as a vertical bar; the models on the Pareto front (no other model both faster and more accurate)
/// are joined by a line.
pub fn pareto_svg(r: &crate::bench::BenchReport, path: &Path) -> anyhow::Result<()> {
    let acc: Vec<Option<(f64, [f64; 2])>> = r
        .models
        .iter()
        .map(|m| m.accuracy.map(|a| (a * 100.0, m.ci95.map_or([a * 100.0; 2], |c| [c[0] * 100.0, c[1] * 100.0]))))
        .collect();
    anyhow::ensure!(acc.iter().any(Option::is_some), "a Pareto plot needs accuracies: give --data");
    let (lo, hi) = acc.iter().flatten().fold((f64::MAX, f64::MIN), |(a, b), (_, ci)| (a.min(ci[0]), b.max(ci[1])));
    // (caption, x axis, latency per model)
    let panels: Vec<(String, &str, Vec<f64>)> = if r.real.is_empty() {
        r.cells
            .iter()
            .map(|c| {
                let caption = format!("{} batch {} seq {} (synthetic)", c.runtime, c.batch, c.seq);
                (caption, "p50 latency (ms)", c.models.iter().map(|m| m.p50_ms).collect())
            })
            .collect()
    } else {
        r.real
            .iter()
            .map(|c| {
                let plan = match c.tract_plans {
                    Some(crate::real_length::TractPlans::PerLength) => ", per-length plans",
                    _ => "",
                };
                let caption = format!("{} batch {}, real lengths{plan}", c.runtime, c.batch);
                (caption, "mean latency per batch (ms)", c.models.iter().map(|m| m.mean_ms).collect())
            })
            .collect()
    };
    let panel_w = 480;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, ((panel_w * panels.len()) as u32, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, (caption, xlabel, xs)) in areas.iter().zip(&panels) {
            let pts: Vec<(f64, f64, [f64; 2], String)> = r
                .models
                .iter()
                .zip(xs)
                .zip(&acc)
                .filter_map(|((m, &x), a)| {
                    let name = m.model.file_stem().map_or_else(String::new, |s| s.to_string_lossy().to_string());
                    let (a, ci) = (*a)?;
                    Some((x, a, ci, name))
                })
                .collect();
            let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..xmax, (lo - 1.0)..(hi + 1.0))?;
            chart.configure_mesh().x_desc(*xlabel).y_desc("test accuracy (%), 95 % interval").draw()?;
            let mut front: Vec<(f64, f64)> =
                pts.iter().filter(|p| !pts.iter().any(|q| q.0 < p.0 && q.1 > p.1)).map(|p| (p.0, p.1)).collect();
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(front, &BLUE))?;
            for (i, (x, y, ci, label)) in pts.iter().enumerate() {
                let color = if i == 0 { RED } else { BLUE };
                chart.draw_series(LineSeries::new([(*x, ci[0]), (*x, ci[1])], color.mix(0.5)))?;
                chart.draw_series([Circle::new((*x, *y), 4, color.filled())])?;
                chart.draw_series([Text::new(label.clone(), (*x, *y), ("sans-serif", 11))])?;
            }
        }
        root.present()?;
    }
    crate::atomic::write_atomic(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}
