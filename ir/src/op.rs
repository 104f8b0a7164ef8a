//! Operations. Few and structural: an `attention` knows its heads and head size, a `linear` its K and N,
//! so that passes read intent instead of pattern-matching primitives. Lowering to ONNX is where structure
//! becomes primitives.
//!
//! Weight conventions (what a name in an attribute stands for):
//! - a *linear* parameter `P` is the pair `P.weight: f32[K, N]` (stored K×N, so `y = x·W + b`, the transpose of
//!   PyTorch's layout) and `P.bias: f32[N]`;
//! - a *norm* parameter `P` is `P.weight: f32[D]` and `P.bias: f32[D]`;
//! - an *embedding table* or a *const* names one tensor directly.

/// The weight names of tile `t` of a tiled linear with parameter group `p`: (kept rows, weight).
pub fn tile_names(p: &str, t: usize) -> (String, String) {
    (format!("{p}.tile{t}.rows"), format!("{p}.tile{t}.weight"))
}

/// The optional output-column map of a tiled group `p` (TileSparsity type 8): `P.cols: i64[m]`, ascending, the
/// output columns the tiles produce, in order (their widths sum to m). Columns not listed are dropped: they
/// get the bias alone, which is what a zeroed weight column computes.
pub fn cols_name(p: &str) -> String {
    format!("{p}.cols")
}

/// How many tiles projection group `p` is stored as: 0 when dense (`P.weight`), else T (`P.tile{0..T}.rows`
/// and `.weight`, as a `tiled_linear`'s). The projections of an `attention` are tiled by weight presence (the op
/// names only the group), so tile-wise and input-row pruning reach Q/K/V/O without a second attention op.
pub fn tile_count(has: impl Fn(&str) -> bool, p: &str) -> usize {
    (0..).take_while(|&t| has(&tile_names(p, t).1)).count()
}

/// Units (heads, FFN groups) EBERT's fused graph keeps per layer for a keep fraction: the nearest whole
/// number, at least one. The candle reference and the `ebert` pass both count with this.
pub fn kept_units(fraction: f64, units: usize) -> usize {
    ((fraction * units as f64).round() as usize).clamp(1, units.max(1))
}

/// BatchNorm epsilon of EBERT's predictors (PyTorch's default), used in training and when folding.
pub const PREDICTOR_BN_EPS: f64 = 1e-5;

