//! The registry: every pass a pipeline may name, its arguments, and how to build it from a `PassSpec`.

use std::collections::BTreeMap;

use crate::pass::{Pass, PassError};
use crate::pipeline::PassSpec;

/// A pass as the registry knows it.
pub struct PassInfo {
    pub name: &'static str,
    pub about: &'static str,
    /// Accepted arguments and what they mean.
    pub args: &'static [(&'static str, &'static str)],
    pub build: fn(&Args) -> Result<Box<dyn Pass>, PassError>,
}

/// Every registered pass, in the order `--help` lists them.
pub fn passes() -> &'static [PassInfo] {
    &[
        PassInfo {
            name: "dce",
            about: "remove values no output depends on, and the weights only they used",
            args: &[],
            build: |_| Ok(Box::new(crate::dce::Dce)),
        },
        PassInfo {
            name: "fold",
            about: "evaluate ops whose operands are all constants into new constants",
            args: &[],
            build: |_| Ok(Box::new(crate::fold::Fold)),
        },
        PassInfo {
            name: "heads",
            about: "remove attention heads (Q/K/V columns, output rows); a layer with none left loses its attention",
            args: &[
                ("mask", "SMP head_mask.bin, JSON, .npy or safetensors [layers, heads]; true = keep"),
                ("ratio", "fraction of heads removed per layer, lowest weight magnitude first (default 0.5)"),
                ("count", "number of heads removed per layer, lowest weight magnitude first"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::heads::Heads::from_args(a)?)),
        },
        PassInfo {
            name: "ffn",
            about: "remove FFN intermediate neurons (FFN-in columns, FFN-out rows); a block with none left goes",
            args: &[
                ("ratio", "fraction of neurons removed per layer, lowest weight magnitude first (default 0.5)"),
                ("count", "number of neurons removed per layer, lowest weight magnitude first"),
                ("multiple", "round the neurons kept up to a multiple of this (default 1)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::ffn::Ffn::from_args(a)?)),
        },
        PassInfo {
            name: "tile",
            about: "tile-wise sparsity along K: per tile of g outputs, drop input-row segments; gather + small GEMMs",
            args: &[
                ("sparsity", "fraction of 1 x g row segments removed (default 0.5)"),
                ("g", "tile width in output columns (default 128)"),
                ("scope", "global (type 7, one ranking over all matrices; default) or tile (type 2, per tile)"),
                ("n", "true: type 8, first remove whole output columns (global ranking), then tile the rest"),
                ("attention", "also tile the Q/K/V/O projections (default true)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::tile::TilePass::from_args(a)?)),
        },
        PassInfo {
            name: "kgran",
            about: "K-granularity (type 2): `tile` with every tile losing the same fraction of its row segments",
            args: &[
                ("sparsity", "fraction of 1 x g row segments removed in every tile (default 0.5)"),
                ("g", "tile width in output columns (default 128)"),
                ("attention", "also tile the Q/K/V/O projections (default true)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::tile::TilePass::kgran(a)?)),
        },
        PassInfo {
            name: "head-size",
            about: "head size (type 1): remove dimension j of every head (Q/K/V columns, O rows); heads shrink",
            args: &[
                ("sparsity", "fraction of each layer's head dimensions removed (default 0.5)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::head_size::HeadSize::from_args(a)?)),
        },
        PassInfo {
            name: "type0",
            about: "the release's type 0: drop blocks of input rows of Q, K and V, each matrix on its own",
            args: &[
                ("sparsity", "fraction of blocks removed per matrix (default 0.5)"),
                ("block", "rows per block (default: the head size)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::type0::Type0::from_args(a)?)),
        },
        PassInfo {
            name: "qkv",
            about: "QKV together (type 3): drop input features from Q, K and V at once; one shared gather",
            args: &[
                ("sparsity", "fraction of input features removed per layer (default 0.5)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::qkv::Qkv::from_args(a)?)),
        },
        PassInfo {
            name: "vw",
            about: "vector-wise sparsity (type 4): each run of v along K keeps its top (1-s)v; zeros only, no speedup",
            args: &[
                ("sparsity", "fraction zeroed in every run (default 0.75: 4 of 16 kept)"),
                ("v", "run length along K (default 16)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::vw::Vw::from_args(a)?)),
        },
        PassInfo {
            name: "bw",
            about: "block-wise sparsity (type 5): zero the weakest g x g blocks of each matrix; zeros only, no speedup",
            args: &[
                ("sparsity", "fraction of blocks zeroed per matrix (default 0.5)"),
                ("g", "block size (default 32)"),
                ("scores", "rank by saved Taylor scores (optimize score) instead of magnitude"),
            ],
            build: |a| Ok(Box::new(crate::bw::Bw::from_args(a)?)),
        },
        PassInfo {
            name: "quant",
            about: "int8 weights for every linear and attention projection, activations quantized per call; run last",
            args: &[
                ("weights", "int8 (the only width; default)"),
                ("activations", "dynamic: per-tensor uint8 range computed per call (default; static is not built)"),
                ("granularity", "channel: one weight scale per output column (default), or tensor: one per matrix"),
                ("skip", "groups left in f32: none (default), all, or attention, ffn, pooler, classifier, exits joined with +"),
            ],
            build: |a| Ok(Box::new(crate::quant::Quant::from_args(a)?)),
        },
        PassInfo {
            name: "exit",
            about: "early exit (DeeBERT / ElasticBERT): off-ramp classifiers lowered to nested If; outputs exit_layer",
            args: &[
                ("criterion", "entropy (DeeBERT; default) or patience (PABEE / ElasticBERT)"),
                ("threshold", "entropy: leave when the exit's softmax entropy is below this (default 0.3)"),
                ("patience", "patience: leave after this many consecutive agreeing exits (default 2)"),
                ("layers", "where off-ramps are used, 1-based: `1-11`, `3+6+9` (default: every trained one)"),
            ],
            build: |a| Ok(Box::new(crate::exit::Exit::from_args(a)?)),
        },
        PassInfo {
            name: "ebert",
            about: "EBERT: fuse trained predictors; each input runs only its top-k heads and FFN groups per layer",
            args: &[
                ("ratio", "fraction of heads and FFN groups kept per layer (default 0.5)"),
                ("heads", "heads kept per layer (overrides ratio for heads)"),
                ("groups", "FFN groups kept per layer (overrides ratio for groups)"),
            ],
            build: |a| Ok(Box::new(crate::ebert::Ebert::from_args(a)?)),
        },
        PassInfo {
            name: "truncate",
            about: "keep the first `layers` layers and classify with the off-ramp after them (ElasticBERT static)",
            args: &[("layers", "layers kept (an off-ramp must stand after the last of them)")],
            build: |a| Ok(Box::new(crate::truncate::Truncate::from_args(a)?)),
        },
    ]
}

pub fn names() -> String {
    passes().iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// Build a pass from its spec, rejecting unknown names and arguments with the list of what exists.
pub fn build(spec: &PassSpec) -> Result<Box<dyn Pass>, PassError> {
    let info = passes()
        .iter()
        .find(|p| p.name == spec.name)
        .ok_or_else(|| PassError::UnknownPass { name: spec.name.clone(), known: names() })?;
    for key in spec.args.keys() {
        if !info.args.iter().any(|(a, _)| a == key) {
            let known = if info.args.is_empty() {
                "none".to_string()
            } else {
                info.args.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
            };
            return Err(PassError::UnknownArg { pass: spec.name.clone(), arg: key.clone(), known });
        }
    }
    (info.build)(&Args { pass: spec.name.clone(), map: spec.args.clone() })
}

/// A pass's arguments with typed accessors that name the pass and argument on error.
pub struct Args {
    pub pass: String,
    pub map: BTreeMap<String, String>,
}

impl Args {
    /// A fraction in [0, 1) (a sparsity: all of a unit cannot go), `default` when absent.
    pub fn sparsity(&self, key: &str, default: f64) -> Result<f64, PassError> {
        let v: f64 = self.get(key, default)?;
        if !(0.0..1.0).contains(&v) {
            return Err(self.bad(key, format!("{v} is not in [0, 1)")));
        }
        Ok(v)
    }

    /// A count of at least 1, `default` when absent.
    pub fn positive(&self, key: &str, default: usize) -> Result<usize, PassError> {
        let v: usize = self.get(key, default)?;
        if v == 0 {
            return Err(self.bad(key, "must be at least 1".into()));
        }
        Ok(v)
    }

    /// A `BadArg` error for this pass.
    pub fn bad(&self, key: &str, problem: String) -> PassError {
        PassError::BadArg { pass: self.pass.clone(), arg: key.into(), problem }
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, PassError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| PassError::BadArg {
                pass: self.pass.clone(),
                arg: key.into(),
                problem: format!("cannot read `{v}` as {}", std::any::type_name::<T>()),
            }),
        }
    }
}
