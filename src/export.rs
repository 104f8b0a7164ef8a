//! The main job: model folder -> IR -> pipeline -> ONNX file, with timing and size figures for the report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bertopt_passes::{PassContext, PassReport, Pipeline};

/// Metadata keys bertopt writes into every model it emits (defined with the runtime that reads them).
pub use bertopt_schema::meta::{
    FLOPS as META_FLOPS, LABELS as META_LABELS, MAX_LEN as META_MAX_LEN, PIPELINE as META_PIPELINE,
    SPLITS as META_SPLITS, TOKENIZER as META_TOKENIZER, VOCAB as META_VOCAB,
};

#[derive(Debug, serde::Serialize)]
pub struct ExportReport {
    pub model: PathBuf,
    pub output: PathBuf,
    pub pipeline: String,
    pub passes: Vec<PassSummary>,
    pub params: usize,
    pub flops_seq128: u64,
    pub seconds_load: f64,
    pub seconds_passes: f64,
    pub seconds_emit: f64,
    pub onnx_bytes: u64,
    pub safetensors_bytes: u64,
    /// The IR after the pipeline, when asked for.
    #[serde(skip)]
    pub ir: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct PassSummary {
    pub pass: String,
    pub params_before: usize,
    pub params_after: usize,
    pub flops_before: u64,
    pub flops_after: u64,
    pub changed: std::collections::BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

impl From<&PassReport> for PassSummary {
    fn from(r: &PassReport) -> Self {
        PassSummary {
            pass: r.pass.clone(),
            params_before: r.before.params,
            params_after: r.after.params,
            flops_before: r.before.flops,
            flops_after: r.after.flops,
            changed: r.changed.clone(),
            note: r.note,
        }
    }
}

/// How `export_with` writes its result.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Data whose training rows `quant(activations=static)` calibrates on (`--data`), and how many rows.
    pub calibration: Option<(crate::split::SplitArgs, usize)>,
    /// Keep the IR text after the pipeline in the report (`--print-ir`).
    pub keep_ir: bool,
    /// Write an early-exit model as a folder of per-stage ONNX files and a manifest, for the per-row driver.
    pub segmented: bool,
    /// The layout of hidden states in the ONNX graph (`--stream`).
    pub stream: crate::onnx::Stream,
    /// How int8 tiled groups are written (`--int8-tiles`).
    pub int8_tiles: crate::onnx::Int8Tiles,
    /// Which ops int8 groups are written with (`--int8-form`).
    pub int8_form: crate::onnx::Int8Form,
    /// How Q, K and V projections are written (`--qkv`).
    pub qkv: crate::onnx::Qkv,
}

/// Load, lower, run the pipeline and write the ONNX model atomically. The pipeline is parsed before any
/// loading, so a typo fails fast.
pub fn export(model: &Path, pipeline: &str, output: &Path) -> anyhow::Result<ExportReport> {
    export_with(model, pipeline, output, ExportOptions::default())
}

/// As `export`, with options.
pub fn export_with(model: &Path, pipeline: &str, output: &Path, opts: ExportOptions) -> anyhow::Result<ExportReport> {
    let passes = if pipeline.is_empty() { Pipeline::empty() } else { Pipeline::parse(pipeline)? };
    if opts.segmented {
        check_segment_dir(output)?;
    } else {
        check_output_dir(output)?;
    }
    let t0 = Instant::now();
    let (mut graph, info) = bertopt_models::load_graph(model)?;
    let t1 = Instant::now();
    let calibration = match &opts.calibration {
        Some((split, rows)) if passes.calibrates() => {
            crate::calibration_rows::calibration_rows(split, info.files.tokenizer.as_deref(), model, *rows)?
        }
        _ => vec![],
    };
    let reports = passes.run(&mut graph, &mut PassContext { flops_seq: 128, calibration })?;
    let t2 = Instant::now();
    let mut metadata = vec![
        (META_LABELS, serde_json::to_string(&info.labels)?),
        (META_PIPELINE, pipeline.to_string()),
        (META_VOCAB, info.config.vocab_size.to_string()),
        (META_MAX_LEN, info.config.max_position_embeddings.saturating_sub(info.config.position_offset()).to_string()),
    ];
    if let Some(tok) = &info.files.tokenizer {
        let json = bertopt_ir::read_capped_text(tok, bertopt_models::limits::MAX_TOKENIZER_BYTES)
            .with_context(|| format!("reading {}", tok.display()))?;
        // Embedding a tokenizer that does not parse would make a file that `run` fails on later: refuse it now.
        bertopt_models::data::tokenize::TextEncoder::from_json(&json)
            .with_context(|| format!("{} is not a tokenizer that can be embedded", tok.display()))?;
        metadata.push((META_TOKENIZER, json));
    }
    let recorded = bertopt_models::load::checkpoint::read_safetensors_metadata(&info.files.weights)?;
    if let Some(splits) = recorded.get(crate::split::META_SPLITS) {
        crate::split::parse_recorded(Some(splits)).with_context(|| format!("{}", info.files.weights.display()))?;
        metadata.push((META_SPLITS, splits.clone()));
    }
    if !opts.segmented {
        // A segmented model's stages run a varying share of the graph: no single count describes it.
        if let Some(poly) = flops_poly(&graph) {
            metadata.push((META_FLOPS, serde_json::to_string(&poly)?));
        }
    }
    let emit_opts = crate::onnx::EmitOptions {
        metadata,
        stream: opts.stream,
        int8_tiles: opts.int8_tiles,
        int8_form: opts.int8_form,
        qkv: opts.qkv,
    };
    let cost = bertopt_passes::cost(&graph, 128);
    let ir = opts.keep_ir.then(|| bertopt_ir::print(&graph));
    let onnx_bytes = if opts.segmented {
        let s = crate::onnx::segments::emit_segments(&graph, &emit_opts)?;
        drop(graph);
        crate::onnx::segments::write_segments(&s, output)
            .with_context(|| format!("cannot write the segmented model {}", output.display()))?;
        s.manifest.stages.iter().map(|st| file_len(&output.join(&st.file))).sum()
    } else {
        let proto = crate::onnx::emit(&graph, &emit_opts)?;
        drop(graph);
        crate::onnx::write_model(&proto, output).with_context(|| format!("cannot write {}", output.display()))?;
        file_len(output)
    };
    let t3 = Instant::now();
    Ok(ExportReport {
        model: model.to_path_buf(),
        output: output.to_path_buf(),
        pipeline: pipeline.to_string(),
        passes: reports.iter().map(PassSummary::from).collect(),
        params: cost.params,
        flops_seq128: cost.flops,
        seconds_load: (t1 - t0).as_secs_f64(),
        seconds_passes: (t2 - t1).as_secs_f64(),
        seconds_emit: (t3 - t2).as_secs_f64(),
        onnx_bytes,
        safetensors_bytes: info.safetensors_bytes,
        ir,
    })
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A segmented model's folder: new, or an earlier segmented model to replace.
fn check_segment_dir(output: &Path) -> anyhow::Result<()> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    anyhow::ensure!(parent.is_dir(), "output directory {} does not exist (for {})", parent.display(), output.display());
    anyhow::ensure!(
        !output.exists() || crate::onnx::segments::folder(output).as_deref() == Some(output),
        "{} exists and is not a segmented model; a segmented export writes a new folder (give e.g. -o model.exits)",
        output.display()
    );
    Ok(())
}

/// Fail before the expensive work if the output cannot be written there.
pub fn check_output_dir(output: &Path) -> anyhow::Result<()> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("output directory {} does not exist (for {})", dir.display(), output.display());
    }
    if output.is_dir() {
        anyhow::bail!("output {} is a directory; give a file name such as model.onnx", output.display());
    }
    if output.exists() && !output.is_file() {
        anyhow::bail!(
            "output {} exists and is not a regular file (a device or pipe); give a file name",
            output.display()
        );
    }
    Ok(())
}

/// The IR's FLOPs per sequence as a quadratic in the sequence length, fitted exactly through 1, 2 and 3 tokens and
/// recorded only if it reproduces the count at 128 (so a cost model that stops being quadratic records nothing).
fn flops_poly(g: &bertopt_ir::Graph) -> Option<[f64; 3]> {
    let f = |s: usize| bertopt_passes::cost(g, s).flops as f64;
    let (f1, f2, f3) = (f(1), f(2), f(3));
    let c2 = (f3 - 2.0 * f2 + f1) / 2.0;
    let c1 = f2 - f1 - 3.0 * c2;
    let c0 = f1 - c1 - c2;
    let at = |s: f64| c0 + c1 * s + c2 * s * s;
    ((at(128.0) - f(128)).abs() <= 1e-9 * f(128).max(1.0)).then_some([c0, c1, c2])
}

/// FLOPs of one sequence of `seq` tokens, from the polynomial `export` records.
pub fn flops_at(poly: &[f64; 3], seq: usize) -> f64 {
    let s = seq as f64;
    poly[0] + poly[1] * s + poly[2] * s * s
}
