//! Issue #16 on Asterisk 22: every recording path stays clean while the customer's channel is
//! secure, proven on real SIP over 127.0.0.1 with the independent judges (multimon-ng and
//! spandsp `dtmf_rx`, default and permissive), each negative next to a control the same judge
//! decodes.
//!
//! The call: a "phone" Asterisk instance (no secure_pay) calls the PBX instance over PJSIP/RTP
//! (customer), the PBX puts that leg into a ConfBridge together with the agent (a Local channel)
//! and a SIP "recorder" endpoint that the PBX INVITEs into the conference (it is answered by the
//! phone instance, which records what it hears: a third-party recorder's file). The PBX records
//! the conference itself (`record_conference`), MixMonitors the customer leg (wav, gsm, and the
//! receive direction alone as raw µ-law through `r()`) and the agent leg (wav, gsm); during
//! secure mode the agent platform starts a MixMonitor (kept past stop), starts and stops another
//! one, and mutes (pauses) and unmutes (resumes) every MixMonitor of the customer leg. The
//! customer keys the card as RFC 4733 + in-band tones (call 1) and SIP INFO + in-band tones
//! (call 2). The recorder's PBX endpoint uses `dtmf_mode=inband`, so an out-of-band digit that
//! reached it would be *generated as tones* into the recorder's audio (the control 'A' shows it).
//!
//! Second test: framehook order. Asterisk runs a channel's READ framehooks in attach order
//! (main/framehook.c appends at the tail), so a framehook attached BEFORE secure mode sees the
//! customer's raw frames before ours. Secure mode refuses to start then (fail closed), and a
//! framehook attached during secure mode only gets the masked frames.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use asterisk::{free_udp_port, SIP_MODULES};
use asterisk::{
    judges, multimon_digits, phone_dialplan, spandsp_digits, Ami, Call, Instance, BASE_MODULES,
    WAIT,
};

const PAN: &str = "4242424242424242";

const CONF_MODULES: &str = "app_confbridge.so bridge_softmix.so format_gsm.so codec_gsm.so \
func_frame_trace.so func_frame_drop.so app_chanspy.so";

/// Every conference member is quiet (no sound files) and passes DTMF on (so out-of-band digits
/// would reach the agent and the recorder if they were not swallowed).
const CONFBRIDGE_CONF: &str = "[general]\n\n[default_bridge]\ntype=bridge\n\n\
[default_user]\ntype=user\nquiet=yes\ndtmf_passthrough=yes\nannounce_only_user=no\n";

fn endpoint(name: &str, context: &str, dtmf: &str, port: u16) -> String {
    format!(
        "[{name}]\ntype=endpoint\ncontext={context}\ndisallow=all\nallow=ulaw\ndtmf_mode={dtmf}\n\
         aors={name}\ndirect_media=no\nrtp_symmetric=yes\nmedia_address=127.0.0.1\n\
         bind_rtp_to_media_address=yes\n\n[{name}]\ntype=aor\ncontact=sip:127.0.0.1:{port}\n\n"
    )
}

fn transport(port: u16) -> String {
    format!("[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{port}\n\n")
}

fn rtp(a: u16) -> String {
    format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400)
}

/// The PBX's dialplan: the customer's call (`call-NAME`) is recorded and joins the conference
/// `conf-NAME`, which records itself; `conf,join` puts the agent in, `conf,rec` the recorder.
fn pbx_dialplan() -> String {
    format!(
        "{}\n[sp-in]\n\
exten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n\
 same => n,Answer()\n\
 same => n,MixMonitor(call-${{CALLNAME}}.wav,r(call-${{CALLNAME}}-in.ulaw))\n\
 same => n,MixMonitor(call-${{CALLNAME}}.gsm)\n\
 same => n,Set(CONFBRIDGE(bridge,record_conference)=yes)\n\
 same => n,Set(CONFBRIDGE(bridge,record_file)=conf-${{CALLNAME}}.wav)\n\
 same => n,ExecIf($[\"${{CALLNAME:0:5}}\" = \"trace\"]?Set(FRAME_TRACE(white)=DTMF_BEGIN,DTMF_END))\n\
 same => n,UserEvent(SPInbound,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})\n\
 same => n,ConfBridge(conf-${{CALLNAME}})\n\
 same => n,Hangup()\n\
\n[conf]\n\
exten => join,1,ConfBridge(conf-${{CALLNAME}})\n\
exten => rec,1,ConfBridge(conf-${{CALLNAME}})\n\
exten => spy,1,ChanSpy(PJSIP/phone-,qw)\n\
exten => spyphone,1,Answer()\n\
 same => n,MixMonitor(spy-${{CALLNAME}}.wav)\n\
 same => n,UserEvent(SPSpy,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})\n\
 same => n,Wait(600)\n\
 same => n,Hangup()\n\
exten => playd,1,Playtones(!941+1633/200,!0/200,!941+1633/200,!0/200)\n\
 same => n,Wait(600)\n\
exten => agent,1,Answer()\n\
 same => n,MixMonitor(agent-${{CALLNAME}}.wav)\n\
 same => n,MixMonitor(agent-${{CALLNAME}}.gsm)\n\
 same => n,UserEvent(SPAgent,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})\n\
 same => n,Wait(600)\n\
 same => n,Hangup()\n",
        phone_dialplan()
    )
}

