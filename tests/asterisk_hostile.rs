//! Issue #9 end to end on a REAL Asterisk 22 over PJSIP: a hostile agent desktop (anyone with
//! the AMI credentials the desktop uses) tries to read or redirect the card.
//!
//! Two instances talk PJSIP/RTP on loopback: the "phone" (no secure_pay) keys the card as RFC
//! 4733 events; the "pbx" runs res_secure_pay with the admin's secure_pay.conf: one connector
//! profile to a loopback HTTPS server (test CA), `pan_display = last4`, no generic fields.
//! The hostile desktop tries, through the AMI `SecurePay` action:
//! - per-call options that redirect the card (`connector.evil.url`, `connector.psp.url`, a
//!   `ca_file`), weaken masking (`lookahead_ms=0`) or widen the display
//!   (`pan_display=first6last4`, `show_expiry=yes`): each refused, naming the key, with no
//!   session started (state unchanged);
//! - `capture reference` / `capture amount` (the customer would be told to key the card
//!   there): refused, session unchanged.
//!
//! A second loopback listener plays the attacker's server: it must get NO connection (control:
//! the test connects to it once and the counter sees it). The honest submit reaches the admin's
//! server (control that submit works). Every AMI message and the PBX's full log are scanned for
//! the card number (any layout), the security code and the hidden expiry (control: the scan
//! finds them in a string that has them).
#![cfg(feature = "asterisk")]

mod asterisk;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asterisk::{free_udp_port, SIP_MODULES};
use asterisk::{https_server, phone_dialplan, pki, Call, Instance, BASE_MODULES, WAIT};

const PAN: &str = "378282246310005"; // Amex test number (4-digit security code)
const EXPIRY: &str = "1230";
const CVV: &str = "7391";

fn pjsip_conf(my_port: u16, peers: &[(&str, u16)], context: &str) -> String {
    let mut s =
        format!("[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{my_port}\n\n");
    for (name, port) in peers {
        s.push_str(&format!(
            "[{name}]\ntype=endpoint\ncontext={context}\ndisallow=all\nallow=ulaw\ndtmf_mode=rfc4733\n\
             aors={name}\ndirect_media=no\nrtp_symmetric=yes\nmedia_address=127.0.0.1\n\
             bind_rtp_to_media_address=yes\n\n[{name}]\ntype=aor\ncontact=sip:127.0.0.1:{port}\n\n\
             [{name}]\ntype=identify\nendpoint={name}\nmatch=127.0.0.1\n\n"
        ));
    }
    s
}

/// The attacker's server: counts every TCP connection (TLS or not) and drops it.
fn attacker() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            n2.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    (port, n)
}

/// Card data in `text`: the card number in any common layout, or the security code / expiry as
/// a digit group of their own.
fn leak(text: &str) -> Option<&'static str> {
    let squeezed: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '_' | ','))
        .collect();
    if squeezed.contains(PAN) {
        return Some("card number");
    }
    for g in text.split(|c: char| !c.is_ascii_digit()) {
        if g == CVV {
            return Some("security code");
        }
        if g == EXPIRY {
            return Some("expiry");
        }
    }
    None
}