/// An attribute value as the text form writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    /// A reference to a weight or a weight group: `@encoder.layer.0.attention.self.query`.
    Weight(String),
    /// A list of integers: `[4, 8, 12]`.
    Ints(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph parameter; its type is the node's type.
    Input {
        name: String,
    },
    /// A weight used as a value.
    Const {
        weight: String,
    },
    /// Word + position + token-type embeddings, then LayerNorm. Operands: ids, token_type_ids.
    /// Positions are `position_offset + 0..seq` (RoBERTa: padding_idx + 1).
    Embed {
        word: String,
        position: String,
        token_type: String,
        ln: String,
        eps: f32,
        position_offset: usize,
    },
    /// Multi-head self-attention including its output projection (not the residual).
    /// Operands: hidden states `f32[b, s, D]`, attention mask `i64[b, s]` (1 = attend).
    /// Each projection is dense (`P.weight`) or tiled (`P.tile{t}.*`, see `tile_count`); a single tile that
    /// keeps some input rows is a projection reading only those input features (TileSparsity types 0 and 3).
    /// Scores are scaled by `1/sqrt(head_dim)`.
    Attention {
        heads: usize,
        head_dim: usize,
        query: String,
        key: String,
        value: String,
        output: String,
    },
    /// `LayerNorm(x + residual)`. Operands: x, residual.
    AddNorm {
        ln: String,
        eps: f32,
    },
    /// `LayerNorm(x)` over the last dim.
    LayerNorm {
        ln: String,
        eps: f32,
    },
    /// `x + b` with `b: f32[D]` broadcast over the last dim (what is left of a block whose units are all pruned).
    AddBias {
        bias: String,
    },
    /// `x·W + b` over the last dim. Operand: x.
    Linear {
        w: String,
        k: usize,
        n: usize,
    },
    /// A linear whose weight is pruned tile-wise along K: the N outputs are cut into `tiles` consecutive tiles,
    /// and tile `t` reads only its own input features. Weights: `P.tile{t}.rows: i64[r_t]` (the kept K indices,
    /// ascending), `P.tile{t}.weight: f32[r_t, n_t]` (the tiles' widths sum to N) and `P.bias: f32[N]`.
    /// `y[.., tile t] = x[.., rows_t] · W_t`, concatenated over t, plus b: each tile is a small dense GEMM.
    /// With `P.cols` (see `cols_name`) the tiles cover only those output columns; the others are b alone.
    TiledLinear {
        w: String,
        k: usize,
        n: usize,
        tiles: usize,
    },
    /// Exact (erf) GELU.
    Gelu,
    Tanh,
    /// Elementwise add of two values of the same type.
    Add,
    /// `x[:, 0, :]`: the first ([CLS]) token.
    TakeCls,
    /// Early exit: operands are the logits of each exit point in order (the last is the final classifier);
    /// `layers[j]` is how many encoder layers run before exit point j. The result is the logits of the first
    /// exit point at which every row of the batch meets `rule` (else the last): a whole batch leaves together,
    /// which is what one `If` per exit point computes. Lowered to nested `If`s, so later layers do not run.
    EarlyExit {
        rule: crate::exit::ExitRule,
        layers: Vec<usize>,
    },
    /// The number of layers an `early_exit` (its only operand) ran, as `i64[batch]`.
    ExitLayer,
    /// `max(x, 0)`.
    Relu,
    /// Mean over the sequence of the positions the mask keeps. Operands: x `f32[b, s, D]`, mask `i64[b, s]`;
    /// result `f32[b, D]` (a row with no kept position gives zeros).
    MaskedMean,
    /// Indices of the `k` largest entries of each row, largest first (ties: the lower index first), as ONNX
    /// `TopK` gives them. Operand `f32[b, n]`, result `i64[b, k]`.
    TopK {
        k: usize,
    },
    /// `attention` that runs, for each row, only the `keep` heads its third operand names (`i64[b, keep]`): the
    /// weights are the full `attention` ones; the lowering gathers each row's heads' slices and runs smaller
    /// matmuls (EBERT's per-input head selection with a static shape).
    DynAttention {
        heads: usize,
        head_dim: usize,
        keep: usize,
        query: String,
        key: String,
        value: String,
        output: String,
    },
    /// The FFN block `gelu(x·W1 + b1)·W2 + b2` running, for each row, only the `keep` groups of `F / groups`
    /// consecutive neurons its second operand names (`i64[b, keep]`). Operands: x `f32[b, s, D]`, groups.
    DynFfn {
        inter: String,
        out: String,
        groups: usize,
        keep: usize,
    },
}

