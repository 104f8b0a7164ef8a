//! A BERT sequence classifier in candle for training: the same computation as Hugging Face's
//! `BertForSequenceClassification` (pooler on [CLS], dropout, linear), with parameters held as candle `Var`s under
//! the standard names (`bert.…`, `classifier.…`) so that saving writes a folder `transformers` loads as is.
//! Randomness (initialisation, dropout) comes from a seeded generator: CPU training is deterministic.

use std::collections::BTreeMap;
use std::path::Path;

use bertopt_ir::interp::{layer_norm, softmax, MASK_NEG};
use candle_core::{DType, Device, Tensor, Var, D};

use crate::batch::Batch;
use crate::load::checkpoint::{Checkpoint, Head, Scheme};
use crate::load::config::BertConfig;
use crate::rng::Rng;
pub use crate::schema::ExitPooling;

pub use crate::error::Result;

/// The trainable model: config, label names and every parameter by its Hugging Face name.
pub struct BertClassifier {
    pub config: BertConfig,
    pub labels: Vec<String>,
    pub params: BTreeMap<String, Var>,
    pub dropout: f32,
    /// Fixed `[layers, heads]` 0/1 gate on each head's context (None = all heads run). Fine-tuning with a gate
    /// trains the model that stripping those heads will produce; `save` zeroes the gated heads' value
    /// projections so that the saved dense checkpoint computes exactly that model.
    pub head_gate: Option<Vec<Vec<bool>>>,
    /// Fixed `[layers, intermediate]` 0/1 gate on the FFN neurons, for recovery after `ffn` pruning; `save`
    /// zeroes the gated neurons' FFN-in rows and FFN-out columns.
    pub ffn_gate: Option<Vec<Vec<bool>>>,
    /// Fixed `[layers]` keep-flags on whole encoder layers, for recovery after the `layers` pass: a dropped layer
    /// is skipped (the next reads what entered it). `save` cannot express a skipped layer in a dense checkpoint,
    /// so the saved model computes the recovered one only when exported with the same `layers(...)`.
    pub layer_gate: Option<Vec<bool>>,
    /// Fixed `[hidden]` keep-flags on the features of the residual stream, for recovery after the `hidden` pass:
    /// every LayerNorm normalises over the kept features only and zeroes the others, which is what the pruned
    /// graph computes (see `masked_layer_norm`). `save` zeroes every appearance of the removed features, so the
    /// pass picks them again on the saved model; the saved dense model computes the recovered one only when
    /// exported with the same `hidden(...)`.
    pub hidden_gate: Option<Vec<bool>>,
    /// Fixed 0/1 masks on single weights (by parameter name, same shape), for recovery after the pruning passes
    /// that cut entries rather than whole units (`tile`, `type0`, `qkv`, `vw`, `bw`): applied at once and again
    /// after every optimiser step, so masked entries stay zero and the saved checkpoint holds the zeros.
    pub weight_masks: BTreeMap<String, Tensor>,
    /// Where the parameters live and the computation runs (CPU unless moved with `to_device`).
    pub device: Device,
}

fn normal(rng: &mut Rng, dims: &[usize], std: f32) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() * std).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

/// Names and shapes (PyTorch layout) of every parameter of a classifier with `labels` outputs.
fn parameter_shapes(c: &BertConfig, labels: usize) -> Vec<(String, Vec<usize>)> {
    let (d, i) = (c.hidden_size, c.intermediate_size);
    let mut v = vec![
        ("bert.embeddings.word_embeddings.weight".to_string(), vec![c.vocab_size, d]),
        ("bert.embeddings.position_embeddings.weight".into(), vec![c.max_position_embeddings, d]),
        ("bert.embeddings.token_type_embeddings.weight".into(), vec![c.type_vocab_size, d]),
        ("bert.embeddings.LayerNorm.weight".into(), vec![d]),
        ("bert.embeddings.LayerNorm.bias".into(), vec![d]),
    ];
    let mut lin = |p: String, out: usize, inp: Option<usize>| {
        match inp {
            Some(k) => v.push((format!("{p}.weight"), vec![out, k])),
            None => v.push((format!("{p}.weight"), vec![out])),
        }
        v.push((format!("{p}.bias"), vec![out]));
    };
    for l in 0..c.num_hidden_layers {
        let p = format!("bert.encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            lin(format!("{p}.attention.self.{m}"), d, Some(d));
        }
        lin(format!("{p}.attention.output.dense"), d, Some(d));
        lin(format!("{p}.attention.output.LayerNorm"), d, None);
        lin(format!("{p}.intermediate.dense"), i, Some(d));
        lin(format!("{p}.output.dense"), d, Some(i));
        lin(format!("{p}.output.LayerNorm"), d, None);
    }
    lin("bert.pooler.dense".into(), d, Some(d));
    lin("classifier".into(), labels, Some(d));
    v
}

