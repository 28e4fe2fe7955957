//! Session state machine: flows, keys, timeouts, attempts, commands, submit hand-off, and the
//! nasty cases (19-digit UnionPay, Amex CVV 4, expiry this month, `*` at the start of a field,
//! terminator on an empty field, timeout mid-field, restart mid-field).
#![allow(clippy::field_reassign_with_default)]

use secure_pay::core::capture::{
    parse_command, Command, CommandError, DigitSource, FieldKind, Session, StopReason, YearMonth,
};
use secure_pay::core::config::{CaptureConfig, Config};
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;
use secure_pay::core::payment::{ConnectorProfile, PaymentMethod, PaymentOutcome};

const T0: u64 = 1_795_000_000_000;

struct H {
    s: Session,
    ev: Vec<Event>,
    now: u64,
}

impl H {
    fn new(cfg: &CaptureConfig) -> H {
        let mut ev = Vec::new();
        let mut s = Session::start(cfg, T0, &mut |e| ev.push(e));
        s.set_date(YearMonth {
            year: 2026,
            month: 11,
        });
        H { s, ev, now: T0 }
    }
    fn default() -> H {
        H::new(&CaptureConfig::default())
    }
    fn with_connector() -> H {
        let mut c = CaptureConfig::default();
        c.connector = Some(profile());
        H::new(&c)
    }
    /// Types keys 150 ms apart via RFC 4733.
    fn keys(&mut self, ks: &str) {
        for c in ks.chars() {
            self.now += 150;
            let d = Digit::from_char(c).unwrap();
            let ev = &mut self.ev;
            self.s
                .on_digit(d, DigitSource::Rfc4733, self.now, &mut |e| ev.push(e));
        }
    }
    fn cmd(&mut self, c: &str) -> Result<(), CommandError> {
        let cmd = parse_command(c)?;
        let ev = &mut self.ev;
        self.s.command(&cmd, self.now, &mut |e| ev.push(e))
    }
    fn tick(&mut self, dt: u64) {
        self.now += dt;
        let ev = &mut self.ev;
        self.s.tick(self.now, &mut |e| ev.push(e));
    }
    fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.ev)
    }
    fn names(&mut self) -> Vec<&'static str> {
        self.take().iter().map(|e| e.name()).collect()
    }
    fn status(&mut self, header: &str) -> Option<String> {
        let st = self.s.status();
        Event::Status(st).header(header)
    }
}

fn profile() -> ConnectorProfile {
    ConnectorProfile {
        name: "test".into(),
        url: "https://127.0.0.1:1/pay".into(),
        method: PaymentMethod::Charge,
        timeout_ms: 1000,
        currency_code: "EUR".into(),
        description: "order".into(),
        token_type: "reusable".into(),
        ..ConnectorProfile::default()
    }
}

fn find<'a>(ev: &'a [Event], name: &str) -> Vec<&'a Event> {
    ev.iter().filter(|e| e.name() == name).collect()
}

fn hdr(e: &Event, h: &str) -> String {
    e.header(h)
        .unwrap_or_else(|| panic!("no header {h} in {}", e.name()))
}

#[test]
fn start_emits_start_and_first_capture() {
    let mut h = H::default();
    let ev = h.take();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].name(), "start");
    assert_eq!(
        hdr(&ev[0], "SecurePay-Required"),
        "payment-card-number,expiration-date,security-code"
    );
    assert_eq!(hdr(&ev[0], "SecurePay-Connector"), "none");
    assert_eq!(ev[1].name(), "capture");
    assert_eq!(hdr(&ev[1], "SecurePay-Field"), "payment-card-number");
    assert_eq!(hdr(&ev[1], "SecurePay-Attempt"), "1");
    assert_eq!(hdr(&ev[1], "SecurePay-Max-Attempts"), "3");
}

/// The digit at which the brand first shows must not depend on the number: shown as soon as it
/// is known, a brand at the 4th digit would be one of a few issuer prefixes (Diners at the 4th
/// digit is `3095`, UnionPay `6220`), leading digits `pan_display=last4` hides.
#[test]
fn the_brand_shows_at_the_sixth_digit_whatever_the_prefix() {
    let mut shown = 0;
    for p in 0..10_000u32 {
        let mut h = H::default();
        h.take();
        h.keys(&format!("{p:04}00"));
        let ev = h.take();
        let digits = find(&ev, "digit");
        assert_eq!(digits.len(), 6, "{p:04}");
        for (i, d) in digits.iter().enumerate() {
            let brand = d.header("SecurePay-Card-Brand");
            if i < 5 {
                assert_eq!(brand, None, "prefix {p:04}: a brand at digit {}", i + 1);
            } else if brand.is_some() {
                shown += 1;
            }
        }
    }
    // Control: the sixth digit does name the brand of most prefixes (4xxx Visa, 51xx-55xx
    // Mastercard, 34xx/37xx Amex, ...).
    assert!(shown > 3_000, "brands shown at the sixth digit: {shown}");
}

