//! Issue #17 end to end on a real FreeSWITCH over SIP: FreeSWITCH calls itself through a sofia
//! profile on 127.0.0.1 (PCMU); the customer's keys go out of band (RFC 2833 or SIP INFO,
//! `uuid_send_dtmf` on the calling leg) and/or in band (`uuid_broadcast` of tone_stream):
//! (a) every key on two paths at once (in-band tones and SIP INFO sent at key release);
//! (b) the path switching mid-number with a repeated key at the switch (RFC 2833 -> in-band,
//!     SIP INFO -> in-band; card 5555555555554444 switches between two 5s);
//! (c) fast keying, 50 ms on / 50 ms off, on one path (RFC 2833, SIP INFO, in-band).
//! Each time the loopback HTTPS connector receives exactly the keyed card (16 digits,
//! Luhn-valid), expiry and security code.
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

#[path = "connector_common/mod.rs"]
mod connector_common;
mod freeswitch_support;

use std::time::{Duration, Instant};

use connector_common::{http, Pki, TestServer, Versions};
use freeswitch_support::*;

const PAN: &str = "5555555555554444";
const EXPIRY: &str = "1230";
const CVV: &str = "737";

/// tone_stream of `digits` (on/off ms each), then a second of silence (the audio keeps
/// flowing after the last tone, as a phone's does; a tone's end is confirmed by what follows).
fn tones(lead_ms: u32, digits: &str, on: u32, off: u32) -> String {
    let t = tone_string(digits, on, off);
    let t = t
        .strip_prefix("file_string://silence_stream://400!")
        .unwrap_or(&t)
        .to_string();
    if lead_ms == 0 {
        format!("file_string://{t}!silence_stream://1000")
    } else {
        format!("file_string://silence_stream://{lead_ms}!{t}!silence_stream://1000")
    }
}

/// Sends `digits` out of band, one every `on + off` ms from `t0`, each lasting `on` ms.
fn keys_oob(esl: &mut Esl, leg: &str, digits: &str, on: u32, off: u32, t0: Instant) {
    for (i, d) in digits.chars().enumerate() {
        let at = t0 + Duration::from_millis(u64::from(on + off) * i as u64);
        if let Some(w) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        // FreeSWITCH keeps its default 250 ms unless the duration is above its 50 ms minimum.
        let r = esl.api(&format!("uuid_send_dtmf {leg} {d}@{}", on.max(51)));
        assert!(r.starts_with("+OK"), "uuid_send_dtmf: {r}");
    }
}

fn broadcast(esl: &mut Esl, leg: &str, s: &str) {
    let r = esl.api(&format!("uuid_broadcast {leg} {s} aleg"));
    assert!(r.starts_with("+OK"), "uuid_broadcast: {r}");
}

