//! secure-pay-agent's HTTP request parser with hostile bytes:
//! no panic, limits kept (src/agent/fuzzing.rs; bounded under stable in tests/agent_fuzz.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = secure_pay::agent::fuzzing::fuzz_http(data) {
        panic!("invariant broken: {e}");
    }
});