/// A host ticks only now and then (Asterisk's ticker once a second, FreeSWITCH on its sweeps):
/// a key or a command that comes after a timeout has passed, before any tick, must not count
/// as if it had not.
#[test]
fn keys_and_commands_after_a_timeout_without_a_tick_see_the_timeout() {
    let mut h = H::with_connector();
    h.keys("4242");
    h.take();
    // 60 s later (inter-digit timeout 5 s), no tick in between: the field timed out first.
    h.now += 60_000;
    h.keys("4");
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(
        f.len(),
        1,
        "{:?}",
        ev.iter().map(|e| e.name()).collect::<Vec<_>>()
    );
    assert_eq!(hdr(f[0], "SecurePay-Error-Type"), "input-timeout");
    // the key went to the next attempt, not to the stale field
    let d = find(&ev, "digit");
    assert_eq!(d.len(), 1);
    assert_eq!(hdr(d[0], "SecurePay-Length"), "1");
    // A whole card, then a submit one hour after the start (session timeout 10 min): stopped,
    // never sent.
    let mut h = H::with_connector();
    h.keys("4242424242424242#1228123");
    h.take();
    h.now += 3_600_000;
    assert_eq!(h.cmd("submit"), Err(CommandError::Finished));
    assert!(
        h.s.take_submission().is_none(),
        "a request after the session timeout"
    );
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "stop")[0], "SecurePay-Reason"), "timeout");
    // Control: the same submit in time is sent.
    let mut h = H::with_connector();
    h.keys("4242424242424242#1228123");
    h.cmd("submit").unwrap();
    assert!(h.s.take_submission().is_some());
}

#[test]
fn visa16_expiry_cvv_happy_path_and_masking() {
    let mut h = H::default();
    h.take();
    h.keys("4242424242424242");
    let ev = h.take();
    let digits = find(&ev, "digit");
    assert_eq!(digits.len(), 16);
    for (i, d) in digits.iter().enumerate() {
        assert_eq!(hdr(d, "SecurePay-Length"), (i + 1).to_string());
        assert_eq!(hdr(d, "SecurePay-Masked"), "*".repeat(i + 1));
        assert_eq!(hdr(d, "SecurePay-Partial"), "true");
        // the brand from the sixth digit on (the issuer prefix), never earlier
        let brand = d.header("SecurePay-Card-Brand");
        assert_eq!(
            brand.as_deref(),
            (i >= 5).then_some("visa"),
            "digit {}",
            i + 1
        );
        // the detection path of the key press (the agent service counts per path)
        assert_eq!(hdr(d, "SecurePay-Source"), "telephone-event");
    }
    // Visa can be 19 digits: no auto-advance at 16, the terminator ends it.
    assert!(find(&ev, "field").is_empty());
    h.keys("#");
    let ev = h.take();
    assert_eq!(
        ev.iter().map(|e| e.name()).collect::<Vec<_>>(),
        ["field", "capture"]
    );
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "complete");
    assert_eq!(hdr(&ev[0], "SecurePay-Masked"), "************4242");
    assert_eq!(hdr(&ev[0], "SecurePay-Card-Brand"), "visa");
    assert_eq!(hdr(&ev[0], "SecurePay-Partial"), "false");
    assert_eq!(
        hdr(&ev[0], "SecurePay-Required"),
        "expiration-date,security-code"
    );
    assert_eq!(hdr(&ev[1], "SecurePay-Field"), "expiration-date");
    // Expiry auto-advances at 4 digits; not shown by default.
    h.keys("1228");
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(f.len(), 1);
    assert_eq!(hdr(f[0], "SecurePay-Masked"), "****");
    assert_eq!(
        hdr(find(&ev, "capture")[0], "SecurePay-Field"),
        "security-code"
    );
    // Security code: no digit events at all, field event without length or value.
    h.keys("123");
    let ev = h.take();
    assert_eq!(
        ev.iter().map(|e| e.name()).collect::<Vec<_>>(),
        ["field", "complete"]
    );
    assert_eq!(ev[0].header("SecurePay-Length"), None);
    assert_eq!(ev[0].header("SecurePay-Masked"), None);
    assert_eq!(hdr(&ev[0], "SecurePay-Required"), "");
    assert_eq!(hdr(&ev[1], "SecurePay-Card-Number"), "************4242");
    assert_eq!(
        hdr(&ev[1], "SecurePay-Captured"),
        "payment-card-number,expiration-date,security-code"
    );
    assert_eq!(ev[1].header("SecurePay-Expiration-Date"), None);
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("complete"));
}

#[test]
fn unionpay_19_digits_auto_advances_at_19() {
    let mut h = H::default();
    h.take();
    h.keys("620550000000000000");
    assert!(find(&h.take(), "field").is_empty());
    h.keys("4");
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(f.len(), 1);
    assert_eq!(hdr(f[0], "SecurePay-Result"), "complete");
    assert_eq!(hdr(f[0], "SecurePay-Card-Brand"), "unionpay");
    assert_eq!(hdr(f[0], "SecurePay-Length"), "19");
    assert_eq!(hdr(f[0], "SecurePay-Masked"), "***************0004");
}

