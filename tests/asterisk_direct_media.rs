//! res_secure_pay with DIRECT MEDIA (issue #10): PJSIP's default `direct_media=yes` on both
//! endpoints of the PBX, so Asterisk bridges the customer and the agent natively (bridge
//! technology `native_rtp`) and re-INVITEs both phones to send RTP to each other: the customer's
//! keys never pass through the PBX. Secure mode must only answer "started" once the customer's
//! media is anchored in the PBX core again.
//!
//! Two Asterisk 22 instances on 127.0.0.1: `phones` (no secure_pay module: the customer's phone
//! AND the agent's phone, each a PJSIP UA towards the PBX) and `pbx` (the module). The agent's
//! phone records what it RECEIVES (MixMonitor on the phones instance, so the recording sees the
//! RTP even while it flows phone-to-phone) and its AMI shows every DTMF event it receives.
//! - control: no secure mode, the customer keys in-band and RFC 4733 digits: the agent's phone
//!   gets them (its DTMF events; multimon-ng and spandsp on its recording), while the PBX's bridge
//!   is native;
//! - secure: `SecurePay` start by AMI while the bridge is native; 50 ms after the reply the
//!   customer keys and keeps keying: the agent's phone gets no DTMF event and its recording
//!   decodes to nothing (both judges), the PBX captured the keys (masked events); after the
//!   stop the bridge is native again (the call costs the PBX no more than before);
//! - hostile: a customer phone that sends no RTP (so its media is never seen in the core after
//!   the bridge leaves native mode): the start is refused after the anchor timeout with a
//!   `media-bypass` error, and no `SecurePayStart` is ever announced.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::{Duration, Instant};

use asterisk::free_udp_port;
use asterisk::{
    multimon_digits, playtones_arg, playtones_ms, spandsp_digits, Ami, Instance, BASE_MODULES,
};

const SIP_MODULES: &str = "res_pjproject.so res_sorcery_config.so res_sorcery_memory.so \
res_sorcery_astdb.so res_pjsip.so res_pjsip_session.so res_pjsip_sdp_rtp.so res_rtp_asterisk.so \
chan_pjsip.so res_pjsip_pubsub.so res_pjsip_endpoint_identifier_ip.so bridge_native_rtp.so \
res_pjsip_nat.so";

const WAIT: Duration = Duration::from_secs(30);
const INBAND: &str = "1234567890";
const OOB: &str = "4242424242";

fn endpoint(name: &str, context: &str, port: u16, direct: &str) -> String {
    format!(
        "[{name}]\ntype=endpoint\ncontext={context}\ndisallow=all\nallow=ulaw\ndtmf_mode=rfc4733\n\
         aors={name}\ndirect_media={direct}\nmedia_address=127.0.0.1\nbind_rtp_to_media_address=yes\n\n\
         [{name}]\ntype=aor\ncontact=sip:127.0.0.1:{port}\n\n"
    )
}

fn transport(port: u16) -> String {
    format!("[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{port}\n\n")
}

/// How long the SIP relay holds every re-INVITE the PBX sends to the phones: the time a real
/// network and real phones may take to move the RTP back to the PBX after the bridge leaves
/// native mode (on loopback it would take a few ms and hide the window).
const REINVITE_DELAY: Duration = Duration::from_millis(1500);

/// A UDP relay for SIP between the PBX and the phones (the phones advertise the relay as
/// their address): forwards both ways, holding re-INVITEs from the PBX (INVITE with a To tag)
/// for [`REINVITE_DELAY`] (retransmissions of a held one are dropped, as a slow network would
/// deliver one copy). Runs until the test process ends.
fn sip_relay(pbx_port: u16, phones_port: u16) -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut held: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let pkt = buf[..n].to_vec();
            let to_phones = from.port() != phones_port;
            let dest = if to_phones { phones_port } else { pbx_port };
            let text = String::from_utf8_lossy(&pkt);
            let reinvite = to_phones
                && text.starts_with("INVITE ")
                && text.lines().take_while(|l| !l.is_empty()).any(|l| {
                    let l = l.to_ascii_lowercase();
                    (l.starts_with("to:") || l.starts_with("t:")) && l.contains("tag=")
                });
            let s = sock.try_clone().unwrap();
            if std::env::var_os("SP_RELAY_DEBUG").is_some() {
                eprintln!(
                    "relay {} -> {dest} reinvite={reinvite}: {}",
                    from.port(),
                    text.lines().next().unwrap_or("")
                );
            }
            if reinvite {
                let branch = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("via:"))
                    .and_then(|l| l.split("branch=").nth(1))
                    .map(|b| b.split(';').next().unwrap_or("").trim().to_owned())
                    .unwrap_or_default();
                if !held.insert(branch) {
                    continue; // a retransmission of a held re-INVITE
                }
                std::thread::spawn(move || {
                    std::thread::sleep(REINVITE_DELAY);
                    let _ = s.send_to(&pkt, ("127.0.0.1", dest));
                });
            } else {
                let _ = s.send_to(&pkt, ("127.0.0.1", dest));
            }
        }
    });
    port
}

