//! Loading a Hugging Face model folder: locate the files, read the safetensors weights (memory-mapped, header
//! validated), strip the naming scheme's prefix, and check every tensor the graph uses against config.json.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use crate::load::config::BertConfig;
use crate::load::error::LoadError;

/// The files of a model folder.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// Accepts the folder or its `model.safetensors`.
    pub fn locate(path: &Path) -> Result<Self, LoadError> {
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), path.join("model.safetensors"))
        } else {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            (dir, path.to_path_buf())
        };
        if !weights.is_file() {
            return Err(LoadError::Missing { path: weights, hint: String::new() });
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(LoadError::Missing {
                path: config,
                hint: " (it must sit beside the weights, as Hugging Face's save_pretrained writes it)".into(),
            });
        }
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(ModelFiles { dir, config, weights, tokenizer })
    }
}

/// How tensor names are spelled in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `BertModel` saved bare: `embeddings.…`, `encoder.…`, `pooler.…` (all-MiniLM-L6-v2).
    Bare,
    /// `BertForSequenceClassification`: `bert.…` plus `classifier.weight/bias`.
    Bert,
    /// `RobertaModel` / `RobertaForSequenceClassification`: `roberta.…` plus `classifier.dense/out_proj`.
    Roberta,
}

/// What sits on top of the encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// Encoder only: outputs `last_hidden_state` (and `pooler_output` if `pooler` is true).
    Encoder { pooler: bool },
    /// BERT classifier: pooler then `classifier` linear.
    BertClassifier { labels: usize },
    /// RoBERTa classification head: `classifier.dense`, tanh, `classifier.out_proj`, on the first token.
    RobertaClassifier { labels: usize },
}