/// The phone instance: the scripted customer (phone_dialplan) plus the third-party recorder
/// answering `rec-NAME` and recording what it hears.
fn phone_side_dialplan() -> String {
    let mut d = phone_dialplan();
    d.push_str(
        "exten => _rec-.,1,Answer()\n\
 same => n,MixMonitor(recorder-${EXTEN:4}.wav)\n\
 same => n,UserEvent(SPRecorder,Call: ${EXTEN:4},Chan: ${CHANNEL})\n\
 same => n,Wait(600)\n\
 same => n,Hangup()\n",
    );
    d
}

struct Pair {
    pbx: Instance,
    phone: Instance,
}

fn start_pair(tag: &str) -> Pair {
    start_pair_with(tag, &[])
}

/// [`start_pair`] with extra config files for the PBX (e.g. secure_pay.conf).
fn start_pair_with(tag: &str, pbx_extra: &[(&str, &str)]) -> Pair {
    let pbx_port = free_udp_port();
    let phone_port = free_udp_port();
    let modules = format!("{BASE_MODULES} {SIP_MODULES} {CONF_MODULES}");
    let mut pbx_sip = transport(pbx_port);
    pbx_sip.push_str(&endpoint("phone", "sp-in", "rfc4733", phone_port));
    // the recorder's trunk generates in-band tones for any DTMF frame written to it
    pbx_sip.push_str(&endpoint("recorder", "conf", "inband", phone_port));
    pbx_sip.push_str("[phone]\ntype=identify\nendpoint=phone\nmatch=127.0.0.1\n");
    let base = 35000 + (std::process::id() % 20) as u16 * 400;
    let pbx = Instance::start(
        &format!("{tag}pbx"),
        &pbx_dialplan(),
        &[
            &[
                ("pjsip.conf", pbx_sip.as_str()),
                ("rtp.conf", &rtp(base)),
                ("confbridge.conf", CONFBRIDGE_CONF),
            ][..],
            pbx_extra,
        ]
        .concat(),
        &modules,
    );
    let mut phone_sip = transport(phone_port);
    phone_sip.push_str(&endpoint("pbx-rfc", "sp", "rfc4733", pbx_port));
    phone_sip.push_str(&endpoint("pbx-info", "sp", "info", pbx_port));
    phone_sip.push_str("[pbx-rfc]\ntype=identify\nendpoint=pbx-rfc\nmatch=127.0.0.1\n");
    let phone = Instance::start_with(
        &format!("{tag}phone"),
        &phone_side_dialplan(),
        &[("pjsip.conf", &phone_sip), ("rtp.conf", &rtp(base + 8000))],
        &modules,
        false,
    );
    Pair { pbx, phone }
}

fn ok(r: &asterisk::Msg) {
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
}

fn originate(ami: &mut Ami, channel: &str, context: &str, exten: &str, name: &str) {
    let r = ami.action(&[
        ("Action", "Originate"),
        ("Channel", channel),
        ("Context", context),
        ("Exten", exten),
        ("Priority", "1"),
        ("Variable", &format!("__CALLNAME={name}")),
        ("Async", "true"),
    ]);
    ok(&r);
}

