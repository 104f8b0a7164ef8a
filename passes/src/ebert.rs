//! `ebert`: fuse EBERT's per-layer predictors (trained with `optimize train-ebert`, held in `Graph::spare`)
//! into the graph, so that each input runs only the heads and FFN groups its predictors choose. The choice
//! keeps shapes static: per layer, `top_k` over the predictor's logits with k fixed by `ratio` (or `heads=` /
//! `groups=`); `attention` becomes `dyn_attention` and the FFN block `dyn_ffn`, which the ONNX lowering turns
//! into gathers of each input's weight slices and smaller batched matmuls.
//!
//! Each predictor's BatchNorm (inference statistics) is folded into its first linear: `fc1_bn`.

use std::collections::BTreeMap;

use bertopt_ir::names::EBERT;
use bertopt_ir::ops;
use bertopt_ir::ops::{kept_units, PREDICTOR_BN_EPS};
use bertopt_ir::{Graph, NodeIndex, Op};
use candle_core::Tensor;
use petgraph::Direction;

use crate::args::Args;
use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery};

/// `ebert` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "ebert",
    about: "EBERT: fuse trained predictors; each input runs only its top-k heads and FFN groups per layer",
    args: &[
        ("ratio", "fraction of heads and FFN groups kept per layer (default 0.5)"),
        ("heads", "heads kept per layer (overrides ratio for heads)"),
        ("groups", "FFN groups kept per layer (overrides ratio for groups)"),
    ],
    recovery: Recovery::Unsupported,
    search: None,
    note: Some(CROSSOVER_NOTE),
    build: |a| Ok(Box::new(Ebert::from_args(a)?)),
};

pub struct Ebert {
    /// Fraction of heads and groups kept per layer (ignored for whichever count is given).
    pub ratio: f64,
    pub heads: Option<usize>,
    pub groups: Option<usize>,
}

const NO_PREDICTORS: &str =
    "the model has no EBERT predictors (ebert.N.* tensors): train them first with `optimize train-ebert`";

impl Ebert {
    pub fn from_args(a: &Args) -> Result<Self, PassError> {
        let bad = |arg: &str, problem: String| PassError::BadArg { pass: "ebert".into(), arg: arg.into(), problem };
        let ratio: f64 = a.get("ratio", 0.5)?;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(bad("ratio", format!("{ratio} is not in (0, 1]")));
        }
        let count = |name: &str| -> Result<Option<usize>, PassError> {
            if !a.map.contains_key(name) {
                return Ok(None);
            }
            let n: usize = a.get(name, 0)?;
            if n == 0 {
                return Err(bad(name, "must keep at least 1".into()));
            }
            Ok(Some(n))
        };
        Ok(Ebert { ratio, heads: count("heads")?, groups: count("groups")? })
    }
}

fn spare_tensor(g: &mut Graph, name: &str) -> Result<Tensor, PassError> {
    g.spare
        .0
        .remove(name)
        .and_then(|w| w.data)
        .ok_or_else(|| failed(INFO.name, format!("predictor tensor {name} is missing or has no data")))
}

fn candle(e: candle_core::Error) -> PassError {
    failed(INFO.name, format!("folding a predictor: {e}"))
}

