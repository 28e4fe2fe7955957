//! res_secure_pay on REAL SIP over 127.0.0.1: two Asterisk 22 instances talking PJSIP/RTP on
//! loopback. The "phone" instance (no secure_pay module: a SIP peer we did not write) calls the
//! "pbx" instance and keys a test card as RFC 4733 telephone-events (endpoint `pbx-rfc`), as
//! SIP INFO (endpoint `pbx-info`) and as in-band tones in the G.711 µ-law audio. The PBX leg
//! runs secure mode; the agent must get no digit (AMI DTMF events; multimon-ng on the agent
//! and customer-leg recordings), while the capture is right. Control: keys before start.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{free_udp_port, pjsip_conf, pjsip_conf_codec, SIP_MODULES};
use asterisk::{
    multimon_digits, phone_dialplan, spandsp_digits, Call, Instance, BASE_MODULES, WAIT,
};

const PAN: &str = "4242424242424242";

#[test]
fn sip_rfc4733_info_and_inband_digits_are_masked_and_captured() {
    let pbx_port = free_udp_port();
    let phone_port = free_udp_port();
    let modules = format!("{BASE_MODULES} {SIP_MODULES}");
    // PBX: one endpoint for the phone, identified by its address
    let mut pbx_sip = pjsip_conf(pbx_port, &[("phone", "rfc4733", phone_port)], "sp-in");
    pbx_sip.push_str("[phone]\ntype=identify\nendpoint=phone\nmatch=127.0.0.1\n");
    let pbx_ext = format!(
        "{}\n[sp-in]\nexten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n same => n,Set(__RECORD=1)\n same => n,Goto(sp,inbound,1)\n",
        phone_dialplan()
    );
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    let pbx = Instance::start(
        "sippbx",
        &pbx_ext,
        &[("pjsip.conf", &pbx_sip), ("rtp.conf", &rtp(31000))],
        &modules,
    );
    // phone: two endpoints towards the PBX, one per out-of-band DTMF method
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
        "sipphone",
        &phone_dialplan(),
        &[("pjsip.conf", &phone_sip), ("rtp.conf", &rtp(32000))],
        &modules,
        false,
    );
    let mut pami = pbx.ami();
    let mut fami = phone.ami();

    // call 1: RFC 4733 for the card number, in-band for expiry + security code
    // call 2: SIP INFO for everything
    for (name, endpoint, oob, inband) in [
        ("r1", "pbx-rfc", format!("{PAN}#"), "1230123"),
        ("i1", "pbx-info", format!("{PAN}#1230123"), ""),
    ] {
        Call::originate_channel(
            &mut fami,
            &format!("PJSIP/call-{name}@{endpoint}"),
            name,
            &[],
        );
        let mut c = Call::wait_up(&pami, name);
        assert!(c.customer.starts_with("PJSIP/phone-"), "{}", c.customer);
        let agent_prefix = c.agent_prefix().to_owned();
        let dtmf_on_agent = |ami: &asterisk::Ami, from: usize| -> String {
            ami.all()[from..]
                .iter()
                .filter(|m| m.event() == Some("DTMFEnd"))
                .filter(|m| {
                    m.get("Channel")
                        .is_some_and(|ch| ch.starts_with(&agent_prefix))
                })
                .map(|m| m.get("Digit").unwrap_or("?").to_owned())
                .collect()
        };
        // control: before start the agent gets the customer's keys (out-of-band and in-band)
        let mark0 = pami.all().len();
        c.key(&mut fami, "A", "A");
        std::thread::sleep(Duration::from_millis(700));
        let before = dtmf_on_agent(&pami, mark0);
        assert!(
            before.contains('A'),
            "{name}: control DTMF before start did not reach the agent: {before:?}"
        );

        let r = c.securepay(&mut pami, &[("Command", "start")]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
        let mark = pami.all().len();
        c.key(&mut fami, &oob, inband);
        let complete = pami
            .wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
            .unwrap_or_else(|| {
                panic!(
                    "{name}: no SecurePayComplete: {:#?}",
                    asterisk::sp_events_of(&pami, &c.customer)
                        .iter()
                        .map(|m| m.text())
                        .collect::<Vec<_>>()
                )
            });
        assert!(complete
            .get("SecurePay-Card-Number")
            .is_some_and(|m| m.ends_with("4242") && m.len() == 16));
        std::thread::sleep(Duration::from_millis(500));
        let during = dtmf_on_agent(&pami, mark);
        assert_eq!(during, "", "{name}: the agent got DTMF during secure mode");
        let any: Vec<String> = pami.all()[mark..]
            .iter()
            .filter(|m| matches!(m.event(), Some("DTMFBegin") | Some("DTMFEnd")))
            .map(|m| m.text())
            .collect();
        assert!(
            any.is_empty(),
            "{name}: DTMF events on the PBX during secure mode: {any:?}"
        );
        let r = ami_hangup(&mut pami, &c.customer);
        assert_eq!(r, "Success");
        pami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
            .expect("stop on hangup");
        std::thread::sleep(Duration::from_millis(1500));
        for wav in [format!("agent-{name}.wav"), format!("call-{name}.wav")] {
            let d = multimon_digits(&pbx.monitor(&wav));
            assert!(
                d.contains('A'),
                "{name}: control in-band 'A' must be heard in {wav}: {d:?}"
            );
            let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
            assert_eq!(leaked, "", "{name}: digits decoded from {wav}");
            // second judge: spandsp dtmf_rx, same control
            let (sd, sp) = spandsp_digits(&pbx.monitor(&wav));
            for (judge, d) in [("spandsp", &sd), ("spandsp permissive", &sp)] {
                assert!(
                    d.contains('A'),
                    "{name}: control: {judge} must hear 'A' in {wav}: {d:?}"
                );
                let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
                assert_eq!(leaked, "", "{name}: {judge}: digits decoded from {wav}");
            }
        }
    }
    for m in pami.all() {
        assert!(
            !m.text().contains(PAN),
            "card number on the PBX's AMI: {}",
            m.text()
        );
    }
}

