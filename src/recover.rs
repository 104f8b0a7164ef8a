//! What a pruning pipeline removes, in the form recovery training needs. Each pass declares its kind
//! (`bertopt_passes::Recovery`) in the registry:
//! - unit passes name what they keep on the unpruned graph (`Pass::keep`): heads and FFN neurons become gates,
//!   head dimensions become masks on the Q/K/V rows and biases and the output columns of the removed ones;
//! - entry passes keep every matrix's index space and name the entries they keep (`Pass::keep`, from the same
//!   plan their run stores); those become 0/1 masks on single weights.
//!
//! The two kinds are not mixed in one run (an entry pass after `heads` works in the pruned index space), and a
//! pass with no such form (`ebert`, `exit`, ...) is an error that says so, rather than a recovery that silently
//! trains a different model.

use std::collections::BTreeMap;
use std::path::Path;

use bertopt_ir::ops;
use bertopt_ir::Graph;
use candle_core::{Device, Tensor};

use bertopt_passes::pipeline::parse_pipeline;
use bertopt_passes::{registry, Keep, Recovery, Unit};

/// Keep-masks (True = keep) for heads `[layer][head]` and FFN neurons `[layer][neuron]`; None where the
/// pipeline does not prune that kind of unit.
#[derive(Debug, Default)]
pub struct Masks {
    pub heads: Option<Vec<Vec<bool>>>,
    pub ffn: Option<Vec<Vec<bool>>>,
    /// Keep-flags per encoder layer, for `layers`.
    pub layers: Option<Vec<bool>>,
    /// Keep-flags per feature of the hidden stream, for `hidden`.
    pub hidden: Option<Vec<bool>>,
    /// 0/1 masks on weights by checkpoint parameter name (PyTorch layout), for the entry passes.
    pub weights: BTreeMap<String, Tensor>,
}

fn and(a: Option<Vec<Vec<bool>>>, b: Vec<Vec<bool>>) -> Vec<Vec<bool>> {
    match a {
        None => b,
        Some(a) => a.iter().zip(&b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| *p && *q).collect()).collect(),
    }
}

