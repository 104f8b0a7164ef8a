//! Head-mask files (SMP pickle, .npy, JSON, safetensors): decoding never panics, and an accepted mask is
//! rectangular and non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = bertopt_passes::mask::HeadMask::from_bytes(data) {
        assert!(m.layers() > 0 && m.heads() > 0);
        assert!(m.keep.iter().all(|r| r.len() == m.heads()));
        // What bertopt writes back must read back the same.
        assert_eq!(bertopt_passes::mask::HeadMask::from_bytes(&m.to_pickle()).ok(), Some(m.clone()));
        assert_eq!(bertopt_passes::mask::HeadMask::from_bytes(m.to_json().as_bytes()).ok(), Some(m));
    }
});
