//! EBERT's predictors: per layer, one that picks the heads and one that picks the FFN neuron groups each input
//! runs. Each is `Linear(D -> 64) -> BatchNorm -> ReLU -> Linear(64 -> units)`. The head predictor of layer 0
//! reads the mean of the embeddings over the real tokens (EBERT averages over all positions; averaging over
//! the masked ones keeps a decision independent of padding), later ones the [CLS] vector of the layer's input;
//! the FFN predictor reads [CLS] of the attention sub-layer's output. FFN neurons are decided in groups of
//! consecutive neurons, so that a kept group is a dense slice for the fused graph.
//!
//! Tensors (stored top-level in model.safetensors, PyTorch layout): `ebert.{l}.{heads|ffn}.fc1.{weight,bias}`,
//! `ebert.{l}.{heads|ffn}.bn.{weight,bias,running_mean,running_var}`, `ebert.{l}.{heads|ffn}.fc2.{weight,bias}`.

use candle_core::{DType, Tensor, Var};

use crate::arch::classifier::{BertClassifier, LayerGates, Result};
use crate::batch::Batch;
use crate::load::config::BertConfig;
use crate::rng::Rng;
pub use crate::schema::{predictor_shapes, EBERT, WIDTH};

/// BatchNorm epsilon (PyTorch's default; the `ebert` pass folds with the same).
pub const BN_EPS: f64 = bertopt_ir::ops::PREDICTOR_BN_EPS;
/// BatchNorm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
/// Initial bias of the predictors' output: sigmoid(2) = 0.88, so training starts from nearly every unit kept.
const INIT_KEEP_BIAS: f32 = 2.0;

/// Is this a BatchNorm running statistic (updated by training, never by the optimizer)?
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

impl BertClassifier {
    /// Add fresh predictors (`groups` FFN groups per layer; must divide the intermediate size) if the model
    /// has none.
    pub fn add_predictors(&mut self, groups: usize, seed: u64) -> Result<()> {
        let f = self.config.intermediate_size;
        crate::error::ensure!(groups >= 1 && f.is_multiple_of(groups), "{groups} FFN groups do not divide {f} neurons");
        if let Some(have) = self.predictor_groups() {
            crate::error::ensure!(
                have == groups,
                "the model already has predictors with {have} FFN groups, not {groups}"
            );
            return Ok(());
        }
        let mut rng = Rng::new(seed ^ 0xeb_e27);
        for (name, dims) in predictor_shapes(&self.config, groups) {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = if name.ends_with("fc2.bias") {
                vec![INIT_KEEP_BIAS; n]
            } else if name.ends_with(".weight") && name.contains(".fc") {
                (0..n).map(|_| rng.normal() * 0.02).collect()
            } else if name.ends_with("bn.weight") || name.ends_with("running_var") {
                vec![1.0; n]
            } else {
                vec![0.0; n]
            };
            let t = Tensor::from_vec(v, dims.as_slice(), &self.device)?;
            self.params.insert(name, Var::from_tensor(&t)?);
        }
        Ok(())
    }

    /// The number of FFN groups the model's predictors decide (None: no predictors).
    pub fn predictor_groups(&self) -> Option<usize> {
        self.params.get(&format!("{EBERT}0.ffn.fc2.weight")).map(|v| v.dims()[0])
    }

    /// The trainable predictor variables (not the running statistics).
    pub fn predictor_vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .filter(|(k, _)| k.starts_with(EBERT) && !is_running_stat(k))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The backbone's variables (everything but the predictors).
    pub fn backbone_vars(&self) -> Vec<Var> {
        self.params.iter().filter(|(k, _)| !k.starts_with(EBERT)).map(|(_, v)| v.clone()).collect()
    }

    fn param(&self, name: &str) -> Result<&Tensor> {
        Ok(self.params.get(name).ok_or_else(|| crate::error::invalid!("the model has no tensor {name}"))?.as_tensor())
    }
}