#[test]
fn mastercard_and_amex_auto_advance_at_their_only_length() {
    let mut h = H::default();
    h.take();
    h.keys("5555555555554444");
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Card-Brand"),
        "mastercard"
    );
    let mut h = H::default();
    h.take();
    h.keys("378282246310005");
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Result"), "complete");
}

#[test]
fn amex_security_code_is_4_digits() {
    let mut h = H::default();
    h.keys("378282246310005");
    h.keys("1228");
    h.take();
    h.keys("123#");
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(hdr(f[0], "SecurePay-Result"), "invalid");
    assert_eq!(hdr(f[0], "SecurePay-Error-Type"), "invalid-security-code");
    assert_eq!(f[0].header("SecurePay-Length"), None);
    assert_eq!(hdr(find(&ev, "capture")[0], "SecurePay-Attempt"), "2");
    h.keys("1234"); // auto-advance at 4 for Amex
    let ev = h.take();
    assert_eq!(
        ev.iter().map(|e| e.name()).collect::<Vec<_>>(),
        ["field", "complete"]
    );
    // Visa: 3 digits auto-advance; 4 would be refused.
    let mut h = H::default();
    h.keys("4242424242424242#1228");
    h.take();
    h.keys("999");
    assert_eq!(h.names(), ["field", "complete"]);
}

#[test]
fn expiry_this_month_valid_last_month_invalid() {
    let mut h = H::default();
    h.keys("4242424242424242#");
    h.take();
    h.keys("1026");
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Error-Type"),
        "invalid-date"
    );
    h.keys("1126");
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Result"), "complete");
    h.keys("1399");
    // now in security-code: "1399" -> auto at 3 digits "139" complete, then "9" ignored.
    let ev = h.take();
    assert_eq!(find(&ev, "complete").len(), 1);
}

#[test]
fn expiry_month_13_and_too_far_ahead_invalid_shown_when_configured() {
    let mut c = CaptureConfig::default();
    c.show_expiry = true;
    c.fields = [FieldKind::ExpirationDate].into_iter().collect();
    let mut h = H::new(&c);
    h.take();
    h.keys("1327");
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Error-Type"),
        "invalid-date"
    );
    h.keys("0150");
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Error-Type"),
        "invalid-date"
    );
    h.keys("0530");
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Masked"), "0530");
    assert_eq!(
        hdr(find(&ev, "complete")[0], "SecurePay-Expiration-Date"),
        "0530"
    );
}

#[test]
fn star_at_start_of_field_and_terminator_on_empty_field_do_nothing() {
    let mut h = H::default();
    h.take();
    h.keys("*");
    assert!(h.take().is_empty());
    h.keys("#");
    assert!(h.take().is_empty());
    assert_eq!(h.status("SecurePay-Attempt").as_deref(), Some("1"));
    h.keys("4242424242424242#");
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Result"),
        "complete"
    );
}

#[test]
fn clear_key_wipes_the_field_mid_entry() {
    let mut h = H::default();
    h.take();
    h.keys("4111");
    h.keys("*");
    let ev = h.take();
    let last = ev.last().unwrap();
    assert_eq!(last.name(), "digit");
    assert_eq!(hdr(last, "SecurePay-Length"), "0");
    assert_eq!(hdr(last, "SecurePay-Masked"), "");
    // a clear adds no key press: no path named
    assert_eq!(last.header("SecurePay-Source"), None);
    h.keys("4242424242424242#");
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Masked"),
        "************4242"
    );
    // No attempt was consumed by the clear.
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Attempt"), "1");
}

#[test]
fn configurable_keys_swap_star_and_hash() {
    let mut c = CaptureConfig::default();
    c.terminator = Some('*');
    c.clear_key = Some('#');
    let mut h = H::new(&c);
    h.keys("4242#4242424242424242*");
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Masked"),
        "************4242"
    );
}

#[test]
fn timeout_mid_field_is_input_timeout_and_wipes() {
    let mut h = H::default();
    h.take();
    h.keys("4242424");
    h.tick(4_000);
    assert!(find(&h.take(), "field").is_empty());
    h.tick(1_000); // 5 s after the last digit
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(hdr(f[0], "SecurePay-Error-Type"), "input-timeout");
    assert_eq!(hdr(f[0], "SecurePay-Length"), "7");
    assert_eq!(hdr(find(&ev, "capture")[0], "SecurePay-Attempt"), "2");
    assert_eq!(h.status("SecurePay-Length").as_deref(), Some("0"));
}

#[test]
fn timeout_with_a_complete_valid_value_completes_it() {
    // Twilio-style: the inter-digit timeout validates what was typed.
    let mut h = H::default();
    h.keys("4242424242424242");
    h.take();
    h.tick(5_000);
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Result"), "complete");
}

#[test]
fn first_digit_timeout_and_max_attempts_then_agent_recapture() {
    let mut h = H::default();
    h.take();
    h.tick(15_000);
    h.tick(15_000);
    h.tick(15_000);
    let ev = h.take();
    let fields = find(&ev, "field");
    assert_eq!(fields.len(), 3);
    assert!(fields
        .iter()
        .all(|f| hdr(f, "SecurePay-Error-Type") == "input-timeout"));
    let err = find(&ev, "error");
    assert_eq!(err.len(), 1);
    assert_eq!(
        hdr(err[0], "SecurePay-Error-Code"),
        "too-many-failed-attempts"
    );
    assert_eq!(hdr(err[0], "SecurePay-Field"), "payment-card-number");
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("waiting"));
    // Digits are ignored while waiting.
    h.keys("4242");
    assert!(h.take().is_empty());
    h.cmd("capture payment-card-number").unwrap();
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Attempt"), "1");
    h.keys("4242424242424242#");
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Result"),
        "complete"
    );
}

