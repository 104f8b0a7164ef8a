//! `optimize check MODEL.onnx`: is this ONNX file sound, and do tract and ONNX Runtime agree on it? For any
//! ONNX file, including ones bertopt did not write: structural validation (`onnx::validate`), then both
//! runtimes on the same seeded random inputs, output by output, within a tolerance; with `--text`, also on real
//! sentences, each classified at its own length in both runtimes.
//!
//! A graph that rounds activations (int8) is a discontinuous function of its input: where an activation sits
//! within an f32 rounding error of a quantization step boundary, two runtimes whose f32 ops (GELU, LayerNorm)
//! differ in the last bits round it to neighbouring steps, and the step spreads through the later layers
//! (`scripts/int8-trace-minilm` traces such cases). Such graphs are checked against `ROUNDING_TOL` unless
//! `--tol` says otherwise, and `--text` shows whether the predicted classes agree.

use std::path::PathBuf;

use anyhow::Context;
use bertopt_models::rng::Rng;
use serde::Serialize;

use crate::onnx::builder::DimSpec;
use crate::onnx::validate::{validate_file, InputDecl};
use crate::run::{self, Data, Output, RunnerOptions, Runtime, Value};

#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// The ONNX file to check (any producer).
    pub model: PathBuf,
    /// Size of a symbolic first axis (the batch).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Size of every other symbolic axis (the sequence).
    #[arg(long, default_value_t = 16)]
    pub seq: usize,
    /// Size of a named symbolic dimension, NAME=N (repeatable); wins over --batch/--seq.
    #[arg(long = "dim", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Integer inputs are drawn from 0..INT_MAX (default: the vocabulary size a bertopt file records, else 100);
    /// inputs named like `*mask*` get 1, `*type*` 0.
    #[arg(long)]
    pub int_max: Option<i64>,
    /// Largest accepted |tract - ORT|, relative to max(1, max |ORT output|) [default: 1e-4; 0.5 for a graph
    /// that rounds activations (int8), whose runtimes may round a value on a step boundary differently].
    #[arg(long)]
    pub tol: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also classify the sentences of this data file (any format `eval` reads; labels unused) in both runtimes,
    /// one at a time at its own length, and compare logits and predicted classes (a bertopt export: it needs
    /// the embedded tokenizer).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// At most this many sentences of --text, from the start of the file.
    #[arg(long, default_value_t = 400)]
    pub rows: usize,
}

/// Default tolerance of a float graph.
pub const FLOAT_TOL: f32 = 1e-4;
/// Default tolerance of a graph that rounds activations: about twice the largest tract vs ONNX Runtime
/// difference measured on bertopt's int8 MiniLM exports (0.32 on logits up to 1.45 = 0.22, static int8, one of
/// 400 MR sentences whose classes all agree; `scripts/int8-trace-minilm`). It catches a fault that changes what
/// the graph computes (a wrong scale, zero point or weight layout moves logits by their own size), not a rounding.
pub const ROUNDING_TOL: f32 = 0.5;

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, n) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=N"))?;
    let n = n.parse::<usize>().map_err(|_| format!("`{n}` in `{s}` is not a size"))?;
    Ok((name.to_string(), n))
}