impl Op {
    /// The mnemonic in the text form.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Const { .. } => "const",
            Op::Embed { .. } => "embed",
            Op::Attention { .. } => "attention",
            Op::AddNorm { .. } => "add_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::AddBias { .. } => "add_bias",
            Op::Linear { .. } => "linear",
            Op::TiledLinear { .. } => "tiled_linear",
            Op::Gelu => "gelu",
            Op::Tanh => "tanh",
            Op::Add => "add",
            Op::TakeCls => "take_cls",
            Op::EarlyExit { .. } => "early_exit",
            Op::ExitLayer => "exit_layer",
            Op::Relu => "relu",
            Op::MaskedMean => "masked_mean",
            Op::TopK { .. } => "top_k",
            Op::DynAttention { .. } => "dyn_attention",
            Op::DynFfn { .. } => "dyn_ffn",
        }
    }

    /// Number of operands the op takes.
    pub fn arity(&self) -> usize {
        match self {
            Op::Input { .. } | Op::Const { .. } => 0,
            Op::Embed { .. } | Op::Attention { .. } | Op::AddNorm { .. } | Op::Add => 2,
            Op::MaskedMean | Op::DynFfn { .. } => 2,
            Op::DynAttention { .. } => 3,
            Op::Relu | Op::TopK { .. } => 1,
            Op::Linear { .. }
            | Op::TiledLinear { .. }
            | Op::Gelu
            | Op::Tanh
            | Op::TakeCls
            | Op::LayerNorm { .. }
            | Op::AddBias { .. }
            | Op::ExitLayer => 1,
            Op::EarlyExit { layers, .. } => layers.len(),
        }
    }

    /// Attributes in the order the text form prints them.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let w = |s: &String| Attr::Weight(s.clone());
        match self {
            Op::Input { .. }
            | Op::Gelu
            | Op::Tanh
            | Op::Add
            | Op::TakeCls
            | Op::ExitLayer
            | Op::Relu
            | Op::MaskedMean => vec![],
            Op::TopK { k } => vec![("k", Attr::Int(*k as i64))],
            Op::DynAttention { heads, head_dim, keep, query, key, value, output } => vec![
                ("heads", Attr::Int(*heads as i64)),
                ("head_dim", Attr::Int(*head_dim as i64)),
                ("keep", Attr::Int(*keep as i64)),
                ("query", w(query)),
                ("key", w(key)),
                ("value", w(value)),
                ("output", w(output)),
            ],
            Op::DynFfn { inter, out, groups, keep } => vec![
                ("inter", w(inter)),
                ("out", w(out)),
                ("groups", Attr::Int(*groups as i64)),
                ("keep", Attr::Int(*keep as i64)),
            ],
            Op::EarlyExit { rule, layers } => {
                let rule = match rule {
                    crate::exit::ExitRule::Entropy { threshold } => ("entropy", Attr::Float(*threshold)),
                    crate::exit::ExitRule::Patience { patience } => ("patience", Attr::Int(*patience as i64)),
                };
                vec![rule, ("layers", Attr::Ints(layers.iter().map(|&l| l as i64).collect()))]
            }
            Op::Const { weight } => vec![("value", w(weight))],
            Op::Embed { word, position, token_type, ln, eps, position_offset } => vec![
                ("word", w(word)),
                ("position", w(position)),
                ("token_type", w(token_type)),
                ("ln", w(ln)),
                ("eps", Attr::Float(*eps)),
                ("position_offset", Attr::Int(*position_offset as i64)),
            ],
            Op::Attention { heads, head_dim, query, key, value, output } => vec![
                ("heads", Attr::Int(*heads as i64)),
                ("head_dim", Attr::Int(*head_dim as i64)),
                ("query", w(query)),
                ("key", w(key)),
                ("value", w(value)),
                ("output", w(output)),
            ],
            Op::AddNorm { ln, eps } | Op::LayerNorm { ln, eps } => vec![("ln", w(ln)), ("eps", Attr::Float(*eps))],
            Op::AddBias { bias } => vec![("bias", w(bias))],
            Op::Linear { w: p, k, n } => {
                vec![("w", w(p)), ("k", Attr::Int(*k as i64)), ("n", Attr::Int(*n as i64))]
            }
            Op::TiledLinear { w: p, k, n, tiles } => vec![
                ("w", w(p)),
                ("k", Attr::Int(*k as i64)),
                ("n", Attr::Int(*n as i64)),
                ("tiles", Attr::Int(*tiles as i64)),
            ],
        }
    }

    /// Build an op from its mnemonic and attributes (the parser's half of `attrs`).
    pub fn from_parts(mnemonic: &str, attrs: &[(String, Attr)]) -> Result<Op, String> {
        let mut a = AttrReader { attrs, used: vec![false; attrs.len()] };
        let op = match mnemonic {
            "const" => Op::Const { weight: a.weight("value")? },
            "embed" => Op::Embed {
                word: a.weight("word")?,
                position: a.weight("position")?,
                token_type: a.weight("token_type")?,
                ln: a.weight("ln")?,
                eps: a.float("eps")?,
                position_offset: a.usize("position_offset")?,
            },
            "attention" => Op::Attention {
                heads: a.usize("heads")?,
                head_dim: a.usize("head_dim")?,
                query: a.weight("query")?,
                key: a.weight("key")?,
                value: a.weight("value")?,
                output: a.weight("output")?,
            },
            "add_norm" => Op::AddNorm { ln: a.weight("ln")?, eps: a.float("eps")? },
            "layer_norm" => Op::LayerNorm { ln: a.weight("ln")?, eps: a.float("eps")? },
            "add_bias" => Op::AddBias { bias: a.weight("bias")? },
            "linear" => Op::Linear { w: a.weight("w")?, k: a.usize("k")?, n: a.usize("n")? },
            "tiled_linear" => Op::TiledLinear {
                w: a.weight("w")?,
                k: a.usize("k")?,
                n: a.usize("n")?,
                tiles: a.usize("tiles")?,
            },
            "gelu" => Op::Gelu,
            "tanh" => Op::Tanh,
            "add" => Op::Add,
            "take_cls" => Op::TakeCls,
            "exit_layer" => Op::ExitLayer,
            "relu" => Op::Relu,
            "masked_mean" => Op::MaskedMean,
            "top_k" => Op::TopK { k: a.usize("k")? },
            "dyn_attention" => Op::DynAttention {
                heads: a.usize("heads")?,
                head_dim: a.usize("head_dim")?,
                keep: a.usize("keep")?,
                query: a.weight("query")?,
                key: a.weight("key")?,
                value: a.weight("value")?,
                output: a.weight("output")?,
            },
            "dyn_ffn" => Op::DynFfn {
                inter: a.weight("inter")?,
                out: a.weight("out")?,
                groups: a.usize("groups")?,
                keep: a.usize("keep")?,
            },
            "early_exit" => {
                let rule = match (a.has("entropy"), a.has("patience")) {
                    (true, false) => crate::exit::ExitRule::Entropy { threshold: a.float("entropy")? },
                    (false, true) => crate::exit::ExitRule::Patience { patience: a.usize("patience")? },
                    _ => return Err("early_exit needs exactly one of `entropy` or `patience`".into()),
                };
                Op::EarlyExit { rule, layers: a.usizes("layers")? }
            }
            other => {
                return Err(format!(
                    "unknown op `{other}` (ops: const, embed, attention, add_norm, layer_norm, add_bias, linear, tiled_linear, gelu, tanh, add, take_cls, early_exit, exit_layer, relu, masked_mean, top_k, dyn_attention, dyn_ffn)"
                ))
            }
        };
        if let Some(i) = a.used.iter().position(|u| !u) {
            return Err(format!("op `{mnemonic}` has no attribute `{}`", attrs[i].0));
        }
        Ok(op)
    }

    /// Names of weight groups (prefixes) or tensors this op refers to, as written in its attributes.
    pub fn weight_refs(&self) -> Vec<&str> {
        match self {
            Op::Const { weight } => vec![weight],
            Op::Embed { word, position, token_type, ln, .. } => vec![word, position, token_type, ln],
            Op::Attention { query, key, value, output, .. } | Op::DynAttention { query, key, value, output, .. } => {
                vec![query, key, value, output]
            }
            Op::DynFfn { inter, out, .. } => vec![inter, out],
            Op::AddNorm { ln, .. } | Op::LayerNorm { ln, .. } => vec![ln],
            Op::AddBias { bias } => vec![bias],
            Op::Linear { w, .. } | Op::TiledLinear { w, .. } => vec![w],
            _ => vec![],
        }
    }
}