/// The masks `pipeline` implies on the dense model at `model`, each computed on the unpruned graph. Which
/// passes take part, and how, is each pass's `Recovery` kind in the registry.
pub fn masks(model: &Path, pipeline: &str) -> anyhow::Result<Masks> {
    let specs = parse_pipeline(pipeline)?;
    anyhow::ensure!(!specs.is_empty(), "--pass is empty: give the pruning pipeline to recover from");
    // Unknown passes and arguments fail here, with the list; a score file named by several passes is read once.
    let built = registry::build_all(&specs)?;
    let mut passes = vec![];
    for (s, pass) in specs.iter().zip(built) {
        passes.push((s.name.as_str(), registry::info(&s.name)?.recovery, pass));
    }
    let quoted = |names: Vec<&str>| names.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    if let Some((other, ..)) = passes.iter().find(|p| p.1 == Recovery::Unsupported) {
        anyhow::bail!(
            "recover can train under {}, {}; `{other}` is not supported",
            quoted(registry::unit_cuts()),
            quoted(registry::with_recovery(Recovery::Entries))
        );
    }
    let entry = passes.iter().find(|p| p.1 == Recovery::Entries).map(|p| p.0);
    let unit = passes.iter().find(|p| p.1.unit().is_some()).map(|p| p.0);
    if let (Some(e), Some(u)) = (entry, unit) {
        anyhow::bail!(
            "recover trains under unit passes ({}) or entry passes ({}) but not both in one run: `{e}` would cut \
             the index space `{u}` leaves; recover in two runs",
            registry::unit_cuts().join(", "),
            registry::with_recovery(Recovery::Entries).join(", "),
        );
    }
    let (g, _) = bertopt_models::load_graph(model)?;
    let mut m = Masks::default();
    let mut head_dims = None;
    let mut layers_cut: Option<&str> = None;
    // The graph as the pipeline leaves it so far, kept only when `hidden` needs it: `hidden` ranks the features on
    // what the earlier cuts leave (its sums run over the matrices they shrank), as the recovered model's export will.
    let mut so_far = passes.iter().any(|p| p.1.unit() == Some(Unit::Hidden)).then(|| g.clone());
    for (name, unit, pass) in passes.iter().filter_map(|p| Some((p.0, p.1.unit()?, &p.2))) {
        if let Some(l) = layers_cut {
            anyhow::bail!(
                "`{name}` comes after `{l}` in --pass: every unit is chosen on the whole model, so the layer cut \
                 must come last among the unit cuts, and once (e.g. heads(...),ffn(...),{l}(...))"
            );
        }
        if m.hidden.is_some() && unit != Unit::Layers {
            let (hidden, layers) = (registry::cut_of(Unit::Hidden), registry::cut_of(Unit::Layers));
            anyhow::bail!(
                "`{name}` comes after `{hidden}` in --pass: it would rank its units on the narrowed stream, which \
                 recovery does not model; put `{hidden}` after the other unit cuts (only `{layers}` may follow it)"
            );
        }
        let keep = match (&mut so_far, unit == Unit::Hidden) {
            (Some(pruned), true) => pass.keep(pruned)?,
            _ => pass.keep(&g)?,
        };
        if let Some(pruned) = &mut so_far {
            bertopt_passes::run_pass(pass.as_ref(), pruned, &mut Default::default())?;
        }
        match keep {
            Some(Keep::Heads(k)) => m.heads = Some(and(m.heads, k)),
            Some(Keep::Neurons(k)) => m.ffn = Some(and(m.ffn, k)),
            Some(Keep::HeadDims(k)) => head_dims = Some(k),
            Some(Keep::Hidden(k)) => m.hidden = Some(k),
            Some(Keep::Layers(k)) => {
                m.layers = Some(k);
                layers_cut = Some(name);
            }
            None | Some(Keep::Entries(_)) => anyhow::bail!("pass `{name}` is a unit cut but names no units it keeps"),
        }
    }
    if let Some(keep) = head_dims {
        anyhow::ensure!(
            m.heads.is_none(),
            "recover cannot train under whole heads and head dimensions in one run (head-size ranks the \
             dimensions of the heads that heads leaves); recover in two runs"
        );
        m.weights.extend(head_size_masks(&g, &keep)?);
    }
    if entry.is_some() {
        // Each entry cut names its entries on the graph the earlier passes leave (`tile` skips what `qkv` cut);
        // index spaces stay, so the masks of cuts that meet on one matrix multiply.
        let mut pruned = g.clone();
        for (_, _, pass) in &passes {
            if let Some(Keep::Entries(matrices)) = pass.keep(&pruned)? {
                for e in matrices.iter().filter(|e| e.removed() > 0) {
                    let keep: Vec<f32> = e.keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
                    // The checkpoint stores the matrix transposed, under `bert.` + the IR name.
                    let mask = Tensor::from_vec(keep, (e.k, e.n), &Device::Cpu)?.t()?.contiguous()?;
                    let name = format!("bert.{}.weight", e.group);
                    let mask = match m.weights.remove(&name) {
                        Some(before) => (before * mask)?,
                        None => mask,
                    };
                    m.weights.insert(name, mask);
                }
            }
            bertopt_passes::run_pass(pass.as_ref(), &mut pruned, &mut Default::default())?;
        }
    }
    Ok(m)
}

/// Masks for `head-size`: each removed dimension j of a layer zeroes, in every head h, the Q/K/V output
/// features h·d + j (weight rows and bias entries, PyTorch layout) and the attention-output input features.
/// All four are zeroed so that the re-export ranks those dimensions lowest again.
fn head_size_masks(g: &Graph, keep: &[Vec<bool>]) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    let attns = bertopt_passes::sites::attentions(g, bertopt_passes::head_size::INFO.name)?;
    for (n, keep) in attns.into_iter().zip(keep) {
        let bertopt_ir::Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, .. }) = &g.dag[n].op
        else {
            continue;
        };
        if keep.iter().all(|k| *k) {
            continue;
        }
        let feature: Vec<f32> = (0..heads * head_dim).map(|i| if keep[i % head_dim] { 1.0 } else { 0.0 }).collect();
        let d = g.weights.get(&format!("{query}.weight")).and_then(|w| w.ty.known_dims()).map_or(0, |d| d[0]);
        let rows = Tensor::new(feature.as_slice(), &Device::Cpu)?;
        for p in [query, key, value] {
            // [inner, D]: zero whole rows.
            out.insert(
                format!("bert.{p}.weight"),
                rows.unsqueeze(1)?.broadcast_as((heads * head_dim, d))?.contiguous()?,
            );
            out.insert(format!("bert.{p}.bias"), rows.clone());
        }
        // The output projection is [D, inner]: zero whole columns.
        out.insert(
            format!("bert.{output}.weight"),
            rows.unsqueeze(0)?.broadcast_as((d, heads * head_dim))?.contiguous()?,
        );
    }
    Ok(out)
}

