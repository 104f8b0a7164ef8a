//! SVG plots (plotters, SVG backend only: no system fonts or image libraries needed).

use std::path::Path;

use plotters::prelude::*;

/// One drawing panel of an SVG plot.
pub type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A model's point in one panel: latency, accuracy and its 95 % interval.
struct Point {
    x: f64,
    acc: f64,
    ci: [f64; 2],
}

/// Colours that stay apart on white and for the common colour-vision deficiencies (Okabe-Ito), then three more
/// for long candidate lists.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
    RGBColor(120, 60, 160),
];

/// The point a user should ship from one panel: the fastest model whose paired difference to the baseline (the
/// first model) is at least `-max_drop` points and whose interval does not lie wholly below 0 (not measurably
/// worse). `None` when only the baseline qualifies or accuracies are missing.
pub fn recommended(r: &crate::measure::bench::BenchReport, latencies: &[f64], max_drop: f64) -> Option<usize> {
    let diffs: Vec<_> = r.models.iter().map(|m| m.diff_vs_first).collect();
    let ms: Vec<Option<f64>> = latencies.iter().map(|&x| Some(x)).collect();
    crate::measure::stats::fastest_within_budget(&diffs, &ms, max_drop)
}

/// The benchmark's accuracy-latency plane: one panel per cell (real-length cells when the bench has them, by mean
/// latency; else the synthetic cells, by p50). Each model is a point in its own colour (named in the legend under
/// the panels, not beside the point, so names never overlap) with its 95 % interval as a vertical bar; the
/// baseline (the first model) is a square with its accuracy as a grey line and the `max_drop` budget below it
/// dotted; the recommended model (see [`recommended`]) is ringed in black; the Pareto front (no other model both
/// faster and more accurate) is joined by a thin line. Captions say the runtime, the batch and whether lengths are
/// real or synthetic.
pub fn pareto_svg(r: &crate::measure::bench::BenchReport, path: &Path, max_drop: f64) -> anyhow::Result<()> {
    pareto_svg_labelled(r, path, max_drop, "test accuracy (%), 95 % interval")
}