struct AttrReader<'a> {
    attrs: &'a [(String, Attr)],
    used: Vec<bool>,
}

impl AttrReader<'_> {
    fn get(&mut self, key: &str) -> Result<&Attr, String> {
        let i = self.attrs.iter().position(|(k, _)| k == key).ok_or_else(|| format!("missing attribute `{key}`"))?;
        self.used[i] = true;
        Ok(&self.attrs[i].1)
    }
    fn has(&self, key: &str) -> bool {
        self.attrs.iter().any(|(k, _)| k == key)
    }
    fn usizes(&mut self, key: &str) -> Result<Vec<usize>, String> {
        match self.get(key)? {
            Attr::Ints(v) if v.iter().all(|&i| i >= 0) => Ok(v.iter().map(|&i| i as usize).collect()),
            other => Err(format!("attribute `{key}` must be a list of non-negative integers, got {other:?}")),
        }
    }
    fn weight(&mut self, key: &str) -> Result<String, String> {
        match self.get(key)? {
            Attr::Weight(s) => Ok(s.clone()),
            other => Err(format!("attribute `{key}` must be a weight (@name), got {other:?}")),
        }
    }
    fn float(&mut self, key: &str) -> Result<f32, String> {
        match self.get(key)? {
            Attr::Float(x) => Ok(*x),
            Attr::Int(i) => Ok(*i as f32),
            other => Err(format!("attribute `{key}` must be a number, got {other:?}")),
        }
    }
    fn usize(&mut self, key: &str) -> Result<usize, String> {
        match self.get(key)? {
            Attr::Int(i) if *i >= 0 => Ok(*i as usize),
            other => Err(format!("attribute `{key}` must be a non-negative integer, got {other:?}")),
        }
    }
}
