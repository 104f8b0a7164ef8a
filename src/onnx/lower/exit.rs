//! `early_exit`, lowered as a whole: the graph is split into stages (the nodes each exit point first needs),
//! and after each stage an `If` on "every row may leave" returns that exit's logits or runs the next stage in its
//! else branch. `exit_layer` is the `i64[batch]` layer count the taken branch returns.

use std::collections::HashMap;

use bertopt_ir::{ops, ExitRule, Graph, NodeIndex, Op};

use super::emitter::{dims, EmitError, Emitter};
use crate::onnx::builder::{Attr, DimSpec, Elem};

impl Emitter<'_> {
    /// Lower an `early_exit` as nested `If`s: stage j holds the nodes that exit point j needs and no earlier one
    /// does; after stage j, an `If` on "every row may leave" returns exit j's logits, or runs stage j + 1 in its
    /// else branch. Returns the names of the logits and the `i64[batch]` exit layer.
    pub(crate) fn emit_exits(
        &mut self,
        x: &ExitPlan,
        j: usize,
        state: ExitState,
    ) -> Result<(String, String), EmitError> {
        super::nodes(self, &x.stages[j])?;
        let logits = self.vals[&x.exits[j].into()].clone();
        let last = j + 1 == x.exits.len();
        let (cond, state) = if last { (None, state) } else { self.exit_condition(x.rule, &logits, j, state) };
        let Some(cond) = cond else {
            // No decision here (the last exit point, or patience cannot be reached yet): go on in this scope.
            if last {
                let layer = self.exit_layer_value(&logits, x.layers[j]);
                return Ok((logits, layer));
            }
            return self.emit_exits(x, j + 1, state);
        };
        let ty = |b: &Self, layer: bool| -> (Elem, Vec<DimSpec>) {
            let t = &b.g.dag[x.exits[0]].ty;
            if layer {
                (Elem::I64, dims(&t.shape[..1]))
            } else {
                (Elem::F32, dims(&t.shape))
            }
        };
        let ((le, ld), (xe, xd)) = (ty(self, false), ty(self, true));
        let at = x.layers[j];
        self.b.begin_scope();
        let out_logits = self.b.node("Identity", &format!("exit.{at}/logits"), &[&logits], &[]);
        let out_layer = self.exit_layer_value(&logits, at);
        let then_branch =
            self.b.end_scope(&format!("exit_after_layer_{at}"), &[(&out_logits, le, &ld), (&out_layer, xe, &xd)]);
        self.b.begin_scope();
        let (inner_logits, inner_layer) = self.emit_exits(x, j + 1, state)?;
        let out_logits = self.b.node("Identity", &format!("continue.{at}/logits"), &[&inner_logits], &[]);
        let out_layer = self.b.node("Identity", &format!("continue.{at}/exit_layer"), &[&inner_layer], &[]);
        let else_branch =
            self.b.end_scope(&format!("continue_after_layer_{at}"), &[(&out_logits, le, &ld), (&out_layer, xe, &xd)]);
        let outs = self.b.if_node(&format!("exit.{at}/If"), &cond, then_branch, else_branch);
        Ok((outs[0].clone(), outs[1].clone()))
    }

    /// `layer` repeated over the batch of `logits`.
    pub(crate) fn exit_layer_value(&mut self, logits: &str, layer: usize) -> String {
        let value = self.const_scalar_i64(layer as i64);
        let batch = self.b.node(
            "Shape",
            &format!("exit.{layer}/Batch"),
            &[logits],
            &[("start", Attr::Int(0)), ("end", Attr::Int(1))],
        );
        self.b.node("Expand", &format!("exit.{layer}/ExitLayer"), &[&value, &batch], &[])
    }

    /// The bool scalar "every row may leave at exit point j" (None where the rule cannot fire yet), and the
    /// patience state after j.
    pub(crate) fn exit_condition(
        &mut self,
        rule: ExitRule,
        logits: &str,
        j: usize,
        state: ExitState,
    ) -> (Option<String>, ExitState) {
        let scope = format!("exit.{j}");
        match rule {
            ExitRule::Entropy { threshold } => {
                let ls =
                    self.b.node("LogSoftmax", &format!("{scope}/LogSoftmax"), &[logits], &[("axis", Attr::Int(-1))]);
                let p = self.b.node("Exp", &format!("{scope}/Exp"), &[&ls], &[]);
                let pl = self.b.node("Mul", &format!("{scope}/Mul"), &[&p, &ls], &[]);
                let axes = self.const_i64(&[-1]);
                let neg_h = self.b.node(
                    "ReduceSum",
                    &format!("{scope}/ReduceSum"),
                    &[&pl, &axes],
                    &[("keepdims", Attr::Int(0))],
                );
                let h = self.b.node("Neg", &format!("{scope}/Entropy"), &[&neg_h], &[]);
                let worst = self.b.node(
                    "ReduceMax",
                    &format!("{scope}/ReduceMax"),
                    &[&h],
                    &[("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(0))],
                );
                let t = self.const_f32(threshold);
                (Some(self.b.node("Less", &format!("{scope}/Less"), &[&worst, &t], &[])), state)
            }
            ExitRule::Patience { patience } => {
                let a = self.b.node(
                    "ArgMax",
                    &format!("{scope}/ArgMax"),
                    &[logits],
                    &[("axis", Attr::Int(-1)), ("keepdims", Attr::Int(0))],
                );
                let zero = self.b.node("Sub", &format!("{scope}/Zero"), &[&a, &a], &[]);
                let count = match state {
                    None => zero,
                    Some((prev, count)) => {
                        let same = self.b.node("Equal", &format!("{scope}/Same"), &[&a, &prev], &[]);
                        let one = self.const_scalar_i64(1);
                        let inc = self.b.node("Add", &format!("{scope}/Count"), &[&count, &one], &[]);
                        self.b.node("Where", &format!("{scope}/Where"), &[&same, &inc, &zero], &[])
                    }
                };
                let state = Some((a, count.clone()));
                if j < patience {
                    return (None, state);
                }
                let least = self.b.node(
                    "ReduceMin",
                    &format!("{scope}/ReduceMin"),
                    &[&count],
                    &[("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(0))],
                );
                let p = self.const_scalar_i64(patience as i64);
                (Some(self.b.node("GreaterOrEqual", &format!("{scope}/GreaterOrEqual"), &[&least, &p], &[])), state)
            }
        }
    }
}

/// Patience bookkeeping carried from one exit point to the next: the previous argmax and agreement count.
type ExitState = Option<(String, String)>;

/// How an `early_exit` splits the graph: per exit point, the nodes first needed there.
pub(crate) struct ExitPlan {
    pub(crate) rule: ExitRule,
    pub(crate) layers: Vec<usize>,
    pub(crate) exits: Vec<NodeIndex>,
    pub(crate) stages: Vec<Vec<NodeIndex>>,
    /// The stage each node of `stages` belongs to.
    pub(crate) stage_of: HashMap<NodeIndex, usize>,
}

impl ExitPlan {
    /// Split `order` for the early exit `e`; the rest (what reads the exit's results) is returned in order.
    pub(crate) fn new(g: &Graph, e: NodeIndex, order: &[NodeIndex]) -> Result<(Self, Vec<NodeIndex>), EmitError> {
        let Op::EarlyExit(ops::EarlyExit { rule, layers }) = &g.dag[e].op else {
            return Err(EmitError::Graph("not an early_exit".into()));
        };
        let exits = g.operands(e);
        let mut stage: HashMap<NodeIndex, usize> = HashMap::new();
        for (j, &x) in exits.iter().enumerate() {
            let mut stack = vec![x];
            while let Some(n) = stack.pop() {
                if stage.contains_key(&n) {
                    continue;
                }
                stage.insert(n, j);
                stack.extend(g.operands(n));
            }
        }
        let mut stages = vec![vec![]; exits.len()];
        let mut rest = vec![];
        for &n in order {
            match stage.get(&n) {
                Some(&j) => stages[j].push(n),
                None if n == e => {}
                None => {
                    if let Some(o) = g.operands(n).into_iter().find(|o| stage.get(o).is_some_and(|&j| j > 0)) {
                        return Err(EmitError::Graph(format!(
                            "a value after the early exit reads {:?}, which only some exit paths compute; put `exit` \
                             last in the pipeline",
                            g.dag[o].op.mnemonic()
                        )));
                    }
                    rest.push(n);
                }
            }
        }
        Ok((ExitPlan { rule: *rule, layers: layers.clone(), exits, stages, stage_of: stage }, rest))
    }
}