impl BertClassifier {
    /// A freshly initialised model (weights N(0, 0.02), biases 0, norms 1), as BERT initialises.
    pub fn random(config: BertConfig, labels: Vec<String>, seed: u64) -> Result<Self> {
        crate::error::ensure!(labels.len() >= 2, "a classifier needs at least two labels");
        let mut rng = Rng::new(seed);
        let mut params = BTreeMap::new();
        for (name, dims) in parameter_shapes(&config, labels.len()) {
            let t = if name.contains("LayerNorm.weight") {
                Tensor::ones(dims.as_slice(), DType::F32, &Device::Cpu)?
            } else if name.ends_with(".bias") {
                Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)?
            } else {
                normal(&mut rng, &dims, 0.02)?
            };
            params.insert(name, Var::from_tensor(&t)?);
        }
        Ok(BertClassifier {
            config,
            labels,
            params,
            dropout: 0.1,
            head_gate: None,
            ffn_gate: None,
            layer_gate: None,
            hidden_gate: None,
            weight_masks: BTreeMap::new(),
            device: Device::Cpu,
        })
    }

    /// Start from a Hugging Face folder: every tensor it has is used; a missing pooler or classifier is
    /// initialised as in `random`. A classifier with a different number of labels is an error.
    pub fn from_pretrained(path: &Path, labels: Vec<String>, seed: u64) -> Result<Self> {
        Self::from_checkpoint(Checkpoint::load(path)?, labels, seed)
    }

    /// `from_pretrained` for a checkpoint already loaded (and inspected) by the caller.
    pub fn from_checkpoint(ck: Checkpoint, labels: Vec<String>, seed: u64) -> Result<Self> {
        crate::error::ensure!(ck.scheme != Scheme::Roberta, "fine-tuning RoBERTa checkpoints is not supported yet");
        if let Head::BertClassifier { labels: n } = ck.head {
            crate::error::ensure!(
                n == labels.len(),
                "{} has a classifier with {n} labels but the data has {}",
                ck.files.weights.display(),
                labels.len()
            );
        }
        let mut model = BertClassifier::random(ck.config.clone(), labels, seed)?;
        for l in ck.exit_layers() {
            model.add_exits(&[l], seed, ck.exit_pooling(l))?;
        }
        if let Some(groups) = ck.predictor_groups() {
            model.add_predictors(groups, seed)?;
        }
        for (name, t) in ck.tensors {
            let full = if name.starts_with("classifier")
                || name.starts_with(crate::schema::EXITS)
                || name.starts_with(crate::schema::EBERT)
            {
                name
            } else {
                format!("bert.{name}")
            };
            let var = model.params.get(&full).ok_or_else(|| crate::error::invalid!("unexpected tensor {full}"))?;
            crate::error::ensure!(var.dims() == t.dims(), "{full}: shape {:?} vs {:?}", var.dims(), t.dims());
            var.set(&t)?;
        }
        Ok(model)
    }

    /// Move every parameter to `device` (initialisation always happens on the CPU, so a seed gives the same
    /// starting point everywhere).
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for v in self.params.values_mut() {
            *v = Var::from_tensor(&v.as_tensor().to_device(device)?)?;
        }
        self.device = device.clone();
        Ok(())
    }

    /// Fix `masks` (parameter name -> 0/1 tensor of its shape) on the weights and apply them now.
    pub fn set_weight_masks(&mut self, masks: BTreeMap<String, Tensor>) -> Result<()> {
        let mut moved = BTreeMap::new();
        for (name, m) in masks {
            let v = self.params.get(&name).ok_or_else(|| crate::error::invalid!("no parameter {name} to mask"))?;
            crate::error::ensure!(
                v.dims() == m.dims(),
                "mask for {name} is {:?} but the parameter is {:?}",
                m.dims(),
                v.dims()
            );
            moved.insert(name, m.to_device(&self.device)?);
        }
        self.weight_masks = moved;
        self.apply_weight_masks()
    }

    /// Zero the masked entries (after an optimiser step moved them).
    pub fn apply_weight_masks(&self) -> Result<()> {
        for (name, m) in &self.weight_masks {
            let v = &self.params[name];
            v.set(&v.as_tensor().mul(m)?)?;
        }
        Ok(())
    }

    fn p(&self, name: &str) -> &Tensor {
        self.params.get(name).unwrap_or_else(|| panic!("parameter {name} is created with the model")).as_tensor()
    }

    /// `x · Wᵀ + b` with a PyTorch-layout weight, over the last dim of x.
    fn linear(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let w = self.p(&format!("{prefix}.weight"));
        let b = self.p(&format!("{prefix}.bias"));
        let dims = x.dims().to_vec();
        let k = dims[dims.len() - 1];
        let y = x.reshape((x.elem_count() / k, k))?.matmul(&w.t()?)?.broadcast_add(b)?;
        let mut out = dims;
        *out.last_mut().expect("rank >= 1") = w.dim(0)?;
        Ok(y.reshape(out)?)
    }

    fn norm(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let eps = self.config.layer_norm_eps as f32;
        let (w, b) = (self.p(&format!("{prefix}.weight")), self.p(&format!("{prefix}.bias")));
        match &self.hidden_gate {
            None => Ok(layer_norm(x, w, b, eps)?),
            Some(keep) => masked_layer_norm(x, w, b, eps, keep),
        }
    }

    fn drop(&self, x: &Tensor, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        let Some(rng) = rng.as_deref_mut() else { return Ok(x.clone()) };
        if self.dropout <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.dropout;
        let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.uniform() < keep { 1.0 / keep } else { 0.0 }).collect();
        Ok((x * Tensor::from_vec(mask, x.dims(), x.device())?)?)
    }

    /// Logits `[batch, labels]`. With `rng` the model is in training mode (dropout on).
    pub fn forward(&self, b: &Batch, rng: Option<&mut Rng>) -> Result<Tensor> {
        match &self.head_gate {
            None => self.forward_gated(b, rng, None),
            Some(g) => self.forward_gated(b, rng, Some(&gate_tensor(g, &self.device)?)),
        }
    }

    /// Set a fixed head gate after checking it against the model's layers and heads.
    pub fn set_head_gate(&mut self, keep: Vec<Vec<bool>>) -> Result<()> {
        check_gate(&keep, "head", self.config.num_hidden_layers, self.config.num_attention_heads, "heads")?;
        self.head_gate = Some(keep);
        Ok(())
    }

    /// Set a fixed FFN-neuron gate after checking it against the model's layers and intermediate size.
    pub fn set_ffn_gate(&mut self, keep: Vec<Vec<bool>>) -> Result<()> {
        check_gate(&keep, "FFN", self.config.num_hidden_layers, self.config.intermediate_size, "neurons")?;
        self.ffn_gate = Some(keep);
        Ok(())
    }

    /// Set which encoder layers run (false = skipped) after checking the count against the model.
    pub fn set_layer_gate(&mut self, keep: Vec<bool>) -> Result<()> {
        crate::error::ensure!(
            keep.len() == self.config.num_hidden_layers,
            "the layer mask has {} entries but the model has {} layers",
            keep.len(),
            self.config.num_hidden_layers
        );
        crate::error::ensure!(keep.contains(&true), "the layer mask drops every layer");
        self.layer_gate = Some(keep);
        Ok(())
    }

    /// Set which features of the hidden stream stay (false = removed), after checking the count.
    pub fn set_hidden_gate(&mut self, keep: Vec<bool>) -> Result<()> {
        crate::error::ensure!(
            keep.len() == self.config.hidden_size,
            "the hidden mask has {} entries but the model's hidden size is {}",
            keep.len(),
            self.config.hidden_size
        );
        crate::error::ensure!(keep.contains(&true), "the hidden mask removes every feature");
        self.hidden_gate = Some(keep);
        Ok(())
    }

    /// `forward` with each head's context scaled by `gate[layer, head]` (a `[layers, heads]` tensor). With a
    /// `Var` of ones as the gate, its gradient is the head importance of Michel et al. (2019).
    pub fn forward_gated(&self, b: &Batch, mut rng: Option<&mut Rng>, gate: Option<&Tensor>) -> Result<Tensor> {
        let x = self.trunk(b, &mut rng, gate, None, &mut |_, h| Ok(h))?;
        self.head(&x, "bert.pooler.dense", "classifier", &mut rng)
    }

    /// Logits with per-input gates chosen as the model runs (EBERT's predictors, see `ebert`).
    pub fn forward_dynamic(&self, b: &Batch, mut rng: Option<&mut Rng>, gates: &mut dyn LayerGates) -> Result<Tensor> {
        let x = self.trunk(b, &mut rng, None, Some(gates), &mut |_, h| Ok(h))?;
        self.head(&x, "bert.pooler.dense", "classifier", &mut rng)
    }

    /// Pooler (dense + tanh on [CLS]), dropout, classifier: the final head, and each off-ramp's.
    fn head(&self, x: &Tensor, pooler: &str, classifier: &str, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        self.pooled_head(&x.narrow(1, 0, 1)?.squeeze(1)?, pooler, classifier, rng)
    }

    /// Pooler (dense + tanh) and classifier on an already pooled `[batch, D]`.
    fn pooled_head(&self, x: &Tensor, pooler: &str, classifier: &str, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        let pooled = self.linear(x, pooler)?.tanh()?;
        self.linear(&self.drop(&pooled, rng)?, classifier)
    }

    /// Embeddings and every encoder layer; `after_layer(l, h)` sees each layer's output and returns what the next
    /// layer reads (exits tap it there).
    fn trunk(
        &self,
        b: &Batch,
        rng: &mut Option<&mut Rng>,
        gate: Option<&Tensor>,
        mut dynamic: Option<&mut dyn LayerGates>,
        after_layer: &mut dyn FnMut(usize, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut rng = rng.as_deref_mut();
        let c = &self.config;
        let dev = &self.device;
        let ffn_gate = self.ffn_gate.as_ref().map(|g| gate_tensor(g, dev)).transpose()?;
        let ids = Tensor::from_vec(b.input_ids.clone(), (b.batch, b.seq), dev)?;
        let tt = Tensor::from_vec(b.token_type_ids.clone(), (b.batch, b.seq), dev)?;
        let mask = Tensor::from_vec(b.attention_mask.clone(), (b.batch, b.seq), dev)?;
        let (d, h) = (c.hidden_size, c.num_attention_heads);
        let hd = d / h;
        let gather = |table: &Tensor, idx: &Tensor| -> Result<Tensor> {
            Ok(table.index_select(&idx.flatten_all()?, 0)?.reshape((b.batch, b.seq, d))?)
        };
        let we = gather(self.p("bert.embeddings.word_embeddings.weight"), &ids)?;
        let te = gather(self.p("bert.embeddings.token_type_embeddings.weight"), &tt)?;
        let pe = self.p("bert.embeddings.position_embeddings.weight").narrow(0, c.position_offset(), b.seq)?;
        let x = (we + te)?.broadcast_add(&pe)?;
        let mut x = self.drop(&self.norm(&x, "bert.embeddings.LayerNorm")?, &mut rng)?;
        let add_mask = ((1.0 - mask.to_dtype(DType::F32)?)? * MASK_NEG as f64)?.reshape((b.batch, 1, 1, b.seq))?;
        for l in 0..c.num_hidden_layers {
            if self.layer_gate.as_ref().is_some_and(|keep| !keep[l]) {
                continue;
            }
            let p = format!("bert.encoder.layer.{l}");
            let head_gate = match dynamic.as_deref_mut() {
                Some(d) => Some(d.heads(l, &x, &mask)?),
                None => None,
            };
            let split = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((b.batch, b.seq, h, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = split(self.linear(&x, &format!("{p}.attention.self.query"))?)?;
            let k = split(self.linear(&x, &format!("{p}.attention.self.key"))?)?;
            let v = split(self.linear(&x, &format!("{p}.attention.self.value"))?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? / (hd as f64).sqrt())?.broadcast_add(&add_mask)?;
            let probs = self.drop(&softmax_detached_max(&scores)?, &mut rng)?;
            let mut ctx = probs.matmul(&v)?;
            if let Some(g) = gate {
                ctx = ctx.broadcast_mul(&g.get(l)?.reshape((1, h, 1, 1))?)?;
            }
            if let Some(g) = &head_gate {
                ctx = ctx.broadcast_mul(&g.reshape((b.batch, h, 1, 1))?)?;
            }
            let ctx = ctx.transpose(1, 2)?.contiguous()?.reshape((b.batch, b.seq, d))?;
            let a = self.drop(&self.linear(&ctx, &format!("{p}.attention.output.dense"))?, &mut rng)?;
            x = self.norm(&(a + &x)?, &format!("{p}.attention.output.LayerNorm"))?;
            let mut f = self.linear(&x, &format!("{p}.intermediate.dense"))?.gelu_erf()?;
            if let Some(g) = &ffn_gate {
                f = f.broadcast_mul(&g.get(l)?)?;
            }
            if let Some(d) = dynamic.as_deref_mut() {
                // Zeroing a neuron after GELU equals zeroing it before (GELU(0) = 0), as EBERT masks.
                f = f.broadcast_mul(&d.ffn(l, &x)?.unsqueeze(1)?)?;
            }
            let f = self.drop(&self.linear(&f, &format!("{p}.output.dense"))?, &mut rng)?;
            x = self.norm(&(f + &x)?, &format!("{p}.output.LayerNorm"))?;
            x = after_layer(l, x)?;
        }
        Ok(x)
    }

    /// Layers (0-based) after which the model has an off-ramp.
    pub fn exit_layers(&self) -> Vec<usize> {
        let set: std::collections::BTreeSet<usize> = self
            .params
            .keys()
            .filter_map(|k| k.strip_prefix(crate::schema::EXITS)?.split('.').next()?.parse().ok())
            .collect();
        set.into_iter().collect()
    }

    /// How the off-ramp after layer `l` pools: by the name of its pooler tensors.
    pub fn exit_pooling(&self, l: usize) -> ExitPooling {
        ExitPooling::of_ramp(l, |name| self.params.contains_key(name))
    }

    /// Add an off-ramp after each of `layers` (0-based, before the last layer) that has none: a pooler
    /// initialised from the final pooler (as DeeBERT does) reading what `pooling` says, and a fresh classifier
    /// (N(0, 0.02), bias 0).
    pub fn add_exits(&mut self, layers: &[usize], seed: u64, pooling: ExitPooling) -> Result<()> {
        let (d, n, total) = (self.config.hidden_size, self.labels.len(), self.config.num_hidden_layers);
        let mut rng = Rng::new(seed ^ 0x0ff_4a3f);
        for &l in layers {
            crate::error::ensure!(
                l + 1 < total,
                "an off-ramp after layer {} of {total}: the last layer has the model's own classifier",
                l + 1
            );
            let p = format!("exits.{l}");
            if self.params.contains_key(&format!("{p}.classifier.weight")) {
                continue;
            }
            let dev = self.device.clone();
            for part in ["weight", "bias"] {
                let pooler = self.p(&format!("bert.pooler.dense.{part}")).copy()?;
                self.params.insert(format!("{p}.{}.{part}", pooling.pooler()), Var::from_tensor(&pooler)?);
            }
            let w = normal(&mut rng, &[n, d], 0.02)?.to_device(&dev)?;
            self.params.insert(format!("{p}.classifier.weight"), Var::from_tensor(&w)?);
            self.params.insert(format!("{p}.classifier.bias"), Var::from_tensor(&Tensor::zeros(n, DType::F32, &dev)?)?);
        }
        Ok(())
    }

    /// Logits of every off-ramp (in layer order) followed by the final classifier's. `mode` says how gradients
    /// reach the backbone: not at all from the off-ramps (DeeBERT's second stage), or rescaled (ElasticBERT).
    pub fn forward_exits(&self, b: &Batch, mut rng: Option<&mut Rng>, mode: ExitGradients) -> Result<Vec<Tensor>> {
        let ramps = self.exit_layers();
        let total = self.config.num_hidden_layers;
        let mask = Tensor::from_vec(b.attention_mask.clone(), (b.batch, b.seq), &self.device)?;
        let mut out = vec![];
        let mut ramp_rng = rng.as_deref_mut().map(|r| Rng::new(r.next_u64()));
        let x = self.trunk(b, &mut rng, None, None, &mut |l, h| {
            if !ramps.contains(&l) {
                return Ok(h);
            }
            let p = format!("exits.{l}");
            // ElasticBERT's gradient equilibrium: of the `total - l` losses that reach layer l's output, the
            // off-ramp's gradient is scaled by 1/(total - l) and the rest of the network's by (total-l-1)/(total-l).
            let (branch, trunk) = match mode {
                ExitGradients::Detached => (h.detach(), h),
                ExitGradients::Full => (h.clone(), h),
                ExitGradients::Rescaled => {
                    let k = (total - l) as f64;
                    (scale_gradient(&h, 1.0 / k)?, scale_gradient(&h, (k - 1.0) / k)?)
                }
            };
            let pooling = self.exit_pooling(l);
            let pooled = match pooling {
                ExitPooling::Cls => branch.narrow(1, 0, 1)?.squeeze(1)?,
                ExitPooling::Mean => masked_mean(&branch, &mask)?,
            };
            out.push(self.pooled_head(
                &pooled,
                &format!("{p}.{}", pooling.pooler()),
                &format!("{p}.classifier"),
                &mut ramp_rng.as_mut(),
            )?);
            Ok(trunk)
        })?;
        out.push(self.head(&x, "bert.pooler.dense", "classifier", &mut rng)?);
        Ok(out)
    }

    /// Every trainable variable.
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    /// Write a Hugging Face folder: config.json (with id2label, num_labels, architectures), model.safetensors
    /// with standard names and `metadata` in its `__metadata__`, and the tokenizer. Each file is written
    /// atomically.
    pub fn save(&self, dir: &Path, tokenizer: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        let c = &self.config;
        let id2label: BTreeMap<String, String> =
            self.labels.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone())).collect();
        let label2id: BTreeMap<String, usize> = self.labels.iter().enumerate().map(|(i, l)| (l.clone(), i)).collect();
        let cfg = serde_json::json!({
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "intermediate_size": c.intermediate_size,
            "hidden_act": c.hidden_act,
            "hidden_dropout_prob": self.dropout,
            "attention_probs_dropout_prob": self.dropout,
            "max_position_embeddings": c.max_position_embeddings,
            "type_vocab_size": c.type_vocab_size,
            "initializer_range": 0.02,
            "layer_norm_eps": c.layer_norm_eps,
            "pad_token_id": c.pad_token_id,
            "position_embedding_type": "absolute",
            "num_labels": self.labels.len(),
            "id2label": id2label,
            "label2id": label2id,
            "problem_type": "single_label_classification",
        });
        let json = serde_json::to_string_pretty(&cfg)?;
        let path = dir.join("config.json");
        crate::atomic::write_atomic(&path, |w| w.write_all(json.as_bytes())).map_err(|e| crate::Error::io(&path, e))?;
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
        let gated = self.gated_slices();
        for (n, v) in &self.params {
            let mut t = v.as_tensor().clone();
            for (axis, idx) in gated.get(n.as_str()).into_iter().flatten() {
                t = zero_along(&t, *axis, idx)?;
            }
            let bytes = t.flatten_all()?.to_vec1::<f32>()?.into_iter().flat_map(f32::to_le_bytes).collect();
            owned.push((n.clone(), t.dims().to_vec(), bytes));
        }
        let mut views = vec![];
        for (n, dims, bytes) in &owned {
            views
                .push((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, dims.clone(), bytes)?));
        }
        let meta: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
        let data = safetensors::serialize(views, Some(meta))?;
        let path = dir.join("model.safetensors");
        crate::atomic::write_atomic(&path, |w| w.write_all(&data)).map_err(|e| crate::Error::io(&path, e))?;
        let tok = std::fs::read(tokenizer).map_err(|e| crate::Error::io(tokenizer, e))?;
        let path = dir.join("tokenizer.json");
        crate::atomic::write_atomic(&path, |w| w.write_all(&tok)).map_err(|e| crate::Error::io(&path, e))?;
        Ok(())
    }
}

