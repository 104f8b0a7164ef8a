//! Lowering a checkpoint to IR: one `embed`, then per layer `attention`, `add_norm`, `linear`, `gelu`, `linear`,
//! `add_norm`, then the head. Linear weights are transposed here to the IR's K×N layout.

use bertopt_ir::ops;
use bertopt_ir::{DType, Dim, Graph, Op, ValueType};

use crate::load::checkpoint::{Checkpoint, Head};

/// Names of the graph inputs and their symbolic dims, as Optimum's exporter spells them.
pub const INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];
pub const BATCH: &str = "batch";
pub const SEQUENCE: &str = "sequence";
pub use crate::schema::EXITS;

#[derive(Debug, thiserror::Error)]
#[error("lowering {what}: {problem}")]
pub struct LowerError {
    pub what: String,
    pub problem: String,
}

/// Lower a loaded checkpoint (consumed: its tensors move into the graph).
pub fn lower(ck: Checkpoint) -> Result<Graph, LowerError> {
    let c = ck.config.clone();
    let head = ck.head.clone();
    let mut g = Graph::new(c.model_type.clone());
    let mut tensors = ck.tensors;
    let err = |what: &str, problem: String| LowerError { what: what.into(), problem };

    // Move tensors into the graph; linear weights (2-D, not embeddings) are transposed to K×N.
    for (name, t) in std::mem::take(&mut tensors) {
        let t = if name.ends_with(".weight") && t.rank() == 2 && !name.starts_with("embeddings.") {
            t.t().and_then(|t| t.contiguous()).map_err(|e| err(&name, e.to_string()))?
        } else {
            t
        };
        g.weights.insert(name, t);
    }

    let io = ValueType::new(DType::I64, vec![Dim::sym(BATCH), Dim::sym(SEQUENCE)]);
    let ids = g.add_input(INPUTS[0], io.clone());
    let mask = g.add_input(INPUTS[1], io.clone());
    let tt = g.add_input(INPUTS[2], io);
    let eps = c.layer_norm_eps as f32;
    let add = |g: &mut Graph, op: Op, args: &[bertopt_ir::NodeIndex], what: &str| {
        g.add_inferred(op, args).map_err(|p| err(what, p))
    };

    let mut h = add(
        &mut g,
        Op::Embed(ops::Embed {
            word: "embeddings.word_embeddings.weight".into(),
            position: "embeddings.position_embeddings.weight".into(),
            token_type: "embeddings.token_type_embeddings.weight".into(),
            ln: "embeddings.LayerNorm".into(),
            eps,
            position_offset: c.position_offset(),
        }),
        &[ids, tt],
        "embeddings",
    )?;
    let (d, i) = (c.hidden_size, c.intermediate_size);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let a = add(
            &mut g,
            Op::Attention(ops::Attention::dense(
                c.num_attention_heads,
                c.head_dim(),
                ["self.query", "self.key", "self.value", "output.dense"].map(|s| format!("{p}.attention.{s}")),
            )),
            &[h, mask],
            &p,
        )?;
        let h1 =
            add(&mut g, Op::AddNorm(ops::AddNorm { ln: format!("{p}.attention.output.LayerNorm"), eps }), &[a, h], &p)?;
        let f = add(&mut g, Op::Linear(ops::Linear { w: format!("{p}.intermediate.dense"), k: d, n: i }), &[h1], &p)?;
        let f = add(&mut g, Op::Gelu, &[f], &p)?;
        let o = add(&mut g, Op::Linear(ops::Linear { w: format!("{p}.output.dense"), k: i, n: d }), &[f], &p)?;
        h = add(&mut g, Op::AddNorm(ops::AddNorm { ln: format!("{p}.output.LayerNorm"), eps }), &[o, h1], &p)?;
    }
    let pooled = |g: &mut Graph, h| -> Result<_, LowerError> {
        let cls = g.add_inferred(Op::TakeCls, &[h]).map_err(|p| err("pooler", p))?;
        let lin = g
            .add_inferred(Op::Linear(ops::Linear { w: "pooler.dense".into(), k: d, n: d }), &[cls])
            .map_err(|p| err("pooler", p))?;
        g.add_inferred(Op::Tanh, &[lin]).map_err(|p| err("pooler", p))
    };
    match head {
        Head::Encoder { pooler } => {
            g.add_output("last_hidden_state", h);
            if pooler {
                let p = pooled(&mut g, h)?;
                g.add_output("pooler_output", p);
            }
        }
        Head::BertClassifier { labels } => {
            let p = pooled(&mut g, h)?;
            let logits =
                add(&mut g, Op::Linear(ops::Linear { w: "classifier".into(), k: d, n: labels }), &[p], "classifier")?;
            g.add_output("logits", logits);
        }
        Head::RobertaClassifier { labels } => {
            let cls = add(&mut g, Op::TakeCls, &[h], "classifier")?;
            let x = add(
                &mut g,
                Op::Linear(ops::Linear { w: "classifier.dense".into(), k: d, n: d }),
                &[cls],
                "classifier",
            )?;
            let x = add(&mut g, Op::Tanh, &[x], "classifier")?;
            let logits = add(
                &mut g,
                Op::Linear(ops::Linear { w: "classifier.out_proj".into(), k: d, n: labels }),
                &[x],
                "classifier",
            )?;
            g.add_output("logits", logits);
        }
    }
    // Off-ramps of a multi-exit checkpoint wait aside for the `exit` pass, EBERT predictors for `ebert`.
    let ramps: Vec<String> =
        g.weights.0.keys().filter(|k| k.starts_with(EXITS) || k.starts_with(crate::schema::EBERT)).cloned().collect();
    for k in ramps {
        if let Some(w) = g.weights.0.remove(&k) {
            g.spare.0.insert(k, w);
        }
    }
    g.prune_unused_weights();
    bertopt_ir::verify(&g).map_err(|e| err("graph", e.to_string()))?;
    Ok(g)
}

/// Convenience: load a model folder (or its safetensors path) and lower it.
pub fn load_graph(path: &std::path::Path) -> Result<(Graph, crate::ModelInfo), crate::Error> {
    let ck = Checkpoint::load(path)?;
    let info = crate::ModelInfo::of(&ck);
    let g = lower(ck)?;
    Ok((g, info))
}
