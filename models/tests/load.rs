//! Loading: the three naming schemes, and bad input that must be reported with the file, tensor and shapes.

use std::path::Path;

use bertopt_models::testing::{write_tiny_model, TinySpec};
use bertopt_models::{load_graph, Checkpoint, Head, Scheme};

fn tiny(dir: &Path, spec: TinySpec) {
    write_tiny_model(dir, &spec).unwrap();
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

fn load_err(path: &Path) -> String {
    match Checkpoint::load(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reads_each_naming_scheme() {
    let d = tempfile::tempdir().unwrap();
    for (name, scheme, labels, head, outputs) in [
        ("bare", Scheme::Bare, 0, Head::Encoder { pooler: true }, vec!["last_hidden_state", "pooler_output"]),
        ("bert", Scheme::Bert, 3, Head::BertClassifier { labels: 3 }, vec!["logits"]),
        ("roberta", Scheme::Roberta, 2, Head::RobertaClassifier { labels: 2 }, vec!["logits"]),
    ] {
        let dir = d.path().join(name);
        tiny(&dir, TinySpec { scheme, labels, ..TinySpec::default() });
        let ck = Checkpoint::load(&dir.join("model.safetensors")).unwrap();
        assert_eq!(ck.scheme, scheme, "{name}");
        assert_eq!(ck.head, head, "{name}");
        assert!(
            ck.tensors.keys().all(|k| !k.starts_with("bert.") && !k.starts_with("roberta.")),
            "{name}: prefix stripped"
        );
        let (g, info) = load_graph(&dir).unwrap();
        let outs: Vec<&str> = g.outputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(outs, outputs, "{name}");
        assert_eq!(info.labels.len(), labels);
        let text = bertopt_ir::print(&g);
        let offset = if scheme == Scheme::Roberta { 2 } else { 0 };
        assert!(text.contains(&format!("position_offset: {offset}")), "{name}: {text}");
        // linear weights are K x N in the IR: intermediate.dense is [hidden, intermediate]
        assert!(text.contains("@encoder.layer.0.intermediate.dense.weight: f32[32, 64]"), "{name}");
    }
}

#[test]
fn missing_config_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("config.json is missing"), "{e}");
    assert!(e.contains(&d.path().display().to_string()), "{e}");
}

#[test]
fn truncated_and_garbage_safetensors_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    let st = d.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("model.safetensors is not a valid safetensors file"), "{e}");

    std::fs::write(&st, b"this is not a model at all, just some text that goes on").unwrap();
    let e = load_err(d.path());
    assert!(e.contains("not a valid safetensors file"), "{e}");

    // A header that claims to be larger than the file.
    let mut lying = (u64::MAX / 2).to_le_bytes().to_vec();
    lying.extend_from_slice(b"{}");
    std::fs::write(&st, lying).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn heads_that_do_not_divide_hidden_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    edit_config(d.path(), |c| c["num_attention_heads"] = 5.into());
    let e = load_err(d.path());
    assert!(e.contains("num_attention_heads = 5 does not divide hidden_size = 32"), "{e}");
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn config_that_does_not_match_weights_names_tensor_and_shapes() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    edit_config(d.path(), |c| {
        c["hidden_size"] = 64.into();
        c["num_attention_heads"] = 8.into();
    });
    let e = load_err(d.path());
    assert!(e.contains("embeddings.word_embeddings.weight"), "{e}");
    assert!(e.contains("[32, 32]") && e.contains("[32, 64]"), "{e}");

    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    edit_config(d.path(), |c| c["intermediate_size"] = 96.into());
    let e = load_err(d.path());
    assert!(
        e.contains("`encoder.layer.0.intermediate.dense.weight` has shape [64, 32], but config.json implies [96, 32]"),
        "{e}"
    );

    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    edit_config(d.path(), |c| c["num_hidden_layers"] = 1.into());
    let e = load_err(d.path());
    assert!(e.contains("num_hidden_layers = 1 but the weights hold 2 layer(s)"), "{e}");

    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), TinySpec::default());
    edit_config(d.path(), |c| c["num_hidden_layers"] = 3.into());
    let e = load_err(d.path());
    assert!(e.contains("tensor `encoder.layer.2.attention.self.query.weight` is missing"), "{e}");
}

#[test]
fn absurd_and_unsupported_configs_are_rejected() {
    for (field, value, msg) in [
        ("hidden_size", serde_json::json!(0), "hidden_size = 0 is outside"),
        ("vocab_size", serde_json::json!(1u64 << 40), "vocab_size"),
        ("hidden_act", serde_json::json!("swish"), "hidden_act `swish` is not supported"),
        ("hidden_size", serde_json::json!("wide"), "bad config"),
    ] {
        let d = tempfile::tempdir().unwrap();
        tiny(d.path(), TinySpec::default());
        edit_config(d.path(), |c| c[field] = value.clone());
        let e = load_err(d.path());
        assert!(e.contains(msg), "{field}={value}: {e}");
    }
}
