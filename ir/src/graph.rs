//! The graph: a petgraph DAG whose nodes are ops producing typed values (one for most ops; `early_exit` gives its
//! logits and the layer count it ran), and whose edges carry the operand position and which result they read.
//! Weights are named constants held beside the DAG.

use std::collections::BTreeMap;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::ops::Op;
use crate::types::ValueType;
pub use crate::weights::{Weight, Weights};

/// A node: an op and the types of the values it produces.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    /// The type of result 0, the only result of most ops.
    pub ty: ValueType,
    /// The types of results 1.. (see `OpDef::more_results`).
    pub more: Vec<ValueType>,
}

impl Node {
    /// The type of result `r`.
    pub fn result_type(&self, r: usize) -> Option<&ValueType> {
        if r == 0 {
            Some(&self.ty)
        } else {
            self.more.get(r - 1)
        }
    }

    /// How many results the node has.
    pub fn results(&self) -> usize {
        1 + self.more.len()
    }
}

/// A value: result `result` of node `node`. A `NodeIndex` converts to its result 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    pub node: NodeIndex,
    pub result: usize,
}

impl From<NodeIndex> for Value {
    fn from(node: NodeIndex) -> Self {
        Value { node, result: 0 }
    }
}

/// An edge: which operand of its target it is, and which result of its source it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    pub operand: usize,
    pub result: usize,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub dag: StableDiGraph<Node, Use>,
    /// Graph parameters in declaration order (nodes with `Op::Input`).
    pub inputs: Vec<NodeIndex>,
    /// Named results in declaration order.
    pub outputs: Vec<(String, Value)>,
    pub weights: Weights,
    /// Weights of the model that no node reads yet, kept aside so that cleanup does not drop them: a multi-exit
    /// checkpoint's off-ramps (`exits.*`), which the `exit` pass wires in, and EBERT predictors (`ebert.*`),
    /// which the `ebert` pass fuses. Printed by type in a `spare { }` block; not emitted.
    pub spare: Weights,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            dag: StableDiGraph::default(),
            inputs: vec![],
            outputs: vec![],
            weights: Weights::default(),
            spare: Weights::default(),
        }
    }

    /// Add a graph parameter.
    pub fn add_input(&mut self, name: &str, ty: ValueType) -> NodeIndex {
        let n =
            self.dag.add_node(Node { op: Op::Input(crate::ops::Input { name: name.to_string() }), ty, more: vec![] });
        self.inputs.push(n);
        n
    }

    /// Add a single-result node with a declared type and its operands (each a node's result 0) in order.
    pub fn add_node(&mut self, op: Op, ty: ValueType, operands: &[NodeIndex]) -> NodeIndex {
        let operands: Vec<Value> = operands.iter().map(|&o| o.into()).collect();
        self.add_node_results(op, ty, vec![], &operands)
    }

    /// Add a node with the declared types of all its results and its operands in order.
    pub fn add_node_results(&mut self, op: Op, ty: ValueType, more: Vec<ValueType>, operands: &[Value]) -> NodeIndex {
        let n = self.dag.add_node(Node { op, ty, more });
        for (i, o) in operands.iter().enumerate() {
            self.dag.add_edge(o.node, n, Use { operand: i, result: o.result });
        }
        n
    }

    /// Add a node whose result types are inferred from its operands (each a node's result 0) and weights.
    pub fn add_inferred(&mut self, op: Op, operands: &[NodeIndex]) -> Result<NodeIndex, String> {
        let tys: Vec<&ValueType> = operands.iter().map(|&o| &self.dag[o].ty).collect();
        let (ty, more) = op.infer_results(&tys, &self.weights)?;
        let operands: Vec<Value> = operands.iter().map(|&o| o.into()).collect();
        Ok(self.add_node_results(op, ty, more, &operands))
    }

    pub fn add_output(&mut self, name: &str, value: impl Into<Value>) {
        self.outputs.push((name.to_string(), value.into()));
    }

    /// The type of value `v`.
    pub fn value_type(&self, v: Value) -> Option<&ValueType> {
        self.dag.node_weight(v.node)?.result_type(v.result)
    }

    /// The nodes whose results `n` reads, in operand order.
    pub fn operands(&self, n: NodeIndex) -> Vec<NodeIndex> {
        self.operand_values(n).into_iter().map(|v| v.node).collect()
    }

    /// The values `n` reads, in operand order.
    pub fn operand_values(&self, n: NodeIndex) -> Vec<Value> {
        let mut e: Vec<(usize, Value)> = self
            .dag
            .edges_directed(n, Direction::Incoming)
            .map(|e| (e.weight().operand, Value { node: e.source(), result: e.weight().result }))
            .collect();
        e.sort();
        e.into_iter().map(|(_, v)| v).collect()
    }

    /// Nodes in a deterministic topological order: inputs first, then by insertion among ready nodes.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, String> {
        let mut indeg: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for n in self.dag.node_indices() {
            indeg.insert(n, self.dag.edges_directed(n, Direction::Incoming).count());
        }
        let mut ready: std::collections::BTreeSet<NodeIndex> =
            indeg.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| n).collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(&n) = ready.iter().next() {
            ready.remove(&n);
            order.push(n);
            for e in self.dag.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indeg.len() {
            return Err("graph has a cycle".into());
        }
        Ok(order)
    }

    /// Replace every use of `old`'s results (as operands or outputs) by the same results of `new`.
    pub fn replace_uses(&mut self, old: NodeIndex, new: NodeIndex) {
        let uses: Vec<(NodeIndex, Use, petgraph::stable_graph::EdgeIndex)> =
            self.dag.edges_directed(old, Direction::Outgoing).map(|e| (e.target(), *e.weight(), e.id())).collect();
        for (target, u, id) in uses {
            self.dag.remove_edge(id);
            self.dag.add_edge(new, target, u);
        }
        for (_, o) in self.outputs.iter_mut() {
            if o.node == old {
                o.node = new;
            }
        }
    }

    /// Drop weights that no node refers to (after passes remove or replace nodes).
    pub fn prune_unused_weights(&mut self) -> usize {
        let used = self.used_weight_names();
        let before = self.weights.0.len();
        self.weights.0.retain(|name, _| used.contains(name));
        before - self.weights.0.len()
    }

    /// Full tensor names read by some node (a group reference `P` covers `P.weight` and `P.bias`, and for a
    /// tiled linear its `P.tile{t}.rows` / `P.tile{t}.weight` / int8 `P.tile{t}.weight_scale`; an int8 group's
    /// scales and static activation parameters).
    pub fn used_weight_names(&self) -> std::collections::BTreeSet<String> {
        let mut used = std::collections::BTreeSet::new();
        for n in self.dag.node_weights() {
            for r in n.op.weight_refs() {
                let quant =
                    [crate::quant::scale_name(r), crate::quant::row_scale_name(r), crate::quant::input_params_name(r)];
                for name in [r.to_string(), format!("{r}.weight"), format!("{r}.bias")].into_iter().chain(quant) {
                    if self.weights.0.contains_key(&name) {
                        used.insert(name);
                    }
                }
            }
            // Tiled linears and tiled attention projections: `P.tile{t}.rows` / `P.tile{t}.weight`, `P.cols`.
            for r in n.op.weight_refs() {
                let cols = crate::ops::cols_name(r);
                if self.weights.0.contains_key(&cols) {
                    used.insert(cols);
                }
                for t in 0..crate::ops::tile_count(|x| self.weights.0.contains_key(x), r) {
                    let (rows, weight) = crate::ops::tile_names(r, t);
                    let scale = crate::quant::scale_name(&crate::ops::tile_group(r, t));
                    used.extend([rows, weight, scale].into_iter().filter(|x| self.weights.0.contains_key(x)));
                }
            }
        }
        used
    }
}
