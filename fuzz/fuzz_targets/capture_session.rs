//! Session state machine under arbitrary digit/command/tick/outcome sequences; masking and
//! hygiene invariants are asserted on every event (see core::capture::fuzzing).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = secure_pay::core::capture::fuzzing::fuzz_session(data) {
        panic!("invariant broken: {e}");
    }
});
