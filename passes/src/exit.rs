//! `exit`: DeeBERT / ElasticBERT early exit. Wires the checkpoint's off-ramps (pooler + classifier on [CLS] after
//! chosen layers, held in `Graph::spare` until now) into the graph and ends it in one `early_exit` over their
//! logits and the model's own final logits; its two results are the `logits` and `exit_layer` outputs (how many
//! layers ran). The final
//! layer always uses the trained final classifier, never an off-ramp. Lowering turns `early_exit` into nested
//! ONNX `If`s, so the layers after an exit really do not run.

use std::collections::BTreeMap;

use bertopt_ir::names::EXITS;
use bertopt_ir::ops;
use bertopt_ir::{ExitRule, Graph, NodeIndex, Op, Value};

use crate::args::Args;
use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery};

/// `exit` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "exit",
    about: "early exit (DeeBERT / ElasticBERT): off-ramp classifiers lowered to nested If; outputs exit_layer",
    args: &[
        ("criterion", "entropy (DeeBERT; default) or patience (PABEE / ElasticBERT)"),
        ("threshold", "entropy: leave when the exit's softmax entropy is below this (default 0.3)"),
        ("patience", "patience: leave after this many consecutive agreeing exits (default 2)"),
        ("layers", "where off-ramps are used, 1-based: `1-11`, `3+6+9` (default: every trained one)"),
    ],
    recovery: Recovery::Unsupported,
    search: None,
    note: None,
    build: |a| Ok(Box::new(Exit::from_args(a)?)),
};

pub struct Exit {
    pub rule: ExitRule,
    /// Layer counts (1-based) after which an off-ramp is used; None = every off-ramp the model has.
    pub layers: Option<Vec<usize>>,
}

/// No model has more layers than this (the config loader's bound too); a larger number is a typo, and a range
/// up to it would be expanded in memory.
const MAX_LAYER: usize = 1024;

/// `1-11`, `3+6+9`, or a mix (`1-3+8`): layer counts in ascending order.
pub fn parse_layers(text: &str) -> Result<Vec<usize>, String> {
    let mut out = vec![];
    for part in text.split('+') {
        let num = |s: &str| match s.trim().parse::<usize>() {
            Ok(n) if n <= MAX_LAYER => Ok(n),
            Ok(n) => Err(format!("layer {n} is beyond any model (at most {MAX_LAYER})")),
            Err(_) => Err(format!("`{s}` is not a layer number")),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.contains(&0) {
        return Err("layers count from 1 (an exit after the first layer is layer 1)".into());
    }
    if out.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("layers must be ascending without repeats, got {out:?}"));
    }
    Ok(out)
}

impl Exit {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let criterion: String = a.get("criterion", "entropy".to_string())?;
        let rule = match criterion.as_str() {
            "entropy" => {
                if a.map.contains_key("patience") {
                    return Err(a.bad("patience", "only for criterion=patience".into()));
                }
                let threshold: f32 = a.get("threshold", 0.3)?;
                if !(threshold >= 0.0 && threshold.is_finite()) {
                    return Err(a.bad("threshold", format!("{threshold} is not a finite entropy >= 0")));
                }
                ExitRule::Entropy { threshold }
            }
            "patience" => {
                if a.map.contains_key("threshold") {
                    return Err(a.bad("threshold", "only for criterion=entropy".into()));
                }
                ExitRule::Patience { patience: a.positive("patience", 2)? }
            }
            other => return Err(a.bad("criterion", format!("`{other}` is not entropy or patience"))),
        };
        let layers = match a.map.get("layers") {
            None => None,
            Some(t) => Some(parse_layers(t).map_err(|p| a.bad("layers", p))?),
        };
        Ok(Exit { rule, layers })
    }
}

/// The hidden state after each encoder layer (0-based), found by the layer's output LayerNorm, which every
/// pass keeps (a removed FFN block leaves `layer_norm(add_bias(h))` under the same name).
pub fn layer_outputs(g: &Graph) -> BTreeMap<usize, NodeIndex> {
    let mut out = BTreeMap::new();
    for n in g.dag.node_indices() {
        if let Op::AddNorm(ops::AddNorm { ln, .. }) | Op::LayerNorm(ops::LayerNorm { ln, .. }) = &g.dag[n].op {
            if let Some(l) = ln.strip_prefix("encoder.layer.").and_then(|r| r.strip_suffix(".output.LayerNorm")) {
                if let Ok(l) = l.parse::<usize>() {
                    out.insert(l, n);
                }
            }
        }
    }
    out
}

/// Off-ramps the graph holds aside (0-based layer indices).
pub fn available_ramps(g: &Graph) -> Vec<usize> {
    let set: std::collections::BTreeSet<usize> =
        g.spare.0.keys().filter_map(|k| k.strip_prefix(EXITS)?.split('.').next()?.parse().ok()).collect();
    set.into_iter().collect()
}

const NO_RAMPS: &str = "the model has no off-ramps (exits.N.* tensors): train them first with `optimize train-exits`";

