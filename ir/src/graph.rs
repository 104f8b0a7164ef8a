//! The graph: a petgraph DAG whose nodes are ops producing one typed value each, and whose edges carry the
//! operand position. Weights are named constants held beside the DAG.

use std::collections::BTreeMap;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::ops::Op;
use crate::types::ValueType;
pub use crate::weights::{Weight, Weights};

/// A node: an op and the type of the value it produces.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub ty: ValueType,
}

#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub dag: StableDiGraph<Node, usize>,
    /// Graph parameters in declaration order (nodes with `Op::Input`).
    pub inputs: Vec<NodeIndex>,
    /// Named results in declaration order.
    pub outputs: Vec<(String, NodeIndex)>,
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
        let n = self.dag.add_node(Node { op: Op::Input(crate::ops::Input { name: name.to_string() }), ty });
        self.inputs.push(n);
        n
    }

    /// Add a node with a declared type and its operands in order.
    pub fn add_node(&mut self, op: Op, ty: ValueType, operands: &[NodeIndex]) -> NodeIndex {
        let n = self.dag.add_node(Node { op, ty });
        for (i, &o) in operands.iter().enumerate() {
            self.dag.add_edge(o, n, i);
        }
        n
    }

    /// Add a node whose type is inferred from its operands and weights.
    pub fn add_inferred(&mut self, op: Op, operands: &[NodeIndex]) -> Result<NodeIndex, String> {
        let tys: Vec<&ValueType> = operands.iter().map(|&o| &self.dag[o].ty).collect();
        let ty = op.infer(&tys, &self.weights)?;
        Ok(self.add_node(op, ty, operands))
    }

    pub fn add_output(&mut self, name: &str, node: NodeIndex) {
        self.outputs.push((name.to_string(), node));
    }

    /// Operands of `n` in position order.
    pub fn operands(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut e: Vec<(usize, NodeIndex)> =
            self.dag.edges_directed(n, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        e.sort();
        e.into_iter().map(|(_, s)| s).collect()
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

    /// Replace every use of `old` (as operand or output) by `new`.
    pub fn replace_uses(&mut self, old: NodeIndex, new: NodeIndex) {
        let uses: Vec<(NodeIndex, usize, petgraph::stable_graph::EdgeIndex)> =
            self.dag.edges_directed(old, Direction::Outgoing).map(|e| (e.target(), *e.weight(), e.id())).collect();
        for (target, pos, id) in uses {
            self.dag.remove_edge(id);
            self.dag.add_edge(new, target, pos);
        }
        for (_, o) in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
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
    /// tiled linear its `P.tile{t}.rows` / `P.tile{t}.weight`).
    pub fn used_weight_names(&self) -> std::collections::BTreeSet<String> {
        let mut used = std::collections::BTreeSet::new();
        for n in self.dag.node_weights() {
            for r in n.op.weight_refs() {
                let quant = [crate::quant::scale_name(r), crate::quant::row_scale_name(r)];
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
                    used.extend([rows, weight].into_iter().filter(|x| self.weights.0.contains_key(x)));
                }
            }
        }
        used
    }
}
