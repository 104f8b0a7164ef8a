//! Writes the fuzz targets' seed corpus from the project's own files: small random model folders (packed as
//! the `model_folder` target reads them), their IR text before and after each pass, head masks in the formats
//! bertopt writes, and pass pipelines. `scripts/fuzz` runs it; the seeds are not committed.
//!
//! Usage: cargo run --example fuzz_seeds -- OUT_DIR

use std::path::Path;

use bertopt_models::testing::{pack_folder, write_tiny_model, TinySpec};
use bertopt_models::Scheme;
use bertopt_passes::mask::HeadMask;

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: fuzz_seeds OUT_DIR"))?;
    let out = Path::new(&out);
    for t in ["model_folder", "ir_text", "head_mask", "pipeline_spec"] {
        std::fs::create_dir_all(out.join(t))?;
    }
    let work = tempfile::tempdir()?;
    // Small enough that libFuzzer's mutations stay fast (a few KiB per folder).
    let small = TinySpec { layers: 2, hidden: 8, heads: 2, intermediate: 16, max_positions: 16, ..TinySpec::default() };
    let specs = [
        ("bare", TinySpec { ..small.clone() }),
        ("bert", TinySpec { scheme: Scheme::Bert, labels: 2, ..small.clone() }),
        ("roberta", TinySpec { scheme: Scheme::Roberta, labels: 3, layers: 1, ..small.clone() }),
    ];
    let pipelines =
        ["heads(ratio=0.5)", "ffn(ratio=0.5)", "tile(sparsity=0.5,g=4)", "vw(sparsity=0.75,v=4)", "bw(g=4)"];
    for (name, spec) in &specs {
        let dir = work.path().join(name);
        write_tiny_model(&dir, spec)?;
        std::fs::write(out.join("model_folder").join(format!("{name}.bin")), pack_folder(&dir)?)?;
        let (g, _) = bertopt_models::load_graph(&dir)?;
        std::fs::write(out.join("ir_text").join(format!("{name}.ir")), bertopt_ir::print(&g))?;
        for (i, p) in pipelines.iter().enumerate() {
            let mut pruned = g.clone();
            bertopt_passes::Pipeline::parse(p)?.run(&mut pruned, &mut Default::default())?;
            std::fs::write(out.join("ir_text").join(format!("{name}-{i}.ir")), bertopt_ir::print(&pruned))?;
        }
    }
    for (i, p) in pipelines.iter().chain(&["dce,fold", "exit(criterion=patience,patience=2,layers=1-3)"]).enumerate() {
        std::fs::write(out.join("pipeline_spec").join(format!("{i}.txt")), p)?;
    }
    let masks = [vec![vec![true, false], vec![false, true]], vec![vec![true; 12]; 6], vec![vec![false, true, true]]];
    for (i, keep) in masks.into_iter().enumerate() {
        let m = HeadMask { keep };
        std::fs::write(out.join("head_mask").join(format!("{i}.pkl")), m.to_pickle())?;
        std::fs::write(out.join("head_mask").join(format!("{i}.json")), m.to_json())?;
    }
    println!("seeds written to {}", out.display());
    Ok(())
}
