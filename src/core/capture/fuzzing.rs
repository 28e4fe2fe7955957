//! Fuzz/property harness shared by the cargo-fuzz targets (`fuzz/`) and the bounded stable
//! runs in `tests/capture_fuzz.rs`. Each target takes arbitrary bytes, never panics by itself,
//! and returns `Err(description)` when an invariant breaks (the fuzz target panics on it).
//!
//! Invariants checked on every event of a session ([`EventChecker`]):
//! - no `digit` event for the security code; `digit` events carry only mask characters, as
//!   many as `SecurePay-Length`;
//! - `field`/`status` events for the security code carry no length and no masked value;
//! - `SecurePay-Masked` / `SecurePay-Card-Number` reveal at most `pan_display`'s digits for the
//!   card number, and no digit at all for expiry/postal/generic fields unless configured;
//! - no other header contains a run of 3 or more digits (so no card digits, no security code);
//! - after `stop`/`cancel` the session is finished and emits nothing more (except `status`);
//! - a taken payment request holds only validated data (Luhn-valid card number, 3-4 digit
//!   security code, 4-digit expiry).

use crate::core::capture::card::luhn_valid;
use crate::core::capture::command::{parse_command, Command};
use crate::core::capture::field::{FieldKind, YearMonth};
use crate::core::capture::mask::PanDisplay;
use crate::core::capture::{DigitSource, Session, StopReason};
use crate::core::config::{CaptureConfig, Config};
use crate::core::digit::Digit;
use crate::core::events::Event;
use crate::core::payment::{ConnectorProfile, PaymentOutcome};

/// Headers that may legitimately display captured digits (subject to the display rules).
const DISPLAY_HEADERS: [&str; 3] = [
    "SecurePay-Masked",
    "SecurePay-Card-Number",
    "SecurePay-Expiration-Date",
];

fn longest_digit_run(s: &str) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c.is_ascii_digit() {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

fn digit_count(s: &str) -> usize {
    s.chars().filter(char::is_ascii_digit).count()
}

/// Checks every event of one session against the masking invariants.
pub struct EventChecker {
    cfg: CaptureConfig,
    finished: bool,
    /// Events seen.
    pub events: usize,
    /// `complete` events seen.
    pub completes: usize,
    /// Headers that displayed card digits (proves the display path was judged).
    pub card_displays: usize,
}

/// What a [`fuzz_session`] run reached (coverage control for the bounded runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuzzStats {
    pub events: usize,
    pub completes: usize,
    pub card_displays: usize,
    pub requests_taken: usize,
}

impl EventChecker {
    pub fn new(cfg: &CaptureConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            finished: false,
            completes: 0,
            card_displays: 0,
            events: 0,
        }
    }

    fn allowed_display_digits(&self, field: Option<FieldKind>) -> usize {
        match field {
            Some(FieldKind::CardNumber) | None => self.cfg.pan_display.max_revealed(),
            Some(FieldKind::SecurityCode) => 0,
            Some(FieldKind::ExpirationDate) => usize::from(self.cfg.show_expiry) * 4,
            Some(FieldKind::PostalCode) => {
                usize::from(self.cfg.show_postal_code) * self.cfg.postal_code_max_length
            }
            Some(FieldKind::Reference) => {
                usize::from(self.cfg.show_generic) * self.cfg.reference_max_length
            }
            Some(FieldKind::Amount) => {
                usize::from(self.cfg.show_generic) * self.cfg.amount_max_length
            }
        }
    }

    /// Checks one event.
    pub fn check(&mut self, e: &Event) -> Result<(), String> {
        self.events += 1;
        let name = e.name();
        if self.finished && name != "status" {
            return Err(format!("event '{name}' after the session finished"));
        }
        if matches!(e, Event::Stop { .. } | Event::Cancel) {
            self.finished = true;
        }
        if matches!(e, Event::Complete { .. }) {
            self.completes += 1;
        }
        let field = e
            .header("SecurePay-Field")
            .and_then(|f| FieldKind::from_name(&f));
        match e {
            Event::Digit {
                field,
                length,
                masked,
                ..
            } => {
                if *field == FieldKind::SecurityCode {
                    return Err("digit event for the security code".into());
                }
                if masked
                    .chars()
                    .any(|c| c != crate::core::capture::mask::MASK_CHAR)
                    || masked.len() != usize::from(*length)
                {
                    return Err(format!(
                        "digit event masked value is not {length} mask chars"
                    ));
                }
            }
            Event::Field {
                field: FieldKind::SecurityCode,
                length,
                masked,
                ..
            } if length.is_some() || masked.is_some() => {
                return Err("field event shows the security code's length or value".into());
            }
            Event::Status(s) if s.field == Some(FieldKind::SecurityCode) && s.length.is_some() => {
                return Err("status shows the security code's length".into());
            }
            _ => {}
        }
        let mut problem: Option<String> = None;
        e.for_each_header(&mut |k, v| {
            if problem.is_some() {
                return;
            }
            if DISPLAY_HEADERS.contains(&k) {
                let which = match k {
                    "SecurePay-Card-Number" => Some(FieldKind::CardNumber),
                    "SecurePay-Expiration-Date" => Some(FieldKind::ExpirationDate),
                    _ => field,
                };
                let allowed = self.allowed_display_digits(which);
                if which == Some(FieldKind::CardNumber) && digit_count(v) > 0 {
                    self.card_displays += 1;
                }
                if digit_count(v) > allowed {
                    problem = Some(format!(
                        "{name}: header {k} shows {} digits, at most {allowed} allowed",
                        digit_count(v)
                    ));
                }
            } else if k == "SecurePay-Transaction-Id" {
                // Built from the session id (here the default `sp<start ms>`) and a counter:
                // never from typed digits.
                let ok = v
                    .strip_prefix("sp")
                    .and_then(|r| r.split_once('-'))
                    .is_some_and(|(a, b)| {
                        !a.is_empty()
                            && !b.is_empty()
                            && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
                    });
                if !ok {
                    problem = Some(format!("{name}: unexpected transaction id {v:?}"));
                }
            } else if longest_digit_run(v) >= 3 {
                problem = Some(format!("{name}: header {k} carries a run of 3+ digits"));
            }
        });
        problem.map_or(Ok(()), Err)
    }
}