/// A recording in any format converted to a WAV the judges read (sox; raw µ-law needs its
/// format named).
fn as_wav(path: &Path) -> PathBuf {
    assert!(path.is_file(), "recording {} missing", path.display());
    let out = judges::scratch_file("rec", "wav");
    let mut c = Command::new("sox");
    if path.extension().is_some_and(|e| e == "ulaw") {
        c.args(["-t", "ul", "-r", "8000", "-c", "1"]);
    }
    let st = c
        .arg(path)
        .args(["-e", "signed-integer", "-b", "16"])
        .arg(&out)
        .status()
        .expect("sox");
    assert!(st.success(), "sox could not read {}", path.display());
    out
}

/// Seconds of audio in a WAV (sox --info -D).
fn seconds(wav: &Path) -> f64 {
    let o = Command::new("sox")
        .args(["--info", "-D"])
        .arg(wav)
        .output()
        .expect("sox --info");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

/// Judges `file`: every judge must decode each control key in `controls` and nothing but
/// control keys.
fn judge(file: &Path, controls: &str, label: &str) {
    let wav = as_wav(file);
    let mm = multimon_digits(&wav);
    let (sd, sp) = spandsp_digits(&wav);
    let _ = std::fs::remove_file(&wav);
    for (j, d) in [
        ("multimon-ng", &mm),
        ("spandsp", &sd),
        ("spandsp permissive", &sp),
    ] {
        for k in controls.chars() {
            assert!(
                d.contains(k),
                "{label}: control: {j} must decode '{k}' in {}: {d:?}",
                file.display()
            );
        }
        let leaked: String = d.chars().filter(|c| !"AD".contains(*c)).collect();
        assert_eq!(
            leaked,
            "",
            "{label}: {j} decoded card digits from {} (all: {d:?})",
            file.display()
        );
    }
}

fn conf_recording(pbx: &Instance, name: &str) -> PathBuf {
    let dir = pbx.dir.join("spool/monitor");
    let prefix = format!("conf-{name}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix))
        })
        .collect();
    found.sort();
    assert_eq!(
        found.len(),
        1,
        "one ConfBridge recording for {name} expected in {}: {found:?}",
        dir.display()
    );
    found.remove(0)
}

fn dtmf_events_since(ami: &Ami, from: usize) -> Vec<String> {
    ami.all()[from..]
        .iter()
        .filter(|m| matches!(m.event(), Some("DTMFBegin") | Some("DTMFEnd")))
        .map(|m| m.text())
        .collect()
}