/// The stage pipelines of `optimize recover`: `pipeline` itself, or with `--schedule`, `pipeline` with `{s}`
/// replaced by each sparsity in turn (the release's iterative schedule, e.g. 0.25,0.5,0.75).
pub fn stages(pipeline: &str, schedule: &[f64]) -> anyhow::Result<Vec<String>> {
    let placeholder = pipeline.contains("{s}");
    match (schedule.is_empty(), placeholder) {
        (true, false) => return Ok(vec![pipeline.to_string()]),
        (true, true) => anyhow::bail!("--pass has `{{s}}` but no --schedule gives its values (e.g. 0.25,0.5,0.75)"),
        (false, false) => anyhow::bail!("--schedule needs `{{s}}` in --pass where each stage's sparsity goes"),
        (false, true) => {}
    }
    anyhow::ensure!(
        schedule.iter().all(|s| (0.0..1.0).contains(s)) && schedule.windows(2).all(|w| w[0] < w[1]),
        "--schedule {schedule:?}: sparsities must increase and lie in [0, 1)"
    );
    Ok(schedule.iter().map(|s| pipeline.replace("{s}", &s.to_string())).collect())
}

/// `optimize recover`: for each stage, the masks its pipeline implies on the model the previous stage saved
/// (the first starts from `model`), then one training run under them. Intermediate stages are saved under
/// `OUT/stages/<i>`, the last to `OUT`. `base` carries the training options; its start, output and masks are
/// set per stage. Returns each stage's pipeline and report.
pub fn run(
    model: &Path,
    pipeline: &str,
    schedule: &[f64],
    mut base: crate::train_cmd::TrainArgs,
) -> anyhow::Result<Vec<(String, bertopt_models::train::TrainReport)>> {
    let stages = stages(pipeline, schedule)?;
    let out = base.out.clone();
    let mut from = model.to_path_buf();
    let mut reports = vec![];
    for (i, stage) in stages.iter().enumerate() {
        let last = i + 1 == stages.len();
        let masks = masks(&from, stage)?;
        base.start = crate::train_cmd::Start::Pretrained(from.clone());
        base.out = if last { out.clone() } else { out.join("stages").join(i.to_string()) };
        base.head_mask = masks.heads;
        base.ffn_mask = masks.ffn;
        base.layer_mask = masks.layers;
        base.hidden_mask = masks.hidden;
        base.weight_masks = masks.weights;
        base.pruning = Some(stage.clone());
        if stages.len() > 1 && base.progress {
            eprintln!("stage {}/{}: {stage}", i + 1, stages.len());
        }
        reports.push((stage.clone(), crate::train_cmd::run(&base)?));
        from = base.out.clone();
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::stages;

    #[test]
    fn a_schedule_fills_the_placeholder_in_order() {
        let s = stages("heads(mask=m.bin),tile(sparsity={s},g=64)", &[0.25, 0.5, 0.75]).unwrap();
        assert_eq!(s[0], "heads(mask=m.bin),tile(sparsity=0.25,g=64)");
        assert_eq!(s[2], "heads(mask=m.bin),tile(sparsity=0.75,g=64)");
        assert_eq!(stages("ffn(ratio=0.5)", &[]).unwrap(), ["ffn(ratio=0.5)"]);
    }

    #[test]
    fn a_schedule_must_have_a_place_and_increase() {
        let err = |p: &str, s: &[f64]| stages(p, s).unwrap_err().to_string();
        assert!(err("tile(sparsity=0.5)", &[0.25]).contains("needs `{s}`"));
        assert!(err("tile(sparsity={s})", &[0.5, 0.25]).contains("must increase"));
        assert!(err("tile(sparsity={s})", &[0.5, 1.0]).contains("[0, 1)"));
    }
}
