//! `secure-pay-agent serve` at the most verbose log level (`trace`) while a customer keys a
//! whole card, its expiry and security code, the payment is submitted, the call hangs up, and
//! a hostile client puts a card number into request paths and queries: the service's log
//! (stderr) holds none of those digits. Controls: the scan flags the card and the code when they
//! are there, and the log really is at trace level (it saw the digit events).

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::{http, open_session, AgentProcess, FakePbx, LINK_SECRET};
use secure_pay_agent::sign::Signer;
use secure_pay_agent::unix_now;

const T: Duration = Duration::from_secs(15);
const CHAN: &str = "PJSIP/customer-00000001";
const UID: &str = "1700000000.1";
/// A Luhn-valid Visa debit test number, an expiry and a security code that do not occur in
/// anything else the test does.
const CARD: &str = "4000056655665556";
const EXPIRY: &str = "0831";
const CODE: &str = "947";

/// What in `log` betrays the card data: any 6 consecutive digits of the card (digits only,
/// separators removed), or the expiry / security code as a whole number of their own.
fn leaks(log: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in log.lines() {
        // the line's own timestamp (`<secs>.<ms> LEVEL`) is not data
        let msg = line.splitn(3, ' ').nth(2).unwrap_or(line);
        let digits: String = msg.chars().filter(char::is_ascii_digit).collect();
        for w in 0..=CARD.len() - 6 {
            if digits.contains(&CARD[w..w + 6]) {
                found.push(format!("card digits {} in {line:?}", &CARD[w..w + 6]));
                break;
            }
        }
        for run in msg.split(|c: char| !c.is_ascii_digit()) {
            if run == EXPIRY || run == CODE || run == "0831" {
                found.push(format!("{run} in {line:?}"));
            }
        }
    }
    found
}

#[test]
fn a_trace_level_log_of_a_whole_payment_holds_no_card_digit() {
    // controls: the scan sees the data when it is there, in the forms a log could carry it
    assert!(!leaks(&format!("1.000 DEBUG masked {CARD}")).is_empty());
    assert!(!leaks("1.000 DEBUG pan 4000 0566 5566 5556").is_empty());
    assert!(!leaks(&format!("1.000 DEBUG cvv={CODE}")).is_empty());
    assert!(!leaks(&format!("1.000 DEBUG exp {EXPIRY}")).is_empty());
    assert!(leaks("1796533200.947 INFO call 1700000000.1 port 39471").is_empty());

    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = AgentProcess::spawn(
        &pbx,
        &[
            "--log-level",
            "trace",
            "--start-options",
            "fields=payment-card-number,expiration-date,security-code",
        ],
    );
    let a = svc.addr;
    let signer = Signer::new(LINK_SECRET).unwrap();
    let page = open_session(a, UID, &signer.link(UID, unix_now() + 600));
    let mut sse = page.events(a);
    sse.next_snapshot();
    let r = page.command(a, r#"{"command":"start"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    pbx.key(UID, &format!("{CARD}#"));
    pbx.key(UID, EXPIRY);
    pbx.key(UID, CODE);
    sse.until(T, |v| v["call"]["ready"] == true);
    let r = page.command(a, r#"{"command":"submit"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    // a hostile client writes card digits into addresses and queries
    for path in [
        format!("/call/{CARD}"),
        format!("/call/{UID}?pan={CARD}&cvv={CODE}"),
        format!("/call/{UID}/events?sig={CARD}{CARD}{CARD}{CARD}&exp={EXPIRY}"),
        format!("/{CARD}/{EXPIRY}/{CODE}"),
    ] {
        let _ = http(a, "GET", &path, &[], "");
    }
    pbx.hangup(UID);
    sse.until(T, |v| v["call"]["ended"] == true);
    // let the last lines arrive, then stop the service
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = svc.stop();

    // control: trace level really logged the capture as it happened
    assert!(log.contains(" TRACE "), "{log}");
    assert!(log.contains("AMI event SecurePayDigit"), "{log}");
    assert!(log.contains("AMI event SecurePaySubmit"), "{log}");
    assert!(
        log.contains("/call/[redacted]"),
        "hostile path not scrubbed: {log}"
    );
    let found = leaks(&log);
    assert!(found.is_empty(), "card data in the log: {found:#?}");
    eprintln!(
        "{} log lines at trace level, no card digit among them",
        log.lines().count()
    );
}
