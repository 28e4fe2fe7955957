//! Issue #10, memory: after a secure call ends (submit, cancel, stop, hangup) a core dump of the
//! LIVE Asterisk process (`gcore`, run on the host against the chroot's PID) holds no run of 8
//! or more consecutive digits of the test card, neither as ASCII nor as digit values 0-9, nor
//! the security code next to the expiry. Control: a dump taken during entry (card, expiry and
//! code captured, session not ended) does find the card's digits in the encoding we use
//! (ASCII in `SecretDigits` and the duplicate-suppression ring); a synthetic buffer shows the
//! scanner finds the value encoding too.
//!
//! What it covers: the key presses reach Asterisk only as in-band tones through Local channels
//! (`Playtones` on the scripted phone), so the audio frames carry samples, never digit bytes,
//! and no Asterisk DTMF frame, AMI DTMF event or channel variable ever holds a digit: our module
//! is the only holder of digit bytes, and the scan judges exactly what it keeps. The submit path
//! includes the connector's hand-off (JSON body, TLS to a loopback test server).
//! What it cannot cover: out-of-band digits (RFC 4733 packets, SIP INFO bodies, Asterisk's
//! DTMF frames) are held by Asterisk/pjproject buffers we do not control; registers and memory
//! freed by the allocator that a dump happens to miss are not a proof for every instant; a
//! dump is a snapshot, so this shows the state after the call, not during it.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use asterisk::{https_server, phone_dialplan, pki, Call, Instance, BASE_MODULES, WAIT};

/// No '0' in the card, so value-encoded windows never match zero-filled memory by accident.
const PAN: &str = "4556737586899855";
const EXPIRY: &str = "1230";
const CVV: &str = "291";

/// The patterns searched for: every 8-digit window of the card and expiry+code, as ASCII and
/// as digit values.
fn patterns() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let b = PAN.as_bytes();
    for i in 0..=b.len() - 8 {
        let w = &b[i..i + 8];
        v.push((format!("card[{i}..{}] ascii", i + 8), w.to_vec()));
        v.push((
            format!("card[{i}..{}] values", i + 8),
            w.iter().map(|c| c - b'0').collect(),
        ));
    }
    let ec = format!("{EXPIRY}{CVV}");
    v.push(("expiry+code ascii".into(), ec.as_bytes().to_vec()));
    v.push((
        "expiry+code values".into(),
        ec.bytes().map(|c| c - b'0').collect(),
    ));
    v
}

/// Names of the patterns found in `data`.
fn scan(data: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, p) in patterns() {
        let first = p[0];
        let hit = data
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == first)
            .any(|(i, _)| data.get(i..i + p.len()) == Some(p.as_slice()));
        if hit {
            found.push(name);
        }
    }
    found
}

/// `gcore` of the live process; returns the core file's path.
fn dump(pid: u32, tag: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("sp-core-{tag}-{}", std::process::id()));
    let out = Command::new("gcore")
        .arg("-o")
        .arg(&base)
        .arg(pid.to_string())
        .output()
        .expect("run gcore");
    let core = PathBuf::from(format!("{}.{pid}", base.display()));
    assert!(
        core.is_file(),
        "gcore {pid} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    core
}

fn scan_core(core: &Path) -> Vec<String> {
    let data = std::fs::read(core).expect("read core");
    assert!(
        data.len() > 1_000_000,
        "core dump too small: {}",
        data.len()
    );
    let f = scan(&data);
    let _ = std::fs::remove_file(core);
    f
}

#[test]
fn scanner_finds_both_encodings() {
    let mut buf = vec![0u8; 4096];
    assert!(scan(&buf).is_empty());
    buf[100..108].copy_from_slice(&PAN.as_bytes()[3..11]);
    let vals: Vec<u8> = PAN.bytes().map(|c| c - b'0').collect();
    buf[2000..2016].copy_from_slice(&vals);
    let ec: Vec<u8> = format!("{EXPIRY}{CVV}").bytes().map(|c| c - b'0').collect();
    buf[3000..3007].copy_from_slice(&ec);
    let f = scan(&buf);
    assert!(f.contains(&"card[3..11] ascii".to_string()), "{f:?}");
    assert!(f.contains(&"card[0..8] values".to_string()), "{f:?}");
    assert!(f.contains(&"expiry+code values".to_string()), "{f:?}");
}

#[test]
fn no_card_digits_in_asterisk_memory_after_each_way_a_secure_call_ends() {
    let pki = pki();
    let (https_port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_mem","error_code":null,"error_message":null}"#,
    );
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{https_port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 5000\n"
    );
    let inst = Instance::start(
        "memory",
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("test-ca.pem", &pki.ca_pem)],
        BASE_MODULES,
    );
    let mut ami = inst.ami();
    // baseline: nothing before any call
    let base = scan_core(&dump(inst.pid, "baseline"));
    assert!(base.is_empty(), "card digits before any call: {base:?}");

    let keys = format!("{PAN}#{EXPIRY}{CVV}");
    let mut report = Vec::new();
    for (i, path) in ["submit", "cancel", "stop", "hangup"].iter().enumerate() {
        let c = Call::originate(&mut ami, &format!("m{i}"), &[]);
        let r = c.securepay(&mut ami, &[("Command", "start")]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        let mut c = c;
        c.key(&mut ami, "", &keys); // in-band tones only
        ami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
            .unwrap_or_else(|| panic!("{path}: card not captured"));
        // CONTROL: during entry the module holds the digits, and the scan sees them
        let during = scan_core(&dump(inst.pid, &format!("{path}-during")));
        assert!(
            during
                .iter()
                .any(|n| n.ends_with("ascii") && n.starts_with("card")),
            "{path}: control: a dump during entry must show the card's digits: {during:?}"
        );
        match *path {
            "submit" => {
                let r = c.securepay(&mut ami, &[("Command", "submit")]);
                assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
                ami.wait_event(
                    WAIT,
                    "SecurePaySubmit",
                    &[("Channel", &c.customer), ("SecurePay-Result", "success")],
                )
                .expect("submit success");
                let got = received.lock().unwrap().clone();
                assert_eq!(
                    got.last().map(|b| b["cardnumber"].clone()),
                    Some(PAN.into())
                );
            }
            "cancel" | "stop" => {
                let r = c.securepay(&mut ami, &[("Command", path)]);
                assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
                let ev = if *path == "cancel" {
                    "SecurePayCancel"
                } else {
                    "SecurePayStop"
                };
                ami.wait_event(WAIT, ev, &[("Channel", &c.customer)])
                    .unwrap_or_else(|| panic!("{ev}"));
            }
            _ => {
                let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
                assert_eq!(r.get("Response"), Some("Success"));
                ami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
                    .expect("stop on hangup");
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        // the call is still up except on the hangup path: the live PBX is dumped
        let after = scan_core(&dump(inst.pid, &format!("{path}-after")));
        report.push(format!("{path}: during={} after={after:?}", during.len()));
        if !after.is_empty() {
            report.push(format!("{path}: FOUND after end: {after:?}"));
        }
        let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{report:#?}");
    assert!(
        !report.iter().any(|l| l.contains("FOUND")),
        "card digits left in memory: {report:#?}"
    );
}