/// How the predictors turn logits into gates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateMode {
    /// Gumbel-sigmoid with a hard 0.5 threshold and a straight-through gradient; BatchNorm uses batch statistics.
    Train { temperature: f32 },
    /// Keep the `heads` and `groups` largest logits of each input (ties: the lower index), as the fused graph does.
    TopK { heads: usize, groups: usize },
    /// `TopK`'s choices forward, the keep probabilities' gradient backward (straight-through), BatchNorm on its
    /// running statistics: training under exactly the decisions the fused graph will make.
    TopKTrain { heads: usize, groups: usize },
    /// Keep a unit iff its logit >= 0 (the release's rule; sparsity varies per input).
    Threshold,
}

/// The predictors at work during one forward pass; they record what the loss and the reports need.
pub struct EbertGates<'a> {
    model: &'a BertClassifier,
    mode: GateMode,
    rng: Option<&'a mut Rng>,
    /// Per layer: sigmoid of the head / group logits, `[batch, units]` (the expected keep rates).
    pub head_probs: Vec<Tensor>,
    pub ffn_probs: Vec<Tensor>,
    /// Per layer: the hard gates applied, `[batch, units]` of 0/1.
    pub head_kept: Vec<Tensor>,
    pub ffn_kept: Vec<Tensor>,
    /// BatchNorm batch statistics seen in training: (prefix, mean, unbiased variance).
    pub bn_batch: Vec<(String, Tensor, Tensor)>,
}

impl<'a> EbertGates<'a> {
    pub fn new(model: &'a BertClassifier, mode: GateMode, rng: Option<&'a mut Rng>) -> Result<Self> {
        crate::error::ensure!(model.predictor_groups().is_some(), "the model has no EBERT predictors");
        Ok(EbertGates {
            model,
            mode,
            rng,
            head_probs: vec![],
            ffn_probs: vec![],
            head_kept: vec![],
            ffn_kept: vec![],
            bn_batch: vec![],
        })
    }

    /// `fc2(relu(bn(fc1(x))))` for predictor `p` on `x: [batch, D]`.
    fn logits(&mut self, p: &str, x: &Tensor) -> Result<Tensor> {
        let m = self.model;
        let lin = |x: &Tensor, q: &str| -> Result<Tensor> {
            Ok(x.matmul(&m.param(&format!("{q}.weight"))?.t()?)?.broadcast_add(m.param(&format!("{q}.bias"))?)?)
        };
        let h = lin(x, &format!("{p}.fc1"))?;
        let bn = format!("{p}.bn");
        let (mean, var) = if matches!(self.mode, GateMode::Train { .. }) && h.dim(0)? > 1 {
            let mean = h.mean_keepdim(0)?;
            let var = h.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let n = h.dim(0)? as f64;
            self.bn_batch.push((bn.clone(), mean.squeeze(0)?.detach(), (var.squeeze(0)?.detach() * (n / (n - 1.0)))?));
            (mean, var)
        } else {
            (
                m.param(&format!("{bn}.running_mean"))?.unsqueeze(0)?,
                m.param(&format!("{bn}.running_var"))?.unsqueeze(0)?,
            )
        };
        let h = h.broadcast_sub(&mean)?.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        let h = h.broadcast_mul(m.param(&format!("{bn}.weight"))?)?.broadcast_add(m.param(&format!("{bn}.bias"))?)?;
        lin(&h.relu()?, &format!("{p}.fc2"))
    }

