//! Issue #16 on FreeSWITCH: the PBX's recordings of a secure call (docs/recording.md).
//!
//! A real SIP/RTP customer leg (FreeSWITCH calls itself on 127.0.0.1, PCMU, RFC 2833) bridged to
//! a loopback agent. The card is keyed as in-band tones (the only way key presses reach a
//! recording's audio); expiry and code go out-of-band. Judge: multimon-ng (not ours) on every
//! recording, wav and native `-in.PCMU` (converted with sox). Every "no digits" has controls in
//! the same file or call that the judge decodes: tones before start and after stop.
//!
//! - `native_recording_of_the_customer_leaks_without_secure_mode`: the control for the leak of
//!   the issue: a native-format recording of the customer (`-in.PCMU`) decodes the card.
//! - `native_recordings_are_paused_in_secure_mode_and_resumed_after`: option `recording=mask`
//!   (default): a native recording started before secure mode, one started during it and one
//!   resumed with `uuid_record ... resume` during it get nothing of the card; the wav recording
//!   keeps running with masked audio; `secure_pay::recording` events paused/resumed.
//! - `recording_pause_leaves_a_gap_over_the_secure_period_and_resumes`: option
//!   `recording=pause`: the customer's and the agent's recordings (and one started during secure
//!   mode) have a gap exactly over the secure period; resumed at stop with events.
//! - `recording_pause_resumes_after_a_timeout`: the same on the timeout exit path.
//! - `conference_with_a_sip_recorder_gets_no_card`: mod_conference with the customer (SIP), an
//!   agent and a SIP recorder that joins by INVITE; the customer keys the card in-band, the
//!   expiry as RFC 2833 and the code as SIP INFO; every recording decodes controls, no card.
//! - `tap_mode_eavesdrop_is_paused_in_secure_mode`: `native_eavesdrop ... read` hears no card.
//! - `another_modules_codec_payload_tap_is_paused_in_secure_mode`: codec-payload taps of
//!   functions secure_pay does not know (a test-only module's, one started before and one during
//!   secure mode) get nothing of the card; controls before start and after stop.
//! - `another_modules_replace_bug_put_ahead_of_ours_is_paused_in_secure_mode`: a decoded-audio
//!   bug of another module added with `SMBF_FIRST` during secure mode (FreeSWITCH would run it
//!   before our masker) is paused; one added before secure mode runs after ours and gets the
//!   masked audio.
//! - `recording_pause_resumes_the_agent_after_the_customer_hangs_up`: the hangup exit path.
//!
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use freeswitch_support::*;

const PAN: &str = "5555555555554444"; // Mastercard test number: in-band digits 5, 4 (and #)
const EXPIRY: &str = "0831";
const CVV: &str = "737";
/// Controls use none of the card's in-band keys (5, 4, #).
const BEFORE: &str = "169";
const AFTER: &str = "307";

fn send_dtmf(esl: &mut Esl, uuid: &str, digits: &str) {
    send_keys_held(esl, uuid, digits, 120, 300);
}