/// A tiny deterministic byte reader (returns 0 past the end).
struct Bytes<'a> {
    d: &'a [u8],
    i: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        b
    }
    fn done(&self) -> bool {
        self.i >= self.d.len()
    }
}

const KEYS: [char; 16] = Digit::ALL;
const SOURCES: [DigitSource; 4] = [
    DigitSource::Rfc4733,
    DigitSource::InBand,
    DigitSource::SipInfo,
    DigitSource::HostFrame,
];

/// Fuzz target 1: command parser, option-string parser and `key=value` setter. Never panics;
/// errors must have a non-empty, bounded message that names the key.
pub fn fuzz_parse(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    match parse_command(&text) {
        Ok(Command::Capture(_)) | Ok(_) => {}
        Err(e) => {
            let m = e.to_string();
            if m.is_empty() || m.len() > 400 {
                return Err(format!("command error message length {}", m.len()));
            }
        }
    }
    let admin = Config::default();
    let cfg = match admin.for_call(&text) {
        Ok(c) => c,
        Err(e) => {
            let m = e.to_string();
            if !m.starts_with("secure_pay config key '") || m.len() > 600 {
                return Err(format!(
                    "option error without key or too long: {} chars",
                    m.len()
                ));
            }
            admin
        }
    };
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let mut c = Config::default();
            if let Err(e) = c.set(k, v) {
                if e.to_string().len() > 600 {
                    return Err("set error message too long".into());
                }
            }
        }
    }
    // A config that resolved must start a session cleanly.
    let mut sink = |_e: Event| {};
    let s = Session::start(&cfg.capture, 0, &mut sink);
    if s.is_finished() {
        return Err("fresh session is finished".into());
    }
    Ok(())
}

/// A connector profile for harness sessions (never contacted).
pub fn test_profile() -> ConnectorProfile {
    ConnectorProfile {
        name: "test".into(),
        url: "https://127.0.0.1:9/pay".into(),
        timeout_ms: 1000,
        currency_code: "USD".into(),
        token_type: "reusable".into(),
        ..ConnectorProfile::default()
    }
}