/// The hidden state an off-ramp after `count` layers reads, after checking that the ramp exists and stands
/// before the last layer.
pub fn ramp_site(g: &Graph, count: usize) -> Result<NodeIndex, PassError> {
    let hidden = layer_outputs(g);
    let total = hidden.keys().max().map_or(0, |m| m + 1);
    let ramps = available_ramps(g);
    if ramps.is_empty() {
        return Err(failed(INFO.name, NO_RAMPS));
    }
    if count >= total {
        return Err(failed(
            INFO.name,
            format!(
            "an exit after layer {count} of {total}: off-ramps stand before the last layer, which uses the model's \
             own classifier"
        ),
        ));
    }
    let l = count - 1;
    if !ramps.contains(&l) {
        return Err(failed(
            INFO.name,
            format!(
                "no off-ramp after layer {count} (exits.{l}.*); the model has them after layers {}",
                ramps.iter().map(|r| (r + 1).to_string()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    hidden.get(&l).copied().ok_or_else(|| failed(INFO.name, format!("layer {count} has no output LayerNorm")))
}

/// Wire off-ramp `exits.{l}` (moving its weights out of `spare`) onto the hidden state `h` after layer l:
/// pooler (dense + tanh on [CLS], or on the mean over real tokens when its tensors are named
/// `exits.{l}.mean_pooler.dense`) and classifier. Returns its logits.
pub fn wire_ramp(g: &mut Graph, l: usize, h: NodeIndex, labels: usize) -> Result<NodeIndex, PassError> {
    let d = g.dag[h].ty.last().and_then(|d| d.known()).unwrap_or(0);
    let p = format!("{EXITS}{l}");
    let mean = g.spare.0.contains_key(&format!("{p}.mean_pooler.dense.weight"));
    let pooler = if mean { "mean_pooler.dense" } else { "pooler.dense" };
    let ramp_width = g.spare.get(&format!("{p}.{pooler}.weight")).and_then(|w| w.ty.known_dims()).map(|d| (d[0], d[1]));
    let (k, n) = match ramp_width {
        Some((k, n)) if k == d => (k, n),
        Some((k, _)) => {
            return Err(failed(
                INFO.name,
                format!(
                    "off-ramp {p} reads {k} hidden features but layer {l}'s output has {d} (was `hidden` run \
                     first? run `exit` before `hidden`, which then narrows the ramps too)"
                ),
            ))
        }
        None => (d, d),
    };
    for part in [&format!("{pooler}.weight"), &format!("{pooler}.bias"), "classifier.weight", "classifier.bias"] {
        let name = format!("{p}.{part}");
        let w =
            g.spare.0.remove(&name).ok_or_else(|| failed(INFO.name, format!("off-ramp tensor {name} is missing")))?;
        g.weights.0.insert(name, w);
    }
    let add = |g: &mut Graph, op: Op, x: NodeIndex| g.add_inferred(op, &[x]).map_err(|e| failed(INFO.name, e));
    let cls = if mean {
        let mask = g
            .inputs
            .iter()
            .copied()
            .find(|&i| matches!(&g.dag[i].op, Op::Input(ops::Input { name }) if name == "attention_mask"))
            .ok_or_else(|| failed(INFO.name, "a mean-pooled off-ramp needs the graph's attention_mask input"))?;
        g.add_inferred(Op::MaskedMean, &[h, mask]).map_err(|e| failed(INFO.name, e))?
    } else {
        add(g, Op::TakeCls, h)?
    };
    let pooled = add(g, Op::Linear(ops::Linear { w: format!("{p}.{pooler}"), k, n }), cls)?;
    let pooled = add(g, Op::Tanh, pooled)?;
    add(g, Op::Linear(ops::Linear { w: format!("{p}.classifier"), k: n, n: labels }), pooled)
}

impl Pass for Exit {
    fn name(&self) -> &'static str {
        "exit"
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        if g.dag.node_weights().any(|n| matches!(n.op, Op::EarlyExit(_))) {
            return Err(failed(INFO.name, "the graph already has early exits (exit given twice?)"));
        }
        let Some(oi) = g.outputs.iter().position(|(name, _)| name == "logits") else {
            return Err(failed(INFO.name, "early exit needs a classifier: the graph has no `logits` output"));
        };
        let final_logits = g.outputs[oi].1.node;
        let ramps = available_ramps(g);
        if ramps.is_empty() {
            return Err(failed(INFO.name, NO_RAMPS));
        }
        let standing = layer_outputs(g);
        let total = standing.keys().max().map_or(0, |m| m + 1);
        let counts = match &self.layers {
            Some(l) => l.clone(),
            // Every ramp whose layer still stands (`layers` may have dropped some) and is not the last.
            None => ramps.iter().filter(|l| standing.contains_key(l) && *l + 1 < total).map(|l| l + 1).collect(),
        };
        if counts.is_empty() {
            return Err(failed(INFO.name, "no off-ramp stands after a remaining layer below the last one"));
        }
        let labels = g.dag[final_logits].ty.last().and_then(|d| d.known()).unwrap_or(0);
        let mut exits = vec![];
        for &count in &counts {
            let h = ramp_site(g, count)?;
            exits.push(wire_ramp(g, count - 1, h, labels)?);
        }
        exits.push(final_logits);
        // What `exit_layer` reports: the layers that ran before each exit point (fewer than its position when
        // `layers` dropped some below it), then every standing layer for the final classifier.
        let mut layers: Vec<usize> = counts.iter().map(|&c| standing.keys().filter(|&&l| l < c).count()).collect();
        layers.push(standing.len());
        let e = g
            .add_inferred(Op::EarlyExit(ops::EarlyExit { rule: self.rule, layers }), &exits)
            .map_err(|e| failed(INFO.name, e))?;
        g.outputs[oi].1 = e.into();
        g.add_output("exit_layer", Value { node: e, result: 1 });
        changed.insert("exits".into(), counts.len());
        Ok(())
    }
}
