//! Property tests over random sessions:
//! - no event ever carries more card-number digits than the display rule allows, the
//!   security code never appears, and displayed card digits are exactly the allowed ones;
//! - chunked / duplicated (RFC 4733 end repeats + in-band echo) delivery gives the same
//!   captured values as clean delivery;
//! - arbitrary digit/command/tick sequences keep every masking invariant (fuzz harness).

use proptest::prelude::*;
use secure_pay::core::capture::card::luhn_check_digit;
use secure_pay::core::capture::fuzzing::{fuzz_session, test_profile, EventChecker};
use secure_pay::core::capture::mask::mask_pan;
use secure_pay::core::capture::{DigitSource, PanDisplay, Session, YearMonth};
use secure_pay::core::config::CaptureConfig;
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;

const T0: u64 = 1_795_000_000_000;

/// (prefix, valid lengths, auto-advances at this max length, cvv length)
const BRANDS: &[(&str, &[usize], usize, usize)] = &[
    ("4", &[13, 16, 19], 19, 3),
    ("51", &[16], 16, 3),
    ("2221", &[16], 16, 3),
    ("2720", &[16], 16, 3),
    ("34", &[15], 15, 4),
    ("37", &[15], 15, 4),
    ("6011", &[16, 17, 18, 19], 19, 3),
    ("3530", &[16, 19], 19, 3),
    ("36", &[14, 16, 19], 19, 3),
    ("6205", &[16, 19], 19, 3),
    ("5018", &[12, 13, 19], 19, 3),
    ("6759", &[16], 19, 3),
];

#[derive(Clone, Debug)]
struct Payment {
    pan: String,
    auto_len: usize,
    cvv: String,
    expiry: String,
}

fn payment() -> impl Strategy<Value = Payment> {
    (
        0..BRANDS.len(),
        any::<u64>(),
        prop::collection::vec(0u8..10, 19),
        1u32..=12,
        27u32..=45,
    )
        .prop_map(|(bi, pick, fill, mm, yy)| {
            let (prefix, lens, auto, cvv_len) = BRANDS[bi];
            let len = lens[(pick % lens.len() as u64) as usize];
            let mut body: Vec<u8> = prefix.bytes().collect();
            let mut i = 0;
            while body.len() < len - 1 {
                body.push(b'0' + fill[i]);
                i += 1;
            }
            let c = luhn_check_digit(&body);
            body.push(c);
            let cvv: String = fill
                .iter()
                .rev()
                .take(cvv_len)
                .map(|d| (b'0' + d) as char)
                .collect();
            Payment {
                pan: String::from_utf8(body).unwrap(),
                auto_len: auto,
                cvv,
                expiry: format!("{mm:02}{yy:02}"),
            }
        })
}

fn display() -> impl Strategy<Value = PanDisplay> {
    prop_oneof![
        Just(PanDisplay::Last4),
        Just(PanDisplay::First6Last4),
        Just(PanDisplay::None)
    ]
}

/// The key presses a customer makes for `p` (terminator only where auto-advance won't fire).
fn presses(p: &Payment, noise: &str) -> String {
    let mut s = String::new();
    if !noise.is_empty() {
        s.push_str(noise);
        s.push('*'); // clear the false start
    }
    s.push_str(&p.pan);
    if p.pan.len() < p.auto_len {
        s.push('#');
    }
    s.push_str(&p.expiry);
    s.push_str(&p.cvv);
    s
}

/// card number, expiry month, expiry year, security code
type Captured = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

struct Run {
    events: Vec<Event>,
    req: Option<Captured>,
}

/// Delivers timed digits (sorted by time, stable) plus ticks, then submits.
fn run(cfg: &CaptureConfig, mut timed: Vec<(u64, char, DigitSource)>, ticks: &[u64]) -> Run {
    let mut events = Vec::new();
    let mut s = Session::start(cfg, T0, &mut |e| events.push(e));
    s.set_date(YearMonth {
        year: 2026,
        month: 11,
    });
    timed.sort_by_key(|t| t.0);
    let mut ticks = ticks.to_vec();
    ticks.sort();
    let mut ti = 0;
    for (t, c, src) in &timed {
        while ti < ticks.len() && ticks[ti] <= *t {
            s.tick(ticks[ti], &mut |e| events.push(e));
            ti += 1;
        }
        s.on_digit(Digit::from_char(*c).unwrap(), *src, *t, &mut |e| {
            events.push(e)
        });
    }
    let end = timed.last().map_or(T0, |t| t.0);
    let req = s
        .command(&secure_pay::core::capture::Command::Submit, end, &mut |e| {
            events.push(e)
        })
        .ok()
        .and_then(|_| s.take_payment_request())
        .map(|r| {
            (
                r.card_number.expose().to_vec(),
                r.expiry_month.expose().to_vec(),
                r.expiry_year.expose().to_vec(),
                r.security_code.expose().to_vec(),
            )
        });
    Run { events, req }
}

