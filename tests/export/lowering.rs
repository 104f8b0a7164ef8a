//! The lowered IR: an insta snapshot of a small model's graph, and exact text round-trips for MiniLM.

use crate::common;

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::Scheme;

#[test]
fn lowered_tiny_graphs_match_goldens() {
    let d = tempfile::tempdir().unwrap();
    for (name, scheme, labels) in [("tiny_bare", Scheme::Bare, 0), ("tiny_bert_classifier", Scheme::Bert, 2)] {
        let dir = d.path().join(name);
        write_tiny_model(&dir, &TinySpec { scheme, labels, ..TinySpec::default() }).unwrap();
        let (g, _) = bertopt_models::load_graph(&dir).unwrap();
        let text = bertopt_ir::print(&g);
        insta::with_settings!({snapshot_path => "../../goldens/lowering", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, text);
        });
    }
}

#[test]
fn minilm_ir_text_round_trips_and_verifies() {
    let (g, _) = bertopt_models::load_graph(&common::minilm()).unwrap();
    let text = bertopt_ir::print(&g);
    let parsed = bertopt_ir::parse(&text).unwrap();
    bertopt_ir::verify(&parsed).unwrap();
    assert_eq!(bertopt_ir::print(&parsed), text);
    assert_eq!(text.matches("= attention(").count(), 6);
    assert!(text.contains("{heads: 12, head_dim: 32,"), "MiniLM has 12 heads of 32");
    assert!(text.contains("return last_hidden_state = %"), "{text}");
    assert_eq!(g.weights.num_params(), 22_713_216, "every tensor of the checkpoint (22.7 M) is used");
}