#[test]
fn invalid_card_errors() {
    let mut h = H::default();
    h.keys("4242424242424241#"); // Luhn
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Error-Type"),
        "invalid-card-number"
    );
    h.keys("9000000000000000#"); // no brand
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Error-Type"),
        "invalid-card-type"
    );
    let mut c = CaptureConfig::default();
    c.allowed_brands = vec![secure_pay::core::capture::Brand::Visa];
    let mut h = H::new(&c);
    h.keys("5555555555554444"); // auto-advance, then refused brand
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Error-Type"),
        "invalid-card-type"
    );
    assert_eq!(find(&ev, "field")[0].header("SecurePay-Masked"), None);
}

#[test]
fn restart_mid_field_wipes_everything() {
    let mut h = H::default();
    h.keys("4242424242424242#");
    h.keys("12");
    h.take();
    h.cmd("restart").unwrap();
    let ev = h.take();
    assert_eq!(ev.len(), 1);
    assert_eq!(hdr(&ev[0], "SecurePay-Field"), "payment-card-number");
    assert_eq!(
        hdr(&ev[0], "SecurePay-Required"),
        "payment-card-number,expiration-date,security-code"
    );
    assert_eq!(h.status("SecurePay-Captured").as_deref(), Some(""));
    assert_eq!(h.status("SecurePay-Card-Number"), None);
}

#[test]
fn agent_rerequests_a_field_after_complete() {
    let mut h = H::default();
    h.keys("4242424242424242#1228123");
    assert_eq!(find(&h.take(), "complete").len(), 1);
    h.cmd("capture expiration-date").unwrap();
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Field"), "expiration-date");
    assert_eq!(hdr(&ev[0], "SecurePay-Required"), "expiration-date");
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("capturing"));
    h.keys("0129");
    let names = h.names();
    assert_eq!(
        names,
        ["digit", "digit", "digit", "digit", "field", "complete"]
    );
    // Re-requesting a field that is not required works too.
    h.cmd("capture postal-code").unwrap();
    h.keys("12345#");
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Masked"), "*****");
    assert_eq!(find(&ev, "complete").len(), 1);
}

#[test]
fn new_card_of_another_brand_invalidates_the_security_code() {
    let mut h = H::default();
    h.keys("4242424242424242#1228123");
    h.take();
    h.cmd("capture card").unwrap();
    h.keys("378282246310005");
    let ev = h.take();
    // the 3-digit code no longer fits Amex: it is asked again
    let caps = find(&ev, "capture");
    assert_eq!(
        hdr(caps.last().unwrap(), "SecurePay-Field"),
        "security-code"
    );
}

#[test]
fn submit_without_connector_is_refused_and_data_kept() {
    let mut h = H::default();
    assert_eq!(
        h.cmd("submit"),
        Err(CommandError::NotComplete {
            missing: [
                FieldKind::CardNumber,
                FieldKind::ExpirationDate,
                FieldKind::SecurityCode
            ]
            .into_iter()
            .collect()
        })
    );
    assert!(h
        .cmd("submit")
        .unwrap_err()
        .to_string()
        .contains("payment-card-number,expiration-date,security-code"));
    h.keys("4242424242424242#1228123");
    h.take();
    let e = h.cmd("submit").unwrap_err();
    assert_eq!(e, CommandError::NoConnector);
    assert!(e.to_string().contains("no payment connector"));
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("complete"));
    assert!(h.s.take_payment_request().is_none());
    h.cmd("cancel").unwrap();
    assert_eq!(h.names(), ["cancel"]);
    assert!(h.s.is_finished());
    assert_eq!(h.status("SecurePay-Captured").as_deref(), Some(""));
}

