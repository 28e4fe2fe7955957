//! Load: 100 concurrent secure loopback calls, each keying a full card in-band: every capture is
//! right (per-call card, checked through the masked status) and no agent recording decodes to a
//! single digit (multimon-ng), with a non-secure control call in the same run that does.
//!
//! Bench (not a test of speed; run by scripts/bench-freeswitch): FreeSWITCH's CPU time for the
//! same calls with and without secure mode, printed as a ratio.
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::{Duration, Instant};

use freeswitch_support::*;

/// A Luhn-valid 16-digit Visa number unique to `i`.
fn visa(i: u32) -> String {
    let body = format!("4{:014}", 10_000_000 + u64::from(i) * 7919);
    let mut sum = 0;
    for (k, c) in body.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap_or(0);
        if k % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

struct Call {
    cust_a: String,
    cust_b: String,
    agent_a: String,
    pan: String,
    rec: std::path::PathBuf,
}

fn setup_calls(fs: &FreeSwitch, esl: &mut Esl, n: u32, secure: bool, tag: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for i in 1..=n {
        let (cust_a, cust_b) = originate_customer(esl, &format!("cust{i}"));
        let (agent_a, _) = agent_legs(esl, &cust_b);
        let rec = fs.rec(&format!("{tag}_agent_{i}.wav"));
        let r = esl.api(&format!("uuid_record {agent_a} start {}", rec.display()));
        assert!(r.starts_with("+OK"), "record: {r}");
        if secure {
            let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
            assert!(r.starts_with("+OK"), "start {i}: {r}");
        }
        calls.push(Call {
            cust_a,
            cust_b,
            agent_a,
            pan: visa(i),
            rec,
        });
    }
    calls
}

/// Keys card + `#` + expiry + CVV in-band on every call at once; returns when played.
fn key_all(esl: &mut Esl, calls: &[Call]) {
    let mut longest = 0;
    for c in calls {
        let digits = format!("{}#1230123", c.pan);
        longest = longest.max(digits.len());
        let r = esl.api(&format!(
            "uuid_broadcast {} {} aleg",
            c.cust_a,
            tone_string(&digits, 90, 110)
        ));
        assert!(r.starts_with("+OK"), "broadcast: {r}");
    }
    std::thread::sleep(Duration::from_millis(400 + 200 * longest as u64 + 1500));
}

fn hangup_all(esl: &mut Esl, calls: &[Call]) {
    for c in calls {
        let _ = esl.api(&format!(
            "uuid_record {} stop {}",
            c.agent_a,
            c.rec.display()
        ));
        let _ = esl.api(&format!("uuid_kill {}", c.cust_a));
    }
}

#[test]
fn hundred_concurrent_secure_calls_capture_right_and_leak_nothing() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let mut esl = fs.esl();

    let n = 100;
    let mut calls = setup_calls(&fs, &mut esl, n, true, "load");
    // Control in the same run: call 0 is not in secure mode.
    let (ca, cb) = originate_customer(&mut esl, "cust1000");
    let (aa, _) = agent_legs(&mut esl, &cb);
    let ctrl_rec = fs.rec("load_control_agent.wav");
    let r = esl.api(&format!("uuid_record {aa} start {}", ctrl_rec.display()));
    assert!(r.starts_with("+OK"), "{r}");
    calls.push(Call {
        cust_a: ca,
        cust_b: cb,
        agent_a: aa,
        pan: visa(1000),
        rec: ctrl_rec.clone(),
    });

    let started = Instant::now();
    key_all(&mut esl, &calls);
    // Every secure call: capture complete with this call's card (masked: brand + last 4).
    let deadline = started + Duration::from_secs(60);
    for c in &calls[..n as usize] {
        loop {
            let s = esl.api(&format!("uuid_secure_pay {} status", c.cust_b));
            if s.contains("SecurePay-State: complete") {
                let last4 = &c.pan[c.pan.len() - 4..];
                assert!(
                    s.contains(&format!("SecurePay-Card-Number: ************{last4}")),
                    "call {} captured the wrong card: {s}",
                    c.cust_b
                );
                assert!(s.contains("SecurePay-Card-Brand: visa"), "{s}");
                assert!(!s.contains(&c.pan), "status leaks the card");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "call {} never completed: {s}",
                c.cust_b
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    hangup_all(&mut esl, &calls);
    std::thread::sleep(Duration::from_millis(1500));
    let mut leaked = Vec::new();
    for c in &calls[..n as usize] {
        let d = multimon_digits(&c.rec);
        if !d.is_empty() {
            leaked.push((c.rec.display().to_string(), d));
        }
    }
    assert!(
        leaked.is_empty(),
        "agent recordings with digits: {leaked:?}"
    );
    let ctrl = multimon_digits(&ctrl_rec);
    let expect = format!("{}#1230123", visa(1000));
    let mut collapsed = String::new();
    for ch in expect.chars() {
        if !collapsed.ends_with(ch) {
            collapsed.push(ch);
        }
    }
    assert!(
        ctrl.contains("#1230123") && ctrl.len() * 10 >= collapsed.len() * 8,
        "control call (not secure) must decode its digits under the same load: {ctrl:?} vs {collapsed:?}"
    );
    assert!(esl.api("status").contains("UP"));
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn run_bench(prefix: &std::path::Path, n: u32, secure: bool) -> (u64, Duration) {
    let fs = FreeSwitch::start(prefix, &Options::default());
    let mut esl = fs.esl();
    let calls = setup_calls(&fs, &mut esl, n, secure, if secure { "bs" } else { "bp" });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let c0 = cpu_ticks(fs.pid());
    key_all(&mut esl, &calls);
    let used = cpu_ticks(fs.pid()) - c0;
    let wall = t0.elapsed();
    hangup_all(&mut esl, &calls);
    (used, wall)
}

/// `scripts/bench-freeswitch` (or `cargo test --release --features freeswitch --test
/// freeswitch_load -- --ignored --nocapture bench`): FreeSWITCH CPU time with vs without
/// secure mode for N concurrent loopback calls keying a card (N from SECURE_PAY_BENCH_CALLS,
/// default 50). Reports; asserts nothing about speed.
#[test]
#[ignore]
fn bench_freeswitch_cpu_secure_vs_plain() {
    let Some(prefix) = prefix() else { return };
    let n = std::env::var("SECURE_PAY_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let (plain, wall_p) = run_bench(&prefix, n, false);
    let (secure, wall_s) = run_bench(&prefix, n, true);
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "bench-freeswitch: {n} concurrent loopback calls keying a card ({:.1} s / {:.1} s wall)",
        wall_p.as_secs_f64(),
        wall_s.as_secs_f64()
    );
    println!(
        "  FreeSWITCH CPU without secure mode: {:.2} s",
        plain as f64 / hz
    );
    println!(
        "  FreeSWITCH CPU with secure mode:    {:.2} s",
        secure as f64 / hz
    );
    println!(
        "  ratio secure/plain: {:.3}",
        secure as f64 / (plain.max(1)) as f64
    );
}