impl BertClassifier {
    /// What `save` zeroes so that the dense checkpoint computes the gated model, and so that magnitude-based
    /// selection in the `heads` and `ffn` passes picks exactly the gated units: per tensor, an axis (0: output
    /// features, 1: input features, PyTorch layout) and the indices along it.
    fn gated_slices(&self) -> BTreeMap<String, Vec<(usize, Vec<usize>)>> {
        let mut out: BTreeMap<String, Vec<(usize, Vec<usize>)>> = BTreeMap::new();
        let mut zero = |prefix: String, out_axis: bool, idx: &[usize]| {
            if idx.is_empty() {
                return;
            }
            let mut at = |name: String, axis: usize| out.entry(name).or_default().push((axis, idx.to_vec()));
            if out_axis {
                at(format!("{prefix}.weight"), 0);
                at(format!("{prefix}.bias"), 0);
            } else {
                at(format!("{prefix}.weight"), 1);
            }
        };
        let hd = self.config.hidden_size / self.config.num_attention_heads;
        for (l, row) in self.head_gate.iter().flat_map(|g| g.iter().enumerate()) {
            let idx: Vec<usize> =
                row.iter().enumerate().filter(|(_, k)| !**k).flat_map(|(h, _)| h * hd..(h + 1) * hd).collect();
            let p = format!("bert.encoder.layer.{l}.attention");
            for m in ["query", "key", "value"] {
                zero(format!("{p}.self.{m}"), true, &idx);
            }
            zero(format!("{p}.output.dense"), false, &idx);
        }
        for (l, row) in self.ffn_gate.iter().flat_map(|g| g.iter().enumerate()) {
            let idx: Vec<usize> = row.iter().enumerate().filter(|(_, k)| !**k).map(|(i, _)| i).collect();
            zero(format!("bert.encoder.layer.{l}.intermediate.dense"), true, &idx);
            zero(format!("bert.encoder.layer.{l}.output.dense"), false, &idx);
        }
        if let Some(keep) = &self.hidden_gate {
            let idx: Vec<usize> = keep.iter().enumerate().filter(|(_, k)| !**k).map(|(i, _)| i).collect();
            for name in self.params.keys() {
                if let Some(axis) = hidden_axis(name) {
                    if !idx.is_empty() {
                        out.entry(name.clone()).or_default().push((axis, idx.clone()));
                    }
                }
            }
        }
        out
    }
}