    /// Gates `[batch, units]` from logits, by the mode.
    fn gate(&mut self, z: &Tensor, k: usize) -> Result<Tensor> {
        Ok(match self.mode {
            GateMode::Train { temperature } => {
                let rng =
                    self.rng.as_deref_mut().ok_or_else(|| crate::error::invalid!("training gates need a generator"))?;
                // Logistic noise (the difference of two Gumbels): sigmoid((z + L) / t) > 0.5  <=>  z + L > 0.
                let noise: Vec<f32> = (0..z.elem_count())
                    .map(|_| {
                        let u = rng.uniform().clamp(1e-6, 1.0 - 1e-6);
                        u.ln() - (1.0 - u).ln()
                    })
                    .collect();
                let noise = Tensor::from_vec(noise, z.dims(), z.device())?;
                let soft = candle_nn::ops::sigmoid(&((z + noise)? / temperature as f64)?)?;
                let hard = soft.ge(0.5)?.to_dtype(DType::F32)?;
                // Straight-through: the hard value forward, the soft gradient backward.
                (hard - soft.detach())?.add(&soft)?
            }
            GateMode::Threshold => z.ge(0.0)?.to_dtype(DType::F32)?,
            GateMode::TopK { .. } => top_k_gates(z, k)?,
            GateMode::TopKTrain { .. } => {
                let soft = candle_nn::ops::sigmoid(z)?;
                (top_k_gates(z, k)? - soft.detach())?.add(&soft)?
            }
        })
    }
}

/// 0/1 gates `[batch, units]` keeping each row's `k` largest logits.
fn top_k_gates(z: &Tensor, k: usize) -> Result<Tensor> {
    let rows = z.to_vec2::<f32>()?;
    let n = rows.first().map_or(0, Vec::len);
    let mut g = vec![0f32; rows.len() * n];
    for (r, row) in rows.iter().enumerate() {
        for i in top_k(row, k) {
            g[r * n + i] = 1.0;
        }
    }
    Ok(Tensor::from_vec(g, (rows.len(), n), z.device())?)
}

/// Indices of the `k` largest values, largest first; equal values keep index order (as ONNX `TopK` and the IR
/// interpreter order them).
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
    order.truncate(k);
    order
}

impl LayerGates for EbertGates<'_> {
    fn heads(&mut self, layer: usize, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let input =
            if layer == 0 { crate::arch::classifier::masked_mean(x, mask)? } else { x.narrow(1, 0, 1)?.squeeze(1)? };
        let z = self.logits(&format!("{EBERT}{layer}.heads"), &input)?;
        self.head_probs.push(candle_nn::ops::sigmoid(&z)?);
        let k = match self.mode {
            GateMode::TopK { heads, .. } | GateMode::TopKTrain { heads, .. } => heads,
            _ => 0,
        };
        let g = self.gate(&z, k)?;
        self.head_kept.push(g.detach());
        Ok(g)
    }

    fn ffn(&mut self, layer: usize, x: &Tensor) -> Result<Tensor> {
        let z = self.logits(&format!("{EBERT}{layer}.ffn"), &x.narrow(1, 0, 1)?.squeeze(1)?)?;
        self.ffn_probs.push(candle_nn::ops::sigmoid(&z)?);
        let k = match self.mode {
            GateMode::TopK { groups, .. } | GateMode::TopKTrain { groups, .. } => groups,
            _ => 0,
        };
        let g = self.gate(&z, k)?;
        self.ffn_kept.push(g.detach());
        // Groups to neurons: each group's gate repeated over its consecutive neurons.
        let (b, groups) = g.dims2()?;
        let size = self.model.config.intermediate_size / groups;
        Ok(g.unsqueeze(2)?.broadcast_as((b, groups, size))?.reshape((b, groups * size))?)
    }
}

/// FLOPs of one input of `seq` tokens, split as EBERT's sparsity loss needs them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FlopModel {
    /// One attention head of one layer (its Q/K/V/output projections, scores and context).
    pub head: f64,
    /// One FFN group of one layer.
    pub group: f64,
    /// What always runs: embeddings' norm aside, the pooler and classifier.
    pub fixed: f64,
    /// All the predictors together.
    pub predictors: f64,
    /// The dense model (no predictors).
    pub dense: f64,
}