/// Fuzz target 2: the session state machine driven by arbitrary digit/command/tick/outcome
/// sequences, with every event checked by [`EventChecker`].
pub fn fuzz_session(data: &[u8]) -> Result<FuzzStats, String> {
    let mut b = Bytes { d: data, i: 0 };
    let c0 = b.next();
    let c1 = b.next();
    let mut cfg = CaptureConfig {
        pan_display: match c0 % 3 {
            0 => PanDisplay::Last4,
            1 => PanDisplay::First6Last4,
            _ => PanDisplay::None,
        },
        auto_advance: c0 & 4 == 0,
        show_expiry: c0 & 8 != 0,
        show_postal_code: c0 & 16 != 0,
        show_generic: c0 & 32 != 0,
        connector: (c0 & 64 == 0).then(test_profile),
        max_attempts: u32::from(c1 % 4) + 1,
        ..CaptureConfig::default()
    };
    if c1 & 8 != 0 {
        cfg.terminator = Some('*');
        cfg.clear_key = Some('#');
    }
    if c1 & 16 != 0 {
        cfg.fields = [
            FieldKind::PostalCode,
            FieldKind::CardNumber,
            FieldKind::SecurityCode,
            FieldKind::ExpirationDate,
            FieldKind::Amount,
        ]
        .into_iter()
        .collect();
    }
    let mut checker = EventChecker::new(&cfg);
    let mut err: Option<String> = None;
    let mut now: u64 = 1_790_000_000_000;
    let mut sink = |e: Event| {
        if err.is_none() {
            if let Err(m) = checker.check(&e) {
                err = Some(m);
            }
        }
    };
    let mut s = Session::start(&cfg, now, &mut sink);
    s.set_date(YearMonth {
        year: 2026,
        month: 11,
    });
    let mut steps = 0;
    let mut taken = 0;
    while !b.done() && steps < 4096 {
        steps += 1;
        let op = b.next();
        match op % 10 {
            0..=5 => {
                let k = b.next();
                let key = Digit::from_char(KEYS[usize::from(k % 16)]);
                let src = SOURCES[usize::from((k >> 4) % 4)];
                now += u64::from(b.next());
                if let Some(d) = key {
                    s.on_digit(d, src, now, &mut sink);
                }
            }
            6 => {
                let a = b.next();
                let cmd = match a % 9 {
                    0 => Command::Capture(FieldKind::ALL[usize::from(a / 9) % 6]),
                    1 => Command::Clear,
                    2 => Command::Restart,
                    3 | 4 => Command::Submit,
                    5 => Command::Cancel,
                    6 => Command::Stop,
                    7 => Command::Status,
                    _ => Command::Start(String::new()),
                };
                let _ = s.command(&cmd, now, &mut sink);
            }
            7 => {
                now += u64::from(b.next()) * 100;
                s.tick(now, &mut sink);
            }
            8 => {
                if let Some(req) = s.take_payment_request() {
                    taken += 1;
                    let cn = req.card_number.expose();
                    if !cn.is_empty() && !luhn_valid(cn) {
                        return Err(
                            "payment request with a card number that is not Luhn-valid".into()
                        );
                    }
                    let cv = req.security_code.len();
                    if cv != 0 && !(3..=4).contains(&cv) {
                        return Err("payment request with a bad security code length".into());
                    }
                    if req.expiry_month.len() + req.expiry_year.len() != 0
                        && (req.expiry_month.len() != 2 || req.expiry_year.len() != 2)
                    {
                        return Err("payment request with a bad expiry".into());
                    }
                }
                let o = if b.next() & 1 == 0 {
                    PaymentOutcome::Success {
                        charge_id: Some("ch_ok".into()),
                        token_id: None,
                    }
                } else {
                    PaymentOutcome::Error {
                        code: "card_declined".into(),
                        message: "declined".into(),
                    }
                };
                s.on_payment_outcome(o, now, &mut sink);
            }
            _ => {
                // Macros that type plausible VALID values, so the completion, display and
                // submit paths are reached (random keys alone rarely make a Luhn-valid card).
                let r = b.next();
                let mut typed: Vec<u8> = Vec::new();
                match r % 8 {
                    0 => s.stop(StopReason::Hangup, now, &mut sink),
                    1 | 2 => {
                        const P: [(&[u8], usize); 8] = [
                            (b"4", 16),
                            (b"4", 19),
                            (b"51", 16),
                            (b"37", 15),
                            (b"6205", 19),
                            (b"36", 14),
                            (b"5018", 12),
                            (b"2720", 16),
                        ];
                        let (prefix, len) = P[usize::from(b.next() % 8)];
                        typed.extend_from_slice(prefix);
                        while typed.len() < len - 1 {
                            typed.push(b'0' + b.next() % 10);
                        }
                        typed.push(crate::core::capture::card::luhn_check_digit(&typed));
                        typed.push(b'#');
                    }
                    3 => typed.extend_from_slice(&[
                        b'0' + b.next() % 2,
                        b'1' + b.next() % 9,
                        b'2',
                        b'9',
                    ]),
                    4 => {
                        for _ in 0..3 + usize::from(b.next() % 2) {
                            typed.push(b'0' + b.next() % 10);
                        }
                        typed.push(b'#');
                    }
                    5 => {
                        for _ in 0..1 + usize::from(b.next() % 12) {
                            typed.push(b'0' + b.next() % 10);
                        }
                        typed.push(b'#');
                    }
                    _ => {}
                }
                for c in typed {
                    now += 120;
                    if let Some(d) = Digit::from_char(char::from(c)) {
                        s.on_digit(d, DigitSource::Rfc4733, now, &mut sink);
                    }
                }
            }
        }
        if s.is_finished() && s.take_payment_request().is_some() {
            return Err("finished session still holds a payment request".into());
        }
    }
    s.stop(StopReason::Hangup, now, &mut sink);
    if !s.is_finished() {
        return Err("stop did not finish the session".into());
    }
    if let Some(e) = err {
        return Err(e);
    }
    Ok(FuzzStats {
        events: checker.events,
        completes: checker.completes,
        card_displays: checker.card_displays,
        requests_taken: taken,
    })
}
