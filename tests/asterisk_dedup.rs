//! Issue #17 end to end on a real Asterisk 22 over PJSIP/RTP on loopback: a "phone" Asterisk
//! (no secure_pay module) calls the PBX running res_secure_pay and keys the card:
//! (a) every key on two paths at once: SIP INFO and in-band tones together (Asterisk as a
//!     phone cannot send audio while it sends an RFC 4733 event, so RFC 4733 + in-band at once
//!     is covered by the core property tests only);
//! (b) the path switching mid-number with a repeated key at the switch (RFC 4733 -> in-band
//!     and SIP INFO -> in-band, 100 ms on / 100 ms off, card 4111111111111111: the issue's
//!     report, where the first in-band '1' used to be dropped);
//! (c) fast keying, 50 ms on / 50 ms off, on one path (RFC 4733, SIP INFO, in-band).
//! Each time the card reaches the (loopback HTTPS) connector exactly: 16 digits, Luhn-valid,
//! with the expiry and security code.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{free_udp_port, pjsip_conf, SIP_MODULES};
use asterisk::{https_server, phone_dialplan, pki, playtones_arg, Call, Instance, BASE_MODULES};

const PAN: &str = "4111111111111111";
const EXPIRY: &str = "1230";
const CVV: &str = "737";

/// The phone's script: waits for GLOBAL(DDGO_<call>), then starts tones T1 (in the
/// background), sends KEYS out of band (SendDTMF, BETWEEN/DUR ms), then plays tones T2 for
/// WAIT seconds, then reports UserEvent DDDone. With DDSYNC=1 it sends each key on both paths
/// from the same start instead: per key, the tones DDTK_<call>_<i> in the background and
/// SendDTMF of that key, so the two paths carry one press together (as a phone's keypad does)
/// instead of two free-running timers drifting apart over the number.
const PHONE_DD: &str = r#"
[dd]
exten => customer,1,Answer()
 same => n(ddwait),GotoIf($["${GLOBAL(DDGO_${CALLNAME})}" = "1"]?ddgo)
 same => n,Wait(0.1)
 same => n,Goto(ddwait)
 same => n(ddgo),GotoIf($["${GLOBAL(DDSYNC_${CALLNAME})}" = "1"]?ddsync)
 same => n,GotoIf($["${GLOBAL(DDT1_${CALLNAME})}" = ""]?ddkeys)
 same => n,Playtones(${GLOBAL(DDT1_${CALLNAME})})
 same => n(ddkeys),GotoIf($["${GLOBAL(DDK_${CALLNAME})}" = ""]?ddt2)
 same => n,SendDTMF(${GLOBAL(DDK_${CALLNAME})},${GLOBAL(DDB_${CALLNAME})},${GLOBAL(DDD_${CALLNAME})})
 same => n(ddt2),GotoIf($["${GLOBAL(DDT2_${CALLNAME})}" = ""]?dddone)
 same => n,Playtones(${GLOBAL(DDT2_${CALLNAME})})
 same => n,Wait(${GLOBAL(DDW_${CALLNAME})})
 same => n(dddone),StopPlaytones()
 same => n,UserEvent(DDDone,Call: ${CALLNAME})
 same => n,Wait(600)
 same => n(ddsync),Set(K=${GLOBAL(DDK_${CALLNAME})})
 same => n,Set(I=0)
 same => n(ddloop),GotoIf($[${I} >= ${LEN(${K})}]?ddsyncend)
 same => n,Playtones(${GLOBAL(DDTK_${CALLNAME}_${I})})
 same => n,SendDTMF(${K:${I}:1},${GLOBAL(DDB_${CALLNAME})},${GLOBAL(DDD_${CALLNAME})})
 same => n,Set(I=$[${I} + 1])
 same => n,Goto(ddloop)
 same => n(ddsyncend),Wait(0.6)
 same => n,Goto(dddone)
"#;

struct Plan {
    /// each key on both paths from one start (per-key tones + SendDTMF), see PHONE_DD
    sync: bool,
    /// background tones started before the out-of-band keys
    t1: String,
    keys: String,
    between: u32,
    dur: u32,
    /// tones after the out-of-band keys
    t2: String,
    wait_s: f64,
}