/// Sends `digits` from the leg `uuid` as SIP INFO (application/dtmf-relay, 120 ms each), the
/// way a phone in INFO mode does, whatever that leg's `dtmf_type`: one call can then mix
/// in-band, RFC 2833 and SIP INFO.
fn send_info(esl: &mut Esl, uuid: &str, digits: &str) {
    for d in digits.chars() {
        let r = esl.api(&format!(
            "uuid_send_info {uuid} application dtmf-relay Signal={d} Duration=120"
        ));
        assert!(r.starts_with("+OK"), "uuid_send_info: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// multimon-ng on a native recording of the PCMU customer leg (raw G.711 µ-law, 8 kHz),
/// converted with sox. The payload is PCMU whatever the file is named: FreeSWITCH names it after
/// the session's read codec, `L16` for a conference member, but writes the packets it received.
fn native_digits(native_in: &Path) -> String {
    assert!(
        native_in.is_file(),
        "native recording {} missing",
        native_in.display()
    );
    let wav = PathBuf::from(format!("{}.wav", native_in.display()));
    let st = Command::new("sox")
        .args(["-t", "ul", "-r", "8000", "-c", "1"])
        .arg(native_in)
        .arg(&wav)
        .status()
        .expect("sox");
    assert!(st.success(), "sox on {}", native_in.display());
    multimon_digits(&wav)
}

/// A path for a native recording (no extension) in a directory without a dot: FreeSWITCH
/// 1.10.12 takes everything after the last `.` of the WHOLE path as the file format, so under
/// `target/fs-1.10.12/...` it refuses the recording ("Invalid file format"); master looks at
/// the file name only.
fn native_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sp_native_{}", std::process::id()));
    assert!(
        !dir.to_string_lossy().contains('.'),
        "native recording dir {} has a dot",
        dir.display()
    );
    std::fs::create_dir_all(&dir).expect("native recording dir");
    dir.join(name)
}

/// `<path>-in.PCMU`: what a native `record_session` to `path` (no extension) wrote of what the
/// channel read.
fn native_in(path: &Path) -> PathBuf {
    native_in_codec(path, "PCMU")
}

/// `<path>-in.<codec>` (a conference member's file is named `.L16`).
fn native_in_codec(path: &Path, codec: &str) -> PathBuf {
    PathBuf::from(format!("{}-in.{codec}", path.display()))
}

/// The masked status once the capture is complete (or the last one after 4 s).
fn wait_complete(esl: &mut Esl, cust: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let s = esl.api(&format!("uuid_secure_pay {cust} status"));
        if s.contains("SecurePay-State: complete") || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn card_keys_in(d: &str) -> bool {
    d.chars().any(|c| matches!(c, '5' | '4' | '#'))
}

fn duration_s(wav: &Path) -> f64 {
    let out = Command::new("soxi")
        .arg("-D")
        .arg(wav)
        .output()
        .expect("soxi");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("soxi -D number")
}

fn recording_events(evs: &[EslEvent], uuid: &str) -> Vec<(String, String, String, String)> {
    evs.iter()
        .filter(|e| e.get("Event-Subclass") == Some("secure_pay::recording"))
        .filter(|e| e.get("Unique-ID") == Some(uuid))
        .map(|e| {
            let g = |k| e.get(k).unwrap_or("").to_string();
            (
                g("SecurePay-Recording-Action"),
                g("SecurePay-Recording-Kind"),
                g("SecurePay-Leg"),
                g("SecurePay-Recording-Count"),
            )
        })
        .collect()
}

fn has(evs: &[(String, String, String, String)], action: &str, kind: &str, leg: &str) -> bool {
    evs.iter()
        .any(|(a, k, l, _)| a == action && k == kind && l == leg)
}

/// Stops secure mode, expects the `resumed` event for the paused native taps, then keys the
/// AFTER control in-band.
fn stop_then_key_after(esl: &mut Esl, ev: &mut Esl, cust_a: &str, cust_b: &str) {
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let evs = recording_events(&ev.drain(Duration::from_millis(800)), cust_b);
    assert!(
        has(&evs, "resumed", "native", "customer"),
        "resumed event: {evs:?}"
    );
    play_tones(esl, cust_a, AFTER);
    std::thread::sleep(Duration::from_millis(1000));
}

fn sip_fs(settings: &[(&str, &str)]) -> Option<FreeSwitch> {
    let prefix = prefix()?;
    Some(FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            secure_pay_settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        },
    ))
}

#[test]
fn native_recording_of_the_customer_leaks_without_secure_mode() {
    let Some(fs) = sip_fs(&[]) else { return };
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust1", "rfc2833");
    let _ = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));
    let nat = native_path("leak_native");
    record(&mut esl, &cust_b, "start", &nat);
    play_tones(&mut esl, &cust_a, &format!("{PAN}#"));
    std::thread::sleep(Duration::from_millis(800));
    record(&mut esl, &cust_b, "stop", &nat);
    // The judge finds the card in the native file when nothing masks it (repeats collapsed).
    let d = native_digits(&native_in(&nat));
    assert!(d.contains("54#"), "native -in.PCMU decodes the card: {d:?}");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}

