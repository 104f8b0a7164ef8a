//! `optimize profile`: where a runtime spends its time in a model. In tract every node of the optimized plan is
//! timed over the measured runs; in ONNX Runtime its own profiler records every kernel (`--runtime ort`). The
//! times are summed by operator kind, so that a pruned model can be set beside the dense one: which operators its
//! cuts made cheaper, and which work (normalisation, softmax, the gathers a tile-wise lowering adds) stays.
//! Timing each node adds a little overhead per node; compare models with one another here, and take latencies
//! from `optimize bench`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tract_onnx::tract_core::plan::eval;

use crate::run::tract_runner::TractRunner;
use crate::run::{Batch, Plans, RunnerOptions, Value};

/// One operator kind's share of a run.
#[derive(Debug, Serialize)]
pub struct OpTime {
    /// tract's name for the operator after optimisation (`OptMatMul`, `Gather`, `LayerNorm`, ...).
    pub op: String,
    /// Nodes of this kind in the plan.
    pub nodes: usize,
    /// Time per run, summed over those nodes (ms).
    pub ms: f64,
    /// Fraction of the run's summed node time.
    pub share: f64,
}

/// One node of the plan.
#[derive(Debug, Serialize)]
pub struct NodeTime {
    /// The node's name in tract's plan (derived from the ONNX node names, which say the layer and the matrix).
    pub name: String,
    pub op: String,
    pub ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ModelProfile {
    pub model: PathBuf,
    /// `tract` or `ort`.
    pub runtime: String,
    pub batch: usize,
    pub seq: usize,
    pub iters: usize,
    /// Summed node time per run (ms).
    pub total_ms: f64,
    /// Operator kinds, most time first.
    pub ops: Vec<OpTime>,
    /// Every node that took any time, most time first (in the JSON only).
    pub nodes: Vec<NodeTime>,
}

/// Time every node of `path`'s tract plan over `iters` runs after `warmup`, on one thread, on synthetic tokens.
/// `plans`: which plan is timed (`Plans::PerShape(batch, seq)`: one made for exactly this shape; the others differ
/// in which kernels and fusions tract picks over symbolic dimensions).
pub fn profile(
    path: &Path,
    batch: usize,
    seq: usize,
    warmup: usize,
    iters: usize,
    plans: Plans,
) -> anyhow::Result<ModelProfile> {
    anyhow::ensure!(iters > 0, "--iters must be at least 1");
    anyhow::ensure!(
        path.is_file(),
        "{}: profile takes one ONNX file (a segmented early-exit model's stages can be profiled one by one)",
        path.display()
    );
    let input = Batch::synthetic(batch, seq, crate::measure::bench::recorded(path)?.vocab, 1);
    let runner = TractRunner::load(path, RunnerOptions { plans, threads: 1 })?;
    let (plan, inputs) = runner.prepare(&Value::from_batch(&input))?;
    let mut state = plan.spawn()?;
    let mut per_node = vec![Duration::ZERO; plan.model().nodes.len()];
    for run in 0..warmup + iters {
        let measured = run >= warmup;
        state
            .run_plan_with_eval(inputs.clone(), |ctx, op_state, node, values| {
                let start = Instant::now();
                let out = eval(ctx, op_state, node, values);
                if measured {
                    per_node[node.id] += start.elapsed();
                }
                out
            })
            .map_err(|e| anyhow::anyhow!("tract run of {} failed: {e:?}", path.display()))?;
    }
    Ok(summarise(path, "tract", batch, seq, iters, per_node_ms(&plan, &per_node, iters)))
}

fn per_node_ms(plan: &tract_onnx::prelude::TypedSimplePlan, per_node: &[Duration], iters: usize) -> Vec<NodeTime> {
    plan.model()
        .nodes
        .iter()
        .map(|node| NodeTime {
            name: node.name.clone(),
            op: node.op().name().to_string(),
            ms: per_node[node.id].as_secs_f64() * 1e3 / iters as f64,
        })
        .collect()
}

/// Nodes (with their times per run) into kinds, both most time first.
fn summarise(path: &Path, runtime: &str, batch: usize, seq: usize, iters: usize, all: Vec<NodeTime>) -> ModelProfile {
    let mut ops: Vec<OpTime> = vec![];
    let mut nodes: Vec<NodeTime> = vec![];
    for n in all {
        match ops.iter_mut().find(|o| o.op == n.op) {
            Some(o) => {
                o.nodes += 1;
                o.ms += n.ms;
            }
            None => ops.push(OpTime { op: n.op.clone(), nodes: 1, ms: n.ms, share: 0.0 }),
        }
        if n.ms > 0.0 {
            nodes.push(n);
        }
    }
    let total_ms: f64 = ops.iter().map(|o| o.ms).sum();
    for o in &mut ops {
        o.share = if total_ms > 0.0 { o.ms / total_ms } else { 0.0 };
    }
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    ModelProfile { model: path.into(), runtime: runtime.into(), batch, seq, iters, total_ms, ops, nodes }
}

/// ONNX Runtime's own profile of `path` (level-3 optimized session, one thread): every kernel's time in the last
/// `iters` of `warmup + iters` runs, by node and by operator kind (ONNX Runtime's op names after its fusions).
pub fn profile_ort(path: &Path, batch: usize, seq: usize, warmup: usize, iters: usize) -> anyhow::Result<ModelProfile> {
    anyhow::ensure!(iters > 0, "--iters must be at least 1");
    anyhow::ensure!(path.is_file(), "{}: profile takes one ONNX file", path.display());
    let input = Batch::synthetic(batch, seq, crate::measure::bench::recorded(path)?.vocab, 1);
    let dir = tempfile::tempdir()?;
    let runner = crate::run::ort_runner::OrtRunner::load_profiled(
        path,
        RunnerOptions { plans: Plans::default(), threads: 1 },
        Some(&dir.path().join("ort")),
    )?;
    use crate::run::Runner;
    for _ in 0..warmup + iters {
        runner.run(&input)?;
    }
    let trace = runner.end_profiling()?;
    let text = std::fs::read_to_string(&trace).with_context(|| format!("reading ONNX Runtime's trace {trace}"))?;
    let nodes = ort_trace_nodes(&text, iters).with_context(|| format!("ONNX Runtime's trace {trace}"))?;
    Ok(summarise(path, "ort", batch, seq, iters, nodes))
}

/// Kernel times per node from an ONNX Runtime trace (Chrome trace events): the `*_kernel_time` events of node
/// category inside the last `iters` `model_run` events, summed per node and divided by `iters`.
pub fn ort_trace_nodes(trace: &str, iters: usize) -> anyhow::Result<Vec<NodeTime>> {
    let events: Vec<serde_json::Value> = serde_json::from_str(trace).context("not a JSON list of trace events")?;
    let num = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap_or(0.0);
    let mut runs: Vec<(f64, f64)> = events
        .iter()
        .filter(|e| e["name"] == "model_run")
        .map(|e| (num(e, "ts"), num(e, "ts") + num(e, "dur")))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    anyhow::ensure!(runs.len() >= iters, "{} model runs recorded, {iters} asked for", runs.len());
    let runs = &runs[runs.len() - iters..];
    let mut nodes: Vec<NodeTime> = vec![];
    for e in &events {
        let Some(name) = e["name"].as_str().and_then(|n| n.strip_suffix("_kernel_time")) else { continue };
        if e["cat"] != "Node" {
            continue;
        }
        let ts = num(e, "ts");
        if !runs.iter().any(|&(a, b)| ts >= a && ts <= b) {
            continue;
        }
        let ms = num(e, "dur") / 1e3 / iters as f64;
        let op = e["args"]["op_name"].as_str().unwrap_or("?").to_string();
        match nodes.iter_mut().find(|n| n.name == name) {
            Some(n) => n.ms += ms,
            None => nodes.push(NodeTime { name: name.to_string(), op, ms }),
        }
    }
    Ok(nodes)
}

/// Operator kinds as rows, models as columns (ms per run and share), in the first model's order; kinds only
/// later models have come after.
pub fn print_table(profiles: &[ModelProfile]) {
    let mut kinds: Vec<&str> = vec![];
    for p in profiles {
        for o in &p.ops {
            if !kinds.contains(&o.op.as_str()) {
                kinds.push(&o.op);
            }
        }
    }
    print!("{:<24}", "op");
    for p in profiles {
        print!(" {:>24}", crate::measure::machine::name(&p.model));
    }
    println!();
    for k in kinds {
        print!("{k:<24}");
        for p in profiles {
            match p.ops.iter().find(|o| o.op == k) {
                Some(o) => print!(" {:>24}", format!("{:.2} ms {:>3}x {:>4.1} %", o.ms, o.nodes, o.share * 100.0)),
                None => print!(" {:>24}", "-"),
            }
        }
        println!();
    }
    print!("{:<24}", "total");
    for p in profiles {
        print!(" {:>24}", format!("{:.2} ms", p.total_ms));
    }
    println!();
    if let Some(first) = profiles.first() {
        print!("{:<24}", "speedup vs first");
        for p in profiles {
            print!(" {:>24}", format!("{:.2}x", first.total_ms / p.total_ms));
        }
        println!();
        let how = if first.runtime == "ort" { "ONNX Runtime's profiler" } else { "tract" };
        println!("batch {}, seq {}, {} runs, {how} on one thread", first.batch, first.seq, first.iters);
    }
}

#[cfg(test)]
mod tests {
    use super::ort_trace_nodes;

