//! Constant folding: an op whose operands are all `const` values with data is evaluated once, with the
//! reference interpreter, and becomes a `const` of a new weight `folded.N`. DCE then removes what fed it.

use std::collections::BTreeMap;

use bertopt_ir::ops;
use bertopt_ir::{interp, Graph, Op, Weight};

use crate::pass::{failed, Pass, PassContext, PassError, PassInfo, Recovery};

/// `fold` as the registry lists it.
pub const INFO: PassInfo = PassInfo {
    name: "fold",
    about: "evaluate ops whose operands are all constants into new constants",
    args: &[],
    recovery: Recovery::Nothing,
    search: None,
    note: None,
    build: |_| Ok(Box::new(Fold)),
};

pub struct Fold;

impl Pass for Fold {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn cleanup(&self) -> bool {
        true
    }

    fn run(&self, g: &mut Graph, _: &mut PassContext, changed: &mut BTreeMap<String, usize>) -> Result<(), PassError> {
        let order = g.topo_order().map_err(|p| failed(INFO.name, p))?;
        let mut folded = 0;
        for n in order {
            if matches!(g.dag[n].op, Op::Input(_) | Op::Const(_)) {
                continue;
            }
            let operands = g.operands(n);
            let consts: Option<Vec<candle_core::Tensor>> = operands
                .iter()
                .map(|&o| match &g.dag[o].op {
                    Op::Const(ops::Const { weight }) => g.weights.tensor(weight).cloned(),
                    _ => None,
                })
                .collect();
            let Some(consts) = consts else { continue };
            let refs: Vec<&candle_core::Tensor> = consts.iter().collect();
            let value = interp::eval_op(g, &g.dag[n].op, &refs).map_err(|e| failed(INFO.name, e.to_string()))?;
            let mut k = 0;
            while g.weights.0.contains_key(&format!("folded.{k}")) {
                k += 1;
            }
            let name = format!("folded.{k}");
            g.weights.0.insert(name.clone(), Weight::from_tensor(value));
            for e in operands.iter().filter_map(|&o| g.dag.find_edge(o, n)).collect::<Vec<_>>() {
                g.dag.remove_edge(e);
            }
            g.dag[n].op = Op::Const(ops::Const { weight: name });
            folded += 1;
        }
        *changed.entry("values folded".into()).or_default() += folded;
        Ok(())
    }
}