#[test]
fn native_recordings_are_paused_in_secure_mode_and_resumed_after() {
    let Some(fs) = sip_fs(&[]) else { return };
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust2", "rfc2833");
    let (agent_a, _) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));

    // Recordings running before secure mode: native and wav on the customer, wav on the agent.
    let nat1 = native_path("nat1");
    let nat2 = native_path("nat2");
    let nat3 = native_path("nat3");
    let wav_a = fs.rec("mask_agent.wav");
    record(&mut esl, &cust_b, "start", &nat1);
    record(&mut esl, &cust_b, "start", &nat3);
    record(&mut esl, &agent_a, "start", &wav_a);
    play_tones(&mut esl, &cust_a, BEFORE);

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let evs = recording_events(&ev.drain(Duration::from_millis(800)), &cust_b);
    assert!(
        has(&evs, "paused", "native", "customer"),
        "paused event for the native recordings: {evs:?}"
    );
    assert!(
        evs.iter()
            .any(|(a, k, _, n)| a == "paused" && k == "native" && n == "2"),
        "both native recordings counted: {evs:?}"
    );
    // During secure mode: a new native recording, and an attempt to resume a paused one.
    record(&mut esl, &cust_b, "start", &nat2);
    std::thread::sleep(Duration::from_millis(300));
    record(&mut esl, &cust_b, "resume", &nat3);
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    record(&mut esl, &cust_b, "resume", &nat3);
    send_dtmf(&mut esl, &cust_a, EXPIRY);
    send_dtmf(&mut esl, &cust_a, CVV);
    let status = wait_complete(&mut esl, &cust_b);
    assert!(
        status.contains("SecurePay-State: complete"),
        "capture complete (the masking did not lose the card): {status}"
    );
    let evs = recording_events(&ev.drain(Duration::from_millis(500)), &cust_b);
    assert!(
        has(&evs, "paused", "native", "customer"),
        "the recording started during secure mode (and the resumed one) paused: {evs:?}"
    );

    stop_then_key_after(&mut esl, &mut ev, &cust_a, &cust_b);
    for p in [&nat1, &nat2, &nat3] {
        record(&mut esl, &cust_b, "stop", p);
    }
    record(&mut esl, &agent_a, "stop", &wav_a);

    for (p, controls) in [
        (&nat1, &[BEFORE, AFTER][..]),
        (&nat2, &[AFTER][..]),
        (&nat3, &[BEFORE, AFTER][..]),
    ] {
        let d = native_digits(&native_in(p));
        assert!(!card_keys_in(&d), "{}: the card leaked: {d:?}", p.display());
        for c in controls {
            assert!(d.contains(c), "{}: control {c} missing: {d:?}", p.display());
        }
    }
    // the recording started during secure mode got nothing before the stop
    assert!(!native_digits(&native_in(&nat2)).contains(BEFORE));
    // mask mode: the agent's wav recording kept running with the masked audio
    let d = multimon_digits(&wav_a);
    assert!(!card_keys_in(&d), "agent wav: {d:?}");
    assert!(
        d.contains(BEFORE) && d.contains(AFTER),
        "controls in the agent wav: {d:?}"
    );
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}

/// `recording=pause`: one secure period between two controls; returns the files and the
/// measured lengths (whole recording, secure period) in seconds.
struct PauseRun {
    wav_c: PathBuf,
    wav_a: PathBuf,
    wav_new: PathBuf,
    total_s: f64,
    secure_s: f64,
    events: Vec<(String, String, String, String)>,
}

