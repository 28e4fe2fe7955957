//! Fail-closed proofs for mod_secure_pay on a real FreeSWITCH with SIP customer legs on
//! 127.0.0.1 (PCMU; RFC 2833 or SIP INFO) bridged to a loopback agent (issue #10):
//!
//! - `concurrent_starts_never_leak`: 100 rounds of two `bgapi uuid_secure_pay <uuid> start`
//!   sent back to back on two event-socket connections, then out-of-band keys (RFC 2833 in even
//!   rounds, SIP INFO in odd ones) and in-band tones. Each round: exactly one `+OK secure mode
//!   on` and one "already active"; no DTMF event on the agent (or customer) legs, no
//!   `digits_dialed` in any leg's hangup record, nothing the judges decode on the agent's
//!   recording. Two control rounds without secure mode show the same judges see the keys.
//! - `unload_and_reload_during_a_secure_call`: `unload` and `reload` of mod_secure_pay during a
//!   secure call are refused (the module stays, the call stays secure); `unload -f` keeps the
//!   call masked until it ends; after `load` the same call can be stopped, and then the keys
//!   reach the agent (control).
//!
//! Judges we did not write: multimon-ng and spandsp (default and permissive) on the agent
//! recordings, FreeSWITCH's own DTMF and CHANNEL_HANGUP_COMPLETE events. Needs FreeSWITCH at $FREESWITCH_PREFIX, else SKIPPED.
//! `SECURE_PAY_RACE_ROUNDS` overrides the 100 rounds.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;
mod judges;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freeswitch_support::*;

/// Both independent judges (multimon-ng, spandsp default + permissive) on a recording.
fn judge(wav: &std::path::Path) -> judges::Verdict {
    assert!(wav.is_file(), "recording {} missing", wav.display());
    judges::judge_all(&judges::load_with_sox(wav, 8000), 8000)
}