/// Wire predictor `ebert.{l}.{kind}` on `input` (`[b, D]`): `linear(fc1_bn) -> relu -> linear(fc2) -> top_k`.
/// Returns the `i64[b, k]` indices and the number of units the predictor scores.
fn predictor(
    g: &mut Graph,
    l: usize,
    kind: &str,
    input: NodeIndex,
    k: Option<usize>,
    ratio: f64,
) -> Result<(NodeIndex, usize), PassError> {
    let p = format!("{EBERT}{l}.{kind}");
    let w1 = spare_tensor(g, &format!("{p}.fc1.weight"))?; // K×N: [D, width]
    let b1 = spare_tensor(g, &format!("{p}.fc1.bias"))?;
    let gamma = spare_tensor(g, &format!("{p}.bn.weight"))?;
    let beta = spare_tensor(g, &format!("{p}.bn.bias"))?;
    let mean = spare_tensor(g, &format!("{p}.bn.running_mean"))?;
    let var = spare_tensor(g, &format!("{p}.bn.running_var"))?;
    let w2 = spare_tensor(g, &format!("{p}.fc2.weight"))?; // [width, units]
    let b2 = spare_tensor(g, &format!("{p}.fc2.bias"))?;
    // BN(x·W + b) = x·(W·s) + (b - mean)·s + beta, with s = gamma / sqrt(var + eps) per output.
    let scale = (gamma / (var + PREDICTOR_BN_EPS).map_err(candle)?.sqrt().map_err(candle)?).map_err(candle)?;
    let w1 = w1.broadcast_mul(&scale).map_err(candle)?;
    let b1 = ((b1 - mean).map_err(candle)? * &scale).map_err(candle)?.add(&beta).map_err(candle)?;
    let (d, width) = w1.dims2().map_err(candle)?;
    let units = w2.dims2().map_err(candle)?.1;
    let fc1 = format!("{p}.fc1_bn");
    let fc2 = format!("{p}.fc2");
    g.weights.insert(format!("{fc1}.weight"), w1);
    g.weights.insert(format!("{fc1}.bias"), b1);
    g.weights.insert(format!("{fc2}.weight"), w2);
    g.weights.insert(format!("{fc2}.bias"), b2);
    let k = k.unwrap_or_else(|| kept_units(ratio, units));
    if k > units {
        return Err(failed(INFO.name, format!("layer {l}: keeping {k} {kind} of the {units} the predictor scores")));
    }
    let add = |g: &mut Graph, op: Op, x: NodeIndex| g.add_inferred(op, &[x]).map_err(|e| failed(INFO.name, e));
    let h = add(g, Op::Linear(ops::Linear { w: fc1, k: d, n: width }), input)?;
    let h = add(g, Op::Relu, h)?;
    let z = add(g, Op::Linear(ops::Linear { w: fc2, k: width, n: units }), h)?;
    Ok((add(g, Op::TopK(ops::TopK { k }), z)?, units))
}

fn users(g: &Graph, n: NodeIndex) -> Vec<NodeIndex> {
    g.dag.neighbors_directed(n, Direction::Outgoing).collect()
}

/// The FFN block after the attention sub-layer `h1`: (fc_in, fc_out) for layer `l`.
fn ffn_block(g: &Graph, h1: NodeIndex, l: usize) -> Result<(NodeIndex, NodeIndex), PassError> {
    let inter = format!("encoder.layer.{l}.intermediate.dense");
    let fc_in = users(g, h1)
        .into_iter()
        .find(|&u| matches!(&g.dag[u].op, Op::Linear(ops::Linear { w, .. }) if *w == inter))
        .ok_or_else(|| {
            failed(INFO.name, format!("layer {l} has no dense FFN (was it pruned or tiled before `ebert`?)"))
        })?;
    let act = match users(g, fc_in).as_slice() {
        [a] if matches!(g.dag[*a].op, Op::Gelu) => *a,
        _ => return Err(failed(INFO.name, format!("layer {l}: the FFN-in linear does not feed exactly one gelu"))),
    };
    match users(g, act).as_slice() {
        [o] if matches!(g.dag[*o].op, Op::Linear(_)) => Ok((fc_in, *o)),
        _ => Err(failed(INFO.name, format!("layer {l}: the FFN's gelu does not feed exactly one linear"))),
    }
}

/// Where EBERT's lowering stops paying, measured by `scripts/ebert-crossover` on the MR-fine-tuned MiniLM at
/// ratio 0.6 (docs/results.md, "EBERT at real lengths"): each call copies the chosen heads' and groups' weights, a cost
/// that scales with the weights, not the tokens.
pub const CROSSOVER_NOTE: &str = "each input's chosen weights are copied on every call, which costs more than it \
saves on short inputs: on MR-fine-tuned MiniLM (ratio 0.6) it was slower than dense on real sentences (28 tokens: \
0.85x in tract, 0.83x in ONNX Runtime) and paid only from about 32 tokens in tract and 64 in ONNX Runtime \
(scripts/ebert-crossover); measure yours: optimize bench dense.onnx this.onnx --seq 16,32,64,128";