fn pause_run(fs: &FreeSwitch, n: u32, stop: &dyn Fn(&mut Esl, &str)) -> PauseRun {
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    let (cust_a, cust_b) = originate_sip(fs, &mut esl, &format!("sipcust{n}"), "rfc2833");
    let (agent_a, _) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));
    let wav_c = fs.rec(&format!("pause{n}_customer.wav"));
    let wav_a = fs.rec(&format!("pause{n}_agent.wav"));
    let wav_new = fs.rec(&format!("pause{n}_started_during.wav"));
    let t_rec = Instant::now();
    record(&mut esl, &cust_b, "start", &wav_c);
    record(&mut esl, &agent_a, "start", &wav_a);
    play_tones(&mut esl, &cust_a, BEFORE);

    let t0 = Instant::now();
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    record(&mut esl, &cust_b, "start", &wav_new);
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    send_dtmf(&mut esl, &cust_a, EXPIRY);
    send_dtmf(&mut esl, &cust_a, CVV);
    stop(&mut esl, &cust_b);
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    play_tones(&mut esl, &cust_a, AFTER);
    std::thread::sleep(Duration::from_millis(1000));
    for p in [&wav_c, &wav_new] {
        record(&mut esl, &cust_b, "stop", p);
    }
    record(&mut esl, &agent_a, "stop", &wav_a);
    let total_s = t_rec.elapsed().as_secs_f64();
    let events = recording_events(&ev.drain(Duration::from_millis(800)), &cust_b);
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    PauseRun {
        wav_c,
        wav_a,
        wav_new,
        total_s,
        secure_s: (t1 - t0).as_secs_f64(),
        events,
    }
}

fn check_pause_run(r: &PauseRun) {
    for leg in ["customer", "agent"] {
        assert!(
            has(&r.events, "paused", "all", leg),
            "paused event for the {leg}: {:?}",
            r.events
        );
        assert!(
            has(&r.events, "resumed", "all", leg),
            "resumed event for the {leg}: {:?}",
            r.events
        );
    }
    for p in [&r.wav_c, &r.wav_a] {
        let d = multimon_digits(p);
        assert!(!card_keys_in(&d), "{}: {d:?}", p.display());
        assert!(
            d.contains(&format!("{BEFORE}{AFTER}")),
            "{}: controls {BEFORE} {AFTER}: {d:?}",
            p.display()
        );
        // The gap is the secure period: the file is that much shorter than the wall time.
        let len = duration_s(p);
        let expected = r.total_s - r.secure_s;
        assert!(
            (len - expected).abs() < 0.8,
            "{}: {len:.2} s long, expected {expected:.2} s (recorded {:.2} s, secure {:.2} s)",
            p.display(),
            r.total_s,
            r.secure_s
        );
    }
    let d = multimon_digits(&r.wav_new);
    assert!(
        d.contains(AFTER) && !d.contains(BEFORE) && !card_keys_in(&d),
        "recording started during secure mode: {d:?}"
    );
}

#[test]
fn recording_pause_leaves_a_gap_over_the_secure_period_and_resumes() {
    let Some(fs) = sip_fs(&[("recording", "pause")]) else {
        return;
    };
    let run = pause_run(&fs, 3, &|esl, cust| {
        std::thread::sleep(Duration::from_millis(500));
        let r = esl.api(&format!("uuid_secure_pay {cust} stop"));
        assert!(r.starts_with("+OK"), "stop: {r}");
    });
    check_pause_run(&run);
    // Control in the same instance: the admin's pause-only refuses a per-call mask.
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust4", "rfc2833");
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start recording=mask"));
    assert!(
        r.starts_with("-ERR") && r.contains("recording"),
        "per-call recording=mask refused: {r}"
    );
    let r = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(!r.contains("SecurePay-State"), "not started: {r}");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}

