//! The driver for a segmented early-exit model (see `onnx::segments`): run stage 0 on the whole batch, let the
//! rows whose exit is confident leave with that exit's logits, and feed only the others (their inputs and the
//! hidden states the stage handed on) to the next stage. Per-row exits at any batch size, where one `If` can
//! only decide for the whole batch.

use std::path::Path;

use bertopt_schema::exit::{ExitRule, ExitTracker};
pub use bertopt_schema::manifest::folder;
use bertopt_schema::Manifest;

use crate::error::{Error, Result};
use crate::{Output, Runner, RunnerOptions, Runtime, Value};

pub struct SegmentedRunner {
    manifest: Manifest,
    rule: ExitRule,
    stages: Vec<Box<dyn Runner>>,
}

impl SegmentedRunner {
    pub fn load(runtime: Runtime, dir: &Path, opts: RunnerOptions) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        let rule = manifest.rule().map_err(|p| Error::model(&dir.join(bertopt_schema::MANIFEST), p))?;
        let stages = manifest
            .stages
            .iter()
            .map(|s| crate::load(runtime, &dir.join(&s.file), opts))
            .collect::<Result<Vec<_>>>()?;
        Ok(SegmentedRunner { manifest, rule, stages })
    }
}

impl Runner for SegmentedRunner {
    fn output_names(&self) -> Vec<String> {
        vec!["logits".into(), "exit_layer".into()]
    }

    fn run_values(&self, inputs: &[Value]) -> Result<Vec<Output>> {
        let rows = inputs.first().map_or(0, |v| v.shape[0]);
        if !inputs.iter().all(|v| v.shape.first() == Some(&rows)) {
            return Err(Error::Input("inputs disagree on the batch size".into()));
        }
        let mut live: Vec<Value> = inputs.to_vec();
        // The original row of each live row.
        let mut ids: Vec<usize> = (0..rows).collect();
        let mut tracker = ExitTracker::new(self.rule, rows);
        let mut logits: Vec<Vec<f32>> = vec![vec![]; rows];
        let mut layer = vec![0usize; rows];
        let last = self.stages.len() - 1;
        for (j, stage) in self.stages.iter().enumerate() {
            if ids.is_empty() {
                break;
            }
            let out = stage.run_values(&live)?;
            let stage_logits = out.iter().find(|o| o.name == "logits").ok_or_else(|| {
                Error::Input(format!("stage {} has no `logits` output", self.manifest.stages[j].file))
            })?;
            let labels = stage_logits.shape.last().copied().unwrap_or(1).max(1);
            let per_row: Vec<Vec<f32>> = stage_logits.data.chunks(labels).map(<[f32]>::to_vec).collect();
            if per_row.len() != ids.len() {
                let file = &self.manifest.stages[j].file;
                return Err(Error::Input(format!("stage {file} returned {} rows for {}", per_row.len(), ids.len())));
            }
            let leave = tracker.observe(&per_row);
            let mut keep = vec![];
            for (r, row) in per_row.into_iter().enumerate() {
                if leave[r] || j == last {
                    logits[ids[r]] = row;
                    layer[ids[r]] = self.manifest.stages[j].exit_layer;
                } else {
                    keep.push(r);
                }
            }
            let carried: Vec<Value> = out.into_iter().filter(|o| o.name != "logits").map(Value::from_output).collect();
            if keep.len() == ids.len() {
                live.extend(carried);
            } else {
                // Only the rows that go on, each value copied once.
                live = live.iter().chain(&carried).map(|v| v.select_rows(&keep)).collect();
                tracker.retain(&keep);
                ids = keep.iter().map(|&r| ids[r]).collect();
            }
        }
        let labels = logits.first().map_or(0, Vec::len);
        Ok(vec![
            Output { name: "logits".into(), shape: vec![rows, labels], data: logits.concat() },
            Output { name: "exit_layer".into(), shape: vec![rows], data: layer.iter().map(|&l| l as f32).collect() },
        ])
    }
}