#[test]
fn submit_hand_off_success_moves_data_out() {
    let mut h = H::with_connector();
    h.keys("4242424242424242#1228123");
    h.take();
    h.cmd("submit").unwrap();
    let ev = h.take();
    assert_eq!(ev.len(), 1);
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "pending");
    assert_eq!(hdr(&ev[0], "SecurePay-Method"), "charge");
    assert_eq!(h.cmd("submit"), Err(CommandError::SubmitInProgress));
    assert_eq!(h.cmd("restart"), Err(CommandError::SubmitInProgress));
    let req = h.s.take_payment_request().unwrap();
    assert!(h.s.take_payment_request().is_none());
    assert_eq!(req.card_number.expose(), b"4242424242424242");
    assert_eq!(req.expiry_month.expose(), b"12");
    assert_eq!(req.expiry_year.expose(), b"28");
    assert_eq!(req.security_code.expose(), b"123");
    assert!(req.postal_code.is_empty());
    assert_eq!(req.currency_code, "EUR");
    assert!(req.transaction_id.ends_with("-1"));
    drop(req);
    // The session keeps the data while the payment is in flight (a retry after an
    // error/unknown outcome resends it under the same transaction id).
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("submitting"));
    let ev = &mut h.ev;
    h.s.on_payment_outcome(
        PaymentOutcome::Success {
            charge_id: Some("ch_abc".into()),
            token_id: None,
        },
        h.now,
        &mut |e| ev.push(e),
    );
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "success");
    assert_eq!(hdr(&ev[0], "SecurePay-Charge-Id"), "ch_abc");
    assert_eq!(hdr(&ev[0], "SecurePay-Card-Number"), "************4242");
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("done"));
    // Nothing left in the session after a success.
    assert_eq!(h.status("SecurePay-Captured").as_deref(), Some(""));
    assert_eq!(h.cmd("submit"), Err(CommandError::AlreadySubmitted));
    // A new payment after done.
    h.cmd("restart").unwrap();
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("capturing"));
}

#[test]
fn submit_hand_off_error_outcome() {
    let mut h = H::with_connector();
    h.s.set_id("chan-42");
    h.keys("4242424242424242#1228123");
    h.cmd("submit").unwrap();
    let req = h.s.take_payment_request().unwrap();
    assert_eq!(req.transaction_id, "chan-42-1");
    drop(req);
    h.take();
    let ev = &mut h.ev;
    h.s.on_payment_outcome(
        PaymentOutcome::Error {
            code: "card_declined".into(),
            message: "Declined".into(),
        },
        h.now,
        &mut |e| ev.push(e),
    );
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "error");
    assert_eq!(hdr(&ev[0], "SecurePay-Error-Code"), "card_declined");
    assert_eq!(hdr(&ev[0], "SecurePay-Error-Message"), "Declined");
}

#[test]
fn generic_fields_and_amount_in_request() {
    let mut c = CaptureConfig::default();
    c.connector = Some(profile());
    c.show_generic = true;
    c.fields = [
        FieldKind::Reference,
        FieldKind::Amount,
        FieldKind::CardNumber,
    ]
    .into_iter()
    .collect();
    let mut h = H::new(&c);
    h.keys("98765#");
    h.keys("0#"); // amount 0 is invalid
    let ev = h.take();
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Masked"), "98765");
    assert_eq!(
        hdr(find(&ev, "field")[1], "SecurePay-Error-Type"),
        "invalid-amount"
    );
    h.keys("1999#4242424242424242#");
    h.cmd("submit").unwrap();
    let req = h.s.take_payment_request().unwrap();
    assert_eq!(req.amount_minor, Some(1999));
    assert_eq!(
        req.parameters,
        vec![("reference".to_string(), "98765".to_string())]
    );
    assert!(req.security_code.is_empty());
}

#[test]
fn stop_cancel_and_commands_after_end() {
    let mut h = H::default();
    h.keys("4242");
    h.take();
    let ev = &mut h.ev;
    h.s.stop(StopReason::Dialplan, h.now, &mut |e| ev.push(e));
    h.s.stop(StopReason::Hangup, h.now, &mut |e| ev.push(e));
    let ev = h.take();
    assert_eq!(ev.len(), 1);
    assert_eq!(hdr(&ev[0], "SecurePay-Reason"), "dialplan");
    assert!(h.s.is_finished());
    for c in [
        "capture cvv",
        "clear",
        "restart",
        "submit",
        "cancel",
        "stop",
    ] {
        assert_eq!(h.cmd(c), Err(CommandError::Finished), "{c}");
    }
    h.keys("1");
    h.tick(10_000_000);
    assert!(h.take().is_empty());
    h.cmd("status").unwrap();
    assert_eq!(hdr(&h.take()[0], "SecurePay-State"), "finished");
    // agent stop
    let mut h = H::default();
    h.cmd("stop").unwrap();
    assert_eq!(hdr(h.take().last().unwrap(), "SecurePay-Reason"), "agent");
}

#[test]
fn forgotten_session_times_out() {
    let mut h = H::default();
    h.take();
    for _ in 0..59 {
        h.tick(10_000);
    }
    assert!(!h.s.is_finished());
    h.tick(10_000);
    let ev = h.take();
    assert_eq!(hdr(ev.last().unwrap(), "SecurePay-Reason"), "timeout");
    assert!(h.s.is_finished());
}

#[test]
fn clear_command_and_errors_that_do_not_apply() {
    let mut h = H::default();
    h.keys("42");
    h.take();
    h.cmd("clear").unwrap();
    assert_eq!(hdr(&h.take()[0], "SecurePay-Length"), "0");
    assert_eq!(h.cmd("start"), Err(CommandError::AlreadyStarted));
    // all fields given up -> nothing active -> clear refused
    let mut c = CaptureConfig::default();
    c.max_attempts = 1;
    let mut h = H::new(&c);
    h.tick(15_000);
    assert_eq!(h.cmd("clear"), Err(CommandError::NoActiveField));
}