/// Per-input gates chosen while the model runs (EBERT's predictors). Each returns a `[batch, units]` gate
/// (0/1, or straight-through in training) on the layer's heads' context or on its FFN neurons.
pub trait LayerGates {
    /// `x`: the layer's input `[batch, seq, D]`; `mask`: the attention mask `[batch, seq]` (i64).
    fn heads(&mut self, layer: usize, x: &Tensor, mask: &Tensor) -> Result<Tensor>;
    /// `x`: the attention sub-layer's output `[batch, seq, D]`; the gate is per neuron, `[batch, F]`.
    fn ffn(&mut self, layer: usize, x: &Tensor) -> Result<Tensor>;
}

/// Mean of `x: [b, s, D]` over the tokens where `mask: [b, s]` is 1 (as the IR's `masked_mean`).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    Ok(x.broadcast_mul(&m)?.sum(1)?.broadcast_div(&m.sum(1)?.maximum(1f64)?)?)
}

/// How the off-ramps' losses reach the backbone in `forward_exits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitGradients {
    /// Not at all: the off-ramps read detached hidden states (DeeBERT's second stage; the backbone is frozen).
    Detached,
    /// Unchanged.
    Full,
    /// ElasticBERT's rescaling (see `forward_exits`).
    Rescaled,
}