/// The customer, the agent and the SIP recorder in one conference; every recording taken on
/// the PBX and the recorder's own file hold the controls and no card digit.
#[test]
fn conference_recorder_and_every_recording_stay_clean() {
    let pair = start_pair("rec");
    let (pbx, phone) = (&pair.pbx, &pair.phone);
    let mut pami = pbx.ami();
    let mut fami = phone.ami();

    // (name, phone endpoint, step 1 out-of-band, step 1 in-band, step 2 in-band, step 3 in-band)
    for (name, ep, oob, in1, in2, in3) in [
        ("r1", "pbx-rfc", format!("{PAN}#"), "12", "30", "123"),
        ("i1", "pbx-info", format!("{PAN}#123"), "", "0", "123"),
    ] {
        Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@{ep}"), name, &[]);
        pami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: customer did not reach the PBX"));
        originate(&mut pami, "Local/agent@conf/n", "conf", "join", name);
        let mut c = Call::wait_up(&pami, name);
        assert!(c.customer.starts_with("PJSIP/phone-"), "{}", c.customer);
        originate(
            &mut pami,
            &format!("PJSIP/rec-{name}@recorder"),
            "conf",
            "rec",
            name,
        );
        fami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "SPRecorder"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: the recorder was not invited"));
        // a supervisor spying on the customer with whisper (ChanSpy ...,w), recorded on the
        // supervisor's phone side
        originate(&mut pami, "Local/spyphone@conf/n", "conf", "spy", name);
        pami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "SPSpy"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: the ChanSpy supervisor did not answer"));
        // let the recorder's ConfBridge join and the spy complete
        std::thread::sleep(Duration::from_millis(1500));

        // control before: out-of-band and in-band 'A' reach the conference
        let mark0 = pami.all().len();
        c.key(&mut fami, "A", "A");
        std::thread::sleep(Duration::from_millis(700));
        let before: String = pami.all()[mark0..]
            .iter()
            .filter(|m| m.event() == Some("DTMFEnd"))
            .filter(|m| {
                m.get("Channel")
                    .is_some_and(|ch| ch.starts_with(c.agent_prefix()))
            })
            .map(|m| m.get("Digit").unwrap_or("?").to_owned())
            .collect();
        assert!(
            before.contains('A'),
            "{name}: control: the agent must get the out-of-band 'A' before start: {before:?}"
        );

        ok(&c.securepay(&mut pami, &[("Command", "start")]));
        let mark = pami.all().len();
        // recordings started during secure mode: `mid` runs past stop, `mid2` is stopped
        ok(&pami.action(&[
            ("Action", "MixMonitor"),
            ("Channel", &c.customer),
            ("File", &format!("mid-{name}.wav")),
        ]));
        let r = pami.action(&[
            ("Action", "MixMonitor"),
            ("Channel", &c.customer),
            ("File", &format!("mid2-{name}.gsm")),
            ("Options", "i(MID2)"),
        ]);
        ok(&r);
        // its MixMonitorID, stored by the i() option in a channel variable
        let r = pami.action(&[
            ("Action", "Getvar"),
            ("Channel", &c.customer),
            ("Variable", "MID2"),
        ]);
        let mid2_id = r.get("Value").unwrap_or("").to_owned();
        assert!(!mid2_id.is_empty(), "no MixMonitorID in MID2: {}", r.text());
        c.key(&mut fami, &oob, in1);
        // pause every MixMonitor of the customer leg, key, resume, key
        ok(&pami.action(&[
            ("Action", "MixMonitorMute"),
            ("Channel", &c.customer),
            ("Direction", "both"),
            ("State", "1"),
        ]));
        c.key(&mut fami, "", in2);
        ok(&pami.action(&[
            ("Action", "MixMonitorMute"),
            ("Channel", &c.customer),
            ("Direction", "both"),
            ("State", "0"),
        ]));
        ok(&pami.action(&[
            ("Action", "StopMixMonitor"),
            ("Channel", &c.customer),
            ("MixMonitorID", &mid2_id),
        ]));
        c.key(&mut fami, "", in3);
        let complete = pami
            .wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
            .unwrap_or_else(|| {
                // Seen once under heavy load: no in-band key detected after a step. The RTP
                // counters of both ends tell a media stall from a detection problem.
                panic!(
                    "{name}: no SecurePayComplete: {:#?}\nPBX RTP: {}\nphone RTP: {}",
                    asterisk::sp_events_of(&pami, &c.customer)
                        .iter()
                        .map(|m| m.text())
                        .collect::<Vec<_>>(),
                    pbx.cli("pjsip show channelstats"),
                    phone.cli("pjsip show channelstats"),
                )
            });
        assert!(complete
            .get("SecurePay-Card-Number")
            .is_some_and(|m| m.ends_with("4242") && m.len() == 16));
        std::thread::sleep(Duration::from_millis(500));
        let during = dtmf_events_since(&pami, mark);
        assert!(
            during.is_empty(),
            "{name}: DTMF events on the PBX during secure mode: {during:?}"
        );
        ok(&c.securepay(&mut pami, &[("Command", "stop")]));

        // control after: out-of-band and in-band 'D' reach the conference again
        let mark2 = pami.all().len();
        c.key(&mut fami, "D", "D");
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            dtmf_events_since(&pami, mark2)
                .iter()
                .any(|t| t.contains("Digit: D")),
            "{name}: control: 'D' after stop must reach the PBX's DTMF events"
        );
        pbx.cli("channel request hangup all");
        phone.cli("channel request hangup all");
        pami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
            .expect("SecurePayStop");
        std::thread::sleep(Duration::from_millis(2500));

        let mon = |f: &str| pbx.monitor(f);
        for (file, controls) in [
            (mon(&format!("call-{name}.wav")), "AD"),
            (mon(&format!("call-{name}.gsm")), "AD"),
            (mon(&format!("call-{name}-in.ulaw")), "AD"),
            (mon(&format!("agent-{name}.wav")), "AD"),
            (mon(&format!("agent-{name}.gsm")), "AD"),
            (conf_recording(pbx, name), "AD"),
            (mon(&format!("mid-{name}.wav")), "D"),
            (phone.monitor(&format!("recorder-{name}.wav")), "AD"),
            (mon(&format!("spy-{name}.wav")), "AD"),
        ] {
            judge(&file, controls, name);
        }
        // started and stopped inside secure mode: no control can be in it; it must hold
        // audio (the keying time) and no digit
        let mid2 = as_wav(&mon(&format!("mid2-{name}.gsm")));
        let secs = seconds(&mid2);
        assert!(
            secs > 0.5,
            "{name}: mid2 recording holds {secs} s of audio (expected the keying time)"
        );
        let _ = std::fs::remove_file(&mid2);
        judge(&mon(&format!("mid2-{name}.gsm")), "", name);
        // and it really was stopped inside secure mode: the 'D' after stop is not in it
        let w = as_wav(&mon(&format!("mid2-{name}.gsm")));
        let d = multimon_digits(&w);
        let _ = std::fs::remove_file(&w);
        assert!(!d.contains('D'), "{name}: mid2 ran past its stop: {d:?}");
    }
    for m in pami.all() {
        assert!(
            !m.text().contains(PAN),
            "card number on the PBX's AMI: {}",
            m.text()
        );
    }
    assert!(pbx.is_running() && phone.is_running());
}