#[test]
fn duplicate_paths_count_once_but_fast_real_repeats_count() {
    let mut h = H::default();
    h.take();
    let mut t = T0;
    for c in "4242424242424242".chars() {
        t += 120;
        let d = Digit::from_char(c).unwrap();
        let ev = &mut h.ev;
        h.s.on_digit(d, DigitSource::Rfc4733, t, &mut |e| ev.push(e));
        h.s.on_digit(d, DigitSource::Rfc4733, t + 20, &mut |e| ev.push(e)); // end repeat
        h.s.on_digit(d, DigitSource::InBand, t + 60, &mut |e| ev.push(e)); // in-band echo
    }
    h.now = t + 200;
    h.keys("#");
    let ev = h.take();
    assert_eq!(find(&ev, "digit").len(), 16);
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Result"), "complete");
}

#[test]
fn security_code_progress_is_never_streamed() {
    let mut h = H::default();
    h.keys("4242424242424242#1228");
    h.take();
    h.keys("12");
    assert!(h.take().is_empty());
    assert_eq!(
        h.status("SecurePay-Field").as_deref(),
        Some("security-code")
    );
    assert_eq!(h.status("SecurePay-Length"), None);
    h.keys("*"); // clear: still nothing
    assert!(h.take().is_empty());
}

#[test]
fn parse_command_table() {
    let ok: &[(&str, Command)] = &[
        ("status", Command::Status),
        ("  STATUS  ", Command::Status),
        ("clear", Command::Clear),
        ("restart", Command::Restart),
        ("submit", Command::Submit),
        ("cancel", Command::Cancel),
        ("stop", Command::Stop),
        (
            "capture payment-card-number",
            Command::Capture(FieldKind::CardNumber),
        ),
        (
            "Capture  Expiration-Date",
            Command::Capture(FieldKind::ExpirationDate),
        ),
        ("capture cvv", Command::Capture(FieldKind::SecurityCode)),
        ("capture zip", Command::Capture(FieldKind::PostalCode)),
        ("capture amount", Command::Capture(FieldKind::Amount)),
        ("start", Command::Start(String::new())),
        (
            "start fields=card,cvv mode=beep",
            Command::Start("fields=card,cvv mode=beep".into()),
        ),
    ];
    for (s, want) in ok {
        assert_eq!(parse_command(s).as_ref(), Ok(want), "{s}");
    }
    let bad: &[(&str, &str)] = &[
        ("", "empty command"),
        ("   ", "empty command"),
        ("pay", "unknown command 'pay'"),
        ("capture", "'capture' needs a field name"),
        ("capture bank-account", "unknown field 'bank-account'"),
        ("capture card cvv", "unknown field"),
        ("status now", "'status' takes no argument"),
        ("submit 1", "'submit' takes no argument"),
    ];
    for (s, msg) in bad {
        let e = parse_command(s).unwrap_err();
        assert!(e.to_string().contains(msg), "{s}: {e}");
    }
}

#[test]
fn config_options_drive_a_session() {
    let mut cfg = Config::default();
    cfg.set_in_section("acme", "url", "https://127.0.0.1:8443/charge")
        .unwrap();
    // The admin allows first6last4; the per-call options narrow everything else.
    cfg.set("pan_display", "first6last4").unwrap();
    let cfg = cfg
        .for_call("fields=postal-code,payment-card-number,postal_code_min_length=5")
        .unwrap();
    let mut h = H::new(&cfg.capture);
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Connector"), "acme");
    assert_eq!(hdr(&ev[1], "SecurePay-Field"), "postal-code");
    h.keys("1234#");
    assert_eq!(
        hdr(find(&h.take(), "field")[0], "SecurePay-Error-Type"),
        "invalid-postal-code"
    );
    h.keys("12345#4242424242424242#");
    let ev = h.take();
    assert_eq!(
        hdr(find(&ev, "field")[1], "SecurePay-Masked"),
        "424242******4242"
    );
    h.cmd("submit").unwrap();
    assert_eq!(
        h.s.take_payment_request().unwrap().postal_code.expose(),
        b"12345"
    );
}

#[test]
fn field_complete_reports_the_attempt_that_succeeded() {
    let mut h = H::default();
    h.keys("4242424242424241#"); // attempt 1 fails (Luhn)
    h.take();
    h.keys("4242424242424242#");
    let ev = h.take();
    let f = find(&ev, "field");
    assert_eq!(hdr(f[0], "SecurePay-Result"), "complete");
    assert_eq!(hdr(f[0], "SecurePay-Attempt"), "2");
    // the next field starts at attempt 1
    assert_eq!(hdr(find(&ev, "capture")[0], "SecurePay-Attempt"), "1");
}