fn ami_hangup(ami: &mut asterisk::Ami, chan: &str) -> String {
    ami.action(&[("Action", "Hangup"), ("Channel", chan)])
        .get("Response")
        .unwrap_or("")
        .to_owned()
}

/// A codec the masker cannot inspect (G.722): secure mode must fail closed: every customer
/// audio frame is dropped while secure (one SecurePayError says so), DTMF frames are still
/// swallowed and captured. Control: before start, tones and DTMF in G.722 reach the agent.
#[test]
fn sip_uninspectable_codec_fails_closed() {
    let pbx_port = free_udp_port();
    let phone_port = free_udp_port();
    let modules = format!("{BASE_MODULES} {SIP_MODULES} codec_g722.so codec_resample.so");
    let mut pbx_sip = pjsip_conf_codec(
        pbx_port,
        &[("phone", "rfc4733", phone_port)],
        "sp-in",
        "g722",
    );
    pbx_sip.push_str("[phone]\ntype=identify\nendpoint=phone\nmatch=127.0.0.1\n");
    let pbx_ext = format!(
        "{}\n[sp-in]\nexten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n same => n,Set(__RECORD=1)\n same => n,Goto(sp,inbound,1)\n",
        phone_dialplan()
    );
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    let pbx = Instance::start(
        "g722pbx",
        &pbx_ext,
        &[("pjsip.conf", &pbx_sip), ("rtp.conf", &rtp(33000))],
        &modules,
    );
    let mut phone_sip = pjsip_conf_codec(
        phone_port,
        &[("pbx-rfc", "rfc4733", pbx_port)],
        "sp",
        "g722",
    );
    phone_sip.push_str("[pbx-rfc]\ntype=identify\nendpoint=pbx-rfc\nmatch=127.0.0.1\n");
    let phone = Instance::start_with(
        "g722phone",
        &phone_dialplan(),
        &[("pjsip.conf", &phone_sip), ("rtp.conf", &rtp(34000))],
        &modules,
        false,
    );
    let mut pami = pbx.ami();
    let mut fami = phone.ami();
    let name = "g1";
    Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@pbx-rfc"), name, &[]);
    let mut c = Call::wait_up(&pami, name);
    c.key(&mut fami, "A", "A");
    std::thread::sleep(Duration::from_millis(700));
    let r = c.securepay(&mut pami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let mark = pami.all().len();
    c.key(&mut fami, &format!("{PAN}#"), "1230123");
    let err = pami
        .wait_event(
            WAIT,
            "SecurePayError",
            &[
                ("Channel", &c.customer),
                ("SecurePay-Error-Code", "uninspectable-codec"),
            ],
        )
        .expect("SecurePayError uninspectable-codec");
    assert!(
        err.get("SecurePay-Error-Message")
            .is_some_and(|m| m.contains("g722")),
        "{}",
        err.text()
    );
    // out-of-band digits still captured (card number complete), in-band ones muted unseen
    pami.wait_event(
        WAIT,
        "SecurePayField",
        &[
            ("Channel", &c.customer),
            ("SecurePay-Field", "payment-card-number"),
            ("SecurePay-Result", "complete"),
        ],
    )
    .expect("card number captured from RFC 4733");
    std::thread::sleep(Duration::from_millis(500));
    let agent_dtmf: Vec<String> = pami.all()[mark..]
        .iter()
        .filter(|m| matches!(m.event(), Some("DTMFBegin") | Some("DTMFEnd")))
        .map(|m| m.text())
        .collect();
    assert!(
        agent_dtmf.is_empty(),
        "DTMF events during secure mode: {agent_dtmf:?}"
    );
    assert_eq!(ami_hangup(&mut pami, &c.customer), "Success");
    pami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
        .expect("stop");
    std::thread::sleep(Duration::from_millis(1500));
    for wav in [format!("agent-{name}.wav"), format!("call-{name}.wav")] {
        let d = multimon_digits(&pbx.monitor(&wav));
        assert!(
            d.contains('A'),
            "control: in-band 'A' over G.722 must be heard in {wav}: {d:?}"
        );
        let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
        assert_eq!(
            leaked, "",
            "digits decoded from {wav} despite the uninspectable codec"
        );
        let (sd, sp) = spandsp_digits(&pbx.monitor(&wav));
        for (judge, d) in [("spandsp", &sd), ("spandsp permissive", &sp)] {
            assert!(
                d.contains('A'),
                "control: {judge} must hear the in-band 'A' over G.722 in {wav}: {d:?}"
            );
            let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
            assert_eq!(leaked, "", "{judge}: digits decoded from {wav} (G.722)");
        }
    }
}
