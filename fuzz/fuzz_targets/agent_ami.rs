//! secure-pay-agent's AMI message reader with hostile bytes:
//! no panic, limits kept (agent/src/fuzzing.rs; bounded under stable in agent/tests/agent_fuzz.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = secure_pay_agent::fuzzing::fuzz_ami(data) {
        panic!("invariant broken: {e}");
    }
});