fn setvar(ami: &mut asterisk::Ami, k: &str, v: &str) {
    let r = ami.action(&[("Action", "Setvar"), ("Variable", k), ("Value", v)]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
}

/// Audio keeps flowing after the last tone (the phone stops sending RTP when its tone list
/// ends, and a tone's end is only confirmed by the audio after it), as a real phone's does.
fn tail_silence(tones: &str) -> String {
    format!("{tones},!0/500")
}

fn silence_then(ms: u32, tones: &str) -> String {
    format!("!0/{ms},{tones}")
}

#[test]
fn repeated_keys_across_paths_and_fast_keying_are_captured_exactly() {
    let pki = pki();
    let (https_port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_dd","error_code":null,"error_message":null}"#,
    );
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{https_port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 5000\n"
    );
    let pbx_port = free_udp_port();
    let phone_port = free_udp_port();
    let modules = format!("{BASE_MODULES} {SIP_MODULES}");
    let mut pbx_sip = pjsip_conf(pbx_port, &[("phone", "rfc4733", phone_port)], "sp-in");
    pbx_sip.push_str("[phone]\ntype=identify\nendpoint=phone\nmatch=127.0.0.1\n");
    let pbx_ext = format!(
        "{}\n[sp-in]\nexten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n same => n,Goto(sp,inbound,1)\n",
        phone_dialplan()
    );
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    let pbx = Instance::start(
        "ddpbx",
        &pbx_ext,
        &[
            ("pjsip.conf", &pbx_sip),
            ("rtp.conf", &rtp(35000)),
            ("secure_pay.conf", &conf),
            ("test-ca.pem", &pki.ca_pem),
        ],
        &modules,
    );
    let mut phone_sip = pjsip_conf(
        phone_port,
        &[
            ("pbx-rfc", "rfc4733", pbx_port),
            ("pbx-info", "info", pbx_port),
        ],
        "sp",
    );
    phone_sip.push_str("[pbx-rfc]\ntype=identify\nendpoint=pbx-rfc\nmatch=127.0.0.1\n");
    let phone = Instance::start_with(
        "ddphone",
        &format!("{}{PHONE_DD}", phone_dialplan()),
        &[("pjsip.conf", &phone_sip), ("rtp.conf", &rtp(36000))],
        &modules,
        false,
    );
    let mut pami = pbx.ami();
    let mut fami = phone.ami();

    let all = format!("{PAN}#{EXPIRY}{CVV}");
    let (first, rest) = all.split_at(8); // "41111111" | "11111111#1230737"
    let tone_s =
        |keys: &str, on: u32, off: u32| keys.chars().count() as f64 * f64::from(on + off) / 1000.0;
    // SendDTMF waits 100 ms before its first key and sends SIP INFO at key release: in (a)
    // each key's tones start with the same 100 ms of silence, key by key, so both paths carry
    // each press at the same time.
    let cases: Vec<(&str, &str, Plan)> = vec![
        (
            "a-info+inband",
            "pbx-info",
            Plan {
                sync: true,
                t1: String::new(),
                keys: all.clone(),
                between: 100,
                dur: 150,
                t2: String::new(),
                wait_s: 0.0,
            },
        ),
        (
            "b-rfc4733-then-inband",
            "pbx-rfc",
            Plan {
                sync: false,
                t1: String::new(),
                keys: first.to_owned(),
                between: 100,
                dur: 100,
                t2: tail_silence(&playtones_arg(rest, 100, 100)),
                wait_s: tone_s(rest, 100, 100) + 0.6,
            },
        ),
        (
            "b-info-then-inband",
            "pbx-info",
            Plan {
                sync: false,
                t1: String::new(),
                keys: first.to_owned(),
                between: 100,
                dur: 100,
                t2: tail_silence(&playtones_arg(rest, 100, 100)),
                wait_s: tone_s(rest, 100, 100) + 0.6,
            },
        ),
        (
            "c-rfc4733-50ms",
            "pbx-rfc",
            Plan {
                sync: false,
                t1: String::new(),
                keys: all.clone(),
                between: 50,
                dur: 50,
                t2: String::new(),
                wait_s: 0.0,
            },
        ),
        (
            "c-info-50ms",
            "pbx-info",
            Plan {
                sync: false,
                t1: String::new(),
                keys: all.clone(),
                between: 50,
                dur: 50,
                t2: String::new(),
                wait_s: 0.0,
            },
        ),
        (
            "c-inband-50ms",
            "pbx-rfc",
            Plan {
                sync: false,
                t1: String::new(),
                keys: String::new(),
                between: 50,
                dur: 50,
                t2: tail_silence(&playtones_arg(&all, 50, 50)),
                wait_s: tone_s(&all, 50, 50) + 0.6,
            },
        ),
    ];
    let mut failures = Vec::new();
    // SECUREPAY_DEDUP_CASE=<name part> runs only the matching cases (debugging).
    let only = std::env::var("SECUREPAY_DEDUP_CASE").unwrap_or_default();
    for (i, (name, endpoint, plan)) in cases.iter().enumerate() {
        if !name.contains(only.as_str()) {
            continue;
        }
        let call = format!("dd{i}");
        for (k, v) in [
            ("DDT1", plan.t1.clone()),
            ("DDK", plan.keys.clone()),
            ("DDB", plan.between.to_string()),
            ("DDD", plan.dur.to_string()),
            ("DDT2", plan.t2.clone()),
            ("DDW", format!("{:.2}", plan.wait_s)),
            ("DDGO", "0".to_owned()),
            ("DDSYNC", if plan.sync { "1" } else { "0" }.to_owned()),
        ] {
            setvar(&mut fami, &format!("GLOBAL({k}_{call})"), &v);
        }
        if plan.sync {
            // per key: SendDTMF's 100 ms quiet time, then the tone for DUR ms with the key
            for (n, key) in plan.keys.chars().enumerate() {
                let tones = silence_then(100, &playtones_arg(&key.to_string(), plan.dur, 500));
                setvar(&mut fami, &format!("GLOBAL(DDTK_{call}_{n})"), &tones);
            }
        }
        let r = fami.action(&[
            ("Action", "Originate"),
            ("Channel", &format!("PJSIP/call-{call}@{endpoint}")),
            ("Context", "dd"),
            ("Exten", "customer"),
            ("Priority", "1"),
            ("Variable", &format!("__CALLNAME={call}")),
            ("Async", "true"),
        ]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        let c = Call::wait_up(&pami, &call);
        let r = c.securepay(&mut pami, &[("Command", "start")]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        std::thread::sleep(Duration::from_millis(300));
        let posts_before = received.lock().unwrap().len();
        setvar(&mut fami, &format!("GLOBAL(DDGO_{call})"), "1");
        fami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "DDDone"), ("Call", &call)],
        )
        .unwrap_or_else(|| panic!("{name}: the phone did not finish"));
        // The phone has sent every key; a loaded PBX may still be reading the last ones, so
        // wait for the session to complete (a lost key times out and is reported below).
        pami.wait_event(
            Duration::from_secs(10),
            "SecurePayComplete",
            &[("Channel", &c.customer)],
        );
        let card_field: Vec<String> = asterisk::sp_events_of(&pami, &c.customer)
            .iter()
            .filter(|m| m.event() == Some("SecurePayField"))
            .map(|m| {
                format!(
                    "{} {} len={} {}",
                    m.get("SecurePay-Field").unwrap_or(""),
                    m.get("SecurePay-Result").unwrap_or(""),
                    m.get("SecurePay-Length").unwrap_or(""),
                    m.get("SecurePay-Error-Type").unwrap_or("")
                )
            })
            .collect();
        let r = c.securepay(&mut pami, &[("Command", "submit")]);
        if r.get("Response") != Some("Success") {
            let evs: Vec<String> = asterisk::sp_events_of(&pami, &c.customer)
                .iter()
                .map(|m| {
                    format!(
                        "{} {} {}",
                        m.event().unwrap_or(""),
                        m.get("SecurePay-Field").unwrap_or(""),
                        m.get("SecurePay-Length").unwrap_or("")
                    )
                })
                .collect();
            failures.push(format!(
                "{name}: submit refused ({}); fields: {card_field:?}; events: {evs:?}",
                r.text().replace('\n', " ")
            ));
        } else {
            let ok = pami.wait_event(
                Duration::from_secs(20),
                "SecurePaySubmit",
                &[("Channel", &c.customer), ("SecurePay-Result", "success")],
            );
            let got = received.lock().unwrap().clone();
            let b = got.get(posts_before).cloned();
            let exact = ok.is_some()
                && b.as_ref().is_some_and(|b| {
                    b["cardnumber"] == PAN
                        && b["cvv"] == CVV
                        && b["expiry_month"] == "12"
                        && b["expiry_year"] == "2030"
                });
            if !exact {
                let len = b
                    .as_ref()
                    .and_then(|b| b["cardnumber"].as_str().map(str::len));
                failures.push(format!(
                    "{name}: not captured exactly (card length {len:?}); fields: {card_field:?}"
                ));
            }
        }
        let _ = pami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
        pami.wait_event(
            Duration::from_secs(20),
            "SecurePayStop",
            &[("Channel", &c.customer)],
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