/// Immediate repeats collapsed (a judge may report one press twice).
fn collapse(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

/// Every judge decodes `digits` (in order, repeats collapsed).
fn all_decode(v: &judges::Verdict, digits: &str) -> bool {
    [&v.multimon, &v.spandsp, &v.spandsp_permissive]
        .iter()
        .all(|d| collapse(d).contains(digits))
}

/// Calls in flight at once.
const PARALLEL: usize = 8;

fn options() -> Options {
    let base = 40000 + (std::process::id() as u16 % 90) * 200;
    Options {
        sip: true,
        rtp_ports: Some((base, base + 199)),
        ..Options::default()
    }
}

/// Keys `digits` out of band from the customer's phone (the outbound SIP leg), ~200 ms apart.
fn key_out_of_band(esl: &mut Esl, cust_a: &str, digits: &str) {
    send_keys(esl, cust_a, digits, 200);
    std::thread::sleep(Duration::from_millis(400));
}

/// Collects DTMF and CHANNEL_HANGUP_COMPLETE events in the background.
struct Watcher {
    events: Arc<Mutex<Vec<EslEvent>>>,
}

impl Watcher {
    fn start(fs: &FreeSwitch) -> Watcher {
        let mut ev = fs.esl();
        ev.subscribe("plain DTMF CHANNEL_HANGUP_COMPLETE");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || loop {
            if let Some(e) = ev.next_event(Duration::from_millis(200)) {
                sink.lock().unwrap().push(e);
            }
            if Arc::strong_count(&sink) == 1 {
                return;
            }
        });
        Watcher { events }
    }

    fn dtmf_on(&self, legs: &[&str]) -> Vec<(String, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.get("Event-Name") == Some("DTMF"))
            .filter(|e| legs.contains(&e.get("Unique-ID").unwrap_or("")))
            .map(|e| {
                (
                    e.get("Unique-ID").unwrap_or("").to_string(),
                    e.get("DTMF-Digit").unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// `digits_dialed` of a leg's hangup record (waits for it); "none" if no key was logged.
    fn digits_dialed(&self, leg: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.get("Event-Name") == Some("CHANNEL_HANGUP_COMPLETE"))
                .find(|e| e.get("Unique-ID") == Some(leg))
                .map(|e| {
                    e.get("variable_digits_dialed")
                        .unwrap_or("none")
                        .to_string()
                });
            if let Some(d) = found {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no CHANNEL_HANGUP_COMPLETE for {leg}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends `bgapi <cmd>` with our own Job-UUID on `esl` (subscribed to BACKGROUND_JOB), without
/// waiting.
fn bgapi_send(esl: &mut Esl, cmd: &str, job: &str) {
    esl.send_raw(&format!("bgapi {cmd}\nJob-UUID: {job}\n\n"))
        .expect("send bgapi");
}

/// The body of the BACKGROUND_JOB event of `job` (every subscriber sees every job's event).
fn bgapi_result(esl: &mut Esl, job: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(e) = esl.next_event(Duration::from_millis(500)) {
            if e.get("Event-Name") == Some("BACKGROUND_JOB") && e.get("Job-UUID") == Some(job) {
                return e.body.clone();
            }
        }
    }
    panic!("no BACKGROUND_JOB result for {job}");
}

struct Round {
    n: usize,
    secure: bool,
    legs: [String; 3], // customer (inbound SIP), agent A, agent B
    verdict: judges::Verdict,
}

/// One call: originate, (race two starts), key out-of-band and in-band digits, hang up.
fn round(fs: &FreeSwitch, n: usize, secure: bool) -> Round {
    let dtmf_type = if n % 2 == 0 { "rfc2833" } else { "info" };
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_sip(fs, &mut esl, &format!("sipcust{}", 1000 + n), dtmf_type);
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(300));
    let rec = fs.rec(&format!("race{n}_agent.wav"));
    record(&mut esl, &agent_a, "start", &rec);
    if secure {
        let mut e1 = fs.esl();
        let mut e2 = fs.esl();
        e1.subscribe("plain BACKGROUND_JOB");
        e2.subscribe("plain BACKGROUND_JOB");
        let cmd = format!("uuid_secure_pay {cust_b} start");
        let (j1, j2) = (new_uuid(&mut esl), new_uuid(&mut esl));
        bgapi_send(&mut e1, &cmd, &j1);
        if n % 3 == 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        bgapi_send(&mut e2, &cmd, &j2);
        let answers = [bgapi_result(&mut e1, &j1), bgapi_result(&mut e2, &j2)];
        let started = answers
            .iter()
            .filter(|a| a.starts_with("+OK secure mode on"))
            .count();
        let already = answers
            .iter()
            .filter(|a| a.starts_with("-ERR") && a.contains("already active"))
            .count();
        assert_eq!(
            (started, already),
            (1, 1),
            "round {n}: two racing starts answered {answers:?}"
        );
        let st = esl.api(&format!("uuid_secure_pay {cust_b} status"));
        assert!(st.starts_with("+OK active"), "round {n}: status {st}");
        let bugs = esl.api(&format!("uuid_buglist {cust_b}"));
        assert_eq!(
            bugs.matches("secure_pay").count(),
            1,
            "round {n}: exactly one secure_pay bug: {bugs}"
        );
    }
    key_out_of_band(&mut esl, &cust_a, "4111");
    play_tones(&mut esl, &cust_a, "159");
    key_out_of_band(&mut esl, &cust_a, "1230");
    if secure {
        let st = esl.api(&format!("uuid_secure_pay {cust_b} status"));
        assert!(
            st.starts_with("+OK active"),
            "round {n}: still secure: {st}"
        );
    }
    record(&mut esl, &agent_a, "stop", &rec);
    let verdict = judge(&rec);
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    Round {
        n,
        secure,
        legs: [cust_b, agent_a, agent_b],
        verdict,
    }
}

#[test]
fn concurrent_starts_never_leak() {
    let Some(prefix) = prefix() else { return };
    let rounds: usize = std::env::var("SECURE_PAY_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let fs = Arc::new(FreeSwitch::start(&prefix, &options()));
    let watch = Watcher::start(&fs);
    let t0 = Instant::now();

    // Controls first (rfc2833 and info), then the secure rounds, PARALLEL at a time.
    let jobs: Vec<(usize, bool)> = [(0, false), (1, false)]
        .into_iter()
        .chain((0..rounds).map(|i| (i + 2, true)))
        .collect();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (fs, jobs, next, results) = (
                Arc::clone(&fs),
                Arc::clone(&jobs),
                Arc::clone(&next),
                Arc::clone(&results),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(n, secure)) = jobs.get(i) else {
                    return;
                };
                let r = round(&fs, n, secure);
                results.lock().unwrap().push(r);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("round failed (see its panic above)");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(results.len(), rounds + 2);

    let mut secure_legs = HashSet::new();
    for r in &results {
        let legs: Vec<&str> = r.legs.iter().map(String::as_str).collect();
        let dtmf = watch.dtmf_on(&legs);
        let dialed: Vec<String> = legs.iter().map(|l| watch.digits_dialed(l)).collect();
        if r.secure {
            secure_legs.extend(r.legs.iter().cloned());
            assert!(
                r.verdict.is_silent(),
                "round {}: the judges decode the agent's recording: {}",
                r.n,
                r.verdict
            );
            assert!(
                dtmf.is_empty(),
                "round {}: DTMF events leaked: {dtmf:?}",
                r.n
            );
            for (leg, d) in legs.iter().zip(&dialed) {
                assert_eq!(d, "none", "round {}: digits_dialed on {leg}", r.n);
            }
        } else {
            // Control: the same judges see the keys when secure mode is off.
            assert!(
                all_decode(&r.verdict, "159"),
                "control {}: every judge decodes 159: {}",
                r.n,
                r.verdict
            );
            let agent_dtmf: String = dtmf
                .iter()
                .filter(|(u, _)| u == &r.legs[1] || u == &r.legs[2])
                .map(|(_, d)| d.as_str())
                .collect();
            assert!(
                agent_dtmf.contains("4111") || agent_dtmf.contains("41"),
                "control {}: DTMF events on the agent: {agent_dtmf:?}",
                r.n
            );
            assert_ne!(dialed[0], "none", "control {}: digits_dialed", r.n);
        }
    }
    assert_eq!(secure_legs.len(), 3 * rounds);
    let log = fs.log_text();
    assert!(
        !log.contains("could not hook DTMF"),
        "a start hit the duplicate-hook failure"
    );
    println!(
        "race: {rounds} rounds + 2 controls in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Keys out of band and in band; returns (DTMF events on the agent legs, judges' verdict on
/// the agent's recording).
fn key_and_judge(
    fs: &FreeSwitch,
    esl: &mut Esl,
    watch: &Watcher,
    legs: (&str, &str, &str),
    tag: &str,
) -> (Vec<(String, String)>, judges::Verdict) {
    let (cust_a, agent_a, agent_b) = legs;
    let before = watch.dtmf_on(&[agent_a, agent_b]).len();
    let rec = fs.rec(&format!("unload_{tag}.wav"));
    record(esl, agent_a, "start", &rec);
    key_out_of_band(esl, cust_a, "5454");
    play_tones(esl, cust_a, "357");
    record(esl, agent_a, "stop", &rec);
    std::thread::sleep(Duration::from_millis(300));
    let dtmf = watch.dtmf_on(&[agent_a, agent_b]).split_off(before);
    (dtmf, judge(&rec))
}

#[test]
fn unload_and_reload_during_a_secure_call() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &options());
    let watch = Watcher::start(&fs);
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust1", "rfc2833");
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(300));
    let legs = (cust_a.as_str(), agent_a.as_str(), agent_b.as_str());

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");

    // unload / reload without -f: refused while the call is secure.
    let u = esl.api("unload mod_secure_pay");
    assert_eq!(
        esl.api("module_exists mod_secure_pay").trim(),
        "true",
        "unload during a secure call must be refused: {u}"
    );
    assert!(u.starts_with("-ERR"), "unload answer: {u}");
    let rl = esl.api("reload mod_secure_pay");
    assert!(rl.contains("-ERR unloading module"), "reload answer: {rl}");
    assert_eq!(esl.api("module_exists mod_secure_pay").trim(), "true");
    let st = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(
        st.starts_with("+OK active"),
        "after unload {u:?} / reload {rl:?}: {st}"
    );
    let (dtmf, dec) = key_and_judge(&fs, &mut esl, &watch, legs, "refused");
    assert!(dtmf.is_empty(), "after refused unload/reload: {dtmf:?}");
    assert!(dec.is_silent(), "after refused unload/reload: {dec}");
    assert!(
        fs.log_text().contains("is in use, cannot unload"),
        "the loader logged the refusal"
    );

    // unload -f: the module goes, the call stays masked until it ends.
    let _ = esl.api("unload -f mod_secure_pay");
    assert_eq!(
        esl.api("module_exists mod_secure_pay").trim(),
        "false",
        "forced unload removes the module"
    );
    let (dtmf, dec) = key_and_judge(&fs, &mut esl, &watch, legs, "forced");
    assert!(dtmf.is_empty(), "after unload -f: {dtmf:?}");
    assert!(dec.is_silent(), "after unload -f: {dec}");
    let bugs = esl.api(&format!("uuid_buglist {cust_b}"));
    assert!(bugs.contains("secure_pay"), "bug still attached: {bugs}");

    // load again: the same call is still secure and can be stopped; then keys pass (control).
    let l = esl.api("load mod_secure_pay");
    assert!(l.starts_with("+OK"), "load: {l}");
    let st = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(st.starts_with("+OK active"), "after load: {st}");
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let (dtmf, dec) = key_and_judge(&fs, &mut esl, &watch, legs, "control");
    let d: String = dtmf.iter().map(|(_, d)| d.as_str()).collect();
    assert!(d.contains("5454"), "control after stop: DTMF {dtmf:?}");
    assert!(all_decode(&dec, "357"), "control after stop: {dec}");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    assert_eq!(
        watch.digits_dialed(&cust_b),
        "5454",
        "only the control keys"
    );

    // With no secure call left, a plain unload proceeds.
    let u = esl.api("unload mod_secure_pay");
    assert_eq!(
        esl.api("module_exists mod_secure_pay").trim(),
        "false",
        "no secure call: unload proceeds ({u})"
    );
}

/// Plays a plain 1 kHz tone (not DTMF, so the masker passes it) into the customer channel and
/// keys `keys` out of band; returns the agent recording's peak amplitude.
fn tone_and_keys(
    fs: &FreeSwitch,
    esl: &mut Esl,
    cust_a: &str,
    agent_a: &str,
    keys: &str,
    tag: &str,
) -> f64 {
    let rec = fs.rec(&format!("media_{tag}.wav"));
    record(esl, agent_a, "start", &rec);
    let r = esl.api(&format!(
        "uuid_broadcast {cust_a} tone_stream://%(1200,0,1000) aleg"
    ));
    assert!(r.starts_with("+OK"), "uuid_broadcast: {r}");
    std::thread::sleep(Duration::from_millis(300));
    key_out_of_band(esl, cust_a, keys);
    std::thread::sleep(Duration::from_millis(600));
    record(esl, agent_a, "stop", &rec);
    peak(&rec)
}

/// Media leaving the core mid-call (signalled here by `pass_rfc2833`, which FreeSWITCH honours
/// only at media setup, so the call's media really stays in the core and the test can hear the
/// effect): the customer is muted and keys are dropped (neither forwarded nor captured), with
/// one `media-not-in-core` error; when it returns, audio and capture resume. Control: the same
/// tone before and after is heard on the agent's recording.
#[test]
fn media_leaving_the_core_mutes_and_drops_keys() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &options());
    let watch = Watcher::start(&fs);
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::error secure_pay::digit");
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust7", "rfc2833");
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(300));
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let count = |evs: &[EslEvent], sub: &str| {
        evs.iter()
            .filter(|e| e.get("Event-Subclass") == Some(sub))
            .count()
    };

    // In the core: the tone passes (control), keys are captured.
    let p_in = tone_and_keys(&fs, &mut esl, &cust_a, &agent_a, "41", "in");
    let evs = ev.drain(Duration::from_millis(300));
    assert!(
        p_in > 0.05,
        "control: the agent hears the tone (peak {p_in})"
    );
    assert_eq!(count(&evs, "secure_pay::digit"), 2, "keys captured");

    // Out of the core: muted, keys dropped, one error event.
    let r = esl.api(&format!("uuid_setvar {cust_b} pass_rfc2833 true"));
    assert!(r.starts_with("+OK"), "setvar: {r}");
    std::thread::sleep(Duration::from_millis(1500));
    let p_out = tone_and_keys(&fs, &mut esl, &cust_a, &agent_a, "56", "out");
    let evs = ev.drain(Duration::from_millis(300));
    assert!(
        p_out < 0.01,
        "media out: the agent hears nothing (peak {p_out})"
    );
    assert_eq!(count(&evs, "secure_pay::digit"), 0, "keys dropped: {evs:?}");
    let errors: Vec<_> = evs
        .iter()
        .filter(|e| e.get("SecurePay-Error-Code") == Some("media-not-in-core"))
        .collect();
    assert_eq!(errors.len(), 1, "one media-not-in-core error: {evs:?}");

    // Back in the core: audio and capture resume.
    let r = esl.api(&format!("uuid_setvar {cust_b} pass_rfc2833 false"));
    assert!(r.starts_with("+OK"), "setvar: {r}");
    std::thread::sleep(Duration::from_millis(1500));
    let p_back = tone_and_keys(&fs, &mut esl, &cust_a, &agent_a, "23", "back");
    let evs = ev.drain(Duration::from_millis(300));
    assert!(
        p_back > 0.05,
        "media back: tone heard again (peak {p_back})"
    );
    assert_eq!(count(&evs, "secure_pay::digit"), 2, "capture resumed");
    assert!(
        !evs.iter()
            .any(|e| e.get("SecurePay-Error-Code") == Some("media-not-in-core")),
        "no second error while in the core"
    );

    let dtmf = watch.dtmf_on(&[&agent_a, &agent_b, &cust_b]);
    assert!(dtmf.is_empty(), "no key reached any leg: {dtmf:?}");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    assert_eq!(watch.digits_dialed(&cust_b), "none");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// What secure mode costs FreeSWITCH on idle calls (masking silence, the dispatcher's timers
/// and media checks): N bridged loopback calls (SECURE_PAY_BENCH_CALLS, default 100), FreeSWITCH
/// CPU over 10 s without and then with secure mode on every call. Reports; asserts nothing
/// about speed. `cargo test --release --features freeswitch --test freeswitch_race --
/// --ignored --nocapture bench_idle`.
#[test]
#[ignore]
fn bench_idle_secure_calls() {
    let Some(prefix) = prefix() else { return };
    let n: usize = std::env::var("SECURE_PAY_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let mut esl = fs.esl();
    let calls: Vec<(String, String)> = (0..n)
        .map(|i| originate_customer(&mut esl, &format!("cust{}", 3000 + i)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_secs(10);
    let measure = || {
        let c0 = cpu_ticks(fs.pid());
        std::thread::sleep(window);
        cpu_ticks(fs.pid()) - c0
    };
    let plain = measure();
    for (_, b) in &calls {
        let r = esl.api(&format!("uuid_secure_pay {b} start"));
        assert!(r.starts_with("+OK"), "start: {r}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let secure = measure();
    let hz = 100.0; // USER_HZ
    println!("bench-idle: {n} idle bridged loopback calls, FreeSWITCH CPU over {window:?}");
    println!("  without secure mode: {:.2} s", plain as f64 / hz);
    println!("  with secure mode:    {:.2} s", secure as f64 / hz);
    println!(
        "  secure mode costs {:.2} ms CPU per call-second",
        (secure as f64 - plain as f64) / hz * 1000.0 / (n as f64 * window.as_secs_f64())
    );
    for (a, _) in &calls {
        let _ = esl.api(&format!("uuid_kill {a}"));
    }
}

/// FreeSWITCH shutting down with secure calls up (one stopped by the agent before, one still
/// secure, one mid-capture) exits cleanly (exit status 0, no crash from a bug or hook left
/// pointing into an unloaded library) and the module is really unloaded.
#[test]
fn process_exit_with_secure_calls_up() {
    let Some(prefix) = prefix() else { return };
    let mut fs = FreeSwitch::start(&prefix, &options());
    let mut esl = fs.esl();
    let mut custs = Vec::new();
    for n in 0..3 {
        let (a, b) = originate_sip(&fs, &mut esl, &format!("sipcust{}", 50 + n), "rfc2833");
        let r = esl.api(&format!("uuid_secure_pay {b} start"));
        assert!(r.starts_with("+OK"), "start: {r}");
        custs.push((a, b));
    }
    let r = esl.api(&format!("uuid_secure_pay {} stop", custs[0].1));
    assert!(r.starts_with("+OK"), "stop: {r}");
    key_out_of_band(&mut esl, &custs[2].0, "41");
    let st = esl.api(&format!("uuid_secure_pay {} status", custs[2].1));
    assert!(st.starts_with("+OK active"), "{st}");
    let _ = esl.send_raw("api fsctl shutdown\n\n");
    let status = fs.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "FreeSWITCH exit with secure calls up: {status:?}"
    );
    // The console (stdout) outlives mod_logfile: the module was unloaded, not kept mapped.
    let console = std::fs::read_to_string(fs.dir.join("stdout.log")).unwrap_or_default();
    assert!(
        console.contains("mod_secure_pay unloaded"),
        "module unloaded at exit"
    );
}