#[test]
fn recording_pause_resumes_after_a_timeout() {
    // 40 s: room for the keying and its one retry (key_card_in_band: up to 15 s of waiting for
    // each keying) before the timeout; with 10 s a key lost at the first keying let the session
    // time out before the retry, and with 25 s once before the expiry and CVV were keyed.
    let Some(fs) = sip_fs(&[("recording", "pause"), ("session_timeout_ms", "40000")]) else {
        return;
    };
    // Subscribed before secure mode starts: event-socket events are not kept for a later
    // subscriber, so a watcher that subscribed after a slow keying missed the stop.
    let watcher = RefCell::new(fs.esl());
    watcher
        .borrow_mut()
        .subscribe("plain CUSTOM secure_pay::stop");
    let run = pause_run(&fs, 5, &|_, cust| {
        // the session ends itself (reason timeout) 40 s after start
        let mut w = watcher.borrow_mut();
        let deadline = Instant::now() + Duration::from_secs(45);
        while Instant::now() < deadline {
            if let Some(e) = w.next_event(Duration::from_millis(500)) {
                if e.get("Unique-ID") == Some(cust) {
                    assert_eq!(e.get("SecurePay-Reason"), Some("timeout"));
                    return;
                }
            }
        }
        panic!("no timeout stop");
    });
    check_pause_run(&run);
}

const CONF_DIALPLAN: &str = r#"
      <extension name="confjoin">
        <condition field="destination_number" expression="^conf(cust|agent|rec)(\d+)$">
          <action application="answer"/>
          <action application="conference" data="room$2@default"/>
        </condition>
      </extension>"#;

#[test]
fn conference_with_a_sip_recorder_gets_no_card() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            conference: true,
            extra_dialplan: CONF_DIALPLAN.into(),
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    // customer over SIP, agent over loopback, recorder over SIP: all in conference room7
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "confcust7", "rfc2833");
    let agent = new_uuid(&mut esl);
    let r = esl.api(&format!(
        "originate {{origination_uuid={agent},loopback_bowout=false}}loopback/confagent7/sp &park()"
    ));
    assert!(r.starts_with("+OK"), "agent: {r}");
    let recorder = new_uuid(&mut esl);
    let recorder_wav = fs.rec("conf_sip_recorder.wav");
    let r = esl.api(&format!(
        "originate {{origination_uuid={recorder},absolute_codec_string=PCMU,playback_terminators=none}}sofia/sp/confrec7@127.0.0.1:{} &record({})",
        fs.sip_port,
        recorder_wav.display()
    ));
    assert!(r.starts_with("+OK"), "recorder: {r}");
    std::thread::sleep(Duration::from_millis(1000));
    let list = esl.api("conference room7 list count");
    assert!(list.trim() == "3", "three members in room7: {list:?}");

    let conf_wav = fs.rec("conf_room.wav");
    let r = esl.api(&format!("conference room7 record {}", conf_wav.display()));
    assert!(!r.starts_with("-ERR"), "conference record: {r}");
    let cust_nat = native_path("conf_customer_native");
    let agent_wav = fs.rec("conf_agent.wav");
    record(&mut esl, &cust_b, "start", &cust_nat);
    record(&mut esl, &agent, "start", &agent_wav);
    std::thread::sleep(Duration::from_millis(300));
    play_tones(&mut esl, &cust_a, BEFORE);

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let cust_nat2 = native_path("conf_customer_native_during");
    record(&mut esl, &cust_b, "start", &cust_nat2);
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    send_dtmf(&mut esl, &cust_a, EXPIRY); // RFC 2833
    send_info(&mut esl, &cust_a, CVV); // SIP INFO
                                       // Checked after the judges (below): a lost key press must not hide a leak verdict.
    let status = wait_complete(&mut esl, &cust_b);
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    std::thread::sleep(Duration::from_millis(300));
    play_tones(&mut esl, &cust_a, AFTER);
    std::thread::sleep(Duration::from_millis(1000));

    for p in [&cust_nat, &cust_nat2] {
        record(&mut esl, &cust_b, "stop", p);
    }
    record(&mut esl, &agent, "stop", &agent_wav);
    let _ = esl.api(&format!("conference room7 norecord {}", conf_wav.display()));
    let _ = esl.api(&format!("uuid_kill {recorder}"));
    std::thread::sleep(Duration::from_millis(1000));
    let evs = recording_events(&ev.drain(Duration::from_millis(300)), &cust_b);
    assert!(
        has(&evs, "paused", "native", "customer") && has(&evs, "resumed", "native", "customer"),
        "native recordings paused and resumed: {evs:?}"
    );

    let judged: Vec<(String, String)> = vec![
        ("SIP recorder".into(), multimon_digits(&recorder_wav)),
        ("conference recording".into(), multimon_digits(&conf_wav)),
        ("agent wav".into(), multimon_digits(&agent_wav)),
        (
            "customer native".into(),
            native_digits(&native_in_codec(&cust_nat, "L16")),
        ),
    ];
    for (what, d) in &judged {
        assert!(!card_keys_in(d), "{what}: the card leaked: {d:?}");
        assert!(
            d.contains(BEFORE) && d.contains(AFTER),
            "{what}: controls {BEFORE}/{AFTER} not decoded: {d:?}"
        );
    }
    let d = native_digits(&native_in_codec(&cust_nat2, "L16"));
    assert!(
        !card_keys_in(&d) && d.contains(AFTER) && !d.contains(BEFORE),
        "native recording started during secure mode: {d:?}"
    );
    assert!(
        status.contains("SecurePay-State: complete"),
        "capture complete in the conference: {status}"
    );
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    let _ = esl.api(&format!("uuid_kill {agent}"));
}

