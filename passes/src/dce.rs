//! Dead-code elimination: drop every node that no output depends on (graph inputs stay, so the model's
//! interface does not change), then every weight no remaining node reads.

use std::collections::BTreeMap;

use bertopt_ir::{Graph, NodeIndex, Op};
use petgraph::Direction;

use crate::pass::{Pass, PassContext, PassError, PassInfo, Recovery};

/// `dce` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "dce",
    about: "remove values no output depends on, and the weights only they used",
    args: &[],
    recovery: Recovery::Nothing,
    search: None,
    note: None,
    build: |_| Ok(Box::new(Dce)),
};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn cleanup(&self) -> bool {
        true
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let mut live = std::collections::HashSet::new();
        let mut stack: Vec<NodeIndex> = g.outputs.iter().map(|(_, v)| v.node).collect();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(g.dag.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<NodeIndex> =
            g.dag.node_indices().filter(|n| !live.contains(n) && !matches!(g.dag[*n].op, Op::Input(_))).collect();
        for &n in &dead {
            g.dag.remove_node(n);
        }
        let weights = g.prune_unused_weights();
        *changed.entry("nodes removed".into()).or_default() += dead.len();
        *changed.entry("weights removed".into()).or_default() += weights;
        Ok(())
    }
}
