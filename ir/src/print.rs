//! The text form. One line per value, weights by name and type, never by value:
//!
//! ```text
//! graph tiny(%input_ids: i64[batch, sequence], ...) {
//!   %0: f32[batch, sequence, 32] = embed(%input_ids, %token_type_ids) {word: @embeddings.word_embeddings.weight, ...}
//!   return last_hidden_state = %0
//! }
//! weights {
//!   @embeddings.word_embeddings.weight: f32[100, 32]
//! }
//! ```
//! Weights held aside (`Graph::spare`: off-ramps, EBERT predictors) follow in a `spare { }` block of the same form.
//! Values are numbered in topological order, so the text does not depend on how the graph was built. An op with
//! several results names each: `%7: f32[batch, 2], %8: i64[batch] = early_exit(%3, %6) {...}`.
//! `parse::parse` is this printer's exact inverse; it also reads weight data (`= seeded(N)`, `= [v, ...]`), which
//! file tests write by hand and the printer never writes.

use std::collections::HashMap;
use std::fmt::Write;

use petgraph::stable_graph::NodeIndex;

use crate::graph::{Graph, Value};
use crate::ops::{Attr, Op};

/// The printed name of every value: `%name` for inputs, `%N` for the rest, one number per result.
pub struct ValueNames(HashMap<Value, String>);

impl ValueNames {
    pub fn new(g: &Graph, order: &[NodeIndex]) -> Self {
        let mut m = HashMap::new();
        let mut next = 0;
        for &n in order {
            if let Op::Input(crate::ops::Input { name }) = &g.dag[n].op {
                m.insert(n.into(), format!("%{name}"));
                continue;
            }
            for result in 0..g.dag[n].results() {
                m.insert(Value { node: n, result }, format!("%{next}"));
                next += 1;
            }
        }
        ValueNames(m)
    }
    pub fn get(&self, v: impl Into<Value>) -> String {
        let v = v.into();
        self.0.get(&v).cloned().unwrap_or_else(|| match v.result {
            0 => format!("%<{}>", v.node.index()),
            r => format!("%<{}#{r}>", v.node.index()),
        })
    }
}

pub fn format_attr(a: &Attr) -> String {
    match a {
        Attr::Int(i) => i.to_string(),
        // `{:?}` prints the shortest text that parses back to the same f32.
        Attr::Float(x) => format!("{x:?}"),
        Attr::Weight(w) => format!("@{w}"),
        Attr::Ints(v) => format!("[{}]", v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Print the graph. A graph with a cycle prints its nodes in index order (the verifier reports the cycle).
pub fn print(g: &Graph) -> String {
    let order = g.topo_order().unwrap_or_else(|_| g.dag.node_indices().collect());
    let names = ValueNames::new(g, &order);
    let mut s = String::new();
    let params: Vec<String> = g.inputs.iter().map(|&i| format!("{}: {}", names.get(i), g.dag[i].ty)).collect();
    let _ = writeln!(s, "graph {}({}) {{", g.name, params.join(", "));
    for &n in &order {
        let node = &g.dag[n];
        if let Op::Input(_) = node.op {
            continue;
        }
        let args: Vec<String> = g.operand_values(n).into_iter().map(|o| names.get(o)).collect();
        let types = std::iter::once(&node.ty).chain(&node.more);
        let results: Vec<String> =
            types.enumerate().map(|(result, t)| format!("{}: {t}", names.get(Value { node: n, result }))).collect();
        let _ = write!(s, "  {} = {}({})", results.join(", "), node.op.mnemonic(), args.join(", "));
        let attrs = node.op.attrs();
        if !attrs.is_empty() {
            let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}: {}", format_attr(v))).collect();
            let _ = write!(s, " {{{}}}", a.join(", "));
        }
        s.push('\n');
    }
    let outs: Vec<String> = g.outputs.iter().map(|(name, o)| format!("{name} = {}", names.get(*o))).collect();
    let _ = writeln!(s, "  return {}", outs.join(", "));
    s.push_str("}\n");
    for (block, set) in [("weights", &g.weights), ("spare", &g.spare)] {
        if !set.0.is_empty() {
            let _ = writeln!(s, "{block} {{");
            for (name, w) in &set.0 {
                let _ = writeln!(s, "  @{name}: {}", w.ty);
            }
            s.push_str("}\n");
        }
    }
    s
}