    #[test]
    fn a_trace_counts_only_kernels_inside_the_measured_runs() {
        // Two runs: the first is warm-up; kernel events inside the second count, per node, averaged over 1 run.
        let trace = r#"[
            {"cat":"Session","name":"model_run","ts":0,"dur":100},
            {"cat":"Node","name":"mm_kernel_time","ts":10,"dur":40,"args":{"op_name":"MatMul"}},
            {"cat":"Session","name":"model_run","ts":200,"dur":100},
            {"cat":"Node","name":"mm_fence_before","ts":205,"dur":1,"args":{"op_name":"MatMul"}},
            {"cat":"Node","name":"mm_kernel_time","ts":210,"dur":30,"args":{"op_name":"MatMul"}},
            {"cat":"Node","name":"ln_kernel_time","ts":250,"dur":20,"args":{"op_name":"LayerNormalization"}},
            {"cat":"Node","name":"late_kernel_time","ts":400,"dur":20,"args":{"op_name":"Softmax"}}
        ]"#;
        let nodes = ort_trace_nodes(trace, 1).unwrap();
        let got: Vec<(&str, &str, f64)> = nodes.iter().map(|n| (n.name.as_str(), n.op.as_str(), n.ms)).collect();
        assert_eq!(got, [("mm", "MatMul", 0.03), ("ln", "LayerNormalization", 0.02)]);
        // Both runs measured: the matmul's two kernels averaged.
        let nodes = ort_trace_nodes(trace, 2).unwrap();
        assert_eq!(nodes[0].ms, (0.04 + 0.03) / 2.0);
        assert!(ort_trace_nodes(trace, 3).unwrap_err().to_string().contains("2 model runs recorded"));
    }
}