impl FlopModel {
    pub fn new(c: &BertConfig, groups: usize, labels: usize, seq: usize) -> Self {
        let (d, h, f, l) = (
            c.hidden_size as f64,
            c.num_attention_heads as f64,
            c.intermediate_size as f64,
            c.num_hidden_layers as f64,
        );
        let (s, hd, g) = (seq as f64, c.hidden_size as f64 / h, groups as f64);
        let head = 2.0 * s * d * hd * 4.0 + 2.0 * s * s * hd * 2.0;
        let group = 2.0 * s * d * (f / g) * 2.0;
        let fixed = 2.0 * d * d + 2.0 * d * labels as f64;
        let w = WIDTH as f64;
        let predictors = l * (2.0 * (d * w + w * h) + 2.0 * (d * w + w * g));
        FlopModel { head, group, fixed, predictors, dense: fixed + l * (h * head + g * group) }
    }

    /// FLOPs ratio (to dense) of running `heads` heads and `groups` groups per layer, predictors included.
    pub fn ratio(&self, c: &BertConfig, heads: f64, groups: f64) -> f64 {
        let l = c.num_hidden_layers as f64;
        (self.fixed + self.predictors + l * (heads * self.head + groups * self.group)) / self.dense
    }
}

/// Logits with the predictors choosing per input in `mode` (dropout off), and the gates they applied.
pub fn ebert_forward<'a>(model: &'a BertClassifier, b: &Batch, mode: GateMode) -> Result<(Tensor, EbertGates<'a>)> {
    let mut gates = EbertGates::new(model, mode, None)?;
    let logits = model.forward_dynamic(b, None, &mut gates)?;
    Ok((logits, gates))
}

/// Mean of the last dim over the batch: per-layer keep rates `[layers]` from per-layer `[batch, units]` gates.
pub fn keep_rates(gates: &[Tensor]) -> Result<Vec<f64>> {
    gates.iter().map(|g| Ok(g.mean_all()?.to_scalar::<f32>()? as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_with_predictors() -> BertClassifier {
        let c: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                "intermediate_size": 32, "max_position_embeddings": 32}"#,
        )
        .unwrap();
        let mut m = BertClassifier::random(c, vec!["a".into(), "b".into()], 3).unwrap();
        m.add_predictors(4, 3).unwrap();
        m
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    /// The top-k training gates must make the fused graph's decisions exactly (else the epochs train a model the
    /// graph does not run) and, unlike the inference gates, let the loss reach the predictors.
    #[test]
    fn top_k_training_gates_decide_as_top_k_and_pass_gradient_to_the_predictors() {
        let m = tiny_with_predictors();
        let b = Batch::synthetic(3, 8, 50, 1);
        let (inference, chosen) = ebert_forward(&m, &b, GateMode::TopK { heads: 2, groups: 2 }).unwrap();
        let mut gates = EbertGates::new(&m, GateMode::TopKTrain { heads: 2, groups: 2 }, None).unwrap();
        let training = m.forward_dynamic(&b, None, &mut gates).unwrap();
        assert!(max_abs_diff(&inference, &training) <= 1e-5, "logits differ");
        for (a, t) in chosen.head_kept.iter().chain(&chosen.ffn_kept).zip(gates.head_kept.iter().chain(&gates.ffn_kept))
        {
            assert_eq!(a.sum_all().unwrap().to_scalar::<f32>().unwrap(), 3.0 * 2.0, "k units kept per row");
            assert!(max_abs_diff(a, t) <= 1e-5, "decisions differ: {a} vs {t}");
        }
        let grad_norm = |logits: &Tensor| -> Vec<f32> {
            let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            (0..2)
                .flat_map(|l| ["heads", "ffn"].map(|p| format!("{EBERT}{l}.{p}.fc2.weight")))
                .map(|n| {
                    grads
                        .get(m.params[&n].as_tensor())
                        .map_or(0.0, |g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
                })
                .collect()
        };
        let trained = grad_norm(&training);
        assert!(trained.iter().all(|g| *g > 0.0), "every predictor gets a gradient: {trained:?}");
        assert!(grad_norm(&inference).iter().all(|g| *g == 0.0), "inference gates are constants");
    }
}