#[test]
fn monotonic_clock_without_a_date_is_reported_not_silently_accepted() {
    // A host passing milliseconds since module load (not Unix time) and no set_date.
    let mut ev = Vec::new();
    let cfg = CaptureConfig {
        fields: [FieldKind::ExpirationDate].into_iter().collect(),
        ..CaptureConfig::default()
    };
    let mut s = Session::start(&cfg, 5_000, &mut |e| ev.push(e));
    for (i, c) in "1228".chars().enumerate() {
        let d = Digit::from_char(c).unwrap();
        s.on_digit(
            d,
            DigitSource::Rfc4733,
            5_000 + 150 * (i as u64 + 1),
            &mut |e| ev.push(e),
        );
    }
    let err = find(&ev, "error");
    assert_eq!(hdr(err[0], "SecurePay-Error-Code"), "no-calendar-date");
    assert_eq!(
        hdr(find(&ev, "field")[0], "SecurePay-Error-Type"),
        "invalid-date"
    );
    // Control: the same with set_date is valid and reports no error.
    let mut ev = Vec::new();
    let mut s = Session::start(&cfg, 5_000, &mut |e| ev.push(e));
    s.set_date(YearMonth::from_unix_ms(T0));
    for (i, c) in "1228".chars().enumerate() {
        let d = Digit::from_char(c).unwrap();
        s.on_digit(
            d,
            DigitSource::Rfc4733,
            5_000 + 150 * (i as u64 + 1),
            &mut |e| ev.push(e),
        );
    }
    assert!(find(&ev, "error").is_empty());
    assert_eq!(hdr(find(&ev, "field")[0], "SecurePay-Result"), "complete");
}

fn outcome_error(code: &str) -> PaymentOutcome {
    PaymentOutcome::Error {
        code: code.into(),
        message: "m".into(),
    }
}

fn outcome_unknown() -> PaymentOutcome {
    PaymentOutcome::Unknown {
        code: "timeout".into(),
        message: "no answer".into(),
    }
}

/// Submits and returns the transaction id the request carries (and the submit event shows).
fn submit_tx(h: &mut H) -> String {
    h.take();
    h.cmd("submit").unwrap();
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "pending");
    let (req, ticket) = h.s.take_submission().unwrap();
    assert_eq!(req.transaction_id, ticket.transaction_id);
    assert_eq!(hdr(&ev[0], "SecurePay-Transaction-Id"), req.transaction_id);
    req.transaction_id.clone()
}

fn deliver(h: &mut H, o: PaymentOutcome) -> bool {
    let ev = &mut h.ev;
    h.s.on_payment_outcome(o, h.now, &mut |e| ev.push(e))
}

#[test]
fn idempotency_key_is_stable_for_a_retry_of_the_same_card() {
    let mut h = H::with_connector();
    h.s.set_id("chan-7");
    h.keys("4242424242424242#1228123");
    h.take();
    let first = submit_tx(&mut h);
    assert_eq!(first, "chan-7-1");
    // No answer (timeout after sending): unknown, never declined; the data stays.
    assert!(deliver(&mut h, outcome_unknown()));
    let ev = h.take();
    assert_eq!(hdr(&ev[0], "SecurePay-Result"), "unknown");
    assert_eq!(hdr(&ev[0], "SecurePay-Error-Code"), "timeout");
    assert_eq!(hdr(&ev[0], "SecurePay-Transaction-Id"), first);
    assert_eq!(h.status("SecurePay-State").as_deref(), Some("complete"));
    // Retry: the same card goes out under the same key (the processor answers it once).
    assert_eq!(submit_tx(&mut h), first);
    assert!(deliver(&mut h, outcome_error("processing_error")));
    h.take();
    assert_eq!(submit_tx(&mut h), first, "second retry, same key");
    assert!(deliver(&mut h, outcome_unknown()));
    h.take();
    // The customer re-enters the same number: the first payment may have gone through, so it
    // is still the same key (the processor answers it once).
    h.cmd("capture payment-card-number").unwrap();
    h.keys("4242424242424242#");
    assert_eq!(
        submit_tx(&mut h),
        first,
        "same card after unknown, same key"
    );
    // A decline settles it: the same card entered again is a new payment, a new key.
    assert!(deliver(&mut h, outcome_error("card_declined")));
    h.take();
    h.cmd("capture payment-card-number").unwrap();
    h.keys("4242424242424242#");
    let second = submit_tx(&mut h);
    assert_eq!(second, "chan-7-2");
    assert_ne!(second, first);
    assert!(deliver(&mut h, outcome_error("card_declined")));
    h.take();
    // Re-entering another field (the security code) changes the request too: new key.
    h.cmd("capture security-code").unwrap();
    h.keys("123");
    assert_eq!(submit_tx(&mut h), "chan-7-3");
    // A success ends it: data wiped, no retry.
    assert!(deliver(
        &mut h,
        PaymentOutcome::Success {
            charge_id: Some("ch_1".into()),
            token_id: None
        }
    ));
    h.take();
    assert_eq!(h.cmd("submit"), Err(CommandError::AlreadySubmitted));
    assert_eq!(h.status("SecurePay-Captured").as_deref(), Some(""));
    // After restart, a new card gets a new key.
    h.cmd("restart").unwrap();
    h.keys("4242424242424242#1228123");
    assert_eq!(submit_tx(&mut h), "chan-7-4");
}