/// `x` in the forward pass; its gradient is multiplied by `s` on the way back.
fn scale_gradient(x: &Tensor, s: f64) -> Result<Tensor> {
    let d = x.detach();
    Ok((&d + ((x - &d)? * s)?)?)
}

/// A gate must be `[layers, units]`; the error gives both shapes.
fn check_gate(keep: &[Vec<bool>], what: &str, layers: usize, units: usize, unit: &str) -> Result<()> {
    crate::error::ensure!(
        keep.len() == layers && keep.iter().all(|r| r.len() == units),
        "the {what} mask has shape [{}, {}] but the model has {layers} layers of {units} {unit}",
        keep.len(),
        keep.first().map_or(0, Vec::len)
    );
    Ok(())
}

/// `keep` as a `[layers, heads]` tensor of 0/1.
fn gate_tensor(keep: &[Vec<bool>], device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = keep.iter().flatten().map(|&k| k as u8 as f32).collect();
    Ok(Tensor::from_vec(v, (keep.len(), keep.first().map_or(0, Vec::len)), device)?)
}

/// A copy of `t` with the given indices along `axis` set to zero.
/// The axis (PyTorch layout) along which the hidden-stream features run in parameter `name`, if they do: the
/// embedding tables' width, every LayerNorm, the input of every matrix reading the stream (Q/K/V, FFN-in, the
/// pooler and the off-ramps' poolers), the output and bias of every matrix writing it. The `hidden` pass slices
/// the same appearances.
fn hidden_axis(name: &str) -> Option<usize> {
    let is = |suffix: &str| name.ends_with(suffix);
    if name.starts_with("bert.embeddings.") && name.ends_with("_embeddings.weight") {
        return Some(1);
    }
    if name.contains("LayerNorm.") {
        return Some(0);
    }
    if name.starts_with("bert.encoder.layer.") {
        // Attention output and FFN-out: `….output.dense`.
        if is(".output.dense.weight") || is(".output.dense.bias") {
            return Some(0);
        }
        if is("query.weight") || is("key.weight") || is("value.weight") || is("intermediate.dense.weight") {
            return Some(1);
        }
        return None;
    }
    if name == "bert.pooler.dense.weight" {
        return Some(1);
    }
    if name.starts_with(crate::schema::EXITS) && is("pooler.dense.weight") {
        return Some(1);
    }
    None
}