const TAP_DIALPLAN: &str = r#"
      <extension name="edpark">
        <condition field="destination_number" expression="^edpark(\d+)$">
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>"#;

/// `native_eavesdrop <customer> read` on an outbound SIP leg (PCMU like the customer): the tapped
/// codec payload goes out as RTP to the inbound leg, whose wav recording is what the spy hears.
/// multimon-ng on raw 16-bit 8 kHz audio (what a decoded-audio bug wrote), converted with sox.
fn l16_digits(path: &Path) -> String {
    assert!(path.is_file(), "tap file {} missing", path.display());
    let wav = PathBuf::from(format!("{}.wav", path.display()));
    let st = Command::new("sox")
        .args([
            "-t", "raw", "-e", "signed", "-b", "16", "-r", "8000", "-c", "1",
        ])
        .arg(path)
        .arg(&wav)
        .status()
        .expect("sox");
    assert!(st.success(), "sox on {}", path.display());
    multimon_digits(&wav)
}

/// A media bug of another module, added by the test-only module (`sp_fault <verb>`): its two
/// function names (one bug before secure mode, one during it), how to decode what it wrote,
/// and whether secure_pay pauses the one added before secure mode.
struct ThirdParty {
    verb: &'static str,
    dest: &'static str,
    before: &'static str,
    during: &'static str,
    decode: fn(&Path) -> String,
    pauses_the_first: bool,
}