/// `Digit:` lines FRAME_TRACE wrote to the PBX's full log (its DTMF END dump:
/// `Digit: 0x34 '4'`), as the digit characters.
fn traced_digits(pbx: &Instance) -> String {
    pbx.log()
        .lines()
        .filter_map(|l| l.split("Digit: 0x").nth(1))
        .filter_map(|h| u8::from_str_radix(h.get(..2)?, 16).ok())
        .map(char::from)
        .collect()
}

/// READ framehooks run in attach order. A framehook attached before secure mode (here
/// FRAME_TRACE, which writes every DTMF digit to the log) would read the customer's raw
/// digits first: start is refused (AMI error, `SecurePayError` `framehook-order`), nothing is
/// attached. A framehook attached DURING secure mode runs after ours: it sees no card digit.
/// Controls: the same trace logs the keys pressed before start / after stop.
#[test]
fn framehook_attached_first_refuses_start_and_one_attached_later_sees_nothing() {
    let pair = start_pair("hko");
    let (pbx, phone) = (&pair.pbx, &pair.phone);
    let mut pami = pbx.ami();
    let mut fami = phone.ami();

    // 1. FRAME_TRACE attached by the dialplan before any secure mode
    let name = "trace1";
    Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@pbx-rfc"), name, &[]);
    pami.wait_event(
        Duration::from_secs(60),
        "UserEvent",
        &[("UserEvent", "SPInbound"), ("Call", name)],
    )
    .expect("trace1: customer did not reach the PBX");
    originate(&mut pami, "Local/agent@conf/n", "conf", "join", name);
    let mut c = Call::wait_up(&pami, name);
    c.key(&mut fami, "A", "");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        traced_digits(pbx).contains('A'),
        "control: FRAME_TRACE must log the customer's 'A' (it reads the raw frames): {:?}",
        traced_digits(pbx)
    );
    let r = c.securepay(&mut pami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
    assert!(
        r.get("Message").is_some_and(|m| m.contains("framehook")),
        "{}",
        r.text()
    );
    let err = pami
        .wait_event(
            WAIT,
            "SecurePayError",
            &[
                ("Channel", &c.customer),
                ("SecurePay-Error-Code", "framehook-order"),
            ],
        )
        .expect("SecurePayError framehook-order");
    assert!(
        err.get("SecurePay-Error-Message")
            .is_some_and(|m| m.contains("FRAME_TRACE")),
        "{}",
        err.text()
    );
    assert!(
        pami.events("SecurePayStart").is_empty(),
        "secure mode must not be reported started"
    );
    let shown = pbx.cli("securepay show channels");
    assert!(!shown.contains(&c.customer), "{shown}");
    pbx.cli("channel request hangup all");
    phone.cli("channel request hangup all");
    std::thread::sleep(Duration::from_millis(1000));

    // 2. no hook first: start works; FRAME_TRACE attached during secure mode sees nothing
    let name = "late1";
    Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@pbx-rfc"), name, &[]);
    pami.wait_event(
        Duration::from_secs(60),
        "UserEvent",
        &[("UserEvent", "SPInbound"), ("Call", name)],
    )
    .expect("late1: customer did not reach the PBX");
    originate(&mut pami, "Local/agent@conf/n", "conf", "join", name);
    let mut c = Call::wait_up(&pami, name);
    ok(&c.securepay(&mut pami, &[("Command", "start")]));
    ok(&pami.action(&[
        ("Action", "Setvar"),
        ("Channel", &c.customer),
        ("Variable", "FRAME_TRACE(white)"),
        ("Value", "DTMF_BEGIN,DTMF_END"),
    ]));
    let before = traced_digits(pbx).len();
    c.key(&mut fami, &format!("{PAN}#1230123"), "");
    pami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
        .expect("late1: SecurePayComplete");
    std::thread::sleep(Duration::from_millis(500));
    let during: String = traced_digits(pbx).chars().skip(before).collect();
    assert_eq!(
        during, "",
        "FRAME_TRACE attached during secure mode saw digits"
    );
    ok(&c.securepay(&mut pami, &[("Command", "stop")]));
    c.key(&mut fami, "D", "");
    std::thread::sleep(Duration::from_millis(700));
    let after: String = traced_digits(pbx).chars().skip(before).collect();
    assert!(
        !after.is_empty() && after.chars().all(|d| d == 'D'),
        "control: the late FRAME_TRACE must log the 'D' keyed after stop (and only it): {after:?}"
    );
    // and now that FRAME_TRACE sits before any new hook, a second start is refused
    let r = c.securepay(&mut pami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
    pbx.cli("channel request hangup all");
    phone.cli("channel request hangup all");
    assert!(pbx.is_running());
}

/// Longest run of exact-zero samples (a muted MixMonitor writes zeros): (start, length) in
/// samples.
fn longest_zero_run(pcm: &[i16]) -> (usize, usize) {
    let (mut best, mut cur_start, mut cur) = ((0, 0), 0, 0);
    for (i, s) in pcm.iter().enumerate() {
        if *s == 0 {
            if cur == 0 {
                cur_start = i;
            }
            cur += 1;
            if cur > best.1 {
                best = (cur_start, cur);
            }
        } else {
            cur = 0;
        }
    }
    best
}

/// Every run of exact-zero samples at least `min` long: (start, length).
fn zero_runs(pcm: &[i16], min: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, s) in pcm.iter().chain(std::iter::once(&1)).enumerate() {
        match (*s == 0, start) {
            (true, None) => start = Some(i),
            (false, Some(a)) => {
                if i - a >= min {
                    out.push((a, i - a));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// RMS of `pcm[from..to]` (clamped).
fn rms(pcm: &[i16], from: usize, to: usize) -> f64 {
    let w = &pcm[from.min(pcm.len())..to.min(pcm.len())];
    if w.is_empty() {
        return 0.0;
    }
    (w.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / w.len() as f64).sqrt()
}

fn recording_events(ami: &Ami, chan: &str, action: &str) -> Vec<asterisk::Msg> {
    ami.events("SecurePayRecording")
        .into_iter()
        .filter(|m| m.get("Channel") == Some(chan))
        .filter(|m| m.get("SecurePay-Recording-Action") == Some(action))
        .collect()
}

/// Waits (up to 5 s: AMI events may arrive after the action's reply) until the
/// `SecurePayRecording` events with `action` count at least `customer` / `agent` MixMonitors.
fn wait_recording(
    ami: &Ami,
    chan: &str,
    action: &str,
    customer: u32,
    agent: u32,
) -> Vec<asterisk::Msg> {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let evs = recording_events(ami, chan, action);
        if count_of(&evs, "customer") >= customer && count_of(&evs, "agent") >= agent
            || std::time::Instant::now() >= end
        {
            return evs;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count_of(evs: &[asterisk::Msg], leg: &str) -> u32 {
    evs.iter()
        .filter(|m| m.get("SecurePay-Leg") == Some(leg))
        .filter_map(|m| m.get("SecurePay-Recording-Count")?.parse::<u32>().ok())
        .sum()
}

/// `recording=pause`: every MixMonitor of the customer leg, of the agent's leg and
/// ConfBridge's own recording is muted for the secure period and unmuted when it ends:
/// the recordings hold a gap of digital silence from the start to the stop (the customer
/// plays a steady 1 kHz tone across both ends of it, so the gap is bounded by audio on both
/// sides), and no card digit; the controls before and after decode. Every exit path resumes:
/// agent stop (timed), hangup of the customer, session timeout (the agent's recording hears
/// the 'D' it plays afterwards). The admin allows `pause` per call; it is refused otherwise.
#[test]
fn recording_pause_gaps_the_secure_period_and_resumes_on_every_exit() {
    let pair = start_pair_with(
        "pau",
        &[("secure_pay.conf", "[general]\nallowed_recording = pause\n")],
    );
    let (pbx, phone) = (&pair.pbx, &pair.phone);
    let mut pami = pbx.ami();
    let mut fami = phone.ami();

    for (name, exit) in [("p1", "stop"), ("p2", "hangup"), ("p3", "timeout")] {
        Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@pbx-rfc"), name, &[]);
        pami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: customer did not reach the PBX"));
        originate(&mut pami, "Local/agent@conf/n", "conf", "join", name);
        let mut c = Call::wait_up(&pami, name);
        originate(
            &mut pami,
            &format!("PJSIP/rec-{name}@recorder"),
            "conf",
            "rec",
            name,
        );
        fami.wait_event(
            Duration::from_secs(60),
            "UserEvent",
            &[("UserEvent", "SPRecorder"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: the recorder was not invited"));
        std::thread::sleep(Duration::from_millis(1500));
        c.key(&mut fami, "A", "A");

        let opts = if exit == "timeout" {
            "recording=pause,session_timeout_ms=10000"
        } else {
            "recording=pause"
        };
        c.play_nowait(&mut fami, "1000", 4.0);
        std::thread::sleep(Duration::from_millis(1500));
        let t_start = std::time::Instant::now();
        ok(&c.securepay(&mut pami, &[("Command", "start"), ("Options", opts)]));
        let start_ack = t_start.elapsed();
        let paused = wait_recording(&pami, &c.customer, "paused", 2, 3);
        assert!(
            count_of(&paused, "customer") >= 2 && count_of(&paused, "agent") >= 3,
            "{name}: SecurePayRecording paused: the customer leg's 2 MixMonitors and the agent \
             side's (2 on the agent, 1 of ConfBridge) expected: {:#?}",
            paused.iter().map(|m| m.text()).collect::<Vec<_>>()
        );
        for m in &paused {
            assert_eq!(
                m.get("SecurePay-Recording-Mode"),
                Some("pause"),
                "{}",
                m.text()
            );
            assert_eq!(
                m.get("SecurePay-Recording-Kind"),
                Some("all"),
                "{}",
                m.text()
            );
        }
        c.wait_keyed(&fami);
        match exit {
            "stop" => {
                c.key(&mut fami, &format!("{PAN}#"), "1230123");
                pami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
                    .unwrap_or_else(|| panic!("{name}: no SecurePayComplete"));
                c.play_nowait(&mut fami, "1000", 4.0);
                std::thread::sleep(Duration::from_millis(1500));
                let t_stop = t_start.elapsed();
                ok(&c.securepay(&mut pami, &[("Command", "stop")]));
                let stop_ack = t_start.elapsed();
                let resumed = wait_recording(&pami, &c.customer, "resumed", 2, 3);
                assert!(
                    count_of(&resumed, "customer") >= 2 && count_of(&resumed, "agent") >= 3,
                    "{name}: resumed before the stop's reply: {:#?}",
                    resumed.iter().map(|m| m.text()).collect::<Vec<_>>()
                );
                c.wait_keyed(&fami);
                c.key(&mut fami, "D", "D");
                pbx.cli("channel request hangup all");
                phone.cli("channel request hangup all");
                std::thread::sleep(Duration::from_millis(2500));
                // judges: controls before/after, no card digit (paused and masked)
                for (file, controls) in [
                    (pbx.monitor(&format!("call-{name}.wav")), "AD"),
                    (pbx.monitor(&format!("call-{name}.gsm")), "AD"),
                    (pbx.monitor(&format!("agent-{name}.wav")), "AD"),
                    (conf_recording(pbx, name), "AD"),
                    (phone.monitor(&format!("recorder-{name}.wav")), "AD"),
                ] {
                    judge(&file, controls, name);
                }
                // timing: the gap of digital silence is the secure period
                let lo = t_stop.saturating_sub(start_ack).as_secs_f64();
                let hi = stop_ack.as_secs_f64();
                for f in [
                    pbx.monitor(&format!("call-{name}.wav")),
                    pbx.monitor(&format!("agent-{name}.wav")),
                    conf_recording(pbx, name),
                ] {
                    let pcm = judges::load_with_sox(&f, 8000);
                    let (at, len) = longest_zero_run(&pcm);
                    let gap = len as f64 / 8000.0;
                    let runs: Vec<(f64, f64)> = zero_runs(&pcm, 800)
                        .iter()
                        .map(|(a, l)| (*a as f64 / 8000.0, *l as f64 / 8000.0))
                        .collect();
                    eprintln!(
                        "{}: gap {gap:.3} s at {:.3} s; secure period between {lo:.3} and \
                         {hi:.3} s; file {:.3} s; zero runs >= 0.1 s (at, len): {runs:.3?}",
                        f.display(),
                        at as f64 / 8000.0,
                        pcm.len() as f64 / 8000.0
                    );
                    // MixMonitor's file timeline follows the frames, not the wall clock:
                    // on a loaded 2-core VM it ran up to ~4 % short once (9.70 s for 10.06 s)
                    assert!(
                        gap >= lo * 0.95 - 0.25 && gap <= hi * 1.02 + 0.25,
                        "{name}: {}: silent gap {gap:.3} s, secure period {lo:.3}..{hi:.3} s",
                        f.display()
                    );
                    // bounded by the customer's tone on both sides (not just a quiet moment)
                    let before = rms(&pcm, at.saturating_sub(1200), at.saturating_sub(400));
                    let after = rms(&pcm, at + len + 400, at + len + 1200);
                    assert!(
                        before > 300.0 && after > 300.0,
                        "{name}: {}: the gap must cut into the tone on both sides \
                         (rms before {before:.0}, after {after:.0})",
                        f.display()
                    );
                }
            }
            _ => {
                if exit == "hangup" {
                    let r = pami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
                    ok(&r);
                } else {
                    // the keyed card number never completes: the session times out
                    c.key(&mut fami, "42", "");
                }
                let stop = pami
                    .wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
                    .unwrap_or_else(|| panic!("{name}: no SecurePayStop"));
                assert_eq!(stop.get("SecurePay-Reason"), Some(exit), "{}", stop.text());
                let resumed = pami
                    .wait_for(Duration::from_secs(5), |m| {
                        m.event() == Some("SecurePayRecording")
                            && m.get("Channel") == Some(c.customer.as_str())
                            && m.get("SecurePay-Recording-Action") == Some("resumed")
                            && m.get("SecurePay-Leg") == Some("agent")
                    })
                    .unwrap_or_else(|| panic!("{name}: no resumed event after {exit}"));
                assert!(
                    resumed
                        .get("SecurePay-Recording-Count")
                        .is_some_and(|n| n.parse::<u32>().unwrap_or(0) >= 3),
                    "{}",
                    resumed.text()
                );
                // proof on the audio: the agent plays 'D' now; its recording must have it
                ok(&pami.action(&[
                    ("Action", "Redirect"),
                    ("Channel", &c.agent),
                    ("Context", "conf"),
                    ("Exten", "playd"),
                    ("Priority", "1"),
                ]));
                std::thread::sleep(Duration::from_millis(1500));
                pbx.cli("channel request hangup all");
                phone.cli("channel request hangup all");
                std::thread::sleep(Duration::from_millis(2000));
                let wav = pbx.monitor(&format!("agent-{name}.wav"));
                judge(&wav, "AD", name);
            }
        }
    }
    // hostile: without the admin's allowance a call may not pick pause
    let pbx2 = Instance::start("paudeny", &phone_dialplan(), &[], BASE_MODULES);
    let mut ami2 = pbx2.ami();
    let c = Call::originate(&mut ami2, "deny", &[]);
    let r = c.securepay(
        &mut ami2,
        &[("Command", "start"), ("Options", "recording=pause")],
    );
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
    assert!(
        r.get("Message").is_some_and(|m| m.contains("recording")),
        "{}",
        r.text()
    );
    assert!(ami2.events("SecurePayRecording").is_empty());
}
