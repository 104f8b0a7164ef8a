//! `optimize profile`: where tract spends its time in a model. Every node of the optimized plan is timed over
//! the measured runs and the times are summed by operator kind, so that a pruned model can be set beside the
//! dense one: which operators its cuts made cheaper, and which work (normalisation, softmax, the gathers a
//! tile-wise lowering adds) stays. Timing each node adds a little overhead per node; compare models with one
//! another here, and take latencies from `optimize bench`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tract_onnx::tract_core::plan::eval;

use crate::run::tract_runner::TractRunner;
use crate::run::{Batch, RunnerOptions, Value};

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
pub fn profile(path: &Path, batch: usize, seq: usize, warmup: usize, iters: usize) -> anyhow::Result<ModelProfile> {
    anyhow::ensure!(iters > 0, "--iters must be at least 1");
    anyhow::ensure!(
        path.is_file(),
        "{}: profile takes one ONNX file (a segmented early-exit model's stages can be profiled one by one)",
        path.display()
    );
    let input = Batch::synthetic(batch, seq, crate::bench::recorded(path)?.vocab, 1);
    let runner = TractRunner::load(path, RunnerOptions { fixed_shape: Some((batch, seq)), threads: 1 })?;
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
    let mut ops: Vec<OpTime> = vec![];
    let mut nodes: Vec<NodeTime> = vec![];
    for node in &plan.model().nodes {
        let name = node.op().name().to_string();
        let ms = per_node[node.id].as_secs_f64() * 1e3 / iters as f64;
        if ms > 0.0 {
            nodes.push(NodeTime { name: node.name.clone(), op: name.clone(), ms });
        }
        match ops.iter_mut().find(|o| o.op == name) {
            Some(o) => {
                o.nodes += 1;
                o.ms += ms;
            }
            None => ops.push(OpTime { op: name, nodes: 1, ms, share: 0.0 }),
        }
    }
    let total_ms: f64 = ops.iter().map(|o| o.ms).sum();
    for o in &mut ops {
        o.share = if total_ms > 0.0 { o.ms / total_ms } else { 0.0 };
    }
    ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(ModelProfile { model: path.into(), batch, seq, iters, total_ms, ops, nodes })
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
        print!(" {:>24}", crate::bench::name(&p.model));
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
        println!("batch {}, seq {}, {} runs, tract on one thread", first.batch, first.seq, first.iters);
    }
}