/// One secure period with two such bugs on the customer's SIP leg: the card keyed in-band,
/// controls keyed before start and after stop. Asserts the `recording` events and that each bug
/// got the controls and nothing of the card; returns FreeSWITCH's log.
fn third_party_bugs_get_no_card(t: &ThirdParty) -> Option<String> {
    let fs = sip_fs(&[])?;
    let prefix = prefix()?;
    load_fault_module(&fs, &prefix);
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, t.dest, "rfc2833");
    let _ = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));
    let bug = |esl: &mut Esl, start: bool, function: &str, path: &Path| {
        let r = if start {
            esl.api(&format!(
                "sp_fault {} {cust_b} start {function} {}",
                t.verb,
                path.display()
            ))
        } else {
            esl.api(&format!("sp_fault {} {cust_b} stop {function}", t.verb))
        };
        assert!(r.starts_with("+OK"), "{} {function}: {r}", t.verb);
    };
    let paused_one = |evs: &[(String, String, String, String)]| {
        evs.iter()
            .any(|(a, k, l, n)| a == "paused" && k == "tap" && l == "customer" && n == "1")
    };
    let before = native_path(t.before);
    let during = native_path(t.during);

    bug(&mut esl, true, t.before, &before);
    play_tones(&mut esl, &cust_a, BEFORE);
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let evs = recording_events(&ev.drain(Duration::from_millis(800)), &cust_b);
    assert_eq!(
        paused_one(&evs),
        t.pauses_the_first,
        "{}: the bug added before secure mode paused at start: {evs:?}",
        t.verb
    );
    bug(&mut esl, true, t.during, &during);
    std::thread::sleep(Duration::from_millis(300));
    let evs = recording_events(&ev.drain(Duration::from_millis(300)), &cust_b);
    assert!(
        paused_one(&evs),
        "{}: the bug added during secure mode paused: {evs:?}",
        t.verb
    );
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    stop_then_key_after(&mut esl, &mut ev, &cust_a, &cust_b);
    bug(&mut esl, false, t.before, &before);
    bug(&mut esl, false, t.during, &during);

    // Judge: multimon-ng on what each bug got. Controls: the keys before start and after stop
    // reached them (they work and were resumed).
    for (p, controls) in [(&before, &[BEFORE, AFTER][..]), (&during, &[AFTER][..])] {
        let d = (t.decode)(p);
        assert!(!card_keys_in(&d), "{}: the card leaked: {d:?}", p.display());
        for c in controls {
            assert!(d.contains(c), "{}: control {c} missing: {d:?}", p.display());
        }
    }
    assert!(!(t.decode)(&during).contains(BEFORE));
    let log = fs.log_text();
    assert!(!log.contains(PAN), "the log holds the card number");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    Some(log)
}

/// Codec-payload taps (`SMBF_TAP_NATIVE_READ`) of functions secure_pay does not know: paused
/// like FreeSWITCH's own, the second learned from its MEDIA_BUG_START event.
#[test]
fn another_modules_codec_payload_tap_is_paused_in_secure_mode() {
    let Some(log) = third_party_bugs_get_no_card(&ThirdParty {
        verb: "native_tap",
        dest: "sipcust6",
        before: "acme_fork",
        during: "other_vendor_tap",
        decode: native_digits,
        pauses_the_first: true,
    }) else {
        return;
    };
    assert!(
        log.contains("other_vendor_tap"),
        "the log names the tap learned during secure mode"
    );
}

/// Decoded-audio bugs that replace the read frame, added at the head of the list
/// (`SMBF_FIRST`): the one added before secure mode runs after ours (our bug is also added
/// first) and is left alone; the one added during secure mode would run before our masker and
/// is paused.
#[test]
fn another_modules_replace_bug_put_ahead_of_ours_is_paused_in_secure_mode() {
    third_party_bugs_get_no_card(&ThirdParty {
        verb: "replace_tap",
        dest: "sipcust5",
        before: "vendor_asr",
        during: "vendor_asr_first",
        decode: l16_digits,
        pauses_the_first: false,
    });
}

