//! The IR text parser: never panics; a graph it accepts is printed and re-parsed to the same text, and the
//! verifier either accepts it or says why (never panics).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(g) = bertopt_ir::parse(text) else { return };
    let printed = bertopt_ir::print(&g);
    let again = bertopt_ir::parse(&printed).expect("printed IR parses");
    assert_eq!(bertopt_ir::print(&again), printed, "print . parse is a fixed point");
    let _ = bertopt_ir::verify(&g);
});