/// [`pareto_svg`] with another accuracy axis (e.g. validation accuracy, for a search's candidates).
pub fn pareto_svg_labelled(
    r: &crate::measure::bench::BenchReport,
    path: &Path,
    max_drop: f64,
    y_label: &str,
) -> anyhow::Result<()> {
    let acc: Vec<Option<(f64, [f64; 2])>> = r
        .models
        .iter()
        .map(|m| m.accuracy.map(|a| (a * 100.0, m.ci95.map_or([a * 100.0; 2], |c| [c[0] * 100.0, c[1] * 100.0]))))
        .collect();
    anyhow::ensure!(acc.iter().any(Option::is_some), "a Pareto plot needs accuracies: give --data");
    let (lo, hi) = acc.iter().flatten().fold((f64::MAX, f64::MIN), |(a, b), (_, ci)| (a.min(ci[0]), b.max(ci[1])));
    let base = acc[0].map(|a| a.0);
    let lo = base.map_or(lo, |b| lo.min(b - max_drop));
    // (caption, x axis, latency per model)
    let panels: Vec<(String, &str, Vec<f64>)> = if r.real.is_empty() {
        r.cells
            .iter()
            .map(|c| {
                let caption = format!("{} batch {}, synthetic {} tokens", c.runtime, c.batch, c.seq);
                (caption, "p50 latency per batch (ms)", c.models.iter().map(|m| m.p50_ms).collect())
            })
            .collect()
    } else {
        r.real
            .iter()
            .map(|c| {
                let plan = match c.tract_plans {
                    Some(crate::measure::real_length::TractPlans::PerLength) => ", per-length plans".to_string(),
                    Some(crate::measure::real_length::TractPlans::Buckets) => {
                        format!(", {}-token bucket plans", c.bucket)
                    }
                    _ => String::new(),
                };
                let caption = format!("{} batch {}, real lengths{plan}", c.runtime, c.batch);
                (caption, "mean latency per batch (ms), real sentences", c.models.iter().map(|m| m.mean_ms).collect())
            })
            .collect()
    };
    let names: Vec<String> = r
        .models
        .iter()
        .map(|m| m.model.file_stem().map_or_else(String::new, |s| s.to_string_lossy().to_string()))
        .collect();
    let colour = |i: usize| PALETTE[i % PALETTE.len()];
    let (panel_w, panel_h) = (480u32, 420u32);
    let width = panel_w * panels.len() as u32;
    let per_row = names.len().clamp(1, (width / 240).max(1) as usize);
    let legend_h = 46 + 18 * names.len().div_ceil(per_row) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, panel_h + legend_h)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plots, legend) = root.split_vertically(panel_h);
        let areas = plots.split_evenly((1, panels.len()));
        let mut any_recommended = false;
        for (area, (caption, xlabel, xs)) in areas.iter().zip(&panels) {
            let pts: Vec<(usize, Point)> = (0..r.models.len())
                .filter_map(|i| {
                    let (a, ci) = acc[i]?;
                    Some((i, Point { x: *xs.get(i)?, acc: a, ci }))
                })
                .collect();
            let xmax = pts.iter().map(|p| p.1.x).fold(0.0, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d(0.0..xmax, (lo - 1.0)..(hi + 1.0))?;
            chart.configure_mesh().light_line_style(WHITE).x_desc(*xlabel).y_desc(y_label).draw()?;
            if let Some(b) = base {
                chart.draw_series(LineSeries::new([(0.0, b), (xmax, b)], BLACK.mix(0.35)))?;
                let dotted = (0..40).map(|k| k as f64 * xmax / 40.0).collect::<Vec<_>>();
                chart.draw_series(dotted.chunks(2).map(|w| {
                    PathElement::new(vec![(w[0], b - max_drop), (w[0] + xmax / 80.0, b - max_drop)], BLACK.mix(0.35))
                }))?;
            }
            let mut front: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| !pts.iter().any(|q| q.1.x < p.1.x && q.1.acc > p.1.acc))
                .map(|p| (p.1.x, p.1.acc))
                .collect();
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart.draw_series(LineSeries::new(front, BLACK.mix(0.25)))?;
            let pick = recommended(r, xs, max_drop);
            any_recommended |= pick.is_some();
            for (i, p) in &pts {
                let c = colour(*i);
                chart.draw_series(LineSeries::new([(p.x, p.ci[0]), (p.x, p.ci[1])], c.stroke_width(2)))?;
                if *i == 0 {
                    chart.draw_series([Rectangle::new(
                        [
                            (p.x - xmax / 120.0, p.acc - (hi - lo) / 90.0),
                            (p.x + xmax / 120.0, p.acc + (hi - lo) / 90.0),
                        ],
                        c.filled(),
                    )])?;
                } else {
                    chart.draw_series([Circle::new((p.x, p.acc), 5, c.filled())])?;
                }
                if pick == Some(*i) {
                    chart.draw_series([Circle::new((p.x, p.acc), 10, BLACK.stroke_width(2))])?;
                }
            }
        }
        // The legend: every model in its colour, then the marks.
        let col_w = (width / per_row as u32) as i32;
        let style = ("sans-serif", 13).into_font();
        for (i, name) in names.iter().enumerate() {
            let (row, col) = ((i / per_row) as i32, (i % per_row) as i32);
            let (x, y) = (16 + col * col_w, 12 + row * 18);
            legend.draw(&Circle::new((x, y), 5, colour(i).filled()))?;
            let label = if i == 0 { format!("{name} (baseline, square)") } else { name.clone() };
            legend.draw(&Text::new(label, (x + 10, y - 7), style.clone()))?;
        }
        let note = format!(
            "grey line: baseline accuracy; dotted: {max_drop} point{} below it",
            if max_drop == 1.0 { "" } else { "s" }
        );
        legend.draw(&Text::new(note, (16, (legend_h - 36) as i32), style.clone()))?;
        if any_recommended {
            let ring = "ringed: recommended, the fastest within it, not measurably worse (paired 95 %)";
            legend.draw(&Text::new(ring, (16, (legend_h - 18) as i32), style))?;
        }
        root.present()?;
    }
    crate::atomic::write_atomic(path, |w| w.write_all(svg.as_bytes()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::recommended;

    /// A bench report of four models as `bench --json` writes it: the baseline, one faster but measurably worse,
    /// one within a point and not measurably worse, one slower and more accurate.
    fn report() -> crate::measure::bench::BenchReport {
        let model = |name: &str, acc: f64, diff: Option<(f64, f64, f64)>| {
            let mut m = serde_json::json!({"model": name, "pipeline": "", "params": 1, "accuracy": acc,
                                           "ci95": [acc - 0.03, acc + 0.03], "examples": 600});
            if let Some((d, lo, hi)) = diff {
                m["diff_vs_first"] =
                    serde_json::json!({"diff": d, "ci95": [lo, hi], "a_only": 1, "b_only": 1, "p_value": 0.5});
            }
            m
        };
        serde_json::from_value(serde_json::json!({
            "machine": {"cpu": "x", "cores": 2, "os": "linux"}, "warmup": 0, "iters": 1, "cells": [],
            "models": [model("dense", 0.80, None), model("worse", 0.76, Some((-0.04, -0.06, -0.02))),
                       model("ok", 0.795, Some((-0.005, -0.02, 0.01))), model("slow", 0.81, Some((0.01, -0.01, 0.03)))]
        }))
        .unwrap()
    }

    #[test]
    fn the_recommended_model_is_the_fastest_within_budget_and_not_measurably_worse() {
        let r = report();
        // "worse" is fastest but measurably worse (its interval is below 0); "ok" is next.
        assert_eq!(recommended(&r, &[10.0, 2.0, 4.0, 12.0], 1.0), Some(2));
        // With a budget of a quarter point "ok" (-0.5) no longer qualifies, and "slow" is slower than dense.
        assert_eq!(recommended(&r, &[10.0, 2.0, 4.0, 12.0], 0.25), None);
        // "slow" qualifies once it is faster than dense; the fastest qualifying one wins.
        assert_eq!(recommended(&r, &[10.0, 2.0, 4.0, 3.0], 1.0), Some(3));
    }

    #[test]
    fn the_plot_marks_baseline_budget_and_recommendation() {
        let mut r = report();
        let timings: Vec<serde_json::Value> = ["dense", "worse", "ok", "slow"]
            .iter()
            .zip([10.0, 2.0, 4.0, 12.0])
            .map(|(m, p)| {
                serde_json::json!({"model": m, "p50_ms": p, "p90_ms": p, "p99_ms": p, "mean_ms": p,
                                   "throughput": 1.0, "speedup_vs_first": 10.0 / p})
            })
            .collect();
        let cell = serde_json::json!({"runtime": "tract", "runtime_version": "t", "batch": 1, "seq": 16,
                                      "threads": 1, "models": timings});
        r.cells = vec![serde_json::from_value(cell).unwrap()];
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.svg");
        super::pareto_svg(&r, &path, 1.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("tract batch 1, synthetic 16 tokens"), "{svg}");
        assert!(svg.contains("dense (baseline, square)") && svg.contains("ringed: recommended"), "{svg}");
        for name in ["worse", "ok", "slow"] {
            assert!(svg.contains(&format!("\n{name}\n</text>")), "{name} missing from the legend");
        }
    }
}