#[test]
fn repeated_keys_across_paths_and_fast_keying_are_captured_exactly() {
    let Some(prefix) = prefix() else { return };
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_dd","error_code":null,"error_message":null}"#,
        ),
    );
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            secure_pay_settings: vec![kv("connector", "acme"), kv("charge_amount", "100")],
            connectors: vec![(
                "acme".into(),
                vec![
                    kv("url", &format!("https://127.0.0.1:{}/pay", server.port)),
                    kv("ca_file", &pki.ca_file),
                    kv("timeout_ms", "5000"),
                ],
            )],
            ..Options::default()
        },
    );
    let all = format!("{PAN}{EXPIRY}{CVV}");
    let (first, rest) = all.split_at(8);
    type Case<'a> = (&'a str, &'a str, &'a dyn Fn(&mut Esl, &str));
    let a_both = |esl: &mut Esl, leg: &str| {
        // time the keys from the moment the tones really start playing on the calling leg
        let mut watch = fs.esl();
        watch.subscribe("plain PLAYBACK_START");
        broadcast(esl, leg, &tones(0, &all, 150, 100));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match watch.next_event(Duration::from_millis(200)) {
                Some(e) if e.get("Unique-ID") == Some(leg) => break,
                _ => {}
            }
        }
        let t0 = Instant::now();
        // FreeSWITCH sends SIP INFO when asked, i.e. at key-down if asked at the tone's start;
        // the module takes INFO as sent at key release (as Asterisk and RFC 4733 do), so the
        // test sends each INFO at its tone's end. Key-down INFO with the same press in-band
        // is a documented limit (docs/capture.md, "Duplicate suppression").
        // Measured here: the first tone reaches the secure leg about 240 ms after
        // PLAYBACK_START (media start-up on the calling leg), so each INFO goes at its tone's
        // end, 240 + 150 ms after it.
        keys_oob(esl, leg, &all, 150, 100, t0 + Duration::from_millis(390));
        std::thread::sleep(Duration::from_millis(1500));
    };
    // The calling leg writes audio all along (a phone sends RTP continuously; FreeSWITCH sends
    // RFC 2833 from its write path): silence while the keys go out of band, then the tones.
    let b_switch = |esl: &mut Esl, leg: &str| {
        let t0 = Instant::now();
        let oob_ms = 200 * first.len() as u32;
        broadcast(esl, leg, &tones(oob_ms, rest, 100, 100));
        keys_oob(esl, leg, first, 100, 100, t0);
        std::thread::sleep(Duration::from_millis(200 * rest.len() as u64 + 1500));
    };
    let c_oob = |esl: &mut Esl, leg: &str| {
        broadcast(esl, leg, "silence_stream://4000");
        keys_oob(esl, leg, &all, 51, 49, Instant::now());
        std::thread::sleep(Duration::from_millis(1500));
    };
    let c_inband = |esl: &mut Esl, leg: &str| {
        // 300 ms of silence first: the calling leg's media start-up cut into a first tone that
        // started with the broadcast (the card then failed at about one run in five).
        broadcast(esl, leg, &tones(300, &all, 50, 50));
        std::thread::sleep(Duration::from_millis(300 + 100 * all.len() as u64 + 1500));
    };
    let cases: Vec<Case> = vec![
        ("a-info+inband", "info", &a_both),
        ("b-rfc2833-then-inband", "rfc2833", &b_switch),
        ("b-info-then-inband", "info", &b_switch),
        ("c-rfc2833-50ms", "rfc2833", &c_oob),
        ("c-info-50ms", "info", &c_oob),
        ("c-inband-50ms", "rfc2833", &c_inband),
    ];
    let only = std::env::var("SECUREPAY_DEDUP_CASE").unwrap_or_default();
    let mut failures = Vec::new();
    // (case, call number); a retried case gets a new call number
    let mut plan: Vec<(usize, usize)> = (0..cases.len()).map(|i| (i, i)).collect();
    let mut k = 0;
    while k < plan.len() {
        let (ci, n) = plan[k];
        k += 1;
        let (name, dtmf_type, keying) = &cases[ci];
        if !name.contains(only.as_str()) {
            continue;
        }
        let mut case_fail: Vec<String> = Vec::new();
        let mut esl = fs.esl();
        // masked progress of this call (field, length, path of each key), shown on failure
        let mut progress = fs.esl();
        progress.subscribe("plain CUSTOM secure_pay::digit secure_pay::field");
        let (cust_a, cust_b) = originate_sip(&fs, &mut esl, &format!("cust7{n}"), dtmf_type);
        if *name == "c-inband-50ms" {
            // A jitter buffer on the customer's leg, as docs/capture.md advises for in-band
            // keying over SIP. Without it this FreeSWITCH (calling itself, both legs' soft
            // timers ticking together) now and then drops two packets of a 50 ms tone before
            // any media bug sees them: 10 of 91 first keyings lost a key on a quiet VM (master),
            // 0 of 64 with it (2026-12-07; docs/capture.md, "FreeSWITCH under load").
            let r = esl.api(&format!("uuid_jitterbuffer {cust_b} 60:200"));
            assert!(r.starts_with("+OK"), "{name}: jitter buffer: {r}");
        }
        std::thread::sleep(Duration::from_millis(500));
        let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
        assert!(r.starts_with("+OK"), "{name}: start: {r}");
        std::thread::sleep(Duration::from_millis(300));
        let before = server.received().len();
        keying(&mut esl, &cust_a);
        let status = esl.api(&format!("uuid_secure_pay {cust_b} status"));
        let r = esl.api(&format!("uuid_secure_pay {cust_b} submit"));
        let mut trail = || -> Vec<String> {
            progress
                .drain(Duration::from_millis(300))
                .iter()
                .filter(|e| e.get("Unique-ID") == Some(cust_b.as_str()))
                .map(|e| {
                    format!(
                        "{} {} {} {}",
                        e.get("Event-Subclass").unwrap_or(""),
                        e.get("SecurePay-Field").unwrap_or(""),
                        e.get("SecurePay-Length").unwrap_or(""),
                        e.get("SecurePay-Source")
                            .or(e.get("SecurePay-Result"))
                            .unwrap_or("")
                    )
                })
                .collect()
        };
        if !r.starts_with("+OK") {
            case_fail.push(format!(
                "{name}: submit refused: {r}; status: {status}; masked progress: {:?}",
                trail()
            ));
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.received().len() == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let got = server.received();
            match got.get(before) {
                Some(g)
                    if g.body["cardnumber"] == PAN
                        && g.body["cvv"] == CVV
                        && g.body["expiry_month"] == "12"
                        && g.body["expiry_year"] == "2030" => {}
                other => case_fail.push(format!(
                    "{name}: not captured exactly: card length {:?}",
                    other.and_then(|g| g.body["cardnumber"].as_str().map(str::len))
                )),
            }
        }
        let _ = esl.api(&format!("uuid_kill {cust_a}"));
        std::thread::sleep(Duration::from_millis(300));
        if !case_fail.is_empty() {
            if (*name == "c-inband-50ms" || *name == "a-info+inband") && n < 100 {
                // On a loaded machine FreeSWITCH's timer-driven RTP read replaces packets that
                // come late by filler frames and drops them: a 50 ms tone can lose 40 ms before
                // any media bug sees it (docs/capture.md, "FreeSWITCH under load"). In
                // `a-info+inband` each INFO is timed from a measured media start-up (about
                // 240 ms); when the tone reaches the secure leg later, the INFO lands before the
                // tone's end: key-down INFO, a documented limit (one key counted twice; seen
                // once on master in a fresh-clone CI run, 2026-12-07). One new call keys the
                // card again; a second failure fails the test.
                eprintln!("RETRY {name} once after: {case_fail:?}");
                plan.push((ci, n + 100));
            } else {
                failures.extend(case_fail);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
