//! Segmented export of an early-exit graph: one ONNX model per exit point plus a manifest, so that a driver
//! can decide per row (not per batch, as an `If` must) and feed only the rows that go on to the next stage.
//!
//! Stage j computes what exit point j needs and no earlier stage computed. Its inputs are the graph inputs
//! and the values of earlier stages it reads (`carry.N`, N the IR node); its outputs are exit j's `logits`
//! and the values it computes that later stages read. Weights are emitted into the stage that uses them.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use bertopt_ir::ops;
use bertopt_ir::{ExitRule, Graph, NodeIndex, Op};

use super::emit::EmitOptions;
use super::lower::emitter::{dims, elem, EmitError, Emitter};
use super::lower::exit::ExitPlan;

pub use bertopt_schema::manifest::{folder, Manifest, StageSpec, MANIFEST};

/// A segmented model in memory: the manifest and each stage's ONNX.
pub struct Segmented {
    pub manifest: Manifest,
    pub stages: Vec<onnx_protobuf::ModelProto>,
}

fn carry_name(n: NodeIndex) -> String {
    format!("carry.{}", n.index())
}

/// Lower a graph whose outputs are an `early_exit`'s results (logits, exit layer) to one ONNX model per exit point.
pub fn emit_segments(g: &Graph, opts: &EmitOptions) -> Result<Segmented, EmitError> {
    let order = g.topo_order().map_err(EmitError::Graph)?;
    let e =
        order.iter().copied().find(|&n| matches!(g.dag[n].op, Op::EarlyExit(_))).ok_or_else(|| {
            EmitError::Graph("a segmented export needs an early exit: add `exit` to the pipeline".into())
        })?;
    let (plan, rest) = ExitPlan::new(g, e, &order)?;
    if let Some(&n) = rest.first() {
        return Err(EmitError::Graph(format!(
            "a segmented export needs the early exit's logits as the model output, but `{}` reads them",
            g.dag[n].op.mnemonic()
        )));
    }
    let is_const = |n: NodeIndex| matches!(g.dag[n].op, Op::Const(_));
    let is_input = |n: NodeIndex| matches!(g.dag[n].op, Op::Input(_));
    let stage_of = |n: NodeIndex| plan.stage_of.get(&n).copied();
    // Values each stage reads from outside itself, and values each stage must hand on.
    let k = plan.stages.len();
    let mut reads: Vec<BTreeSet<NodeIndex>> = vec![BTreeSet::new(); k];
    let mut handed: Vec<BTreeSet<NodeIndex>> = vec![BTreeSet::new(); k];
    for (j, nodes) in plan.stages.iter().enumerate() {
        for &n in nodes {
            for o in g.operands(n) {
                if is_const(o) || stage_of(o) == Some(j) && !is_input(o) {
                    continue;
                }
                reads[j].insert(o);
                if let (Some(i), false) = (stage_of(o), is_input(o)) {
                    handed[i].insert(o);
                }
            }
        }
    }
    let (rule_name, threshold, patience) = match plan.rule {
        ExitRule::Entropy { threshold } => ("entropy", Some(threshold), None),
        ExitRule::Patience { patience } => ("patience", None, Some(patience)),
    };
    let mut manifest = Manifest { criterion: rule_name.into(), threshold, patience, stages: vec![] };
    let mut stages = vec![];
    for j in 0..k {
        let at = plan.layers[j];
        let mut em = Emitter::new(g, &format!("{}.stage{j}", g.name));
        em.int8_tiles = opts.int8_tiles;
        let mut inputs = vec![];
        for &n in &reads[j] {
            let node = &g.dag[n];
            let name = match &node.op {
                Op::Input(ops::Input { name }) => name.clone(),
                _ => carry_name(n),
            };
            em.b.input(&name, elem(node.ty.dtype), &dims(&node.ty.shape));
            em.vals.insert(n.into(), name.clone());
            inputs.push(name);
        }
        // Constants an earlier stage owns are emitted again here (as initializers, they cost nothing to share).
        let mut nodes: Vec<NodeIndex> = plan.stages[j]
            .iter()
            .flat_map(|&n| g.operands(n))
            .filter(|&o| is_const(o) && stage_of(o) != Some(j))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        nodes.extend(plan.stages[j].iter().copied().filter(|&n| !is_input(n)));
        super::lower::nodes(&mut em, &nodes)?;
        let logits = plan.exits[j];
        let ty = &g.dag[logits].ty;
        let v = em.vals[&logits.into()].clone();
        em.b.node_into("Identity", "logits", &[&v], "logits", &[]);
        em.b.output("logits", elem(ty.dtype), &dims(&ty.shape));
        let mut carries = vec![];
        if j + 1 < k {
            for &n in &handed[j] {
                let name = carry_name(n);
                let ty = &g.dag[n].ty;
                let v = em.vals[&n.into()].clone();
                em.b.node_into("Identity", &name, &[&v], &name, &[]);
                em.b.output(&name, elem(ty.dtype), &dims(&ty.shape));
                carries.push(name);
            }
        }
        let mut metadata = opts.metadata.clone();
        metadata.push(("bertopt.stage", format!("{j} of {k}, exit after layer {at}")));
        stages.push(em.b.finish(&metadata));
        manifest.stages.push(StageSpec { file: format!("stage{j}.onnx"), exit_layer: at, inputs, carries });
    }
    Ok(Segmented { manifest, stages })
}

/// Write a segmented model as a folder, atomically: it is built beside `dir` and renamed into place; an
/// existing segmented model there is replaced, anything else is left alone and is an error.
pub fn write_segments(s: &Segmented, dir: &Path) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    anyhow::ensure!(parent.is_dir(), "output directory {} does not exist (for {})", parent.display(), dir.display());
    if dir.exists() {
        anyhow::ensure!(
            dir.join(MANIFEST).is_file(),
            "{} exists and is not a segmented model (no {MANIFEST}); choose a new folder",
            dir.display()
        );
    }
    let tmp = tempfile::Builder::new().prefix(".bertopt-").suffix(".tmp").tempdir_in(parent)?;
    let mut files = HashMap::new();
    for (spec, proto) in s.manifest.stages.iter().zip(&s.stages) {
        let path = tmp.path().join(&spec.file);
        super::write_model(proto, &path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        files.insert(spec.file.clone(), path);
    }
    let json = serde_json::to_string_pretty(&s.manifest)?;
    crate::atomic::write_atomic(&tmp.path().join(MANIFEST), |w| w.write_all(json.as_bytes()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let staged = tmp.keep();
    if dir.exists() {
        // Move the old model aside first, so that the name never points at a half-replaced folder.
        let old = tempfile::Builder::new().prefix(".bertopt-old-").tempdir_in(parent)?.keep();
        std::fs::rename(dir, old.join("model"))?;
        std::fs::rename(&staged, dir)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&staged, dir)?;
    }
    Ok(())
}