/// The phones: `cust,talk` is the customer's phone (sends silence continuously unless SILENT=1,
/// like a real phone; keys when GLOBAL(GO_<call>) is 1); `agentphone` answers the PBX's call to
/// the agent and records what it receives.
fn phones_dialplan() -> String {
    r#"[general]
[globals]
[cust]
exten => talk,1,UserEvent(CustUp,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,ExecIf($["${SILENT}" != "1"]?Playtones(0))
 same => n(loop),GotoIf($["${GLOBAL(GO_${CALLNAME})}" = "1"]?key)
 same => n,Wait(0.02)
 same => n,Goto(loop)
 same => n(key),Set(ROUND=0)
 same => n(round),GotoIf($[${LEN(${GLOBAL(TONES)})} = 0]?oob)
 same => n,Playtones(${GLOBAL(TONES)})
 same => n,Wait(${GLOBAL(TONEWAIT)})
 same => n,StopPlaytones()
 same => n(oob),SendDTMF(${GLOBAL(OOBKEYS)},120,100)
 same => n,ExecIf($["${SILENT}" != "1"]?Playtones(0))
 same => n,Set(ROUND=$[${ROUND} + 1])
 same => n,GotoIf($[${ROUND} < ${GLOBAL(ROUNDS)}]?round)
 same => n,Set(GLOBAL(GO_${CALLNAME})=0)
 same => n,UserEvent(CustKeyed,Call: ${CALLNAME})
 same => n,Goto(loop)

[agentphone]
; (no N/X/Z in the pattern: they are digit classes)
exten => _ag-.,1,Answer()
 same => n,MixMonitor(agent-${EXTEN:3}.wav)
 same => n,UserEvent(AgentUp,Call: ${EXTEN:3},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()
"#
    .to_owned()
}

/// The PBX: the customer's call is dialled straight to the agent (no recording, no features:
/// nothing on the PBX needs the audio, so the bridge goes native).
fn pbx_dialplan() -> &'static str {
    r#"[general]
[globals]
[sp-in]
exten => _call-.,1,Set(CALLNAME=${EXTEN:5})
 same => n,UserEvent(SPInbound,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Dial(PJSIP/ag-${CALLNAME}@agent)
 same => n,Hangup()
"#
}

struct Rig {
    pbx: Instance,
    phones: Instance,
    pami: Ami,
    fami: Ami,
}

fn rig(name: &str) -> Rig {
    let pbx_port = free_udp_port();
    let phones_port = free_udp_port();
    let relay = sip_relay(pbx_port, phones_port);
    let modules = format!("{BASE_MODULES} {SIP_MODULES}");
    // both PBX endpoints with direct media, PJSIP's default (written out: the point of the test)
    let mut pbx_sip = transport(pbx_port);
    pbx_sip.push_str(&endpoint("phone", "sp-in", relay, "yes"));
    pbx_sip.push_str(&endpoint("agent", "sp-in", relay, "yes"));
    pbx_sip.push_str("[phone]\ntype=identify\nendpoint=phone\nmatch=127.0.0.1\n");
    // the phones advertise the relay (Contact/Via), so the PBX's in-dialog requests pass it
    let mut ph_sip = transport(phones_port).replace(
        "\n\n",
        &format!("\nexternal_signaling_address=127.0.0.1\nexternal_signaling_port={relay}\n\n"),
    );
    ph_sip.push_str(&endpoint("pbx", "agentphone", pbx_port, "no"));
    ph_sip.push_str("[pbx]\ntype=identify\nendpoint=pbx\nmatch=127.0.0.1\n");
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    let base = 35000 + (std::process::id() % 20) as u16 * 1000;
    let pbx = Instance::start(
        &format!("{name}pbx"),
        pbx_dialplan(),
        &[("pjsip.conf", &pbx_sip), ("rtp.conf", &rtp(base))],
        &modules,
    );
    let phones = Instance::start_with(
        &format!("{name}ph"),
        &phones_dialplan(),
        &[("pjsip.conf", &ph_sip), ("rtp.conf", &rtp(base + 500))],
        &modules,
        false,
    );
    if std::env::var_os("SP_RELAY_DEBUG").is_some() {
        phones.cli("rtp set debug on");
        phones.cli("core set debug 3");
    }
    let pami = pbx.ami();
    let fami = phones.ami();
    Rig {
        pbx,
        phones,
        pami,
        fami,
    }
}

struct DmCall {
    name: String,
    /// customer leg on the PBX
    customer: String,
    /// the agent's phone channel (on the phones instance)
    agent_phone: String,
}

fn call(r: &mut Rig, name: &str, silent: bool) -> DmCall {
    let vars = format!("CALLNAME={name},SILENT={}", if silent { "1" } else { "0" });
    let resp = r.fami.action(&[
        ("Action", "Originate"),
        ("Channel", &format!("PJSIP/call-{name}@pbx")),
        ("Context", "cust"),
        ("Exten", "talk"),
        ("Priority", "1"),
        ("Variable", &vars),
        ("Async", "true"),
    ]);
    assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
    let inbound = r
        .pami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: no inbound call on the PBX"));
    let agent = r
        .fami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "AgentUp"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: the agent's phone did not answer"));
    r.fami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "CustUp"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: the customer's phone is not up"));
    DmCall {
        name: name.to_owned(),
        customer: inbound.get("Chan").unwrap_or("").to_owned(),
        agent_phone: agent.get("Chan").unwrap_or("").to_owned(),
    }
}

/// The PBX's bridge technologies (`bridge show all`).
fn bridge_techs(pbx: &Instance) -> String {
    pbx.cli("bridge show all")
}

fn wait_native(pbx: &Instance, name: &str) {
    let end = Instant::now() + WAIT;
    loop {
        let out = bridge_techs(pbx);
        if out.contains("native_rtp") {
            // the (delayed) re-INVITEs that move the RTP phone-to-phone follow the bridge start
            std::thread::sleep(REINVITE_DELAY + Duration::from_millis(1500));
            return;
        }
        assert!(
            Instant::now() < end,
            "{name}: the PBX never bridged natively (direct media): {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the customer keys at the next GO: `inband` as tones, then `oob` as RFC 4733, `rounds`
/// times (global variables: the tone list has commas, which Originate variables split on).
fn set_keys(r: &mut Rig, inband: &str, oob: &str, rounds: u32) {
    let wait = f64::from(playtones_ms(inband, 120, 120) + 200) / 1000.0;
    for (k, v) in [
        ("TONES", playtones_arg(inband, 120, 120)),
        ("TONEWAIT", format!("{wait:.2}")),
        ("OOBKEYS", oob.to_owned()),
        ("ROUNDS", rounds.to_string()),
    ] {
        let resp = r.fami.action(&[
            ("Action", "Setvar"),
            ("Variable", &format!("GLOBAL({k})")),
            ("Value", &v),
        ]);
        assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
    }
}

fn go(r: &mut Rig, c: &DmCall) {
    let resp = r.fami.action(&[
        ("Action", "Setvar"),
        ("Variable", &format!("GLOBAL(GO_{})", c.name)),
        ("Value", "1"),
    ]);
    assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
}

/// Waits for the customer to finish its `n`-th keying of this call (CustKeyed events count).
fn wait_keyed_n(r: &Rig, c: &DmCall, n: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let done = r
            .fami
            .events("UserEvent")
            .iter()
            .filter(|m| m.get("UserEvent") == Some("CustKeyed") && m.get("Call") == Some(&c.name))
            .count();
        if done >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "{}: the customer did not finish keying ({done}/{n})",
            c.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_keyed(r: &Rig, c: &DmCall) {
    wait_keyed_n(r, c, 1);
}

/// Digits of the DTMF events the agent's phone received.
fn agent_phone_dtmf(r: &Rig, c: &DmCall) -> String {
    r.fami
        .all()
        .iter()
        .filter(|m| m.event() == Some("DTMFEnd"))
        .filter(|m| m.get("Channel") == Some(c.agent_phone.as_str()))
        .map(|m| m.get("Digit").unwrap_or("?").to_owned())
        .collect()
}

fn hangup(r: &mut Rig, c: &DmCall) {
    let resp = r
        .fami
        .action(&[("Action", "Hangup"), ("Channel", &c.agent_phone)]);
    assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
    // MixMonitor closes the file at hangup
    std::thread::sleep(Duration::from_millis(1500));
}

/// The instrument: the agent's phone is a stock Asterisk; when the RTP source it receives from
/// changes (PBX -> customer's phone at the direct-media switch) with a LOWER sequence number,
/// it stops passing the voice to its recording (seen in about half the calls or more; RFC 4733 still
/// arrives). A call where the in-band control key is not heard at the agent's phone is
/// therefore retried instead of judged: a blind recorder must never make a leak test pass.
const ATTEMPTS: usize = 8;

/// Control: no secure mode; the bridge is native, the keys reach the agent's phone.
/// `Some(())` once judged, `None` if the recorder was blind (retry).
fn control_call(r: &mut Rig, name: &str) -> Option<()> {
    let c = call(r, name, false);
    wait_native(&r.pbx, name);
    let mark_p = r.pami.all().len();
    set_keys(r, INBAND, OOB, 2);
    go(r, &c);
    wait_keyed(r, &c);
    std::thread::sleep(Duration::from_millis(500));
    let techs = bridge_techs(&r.pbx);
    assert!(
        techs.contains("native_rtp"),
        "control: bridge not native: {techs}"
    );
    let got = agent_phone_dtmf(r, &c);
    assert!(
        got.contains(OOB),
        "control: the agent's phone must receive the RFC 4733 digits: {got:?}"
    );
    // with direct media the PBX itself does not even see the keys
    let pbx_dtmf = r.pami.all()[mark_p..]
        .iter()
        .filter(|m| m.event() == Some("DTMFEnd"))
        .count();
    assert_eq!(
        pbx_dtmf, 0,
        "control: the PBX saw DTMF, so the media was not direct"
    );
    hangup(r, &c);
    let wav0 = r.phones.monitor(&format!("agent-{name}.wav"));
    let d = multimon_digits(&wav0);
    // Blind for the whole call, or for its first or last keys (the phone-to-phone stream
    // switched source while the recorder was listening): the keys it did hear are a run of
    // INBAND in order, with nothing else. Another call; anything else fails below.
    if d.is_empty() || (INBAND.contains(d.as_str()) && d != INBAND) {
        eprintln!(
            "{name}: the agent phone's recorder was blind (RTP source switch), heard {d:?}; retrying"
        );
        return None;
    }
    assert!(
        d.contains(INBAND),
        "control: multimon-ng must decode the in-band keys at the agent's phone: {d:?}"
    );
    let (sd, sp) = spandsp_digits(&wav0);
    assert!(
        sd.contains(INBAND) && sp.contains(INBAND),
        "control: spandsp must decode the in-band keys at the agent's phone: {sd:?} {sp:?}"
    );
    Some(())
}

/// Secure: started by AMI while the bridge is native (direct media), keys 50 ms after the
/// reply. `None` if the recorder was blind to the phone-to-phone stream (retry).
fn secure_call(r: &mut Rig, name: &str) -> Option<()> {
    let c1 = call(r, name, false);
    wait_native(&r.pbx, name);
    // in-call control: 'A' keyed phone-to-phone before the start must be heard by the agent
    set_keys(r, "A", "A", 1);
    go(r, &c1);
    wait_keyed(r, &c1);
    set_keys(r, INBAND, OOB, 2);
    let mark_f = r.fami.all().len();
    let t0 = Instant::now();
    let resp = r.pami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &c1.customer),
        ("Command", "start"),
    ]);
    assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    go(r, &c1);
    eprintln!("{name}: start answered after {took:?}");
    // the (re-INVITE) delay was waited out: the start is answered only once anchored
    assert!(took >= REINVITE_DELAY, "{name}: answered in {took:?}");
    // the start was announced exactly once, before the reply
    let starts: Vec<_> = r
        .pami
        .events("SecurePayStart")
        .into_iter()
        .filter(|m| m.get("Channel") == Some(c1.customer.as_str()))
        .collect();
    assert_eq!(starts.len(), 1, "{starts:?}");
    let techs = bridge_techs(&r.pbx);
    assert!(
        !techs.contains("native_rtp"),
        "secure: the bridge is still native after the start reply: {techs}"
    );
    wait_keyed_n(r, &c1, 2);
    std::thread::sleep(Duration::from_millis(700));
    // the keys reached the PBX core and were captured (masked), in-band and RFC 4733
    let digits = r
        .pami
        .events("SecurePayDigit")
        .into_iter()
        .filter(|m| m.get("Channel") == Some(c1.customer.as_str()))
        .count();
    assert!(
        digits >= 10,
        "secure: the PBX captured only {digits} keys: {:#?}",
        asterisk::sp_events_of(&r.pami, &c1.customer)
            .iter()
            .map(|m| m.text())
            .collect::<Vec<_>>()
    );
    assert!(
        r.pami.events("SecurePayError").is_empty(),
        "{:?}",
        r.pami.events("SecurePayError")
    );
    let after: String = r.fami.all()[mark_f..]
        .iter()
        .filter(|m| m.event() == Some("DTMFEnd") || m.event() == Some("DTMFBegin"))
        .filter(|m| m.get("Channel") == Some(c1.agent_phone.as_str()))
        .map(|m| m.text())
        .collect();
    assert_eq!(after, "", "secure: the agent's phone received DTMF events");
    // After the payment the call costs what it did before: once secure mode stops (its hook
    // detached), the PBX bridges natively again and the RTP goes phone-to-phone.
    let resp = r.pami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &c1.customer),
        ("Command", "stop"),
    ]);
    assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
    let t1 = Instant::now();
    while !bridge_techs(&r.pbx).contains("native_rtp") {
        assert!(
            t1.elapsed() < WAIT,
            "{name}: after stop the bridge stayed in the core: {}",
            bridge_techs(&r.pbx)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{name}: native again {:?} after stop", t1.elapsed());
    hangup(r, &c1);
    let wav1 = r.phones.monitor(&format!("agent-{name}.wav"));
    let d = multimon_digits(&wav1);
    if !d.contains('A') {
        eprintln!("{name}: the agent phone's recorder was blind (RTP source switch); retrying");
        return None;
    }
    let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
    assert_eq!(
        leaked, "",
        "secure: multimon-ng decoded digits at the agent's phone"
    );
    let (sd, sp) = spandsp_digits(&wav1);
    for (judge, d) in [("spandsp", &sd), ("spandsp permissive", &sp)] {
        assert!(
            d.contains('A'),
            "control: {judge} must hear the 'A' keyed before the start: {d:?}"
        );
        let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
        assert_eq!(
            leaked, "",
            "secure: {judge} decoded digits at the agent's phone"
        );
    }
    Some(())
}

#[test]
fn direct_media_secure_start_waits_for_anchored_media() {
    let mut r = rig("dm");
    assert!(
        (0..ATTEMPTS).any(|i| control_call(&mut r, &format!("c{i}")).is_some()),
        "the agent phone's recorder was blind in {ATTEMPTS} control calls"
    );
    assert!(
        (0..ATTEMPTS).any(|i| secure_call(&mut r, &format!("s{i}")).is_some()),
        "the agent phone's recorder was blind in {ATTEMPTS} secure calls"
    );
    for m in r.pami.all() {
        assert!(
            !m.text().contains(OOB) && !m.text().contains(INBAND),
            "keys on the PBX's AMI: {}",
            m.text()
        );
    }
}

#[test]
fn direct_media_start_refused_when_media_never_reaches_the_core() {
    let mut r = rig("dmh");
    // a phone that sends no RTP at rest: after the bridge leaves native mode nothing of it
    // reaches the core, so the start cannot be confirmed
    let c = call(&mut r, "h1", true);
    wait_native(&r.pbx, "h1");
    let t0 = Instant::now();
    let resp = r.pami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &c.customer),
        ("Command", "start"),
    ]);
    let took = t0.elapsed();
    assert_eq!(resp.get("Response"), Some("Error"), "{}", resp.text());
    assert!(
        resp.get("Message")
            .is_some_and(|m| m.contains("does not pass through the PBX")),
        "{}",
        resp.text()
    );
    assert!(
        took >= Duration::from_secs(4),
        "refused too early ({took:?}): the anchor wait did not run"
    );
    let err = r
        .pami
        .wait_event(
            WAIT,
            "SecurePayError",
            &[
                ("Channel", &c.customer),
                ("SecurePay-Error-Code", "media-bypass"),
            ],
        )
        .expect("media-bypass error event");
    assert!(err.get("SecurePay-Error-Message").is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        r.pami.events("SecurePayStart").is_empty(),
        "a start was announced though the media never reached the core"
    );
    // nothing left attached: status says not active; the module can unload
    let st = r.pami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &c.customer),
        ("Command", "stop"),
    ]);
    assert_eq!(st.get("Response"), Some("Error"), "{}", st.text());
    // control: the same phone keying in this call is still heard by the agent (RFC 4733),
    // i.e. this phone's media flows phone-to-phone again
    set_keys(&mut r, "", OOB, 1);
    go(&mut r, &c);
    wait_keyed(&r, &c);
    std::thread::sleep(Duration::from_millis(500));
    let got = agent_phone_dtmf(&r, &c);
    assert!(got.contains(OOB), "control: {got:?}");
    hangup(&mut r, &c);
}
