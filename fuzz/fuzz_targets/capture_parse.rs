//! Command parser, option-string parser and config setter: no panic, clear bounded errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = secure_pay::core::capture::fuzzing::fuzz_parse(data) {
        panic!("invariant broken: {e}");
    }
});