/// A loaded checkpoint: config plus f32 tensors under canonical names (scheme prefix stripped,
/// PyTorch layout, as in the file).
pub struct Checkpoint {
    pub files: ModelFiles,
    pub config: BertConfig,
    pub scheme: Scheme,
    pub head: Head,
    pub tensors: BTreeMap<String, Tensor>,
    /// Tensors in the file that the graph does not use (e.g. `cls.predictions.*`).
    pub ignored: Vec<String>,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let files = ModelFiles::locate(path)?;
        let config = BertConfig::from_file(&files.config)?;
        let raw = read_safetensors(&files.weights)?;
        Self::assemble(files, config, raw)
    }

    /// The loader on bytes already in memory (what the fuzz targets drive); `files` only names them in errors.
    pub fn from_bytes(files: ModelFiles, config_json: &str, weights: &[u8]) -> Result<Self, LoadError> {
        let config = BertConfig::parse(config_json, &files.config)?;
        let raw = tensors_from_bytes(weights, &files.weights)?;
        Self::assemble(files, config, raw)
    }

    fn assemble(files: ModelFiles, config: BertConfig, raw: BTreeMap<String, Tensor>) -> Result<Self, LoadError> {
        let scheme = if raw.keys().any(|k| k.starts_with("roberta.")) {
            Scheme::Roberta
        } else if raw.keys().any(|k| k.starts_with("bert.")) {
            Scheme::Bert
        } else {
            Scheme::Bare
        };
        let mut tensors = BTreeMap::new();
        let mut ignored = vec![];
        for (name, t) in raw {
            let canonical = canonical_name(&name, scheme);
            if canonical.starts_with("embeddings.")
                || canonical.starts_with("encoder.")
                || canonical.starts_with("pooler.")
                || canonical.starts_with("classifier.")
                || canonical.starts_with(crate::schema::EXITS)
                || canonical.starts_with(crate::schema::EBERT)
            {
                if canonical.ends_with("position_ids") {
                    ignored.push(name);
                    continue;
                }
                tensors.insert(canonical, t);
            } else {
                ignored.push(name);
            }
        }
        let head = detect_head(&tensors, scheme);
        let ck = Checkpoint { files, config, scheme, head, tensors, ignored };
        ck.check()?;
        Ok(ck)
    }

    /// Every tensor the graph reads must exist with the shape the config implies, and the layer count must
    /// match the weights.
    fn check(&self) -> Result<(), LoadError> {
        let c = &self.config;
        let path = &self.files.weights;
        let (d, i) = (c.hidden_size, c.intermediate_size);
        let mut expected: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![c.vocab_size, d]),
            ("embeddings.position_embeddings.weight".into(), vec![c.max_position_embeddings, d]),
            ("embeddings.token_type_embeddings.weight".into(), vec![c.type_vocab_size, d]),
            ("embeddings.LayerNorm.weight".into(), vec![d]),
            ("embeddings.LayerNorm.bias".into(), vec![d]),
        ];
        let mut lin = |p: String, n_out: usize, k_in: usize| {
            expected.push((format!("{p}.weight"), vec![n_out, k_in]));
            expected.push((format!("{p}.bias"), vec![n_out]));
        };
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for m in ["query", "key", "value"] {
                lin(format!("{p}.attention.self.{m}"), d, d);
            }
            lin(format!("{p}.attention.output.dense"), d, d);
            lin(format!("{p}.intermediate.dense"), i, d);
            lin(format!("{p}.output.dense"), d, i);
            for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
                lin(format!("{p}.{ln}"), d, 0);
            }
        }
        match self.head {
            Head::Encoder { pooler: true } => lin("pooler.dense".into(), d, d),
            Head::Encoder { pooler: false } => {}
            Head::BertClassifier { labels } => {
                lin("pooler.dense".into(), d, d);
                lin("classifier".into(), labels, d);
            }
            Head::RobertaClassifier { labels } => {
                lin("classifier.dense".into(), d, d);
                lin("classifier.out_proj".into(), labels, d);
            }
        }
        let labels = self.num_labels();
        for l in self.exit_layers() {
            if !matches!(self.head, Head::BertClassifier { .. }) || l + 1 >= c.num_hidden_layers {
                return Err(LoadError::Mismatch {
                    path: path.clone(),
                    problem: format!(
                        "off-ramp exits.{l} needs a BERT classifier and must stand before the last of {} layers \
                         (the last layer uses the model's own classifier)",
                        c.num_hidden_layers
                    ),
                });
            }
            // The pooler's name says what it pools ([CLS] or the token mean, see `ExitPooling`).
            let pooler = self.exit_pooling(l).pooler();
            expected.push((format!("exits.{l}.{pooler}.weight"), vec![d, d]));
            expected.push((format!("exits.{l}.{pooler}.bias"), vec![d]));
            expected.push((format!("exits.{l}.classifier.weight"), vec![labels, d]));
            expected.push((format!("exits.{l}.classifier.bias"), vec![labels]));
        }
        let has_predictors = self.tensors.keys().any(|k| k.starts_with(crate::schema::EBERT));
        if has_predictors && self.predictor_groups().is_none() {
            return Err(LoadError::MissingTensor {
                path: path.clone(),
                tensor: format!("{}0.ffn.fc2.weight", crate::schema::EBERT),
                hint: " (the file has other EBERT predictor tensors)".into(),
            });
        }
        if let Some(groups) = self.predictor_groups() {
            if groups == 0 || i % groups != 0 {
                return Err(LoadError::Mismatch {
                    path: path.clone(),
                    problem: format!("EBERT predictors decide {groups} FFN groups, which do not divide {i} neurons"),
                });
            }
            expected.extend(crate::schema::predictor_shapes(c, groups));
        }
        for (name, mut shape) in expected {
            if shape.last() == Some(&0) {
                shape.pop(); // norm parameters are 1-D
            }
            let Some(t) = self.tensors.get(&name) else {
                let hint = match self.scheme {
                    Scheme::Bare => "",
                    Scheme::Bert => " (looked for it under the `bert.` prefix)",
                    Scheme::Roberta => " (looked for it under the `roberta.` prefix)",
                };
                return Err(LoadError::MissingTensor { path: path.clone(), tensor: name, hint: hint.into() });
            };
            if t.dims() != shape.as_slice() {
                return Err(LoadError::Shape {
                    path: path.clone(),
                    tensor: name,
                    expected: shape,
                    actual: t.dims().to_vec(),
                });
            }
        }
        let layers_in_file = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix("encoder.layer.")?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        if layers_in_file != c.num_hidden_layers {
            return Err(LoadError::Mismatch {
                path: path.clone(),
                problem: format!(
                    "config.json says num_hidden_layers = {} but the weights hold {layers_in_file} layer(s)",
                    c.num_hidden_layers
                ),
            });
        }
        if let (Some(n), Head::BertClassifier { labels } | Head::RobertaClassifier { labels }) =
            (c.num_labels, &self.head)
        {
            if n != *labels {
                return Err(LoadError::Mismatch {
                    path: path.clone(),
                    problem: format!("config.json says num_labels = {n} but the classifier has {labels} outputs"),
                });
            }
        }
        Ok(())
    }

    /// The number of FFN groups of the checkpoint's EBERT predictors (None: it has none).
    pub fn predictor_groups(&self) -> Option<usize> {
        self.tensors.get(&format!("{}0.ffn.fc2.weight", crate::schema::EBERT)).and_then(|t| t.dims().first().copied())
    }

    /// Layers (0-based) after which the checkpoint has an off-ramp, ascending.
    pub fn exit_layers(&self) -> Vec<usize> {
        let set: std::collections::BTreeSet<usize> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(crate::schema::EXITS)?.split('.').next()?.parse().ok())
            .collect();
        set.into_iter().collect()
    }

    /// How the off-ramp after layer `l` pools: by the name of its pooler tensors.
    pub fn exit_pooling(&self, l: usize) -> crate::schema::ExitPooling {
        crate::schema::ExitPooling::of_ramp(l, |name| self.tensors.contains_key(name))
    }

    /// Number of labels of a classifier head (0 for an encoder).
    pub fn num_labels(&self) -> usize {
        match self.head {
            Head::Encoder { .. } => 0,
            Head::BertClassifier { labels } | Head::RobertaClassifier { labels } => labels,
        }
    }
}

