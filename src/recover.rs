//! Which units a pruning pipeline removes, as gates for recovery training. Only the structured passes whose
//! units a dense checkpoint can express (`heads`, `ffn`) take part; anything else in the pipeline is an error
//! that says so, rather than a recovery that silently trains a different model.

use std::path::Path;

use bertopt_passes::pipeline::parse_pipeline;
use bertopt_passes::registry::Args;

/// Keep-masks (True = keep) for heads `[layer][head]` and FFN neurons `[layer][neuron]`; None where the
/// pipeline does not prune that kind of unit.
#[derive(Debug, Default)]
pub struct Masks {
    pub heads: Option<Vec<Vec<bool>>>,
    pub ffn: Option<Vec<Vec<bool>>>,
}

fn and(a: Option<Vec<Vec<bool>>>, b: Vec<Vec<bool>>) -> Vec<Vec<bool>> {
    match a {
        None => b,
        Some(a) => a.iter().zip(&b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| *p && *q).collect()).collect(),
    }
}

/// The masks `pipeline` implies on the dense model at `model`, each computed on the unpruned graph.
pub fn masks(model: &Path, pipeline: &str) -> anyhow::Result<Masks> {
    let specs = parse_pipeline(pipeline)?;
    anyhow::ensure!(!specs.is_empty(), "--pass is empty: give the pruning pipeline to recover from");
    for s in &specs {
        bertopt_passes::registry::build(s)?; // unknown passes and arguments fail here, with the list
    }
    let (g, _) = bertopt_models::load_graph(model)?;
    let mut m = Masks::default();
    for s in specs {
        let args = Args { pass: s.name.clone(), map: s.args.clone() };
        match s.name.as_str() {
            "heads" => m.heads = Some(and(m.heads, bertopt_passes::heads::Heads::from_args(&args)?.keep(&g)?)),
            "ffn" => m.ffn = Some(and(m.ffn, bertopt_passes::ffn::Ffn::from_args(&args)?.keep(&g)?)),
            "dce" | "fold" => {}
            other => anyhow::bail!("recover can train under `heads` and `ffn` pruning; `{other}` is not supported"),
        }
    }
    Ok(m)
}