impl Pass for Ebert {
    fn name(&self) -> &'static str {
        "ebert"
    }

    fn note(&self) -> Option<&'static str> {
        INFO.note
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        if !g.spare.0.keys().any(|k| k.starts_with(EBERT)) {
            return Err(failed(INFO.name, NO_PREDICTORS));
        }
        let mut layers: Vec<(usize, NodeIndex)> = g
            .dag
            .node_indices()
            .filter_map(|n| match &g.dag[n].op {
                Op::Attention(ops::Attention { query, .. }) => {
                    let l = query.strip_prefix("encoder.layer.")?.split('.').next()?.parse().ok()?;
                    Some((l, n))
                }
                _ => None,
            })
            .collect();
        layers.sort();
        if layers.is_empty() {
            return Err(failed(INFO.name, "no dense attention left to make dynamic (ebert runs on an unpruned model)"));
        }
        let (mut heads_kept, mut groups_kept) = (0, 0);
        for (l, att) in layers {
            let Op::Attention(ops::Attention { heads, head_dim, query, key, value, output, .. }) =
                g.dag[att].op.clone()
            else {
                unreachable!("filtered to attention nodes")
            };
            for p in [&query, &key, &value, &output] {
                crate::rewrite::require_dense(g, "ebert", p)?;
            }
            let ops = g.operands(att);
            let (x, mask) = (ops[0], ops[1]);
            let h1 = match users(g, att).as_slice() {
                [u] if matches!(g.dag[*u].op, Op::AddNorm(_)) => *u,
                _ => return Err(failed(INFO.name, format!("layer {l}: attention does not feed exactly one add_norm"))),
            };
            let input = if l == 0 {
                g.add_inferred(Op::MaskedMean, &[x, mask]).map_err(|e| failed(INFO.name, e))?
            } else {
                g.add_inferred(Op::TakeCls, &[x]).map_err(|e| failed(INFO.name, e))?
            };
            let (idx, units) = predictor(g, l, "heads", input, self.heads, self.ratio)?;
            if units != heads {
                return Err(failed(
                    INFO.name,
                    format!(
                        "layer {l} has {heads} heads but its predictor scores {units} (run `ebert` before `heads`)"
                    ),
                ));
            }
            let keep = g.dag[idx].ty.shape[1].known().unwrap_or(heads);
            let dyn_att = g
                .add_inferred(
                    Op::DynAttention(ops::DynAttention { heads, head_dim, keep, query, key, value, output }),
                    &[x, mask, idx],
                )
                .map_err(|e| failed(INFO.name, e))?;
            g.replace_uses(att, dyn_att);
            heads_kept += keep;

            let (fc_in, fc_out) = ffn_block(g, h1, l)?;
            let Op::Linear(ops::Linear { w: inter, n: f, .. }) = g.dag[fc_in].op.clone() else {
                unreachable!("checked linear")
            };
            let Op::Linear(ops::Linear { w: out, .. }) = g.dag[fc_out].op.clone() else {
                unreachable!("checked linear")
            };
            let cls = g.add_inferred(Op::TakeCls, &[h1]).map_err(|e| failed(INFO.name, e))?;
            let (gidx, groups) = predictor(g, l, "ffn", cls, self.groups, self.ratio)?;
            if groups == 0 || f % groups != 0 {
                return Err(failed(
                    INFO.name,
                    format!(
                        "layer {l}: {groups} predictor groups do not divide {f} FFN neurons (run `ebert` before `ffn`)"
                    ),
                ));
            }
            let keep = g.dag[gidx].ty.shape[1].known().unwrap_or(groups);
            let dyn_ffn = g
                .add_inferred(Op::DynFfn(ops::DynFfn { inter, out, groups, keep }), &[h1, gidx])
                .map_err(|e| failed(INFO.name, e))?;
            g.replace_uses(fc_out, dyn_ffn);
            groups_kept += keep;
        }
        g.spare.0.retain(|k, _| !k.starts_with(EBERT));
        changed.insert("heads kept".into(), heads_kept);
        changed.insert("groups kept".into(), groups_kept);
        Ok(())
    }
}