fn canonical_name(name: &str, scheme: Scheme) -> String {
    let stripped = match scheme {
        Scheme::Bare => name,
        Scheme::Bert => name.strip_prefix("bert.").unwrap_or(name),
        Scheme::Roberta => name.strip_prefix("roberta.").unwrap_or(name),
    };
    // Old TF-converted checkpoints spell LayerNorm parameters gamma/beta.
    stripped.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
}

fn detect_head(t: &BTreeMap<String, Tensor>, scheme: Scheme) -> Head {
    let rows = |n: &str| t.get(n).and_then(|x| x.dims().first().copied());
    match scheme {
        Scheme::Roberta => match rows("classifier.out_proj.weight") {
            Some(labels) => Head::RobertaClassifier { labels },
            None => Head::Encoder { pooler: t.contains_key("pooler.dense.weight") },
        },
        _ => match rows("classifier.weight") {
            Some(labels) => Head::BertClassifier { labels },
            None => Head::Encoder { pooler: t.contains_key("pooler.dense.weight") },
        },
    }
}

/// Read every tensor of a safetensors file as f32 (f16, bf16 and f64 are converted). The file is memory-mapped
/// and its header validated by the `safetensors` crate (size bound, offsets inside the file, no overlap).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, LoadError> {
    let file = std::fs::File::open(path).map_err(|e| LoadError::io(path, e))?;
    // SAFETY: the map is read-only and dropped before this function returns; tensors are copied out of it.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LoadError::io(path, e))?;
    tensors_from_bytes(&mmap, path)
}

/// Every tensor of a safetensors image as f32; `path` names the file in errors.
pub fn tensors_from_bytes(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, Tensor>, LoadError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| LoadError::Safetensors { path: path.into(), problem: e.to_string() })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let terr = |problem: String| LoadError::Tensor { path: path.into(), tensor: name.clone(), problem };
        let data = view.data();
        let t = match view.dtype() {
            Dtype::F32 => {
                let v: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)
            }
            Dtype::F16 | Dtype::BF16 | Dtype::F64 => {
                let dt = match view.dtype() {
                    Dtype::F16 => candle_core::DType::F16,
                    Dtype::BF16 => candle_core::DType::BF16,
                    _ => candle_core::DType::F64,
                };
                Tensor::from_raw_buffer(data, dt, &shape, &Device::Cpu)
                    .and_then(|t| t.to_dtype(candle_core::DType::F32))
            }
            // Integer buffers (position_ids) are not weights; keep them out of the float world.
            Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL => continue,
            other => return Err(terr(format!("dtype {other:?} is not supported (f32, f16, bf16, f64)"))),
        }
        .map_err(|e| terr(e.to_string()))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// The `__metadata__` map of a safetensors file (what `BertClassifier::save` records: provenance, split), read
/// from the header alone; empty when the file has none.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>, LoadError> {
    let file = std::fs::File::open(path).map_err(|e| LoadError::io(path, e))?;
    // SAFETY: read-only map, dropped before returning; only the header is parsed.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LoadError::io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| LoadError::Safetensors { path: path.into(), problem: e.to_string() })?;
    Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
}