/// LayerNorm over the features `keep` marks: mean and variance of the kept features only (divided by their
/// count), removed features 0. Equals `layer_norm` of the kept features alone, scattered back into `D` zeros.
pub fn masked_layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32, keep: &[bool]) -> Result<Tensor> {
    let k = keep.iter().filter(|k| **k).count() as f64;
    let m: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    let m = Tensor::from_vec(m, keep.len(), x.device())?;
    let mean = (x.broadcast_mul(&m)?.sum_keepdim(D::Minus1)? / k)?;
    let xc = x.broadcast_sub(&mean)?.broadcast_mul(&m)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / k)?;
    let y = xc.broadcast_div(&(var + eps as f64)?.sqrt()?)?;
    Ok(y.broadcast_mul(w)?.broadcast_add(b)?.broadcast_mul(&m)?)
}

fn zero_along(t: &Tensor, axis: usize, idx: &[usize]) -> Result<Tensor> {
    let mut keep = vec![1f32; t.dim(axis)?];
    for &i in idx {
        keep[i] = 0.0;
    }
    let shape: Vec<usize> = (0..t.rank()).map(|d| if d == axis { keep.len() } else { 1 }).collect();
    Ok(t.broadcast_mul(&Tensor::from_vec(keep, shape, t.device())?)?)
}

/// Softmax over the last dim with the max subtracted as a constant (it does not change the result, and keeps
/// the gradient path to plain elementwise ops).
fn softmax_detached_max(x: &Tensor) -> candle_core::Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    softmax(&shifted)
}

/// The device named on the command line: `cpu`, `cuda` or `cuda:N`. CUDA needs a build with the `cuda` feature.
pub fn device_from_name(name: &str) -> Result<Device> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match name.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => crate::error::bail!("unknown device {name:?}: use cpu, cuda or cuda:N"),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        crate::error::bail!(
            "--device {name}: this optimize was built without CUDA; rebuild with `cargo build --release --features \
             cuda` (needs the CUDA toolkit's nvcc)"
        );
    }
    Ok(Device::new_cuda(ordinal)?)
}
