//! config.json + model.safetensors -> checked checkpoint -> IR. The input is a model folder packed as
//! `u32 LE config length | config.json | model.safetensors` (see `bertopt_models::testing::pack_folder`).
//! A checkpoint the loader accepts must lower to a graph the verifier accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((config, weights)) = bertopt_models::testing::unpack_folder(data) else { return };
    let files = bertopt_models::ModelFiles {
        dir: "fuzz".into(),
        config: "fuzz/config.json".into(),
        weights: "fuzz/model.safetensors".into(),
        tokenizer: None,
    };
    let Ok(ck) = bertopt_models::Checkpoint::from_bytes(files, config, weights) else { return };
    if let Ok(g) = bertopt_models::load::lower::lower(ck) {
        bertopt_ir::verify(&g).expect("a lowered checkpoint verifies");
    }
});
