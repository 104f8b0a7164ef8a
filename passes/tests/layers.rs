//! `layers(keep=K, scores=...)` keeps the K layers of highest summed score, whatever their position; without
//! scores the first K stay.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bertopt_ir::parse;
use bertopt_passes::layers::{Choice, Layers};
use bertopt_passes::scores::Importance;
use candle_core::{Device, Tensor};
use common::with_data;

#[test]
fn scores_choose_the_layers_kept_and_their_absence_keeps_the_first() {
    let g = with_data(parse(include_str!("fixtures/three_layers.ir")).unwrap());
    // Every matrix of layer l scores `per_layer[l]` per element: layer 0 lowest, layer 1 highest.
    let per_layer = [0.1f32, 3.0, 1.0];
    let mut scores = BTreeMap::new();
    for (name, w) in &g.weights.0 {
        let Some(l) = name.strip_prefix("encoder.layer.").and_then(|r| r.split('.').next()) else { continue };
        let dims = w.ty.known_dims().unwrap();
        if dims.len() == 2 {
            let v = per_layer[l.parse::<usize>().unwrap()];
            scores.insert(name.clone(), Tensor::full(v, dims.as_slice(), &Device::Cpu).unwrap());
        }
    }
    let tensors = Arc::new(scores);
    let by_scores = |count| Layers {
        choice: Choice::Keep {
            count,
            importance: Importance::Scores { path: "s.safetensors".into(), tensors: tensors.clone() },
        },
    };
    assert_eq!(by_scores(1).keep(&g).unwrap(), [false, true, false]);
    assert_eq!(by_scores(2).keep(&g).unwrap(), [false, true, true]);
    let first = Layers { choice: Choice::Keep { count: 2, importance: Importance::Magnitude } };
    assert_eq!(first.keep(&g).unwrap(), [true, true, false]);

    // A score file that lacks a layer's matrix is an error naming the weight.
    let mut partial = (*tensors).clone();
    partial.remove("encoder.layer.2.output.dense.weight");
    let l = Layers {
        choice: Choice::Keep {
            count: 1,
            importance: Importance::Scores { path: "s.safetensors".into(), tensors: Arc::new(partial) },
        },
    };
    let e = l.keep(&g).unwrap_err().to_string();
    assert!(e.contains("s.safetensors has no scores for @encoder.layer.2.output.dense.weight"), "{e}");
}