#[test]
fn tap_mode_eavesdrop_is_paused_in_secure_mode() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            extra_dialplan: TAP_DIALPLAN.into(),
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust8", "rfc2833");
    let _ = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(500));

    let mut watch = fs.esl();
    watch.subscribe("plain CHANNEL_ANSWER");
    let spy = new_uuid(&mut esl);
    let r = esl.api(&format!(
        "originate {{origination_uuid={spy},absolute_codec_string=PCMU}}sofia/sp/edpark8@127.0.0.1:{} &native_eavesdrop({cust_b} read)",
        fs.sip_port
    ));
    assert!(r.starts_with("+OK"), "spy: {r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ear = None;
    while ear.is_none() && Instant::now() < deadline {
        if let Some(e) = watch.next_event(Duration::from_millis(300)) {
            if e.get("Caller-Destination-Number") == Some("edpark8")
                && e.get("Call-Direction") == Some("inbound")
            {
                ear = e.get("Unique-ID").map(str::to_owned);
            }
        }
    }
    let ear = ear.expect("inbound leg of the spy");
    std::thread::sleep(Duration::from_millis(500));
    let heard = fs.rec("tap_heard.wav");
    record(&mut esl, &ear, "start", &heard);
    play_tones(&mut esl, &cust_a, BEFORE);

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    play_tones(&mut esl, &cust_a, &format!("{PAN}#"));
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    std::thread::sleep(Duration::from_millis(300));
    play_tones(&mut esl, &cust_a, AFTER);
    std::thread::sleep(Duration::from_millis(1000));
    record(&mut esl, &ear, "stop", &heard);
    let evs = recording_events(&ev.drain(Duration::from_millis(500)), &cust_b);
    assert!(
        has(&evs, "paused", "tap", "customer"),
        "tap paused event: {evs:?}"
    );
    assert!(
        has(&evs, "resumed", "native", "customer"),
        "tap resumed event: {evs:?}"
    );
    let d = multimon_digits(&heard);
    assert!(!card_keys_in(&d), "the spy heard the card: {d:?}");
    assert!(
        d.contains(BEFORE) && d.contains(AFTER),
        "controls: the spy hears the customer before and after: {d:?}"
    );
    let _ = esl.api(&format!("uuid_kill {spy}"));
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}

const KEEP_AGENT_DIALPLAN: &str = r#"
      <extension name="sipkeep">
        <condition field="destination_number" expression="^sipkeep(\d+)$">
          <action application="answer"/>
          <action application="bridge" data="{loopback_bowout=false,park_after_bridge=true}loopback/agent$1/sp"/>
        </condition>
      </extension>"#;

/// `recording=pause`, hangup exit path: the customer hangs up in secure mode; the agent stays
/// (parked after the bridge) and its recording, paused during secure mode, runs again.
#[test]
fn recording_pause_resumes_the_agent_after_the_customer_hangs_up() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            extra_dialplan: KEEP_AGENT_DIALPLAN.into(),
            secure_pay_settings: vec![("recording".into(), "pause".into())],
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::recording");
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipkeep9", "rfc2833");
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));
    let wav = fs.rec("hangup_agent.wav");
    record(&mut esl, &agent_a, "start", &wav);
    // The agent's own voice (tones played from its far end) is what its recording reads.
    play_tones(&mut esl, &agent_b, BEFORE);
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    play_tones(&mut esl, &agent_b, "28");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    std::thread::sleep(Duration::from_millis(1500));
    let up = esl.api(&format!("uuid_exists {agent_a}"));
    assert!(up.trim() == "true", "agent parked after the bridge: {up}");
    play_tones(&mut esl, &agent_b, AFTER);
    std::thread::sleep(Duration::from_millis(1000));
    record(&mut esl, &agent_a, "stop", &wav);
    let evs = recording_events(&ev.drain(Duration::from_millis(500)), &cust_b);
    assert!(
        has(&evs, "paused", "all", "agent") && has(&evs, "resumed", "all", "agent"),
        "agent paused and resumed at hangup: {evs:?}"
    );
    let d = multimon_digits(&wav);
    assert!(
        d.contains(BEFORE) && d.contains(AFTER),
        "agent recording before and after (resumed): {d:?}"
    );
    assert!(
        !d.contains('2') && !d.contains('8'),
        "agent recording paused during secure mode: {d:?}"
    );
    let _ = esl.api(&format!("uuid_kill {agent_a}"));
}
