//! One input through an int8 export three ways, every quantized group's input kept: the interpreter (after the
//! same pipeline, calibrated on the same training rows) and tract on an ONNX file whose quantization inputs and
//! outputs are graph outputs too. `scripts/int8-trace-minilm` writes that file, runs ONNX Runtime on it and
//! compares, to find where the runtimes first round an activation to a different step and how far it spreads.
//!
//! Usage: cargo run --release --example int8_trace -- MODEL PIPELINE TRACE.onnx OUT_DIR
//!        (--text FILE --row N | --random SEED) --data ... [split options]
//! Writes OUT_DIR/{ids.i64, shape.txt, interp_logits.f32, groups.txt, group{i}.f32, tract.txt, tract{i}.f32}.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bertopt_passes::{PassContext, Pipeline};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable};

#[derive(Parser)]
struct Args {
    model: PathBuf,
    pipeline: String,
    trace_onnx: PathBuf,
    out: PathBuf,
    /// A data file whose row --row is the input (tokenized at its own length).
    #[arg(long, requires = "row")]
    text: Option<PathBuf>,
    #[arg(long)]
    row: Option<usize>,
    /// Random token ids (2 x 16, uniform over the vocabulary) from this seed instead.
    #[arg(long, conflicts_with = "text")]
    random: Option<u64>,
    /// Calibration rows of the split (as `optimize --calibration-rows`).
    #[arg(long, default_value_t = 256)]
    calibration_rows: usize,
    #[command(flatten)]
    split: bertopt::split::SplitArgs,
}

fn write_f32(path: &Path, v: &[f32]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for x in v {
        f.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    std::fs::create_dir_all(&a.out)?;
    let (mut g, info) = bertopt_models::load_graph(&a.model)?;
    let calibration = bertopt::calibration_rows::calibration_rows(
        &a.split,
        info.files.tokenizer.as_deref(),
        &a.model,
        a.calibration_rows,
    )?;
    Pipeline::parse(&a.pipeline)?.run(&mut g, &mut PassContext { flops_seq: 128, calibration })?;

    let (ids, (b, s)) = match (&a.text, a.row, a.random) {
        (Some(file), Some(row), None) => {
            let data = bertopt_models::data::Dataset::read(file)?;
            let ex = data.examples.get(row).with_context(|| format!("{} has no row {row}", file.display()))?;
            let tok = info.files.tokenizer.as_deref().context("the model has no tokenizer.json")?;
            let enc = bertopt::tokenize::TextEncoder::from_file(tok)?.encode(&[ex.text.as_str()], 128, None)?;
            (enc.by_name("input_ids").context("no input_ids")?.to_vec(), (1, enc.seq))
        }
        (None, None, Some(seed)) => {
            let mut rng = bertopt_models::rng::Rng::new(seed);
            let vocab = info.config.vocab_size;
            ((0..32).map(|_| rng.below(vocab) as i64).collect(), (2, 16))
        }
        _ => anyhow::bail!("give --text FILE --row N, or --random SEED"),
    };
    let mut f = std::fs::File::create(a.out.join("ids.i64"))?;
    for v in &ids {
        f.write_all(&v.to_le_bytes())?;
    }
    std::fs::write(a.out.join("shape.txt"), format!("{b} {s}\n"))?;

    // The interpreter, every group's input recorded.
    let dev = Device::Cpu;
    let inputs = HashMap::from([
        ("input_ids".to_string(), Tensor::from_vec(ids.clone(), (b, s), &dev)?),
        ("attention_mask".to_string(), Tensor::ones((b, s), DType::I64, &dev)?),
        ("token_type_ids".to_string(), Tensor::zeros((b, s), DType::I64, &dev)?),
    ]);
    let mut logits = vec![];
    let groups = bertopt_ir::observe::recording_inputs(|| {
        bertopt_ir::interp::run(&g, &inputs).map(|o| logits = o.into_iter().map(|(_, t)| t).collect())
    })?;
    write_f32(&a.out.join("interp_logits.f32"), &logits[0].flatten_all()?.to_vec1::<f32>()?)?;
    let mut index = String::new();
    for (i, (p, x)) in groups.iter().enumerate() {
        let params = g.weights.tensor(&bertopt_ir::quant::input_params_name(p));
        let params = params.map(|t| t.to_vec1::<f32>()).transpose()?.unwrap_or_default();
        index += &format!("{i} {p} {}\n", params.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "));
        write_f32(&a.out.join(format!("group{i}.f32")), &x.flatten_all()?.to_vec1::<f32>()?)?;
    }
    std::fs::write(a.out.join("groups.txt"), index)?;

    // tract on the traced file, planned for this shape.
    let model = tract_onnx::onnx().model_for_path(&a.trace_onnx)?.into_optimized()?.into_runnable()?;
    let arr = |v: Vec<i64>| -> anyhow::Result<tract_onnx::prelude::TValue> {
        Ok(tract_onnx::prelude::Tensor::from(tract_onnx::prelude::tract_ndarray::Array2::from_shape_vec((b, s), v)?)
            .into())
    };
    let out = model
        .run(tvec!(arr(ids.clone())?, arr(vec![1; b * s])?, arr(vec![0; b * s])?))
        .map_err(|e| anyhow::anyhow!("tract: {e:?}"))?;
    let names =
        model.model().output_outlets()?.iter().map(|o| model.model().outlet_label(*o).unwrap_or("?").to_string());
    std::fs::write(a.out.join("tract.txt"), names.collect::<Vec<_>>().join("\n") + "\n")?;
    for (i, t) in out.iter().enumerate() {
        let t = t.cast_to::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let v: Vec<f32> =
            t.to_plain_array_view::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?.iter().copied().collect();
        write_f32(&a.out.join(format!("tract{i}.f32")), &v)?;
    }
    Ok(())
}