#[test]
fn hostile_agent_desktop_cannot_read_or_redirect_the_card() {
    // Control for the scan.
    assert_eq!(
        leak("SecurePay-Masked: 378282246310005"),
        Some("card number")
    );
    assert_eq!(leak("x 3782-822463-10005 y"), Some("card number"));
    assert_eq!(leak("SecurePay-Masked: 7391"), Some("security code"));
    assert_eq!(leak("SecurePay-Masked: 1230"), Some("expiry"));
    assert_eq!(leak("SecurePay-Card-Number: ***********0005"), None);

    let pki = pki();
    let (psp_port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_admin_1","error_code":null,"error_message":null}"#,
    );
    let (evil_port, evil_hits) = attacker();
    // Control: the attacker counter sees a connection.
    drop(std::net::TcpStream::connect(("127.0.0.1", evil_port)).unwrap());
    let t0 = std::time::Instant::now();
    while evil_hits.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        1,
        "control: attacker counter"
    );
    evil_hits.store(0, Ordering::SeqCst);

    let conf = format!(
        "[general]\nconnector = psp\npan_display = last4\n\n[psp]\n\
         url = https://127.0.0.1:{psp_port}/pay\nca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 5000\n"
    );
    let pbx_port = free_udp_port();
    let phone_port = free_udp_port();
    let modules = format!("{BASE_MODULES} {SIP_MODULES}");
    let pbx_ext = format!(
        "{}\n[sp-in]\nexten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n same => n,Goto(sp,inbound,1)\n",
        phone_dialplan()
    );
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    let pbx = Instance::start(
        "hostilepbx",
        &pbx_ext,
        &[
            ("secure_pay.conf", &conf),
            ("test-ca.pem", &pki.ca_pem),
            (
                "pjsip.conf",
                &pjsip_conf(pbx_port, &[("phone", phone_port)], "sp-in"),
            ),
            ("rtp.conf", &rtp(33000)),
        ],
        &modules,
    );
    let phone = Instance::start_with(
        "hostilephone",
        &phone_dialplan(),
        &[
            (
                "pjsip.conf",
                &pjsip_conf(phone_port, &[("pbx", pbx_port)], "sp"),
            ),
            ("rtp.conf", &rtp(34000)),
        ],
        &modules,
        false,
    );
    let mut pami = pbx.ami();
    let mut fami = phone.ami();
    Call::originate_channel(&mut fami, "PJSIP/call-h1@pbx", "h1", &[]);
    let mut c = Call::wait_up(&pami, "h1");
    assert!(c.customer.starts_with("PJSIP/phone-"), "{}", c.customer);

    let no_session = |ami: &mut asterisk::Ami, c: &Call| {
        let r = c.securepay(ami, &[("Command", "status")]);
        assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
        assert!(r.text().contains("not active"), "{}", r.text());
    };
    let evil = format!("https://127.0.0.1:{evil_port}/x");
    let hostile_starts = [
        (
            format!("connector=evil,connector.evil.url={evil}"),
            "connector.evil.url",
        ),
        (format!("connector.psp.url={evil}"), "connector.psp.url"),
        (
            "connector.psp.ca_file=/tmp/evil-ca.pem".to_string(),
            "connector.psp.ca_file",
        ),
        ("lookahead_ms=0".to_string(), "lookahead_ms"),
        ("pan_display=first6last4".to_string(), "pan_display"),
        ("show_expiry=yes".to_string(), "show_expiry"),
        (
            "fields=payment-card-number,reference".to_string(),
            "reference is not allowed",
        ),
    ];
    for (opts, key) in &hostile_starts {
        let r = c.securepay(&mut pami, &[("Command", "start"), ("Options", opts)]);
        assert_eq!(r.get("Response"), Some("Error"), "{opts}: {}", r.text());
        assert!(r.text().contains(key), "{opts}: {}", r.text());
        no_session(&mut pami, &c);
    }
    assert!(
        pami.events("SecurePayStart").is_empty(),
        "a refused start started something"
    );

    // The honest start (what the admin configured).
    let r = c.securepay(&mut pami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let start = pami
        .wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .unwrap();
    assert_eq!(start.get("SecurePay-Connector"), Some("psp"));
    // A second start cannot slip options in either.
    let r = c.securepay(
        &mut pami,
        &[
            ("Command", "start"),
            ("Options", &format!("connector.psp.url={evil}")),
        ],
    );
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());

    // capture into a generic field: refused, session unchanged.
    let status_before = c.securepay(&mut pami, &[("Command", "status")]);
    assert_eq!(status_before.get("Response"), Some("Success"));
    for (cmd, field) in [
        ("capture", "reference"),
        ("capture", "amount"),
        ("capture reference", ""),
    ] {
        let mut h = vec![("Command", cmd)];
        if !field.is_empty() {
            h.push(("Field", field));
        }
        let r = c.securepay(&mut pami, &h);
        assert_eq!(
            r.get("Response"),
            Some("Error"),
            "{cmd} {field}: {}",
            r.text()
        );
        assert!(
            r.text().contains("is not allowed on this call"),
            "{cmd} {field}: {}",
            r.text()
        );
    }
    assert!(
        pami.events("SecurePayCapture")
            .iter()
            .all(|m| m.get("SecurePay-Field") == Some("payment-card-number")),
        "a refused capture changed the field"
    );

    // The customer keys the card (RFC 4733).
    c.key(&mut fami, &format!("{PAN}{EXPIRY}{CVV}"), "");
    let complete = pami
        .wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
        .unwrap_or_else(|| {
            panic!(
                "no SecurePayComplete: {:#?}",
                asterisk::sp_events_of(&pami, &c.customer)
                    .iter()
                    .map(|m| m.text())
                    .collect::<Vec<_>>()
            )
        });
    assert_eq!(
        complete.get("SecurePay-Card-Number"),
        Some("***********0005")
    );
    // Still refused once the card is there.
    let r = c.securepay(&mut pami, &[("Command", "capture"), ("Field", "reference")]);
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());

    // The honest submit goes to the admin's profile, and only there.
    let r = c.securepay(&mut pami, &[("Command", "submit")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    pami.wait_event(
        WAIT,
        "SecurePaySubmit",
        &[("Channel", &c.customer), ("SecurePay-Result", "success")],
    )
    .expect("submit success");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["cardnumber"], PAN,
        "control: the admin's PSP got the card"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        0,
        "the attacker's server got a connection"
    );

    let _ = pami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    pami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
        .expect("stop on hangup");
    std::thread::sleep(Duration::from_millis(500));

    // Scan every AMI message of the PBX (events and responses) and its full log.
    let msgs = pami.all();
    assert!(msgs.len() > 20, "control: AMI traffic was recorded");
    for m in &msgs {
        let t = m.text();
        assert_eq!(leak(&t), None, "AMI: {t}");
    }
    let log = pbx.log();
    assert!(
        log.contains("secure_pay") || log.contains("SecurePay"),
        "control: the PBX log was read"
    );
    for line in log.lines() {
        // Timestamps and ids are digits too: only the card number is scanned for in the log,
        // plus the security code / expiry as a value of their own.
        assert_eq!(leak(line), None, "PBX log: {line}");
    }
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0);
}
