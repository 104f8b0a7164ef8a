//! `--pass` pipelines: parsing and building the passes from their arguments never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = bertopt_passes::Pipeline::parse(text);
});