fn clean(keys: &str) -> Vec<(u64, char, DigitSource)> {
    keys.chars()
        .enumerate()
        .map(|(i, c)| (T0 + 150 * (i as u64 + 1), c, DigitSource::Rfc4733))
        .collect()
}

fn cfg_with(display: PanDisplay) -> CaptureConfig {
    CaptureConfig {
        pan_display: display,
        connector: Some(test_profile()),
        ..CaptureConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// No event carries more card digits than allowed; the security code never appears.
    #[test]
    fn masking_invariants_on_valid_payments(p in payment(), d in display(), noise in "[0-9]{0,6}") {
        let cfg = cfg_with(d);
        let r = run(&cfg, clean(&presses(&p, &noise)), &[]);
        prop_assert!(r.req.is_some(), "payment not captured");
        let mut checker = EventChecker::new(&cfg);
        let expected = mask_pan(p.pan.as_bytes(), d);
        let mut shown = 0;
        for e in &r.events {
            checker.check(e).map_err(TestCaseError::fail)?;
            let card_event = e.header("SecurePay-Field").as_deref() == Some("payment-card-number");
            for (k, v) in e.headers() {
                let card_display = k == "SecurePay-Card-Number"
                    || (k == "SecurePay-Masked" && card_event);
                if k == "SecurePay-Transaction-Id" {
                    // Chosen by the session (its default id `sp<start ms>` and a counter),
                    // never typed digits, whatever digits it happens to contain.
                    let ok = v.strip_prefix("sp").and_then(|t| t.split_once('-')).is_some_and(
                        |(a, b)| a.parse::<u64>().is_ok() && b.parse::<u32>().is_ok(),
                    );
                    prop_assert!(ok, "unexpected transaction id {:?}", v);
                } else if card_display && v.chars().any(|c| c.is_ascii_digit()) {
                    // Only ever the exact allowed display of the captured number.
                    prop_assert_eq!(v.as_str(), expected.as_str());
                    shown += 1;
                } else {
                    prop_assert!(!v.contains(&p.cvv), "security code in {} of {}", k, e.name());
                    prop_assert!(!v.contains(&p.pan[p.pan.len() - 4..]) || v.len() < 4,
                        "card digits in {} of {}", k, e.name());
                }
            }
            if e.name() == "digit" {
                let f = e.header("SecurePay-Field");
                prop_assert_ne!(f.as_deref(), Some("security-code"));
            }
        }
        if d != PanDisplay::None {
            prop_assert!(shown >= 2, "the valid card was displayed (field + complete)");
        }
    }

    /// Chunked and duplicated delivery captures exactly the same values as clean delivery.
    #[test]
    fn duplicated_and_chunked_delivery_same_values(
        p in payment(),
        gaps in prop::collection::vec(90u64..1500, 40),
        echo in prop::collection::vec((any::<bool>(), 0u64..=250), 40),
        repeats in prop::collection::vec((0usize..3, 1u64..=40), 40),
        ticks in prop::collection::vec(0u64..40_000, 0..30),
    ) {
        let cfg = cfg_with(PanDisplay::Last4);
        let keys = presses(&p, "");
        let base = run(&cfg, clean(&keys), &[]);
        let want = (
            p.pan.as_bytes().to_vec(),
            p.expiry.as_bytes()[..2].to_vec(),
            p.expiry.as_bytes()[2..].to_vec(),
            p.cvv.as_bytes().to_vec(),
        );
        prop_assert_eq!(base.req.as_ref(), Some(&want));

        let mut timed = Vec::new();
        let mut t = T0;
        for (i, c) in keys.chars().enumerate() {
            t += gaps[i];
            timed.push((t, c, DigitSource::Rfc4733));
            let (n, step) = repeats[i];
            for k in 1..=n as u64 {
                timed.push((t + (k * step).min(45), c, DigitSource::Rfc4733));
            }
            let (has_echo, delay) = echo[i];
            if has_echo {
                timed.push((t + delay, c, DigitSource::InBand));
            }
        }
        let span = t - T0;
        let tick_times: Vec<u64> = ticks.iter().map(|x| T0 + x % span.max(1)).collect();
        let noisy = run(&cfg, timed, &tick_times);
        prop_assert_eq!(noisy.req.as_ref(), Some(&want));
        let digits = |r: &Run| r.events.iter().filter(|e| e.name() == "digit").count();
        prop_assert_eq!(digits(&noisy), digits(&base));
    }

    /// Arbitrary sessions (digits from every source, commands, ticks, outcomes, random
    /// configs) keep every masking and hygiene invariant.
    #[test]
    fn arbitrary_sessions_keep_invariants(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        fuzz_session(&data).map_err(TestCaseError::fail)?;
    }
}