#[derive(Debug, Serialize)]
pub struct InputReport {
    pub name: String,
    pub elem: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct OutputReport {
    pub name: String,
    pub shape: Vec<usize>,
    /// max |tract - ORT|.
    pub max_abs_diff: f32,
    /// max |ORT|, the scale the tolerance is relative to.
    pub max_abs: f32,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub model: PathBuf,
    pub valid: bool,
    pub problems: Vec<String>,
    pub ir_version: i64,
    pub opset: Option<i64>,
    pub nodes: usize,
    pub initializers: usize,
    pub inputs: Vec<InputReport>,
    pub outputs: Vec<OutputReport>,
    pub tolerance: f32,
    /// The ops that round activations, when the graph has any (they set the default tolerance).
    pub rounding_ops: Vec<String>,
    /// The --text comparison, when asked for.
    pub text: Option<TextReport>,
    pub runtimes: Vec<String>,
    /// Why the numerical comparison could not run (a runtime refused the file, an unsupported input type).
    pub error: Option<String>,
    /// Valid, both runtimes ran, and every output agrees within the tolerance.
    pub ok: bool,
}

/// Real sentences classified in both runtimes.
#[derive(Debug, Serialize)]
pub struct TextReport {
    pub file: PathBuf,
    pub rows: usize,
    pub mean_tokens: f64,
    /// max |tract - ORT| over every row's logits.
    pub max_abs_diff: f32,
    /// max |ORT logit|.
    pub max_abs: f32,
    /// Rows whose logits are the same in both runtimes, bit for bit.
    pub rows_equal: usize,
    /// Rows whose predicted class differs between the runtimes.
    pub disagreements: usize,
    /// The row (0-based, in file order) with the largest difference.
    pub worst_row: usize,
    pub ok: bool,
}

pub fn check(args: &CheckArgs) -> anyhow::Result<CheckReport> {
    anyhow::ensure!(args.model.is_file(), "{} is not a file", args.model.display());
    let v = validate_file(&args.model)?;
    let tol = args.tol.unwrap_or(if v.rounding_ops.is_empty() { FLOAT_TOL } else { ROUNDING_TOL });
    let mut report = CheckReport {
        model: args.model.clone(),
        valid: v.problems.is_empty(),
        problems: v.problems.clone(),
        ir_version: v.ir_version,
        opset: v.opset,
        nodes: v.nodes,
        initializers: v.initializers,
        inputs: vec![],
        outputs: vec![],
        tolerance: tol,
        rounding_ops: v.rounding_ops.clone(),
        text: None,
        runtimes: vec!["tract-onnx 0.23.9".into(), "onnxruntime 1.31.1".into()],
        error: None,
        ok: false,
    };
    if !report.valid {
        return Ok(report);
    }
    let int_max = args.int_max.unwrap_or_else(|| recorded_vocab(&args.model).unwrap_or(100)).max(1);
    let mut rng = Rng::new(args.seed);
    let values = match v.inputs.iter().map(|i| random_input(i, args, int_max, &mut rng)).collect::<Result<Vec<_>, _>>()
    {
        Ok(values) => values,
        Err(e) => {
            report.error = Some(e);
            return Ok(report);
        }
    };
    report.inputs = values
        .iter()
        .map(|x| InputReport {
            name: x.name.clone(),
            elem: if matches!(x.data, Data::F32(_)) { "float32" } else { "int64" }.into(),
            shape: x.shape.clone(),
        })
        .collect();
    let run_in = |rt: Runtime| -> anyhow::Result<Vec<Output>> {
        Ok(run::load(rt, &args.model, RunnerOptions::default())?.run_values(&values)?)
    };
    let (tract, ort) = match (run_in(Runtime::Tract), run_in(Runtime::Ort)) {
        (Ok(t), Ok(o)) => (t, o),
        (t, o) => {
            let errs: Vec<String> = [("tract", t.err()), ("ONNX Runtime", o.err())]
                .into_iter()
                .filter_map(|(n, e)| Some(format!("{n}: {:#}", e?)))
                .collect();
            report.error = Some(errs.join("; "));
            return Ok(report);
        }
    };
    for o in &ort {
        let Some(t) = tract.iter().find(|t| t.name == o.name) else {
            report.error = Some(format!("tract gives no output `{}`", o.name));
            return Ok(report);
        };
        let max_abs = o.data.iter().fold(0f32, |m, x| m.max(x.abs()));
        let max_abs_diff = if t.shape == o.shape {
            t.data
                .iter()
                .zip(&o.data)
                .fold(0f32, |m, (a, b)| if (a - b).is_nan() { f32::INFINITY } else { m.max((a - b).abs()) })
        } else {
            f32::INFINITY
        };
        let ok = max_abs_diff <= tol * max_abs.max(1.0);
        report.outputs.push(OutputReport { name: o.name.clone(), shape: o.shape.clone(), max_abs_diff, max_abs, ok });
    }
    if let Some(file) = &args.text {
        report.text = Some(compare_on_text(&args.model, file, args.rows, tol)?);
    }
    report.ok = report.outputs.iter().all(|o| o.ok) && report.text.as_ref().is_none_or(|t| t.ok);
    Ok(report)
}

/// The first `rows` sentences of `file` classified one at a time in tract and ONNX Runtime.
fn compare_on_text(
    model: &std::path::Path,
    file: &std::path::Path,
    rows: usize,
    tol: f32,
) -> anyhow::Result<TextReport> {
    use bertopt_runtime::classifier::{Classifier, Options};
    let data = bertopt_models::data::Dataset::read(file)?;
    anyhow::ensure!(!data.examples.is_empty(), "{} has no rows", file.display());
    let load = |runtime| {
        Classifier::load_with(model, Options { runtime, ..Options::default() })
            .with_context(|| format!("--text needs a bertopt export with its tokenizer: {}", model.display()))
    };
    let (tract, ort) = (load(Runtime::Tract)?, load(Runtime::Ort)?);
    let mut r = TextReport {
        file: file.into(),
        rows: 0,
        mean_tokens: 0.0,
        max_abs_diff: 0.0,
        max_abs: 0.0,
        rows_equal: 0,
        disagreements: 0,
        worst_row: 0,
        ok: false,
    };
    let mut tokens = 0usize;
    for ex in data.examples.iter().take(rows) {
        let (t, o) = (tract.classify(&ex.text)?, ort.classify(&ex.text)?);
        tokens += tract.tokens(&ex.text)?;
        r.rows += 1;
        r.disagreements += usize::from(t.index != o.index);
        r.rows_equal += usize::from(t.logits == o.logits);
        for (a, b) in t.logits.iter().zip(&o.logits) {
            let d = if (a - b).is_nan() { f32::INFINITY } else { (a - b).abs() };
            if d > r.max_abs_diff {
                (r.max_abs_diff, r.worst_row) = (d, r.rows - 1);
            }
            r.max_abs = r.max_abs.max(b.abs());
        }
    }
    r.mean_tokens = tokens as f64 / r.rows as f64;
    r.ok = r.max_abs_diff <= tol * r.max_abs.max(1.0);
    Ok(r)
}

/// The vocabulary size bertopt records in its files' metadata.
fn recorded_vocab(path: &std::path::Path) -> Option<i64> {
    let meta = crate::onnx::read_metadata(path).ok()?;
    meta.iter().find(|(k, _)| k == crate::export::META_VOCAB)?.1.parse().ok()
}

fn random_input(i: &InputDecl, args: &CheckArgs, int_max: i64, rng: &mut Rng) -> Result<Value, String> {
    let shape: Vec<usize> = i
        .dims
        .iter()
        .enumerate()
        .map(|(axis, d)| match d {
            DimSpec::Fixed(n) => *n,
            DimSpec::Named(name) => args
                .dims
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or(if axis == 0 { args.batch } else { args.seq }),
        })
        .collect();
    let count: usize = shape.iter().product();
    let lname = i.name.to_lowercase();
    let data = match i.elem_type {
        1 => Data::F32((0..count).map(|_| rng.uniform() * 2.0 - 1.0).collect()),
        7 if lname.contains("mask") => Data::I64(vec![1; count]),
        7 if lname.contains("type") => Data::I64(vec![0; count]),
        7 => Data::I64((0..count).map(|_| rng.below(int_max as usize) as i64).collect()),
        t => {
            return Err(format!(
                "input `{}` has ONNX element type {t}; check feeds float32 (1) and int64 (7) inputs only",
                i.name
            ))
        }
    };
    Ok(Value { name: i.name.clone(), shape, data })
}

pub fn print(r: &CheckReport) {
    println!(
        "{}: ONNX IR {}, opset {}, {} nodes, {} initializers",
        r.model.display(),
        r.ir_version,
        r.opset.map_or("none".into(), |v| v.to_string()),
        r.nodes,
        r.initializers
    );
    if r.valid {
        println!("structure: valid");
    } else {
        println!("structure: {} problem(s)", r.problems.len());
        for p in &r.problems {
            println!("  - {p}");
        }
    }
    for i in &r.inputs {
        println!("input  {} {} {:?}", i.name, i.elem, i.shape);
    }
    for o in &r.outputs {
        println!(
            "output {} {:?}: max |tract - ORT| {:.3e} (scale {:.3e}) {}",
            o.name,
            o.shape,
            o.max_abs_diff,
            o.max_abs,
            if o.ok { "ok" } else { "MISMATCH" }
        );
    }
    if let Some(t) = &r.text {
        println!(
            "text {}: {} sentences ({:.1} tokens), {} with equal logits, max |tract - ORT| {:.3e} (row {}, scale \
             {:.3e}), {} predicted classes differ {}",
            t.file.display(),
            t.rows,
            t.mean_tokens,
            t.rows_equal,
            t.max_abs_diff,
            t.worst_row,
            t.max_abs,
            t.disagreements,
            if t.ok { "ok" } else { "MISMATCH" }
        );
    }
    if !r.rounding_ops.is_empty() {
        println!(
            "tolerance {}: the graph rounds activations ({}); runtimes may round a value on a step boundary \
             differently",
            r.tolerance,
            r.rounding_ops.join(", ")
        );
    }
    if let Some(e) = &r.error {
        println!("error: {e}");
    }
    println!("{}", if r.ok { "check passed" } else { "check FAILED" });
}