/// Hostile agent: after an `unknown` outcome (the card may have been charged), re-capturing an
/// optional field or restarting must not send the same card again under a new idempotency key
/// (a second charge the customer never keyed). Control: another card, or the same card for
/// another amount, is a new payment.
#[test]
fn after_an_unknown_outcome_the_same_card_keeps_its_key_whatever_the_agent_does() {
    let cfg = Config::default()
        .for_call("allowed_fields=postal-code")
        .map(|mut c| {
            c.capture.connector = Some(profile());
            c.capture
        })
        .unwrap();
    let mut h = H::new(&cfg);
    h.s.set_id("chan-9");
    h.keys("4242424242424242#1228123");
    let first = submit_tx(&mut h);
    assert!(deliver(&mut h, outcome_unknown()));
    // An optional field captured (no customer key needed to submit again).
    h.cmd("capture postal-code").unwrap();
    assert_eq!(submit_tx(&mut h), first, "re-captured optional field");
    assert!(deliver(&mut h, outcome_unknown()));
    // Restart: everything wiped, the customer keys the same card again.
    h.cmd("restart").unwrap();
    h.keys("4242424242424242#1229456");
    assert_eq!(submit_tx(&mut h), first, "restart, same card");
    assert!(deliver(&mut h, outcome_unknown()));
    // Control: another card is another payment.
    h.cmd("restart").unwrap();
    h.keys("5555555555554444#1228123");
    let other = submit_tx(&mut h);
    assert_ne!(other, first, "another card");
    assert!(deliver(&mut h, outcome_unknown()));
    // ... and the first card still gets its own key back.
    h.cmd("restart").unwrap();
    h.keys("4242424242424242#1228123");
    assert_eq!(submit_tx(&mut h), first, "back to the first card");
    // A success settles it; the session is done.
    assert!(deliver(
        &mut h,
        PaymentOutcome::Success {
            charge_id: Some("ch_9".into()),
            token_id: None
        }
    ));
    h.take();
    assert_eq!(h.cmd("submit"), Err(CommandError::AlreadySubmitted));
}

/// The agent cancels right after submit, so the outcome comes from the ticket: it passes the
/// same outgoing guard as the session's own events (a processor echoing the hidden postal
/// code in its message).
#[test]
fn a_late_outcome_from_the_ticket_masks_a_hidden_postal_code() {
    let cfg = Config::default()
        .for_call("fields=payment-card-number,expiration-date,security-code,postal-code")
        .map(|mut c| {
            c.capture.connector = Some(profile());
            c.capture
        })
        .unwrap();
    assert!(!cfg.show_postal_code);
    let mut h = H::new(&cfg);
    h.keys("4242424242424242#1228123");
    h.keys("94107#");
    h.cmd("submit").unwrap();
    let (_req, ticket) = h.s.take_submission().unwrap();
    h.cmd("cancel").unwrap();
    let echo = || PaymentOutcome::Error {
        code: "avs_failed".into(),
        message: "AVS: zip 94107 does not match".into(),
    };
    assert!(!deliver(&mut h, echo()), "cancelled: the ticket reports it");
    let ev = ticket.outcome_event(echo());
    let msg = hdr(&ev, "SecurePay-Error-Message");
    assert!(!msg.contains("94107"), "{msg}");
    assert!(
        msg.contains("AVS: zip"),
        "control: the message is there: {msg}"
    );
}

#[test]
fn outcome_after_cancel_stop_timeout_is_reported_once_by_the_ticket() {
    type End = fn(&mut H);
    let ends: [(&str, End); 4] = [
        ("cancel", |h| h.cmd("cancel").unwrap()),
        ("stop", |h| h.cmd("stop").unwrap()),
        ("hangup", |h| {
            let ev = &mut h.ev;
            h.s.stop(StopReason::Hangup, h.now, &mut |e| ev.push(e))
        }),
        ("session timeout", |h| h.tick(3_600_000)),
    ];
    for (name, end) in ends {
        let mut h = H::with_connector();
        h.keys("4242424242424242#1228123");
        h.take();
        h.cmd("submit").unwrap();
        h.take();
        let (req, ticket) = h.s.take_submission().unwrap();
        end(&mut h);
        assert!(h.s.is_finished(), "{name}");
        assert!(h.take().iter().all(|e| e.name() != "submit"), "{name}");
        // Control: the session is gone from the payment's point of view...
        assert_eq!(h.s.submit_in_flight(), None, "{name}");
        assert!(!deliver(&mut h, outcome_unknown()), "{name}");
        assert!(h.take().is_empty(), "{name}: the session emits nothing");
        // ...so the adapter publishes the ticket's event: exactly one outcome, masked.
        let ev = ticket.outcome_event(outcome_unknown());
        assert_eq!(ev.name(), "submit");
        assert_eq!(hdr(&ev, "SecurePay-Result"), "unknown");
        assert_eq!(hdr(&ev, "SecurePay-Card-Number"), "************4242");
        assert_eq!(hdr(&ev, "SecurePay-Transaction-Id"), req.transaction_id);
        drop(req);
    }
    // Control: without the cancel the session itself reports it (true) and the ticket is unused.
    let mut h = H::with_connector();
    h.keys("4242424242424242#1228123");
    h.cmd("submit").unwrap();
    let (_req, _ticket) = h.s.take_submission().unwrap();
    h.take();
    assert!(deliver(&mut h, outcome_unknown()));
    assert_eq!(h.names(), ["submit"]);
}
