//! FreeSWITCH skipping our media bug, on a real FreeSWITCH: the frame accounting of
//! `src/host/freeswitch/watch.rs`.
//!
//! The fault: `SSF_MEDIA_BUG_TAP_ONLY` left set on the customer's session (what a native tap
//! added at the same moment as our bug can leave behind; FreeSWITCH then hands every frame on
//! without running any READ_REPLACE bug). The race cannot be forced from outside, so a
//! test-only module (`tests/freeswitch_support/fault/mod_sp_fault.c`, compiled here into this
//! instance's module dir, never installed) writes its outcome.
//!
//! Judges: sox's peak amplitude of the agent's recording (a plain 1 kHz tone, which the masker
//! lets through, shows whether the customer is heard at all) and multimon-ng for digits.
//! Controls: the same tone is heard in secure mode before the fault and after the repair;
//! multimon-ng decodes the same keys before secure mode.
//!
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch) and a C compiler; otherwise
//! prints "FreeSWITCH tests SKIPPED" and passes. Run:
//! `cargo test --release --features freeswitch --test freeswitch_fault`.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::{Duration, Instant};

use freeswitch_support::*;

const PAN: &str = "4111111111111111";

/// Records the agent while a plain 1 kHz tone of `ms` plays into the customer channel;
/// `before` runs after the recording started and before the tone. Returns the peak.
fn tone_heard(
    fs: &FreeSwitch,
    esl: &mut Esl,
    cust_a: &str,
    agent_a: &str,
    tag: &str,
    ms: u64,
    before: &mut dyn FnMut(&mut Esl),
) -> f64 {
    let rec = fs.rec(&format!("fault_{tag}.wav"));
    record(esl, agent_a, "start", &rec);
    std::thread::sleep(Duration::from_millis(100));
    before(esl);
    let r = esl.api(&format!(
        "uuid_broadcast {cust_a} tone_stream://%({ms},0,1000) aleg"
    ));
    assert!(r.starts_with("+OK"), "uuid_broadcast: {r}");
    std::thread::sleep(Duration::from_millis(ms + 150));
    record(esl, agent_a, "stop", &rec);
    peak(&rec)
}

fn tap_only(esl: &mut Esl, uuid: &str, verb: &str) -> String {
    esl.api(&format!("sp_fault tap_only {uuid} {verb}"))
        .trim()
        .to_string()
}

#[test]
fn a_core_that_skips_our_bug_passes_silence_until_the_bug_list_is_repaired() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &Options::default());
    load_fault_module(&fs, &prefix);
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::error secure_pay::digit");
    let (cust_a, cust_b) = originate_customer(&mut esl, "cust1");
    let (agent_a, _agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(500));

    // Control for the digit judge: before secure mode the keys reach the agent.
    let p = fs.rec("fault_control_keys.wav");
    record(&mut esl, &agent_a, "start", &p);
    play_tones(&mut esl, &cust_a, "159");
    record(&mut esl, &agent_a, "stop", &p);
    let d = multimon_digits(&p);
    assert!(d.contains("159"), "control: multimon-ng decodes {d:?}");

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tap_only(&mut esl, &cust_b, "get"), "+OK 0");

    // Control: in secure mode the customer is heard (the masker takes only DTMF).
    let before = tone_heard(&fs, &mut esl, &cust_a, &agent_a, "before", 300, &mut |_| {});
    assert!(
        before > 0.05,
        "control: the agent hears the tone (peak {before})"
    );
    let evs = ev.drain(Duration::from_millis(200));
    assert!(
        !evs.iter()
            .any(|e| e.get("SecurePay-Error-Code") == Some("media-bug-skipped")),
        "no skip reported while the core runs our bug: {evs:?}"
    );

    // The fault, set just before a 250 ms tone: the core stops running our bug. The tone falls
    // inside the half second before the dispatcher repairs the bug list: every frame of it is
    // a probe (encoded silence marked comfort noise), so the agent hears nothing. Three rounds:
    // with the probes taken out, every round carried the whole tone (peak 0.31) in all but one
    // run, where the first window was silent anyway (the agent's recording of it was 20 ms long:
    // the agent's leg dropped what the bridge wrote for a moment); three rounds do not depend on
    // that.
    for round in 0..3 {
        let mut set = String::new();
        let stuck = tone_heard(
            &fs,
            &mut esl,
            &cust_a,
            &agent_a,
            &format!("stuck{round}"),
            250,
            &mut |esl| set = tap_only(esl, &cust_b, "set"),
        );
        assert_eq!(set, "+OK set", "fault module");
        assert!(
            stuck < 0.01,
            "round {round}: while FreeSWITCH skips our bug the agent hears nothing (peak {stuck})"
        );
        // The fault really bit: our READ_REPLACE stopped running (that alone raises the
        // error), and the dispatcher's repair cleared the flag.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        let skipped = |seen: &[EslEvent]| {
            seen.iter()
                .filter(|e| e.get("SecurePay-Error-Code") == Some("media-bug-skipped"))
                .count()
        };
        while Instant::now() < deadline && skipped(&seen) == 0 {
            seen.extend(ev.drain(Duration::from_millis(200)));
        }
        seen.extend(ev.drain(Duration::from_millis(300)));
        assert_eq!(
            skipped(&seen),
            1,
            "round {round}: one media-bug-skipped error: {seen:?}"
        );
        assert!(
            seen.iter()
                .filter(|e| e.get("SecurePay-Error-Code") == Some("media-bug-skipped"))
                .all(|e| e.get("Unique-ID") == Some(cust_b.as_str())),
            "on the customer's channel"
        );
        assert_eq!(
            tap_only(&mut esl, &cust_b, "get"),
            "+OK 0",
            "round {round}: the repair cleared the flag"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Repaired: the customer is heard again and in-band keys are captured and masked.
    std::thread::sleep(Duration::from_millis(300));
    let after = tone_heard(&fs, &mut esl, &cust_a, &agent_a, "after", 300, &mut |_| {});
    assert!(after > 0.05, "the customer is heard again (peak {after})");
    let p = fs.rec("fault_after_keys.wav");
    record(&mut esl, &agent_a, "start", &p);
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    record(&mut esl, &agent_a, "stop", &p);
    let d = multimon_digits(&p);
    assert!(
        d.is_empty(),
        "masked after the repair: multimon-ng decodes {d:?}"
    );
    let status = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(!status.contains(PAN), "status leaks the card number");
    let log = fs.log_text();
    assert!(!log.contains(PAN), "the log holds the card number");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}
