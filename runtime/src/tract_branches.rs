//! tract runs an ONNX `If` as `IfThenElse`, whose branch bodies are left unoptimized and re-planned on every
//! call, with the model's weights arriving as runtime inputs (so no matmul can pre-pack them). This module
//! rewrites each `IfThenElse` of an optimized model into `PlannedIf`: constant inputs are inlined into the
//! bodies, the bodies are optimized (recursively, for nested exits) and planned once. A continuing path then
//! costs what the same layers cost in a flat graph.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::logic::IfThenElse;

/// One branch, optimized and planned, and which of the op's inputs feed its inputs.
#[derive(Debug, Clone)]
struct Branch {
    plan: Arc<TypedRunnableModel>,
    input_mapping: Vec<usize>,
}

/// `IfThenElse` with planned, optimized bodies.
#[derive(Debug, Clone)]
pub struct PlannedIf {
    then_branch: Branch,
    else_branch: Branch,
    facts: TVec<TypedFact>,
}

impl PartialEq for PlannedIf {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}
impl Eq for PlannedIf {}

impl Op for PlannedIf {
    fn name(&self) -> StaticName {
        "PlannedIf".into()
    }
    op_as_typed_op!();
}

impl EvalOp for PlannedIf {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let b = if inputs[0].cast_to_scalar::<bool>()? { &self.then_branch } else { &self.else_branch };
        let args: TVec<TValue> = b.input_mapping.iter().map(|&i| inputs[i].clone()).collect();
        b.plan.run(args)
    }
}

impl TypedOp for PlannedIf {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(self.facts.clone())
    }
    as_op!();
}

/// Replace every `IfThenElse` of `model` (already optimized) by a `PlannedIf`.
pub fn plan_branches(mut model: TypedModel) -> TractResult<TypedModel> {
    let ifs: Vec<usize> = model.nodes().iter().filter(|n| n.op_as::<IfThenElse>().is_some()).map(|n| n.id).collect();
    for id in ifs {
        let node = model.node(id).clone();
        let ite = node.op_as::<IfThenElse>().expect("filtered above");
        // Inputs that are constants in the outer model become constants inside the bodies.
        let konst: Vec<Option<Arc<Tensor>>> =
            node.inputs.iter().map(|o| model.outlet_fact(*o).ok().and_then(|f| f.konst.clone())).collect();
        let mut inputs = vec![node.inputs[0]];
        let mut branch = |body: &TypedModel, mapping: &[usize]| -> TractResult<Branch> {
            let mut body = body.clone();
            let mut kept = vec![];
            let sources = body.input_outlets()?.to_vec();
            for (k, (outlet, &outer)) in sources.iter().zip(mapping).enumerate() {
                match &konst[outer] {
                    Some(t) => {
                        let fact = TypedFact::try_from(t.clone())?;
                        let n = body.node_mut(outlet.node);
                        n.op = Box::new(Const::new(t.clone())?);
                        n.outputs[0].fact = fact;
                    }
                    None => {
                        let wire = node.inputs[outer];
                        let pos = inputs.iter().position(|w| *w == wire).unwrap_or_else(|| {
                            inputs.push(wire);
                            inputs.len() - 1
                        });
                        kept.push((k, *outlet, pos));
                    }
                }
            }
            body.inputs = kept.iter().map(|(_, o, _)| *o).collect();
            let body = plan_branches(body.into_optimized()?)?;
            Ok(Branch { plan: body.into_runnable()?, input_mapping: kept.iter().map(|(_, _, p)| *p).collect() })
        };
        let then_branch = branch(&ite.then_body, &ite.then_input_mapping)?;
        let else_branch = branch(&ite.else_body, &ite.else_input_mapping)?;
        let facts = (0..node.outputs.len())
            // Without values: which branch runs is known only at run time (tract's `IfThenElse` reports the then
            // branch's constants as its own).
            .map(|i| Ok(model.outlet_fact(OutletId::new(id, i))?.without_value()))
            .collect::<TractResult<_>>()?;
        let op = PlannedIf { then_branch, else_branch, facts };
        let patch = TypedModelPatch::replace_single_op(&model, &node, &inputs, op)?;
        patch.apply(&mut model)?;
    }
    Ok(model)
}
