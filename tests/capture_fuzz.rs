//! The cargo-fuzz targets (fuzz/fuzz_targets/capture_*.rs) run as a bounded, deterministic loop
//! under stable Rust: same target functions, seeded pseudo-random inputs. CI runs this as part
//! of `cargo test --release`; `SECURE_PAY_FUZZ_ITERS=N` raises the number of inputs.
//! Real coverage-guided fuzzing: `cd fuzz && cargo +nightly fuzz run capture_session`.

use secure_pay::core::capture::fuzzing::{fuzz_parse, fuzz_session, FuzzStats};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn iters(default: usize) -> usize {
    std::env::var("SECURE_PAY_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const WORDS: &[&str] = &[
    "start",
    "capture",
    "clear",
    "restart",
    "submit",
    "cancel",
    "stop",
    "status",
    "fields=",
    "payment-card-number",
    "expiration-date",
    "security-code",
    "postal-code",
    "cvv",
    "mode=",
    "beep",
    "lookahead_ms=",
    "terminator=",
    "clear_key=",
    "pan_display=",
    "first6last4",
    "connector=",
    "connector.a.url=",
    "https://",
    "max_attempts=",
    "allowed_brands=",
    "visa",
    "amex",
    ",",
    " ",
    "=",
    ";",
    "|",
    "*",
    "#",
    "0",
    "100",
    "-1",
    "99999999999999999999",
    "\u{0}",
    "é",
    "\n",
    "none",
];

#[test]
fn fuzz_parse_bounded() {
    let mut r = XorShift(0x5ec0_7e9a_1234_5678);
    for i in 0..iters(20_000) {
        let input = if i % 2 == 0 {
            r.bytes(96)
        } else {
            let n = r.next() % 8;
            (0..n)
                .map(|_| WORDS[(r.next() % WORDS.len() as u64) as usize])
                .collect::<String>()
                .into_bytes()
        };
        if let Err(e) = fuzz_parse(&input) {
            panic!("input #{i} {input:?}: {e}");
        }
    }
}

#[test]
fn fuzz_session_bounded() {
    let mut r = XorShift(0x0ddb_a11c_afe5_eed5);
    let mut total = FuzzStats::default();
    for i in 0..iters(5_000) {
        let input = r.bytes(1024);
        match fuzz_session(&input) {
            Ok(s) => {
                total.events += s.events;
                total.completes += s.completes;
                total.card_displays += s.card_displays;
                total.requests_taken += s.requests_taken;
            }
            Err(e) => panic!("input #{i} {input:?}: {e}"),
        }
    }
    // Coverage control: the random runs reached completion, card display and hand-off, so
    // the invariants were judged on those paths too.
    assert!(total.completes > 0, "{total:?}");
    assert!(total.card_displays > 0, "{total:?}");
    assert!(total.requests_taken > 0, "{total:?}");
}

/// Control: a hand-written input reaches a complete payment, shows the card, and hands off.
#[test]
fn fuzz_session_harness_reaches_complete_payments() {
    // c0=0 (last4, connector), c1=0; op 9/macro 1 = valid Visa + '#'; op 9/macro 3 = expiry;
    // op 9/macro 4 = 3-digit code + '#'; op 6/3 = submit; op 8 = take + outcome.
    let mut data = vec![0u8, 0, 9, 1, 0];
    data.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5]); // body digits
    data.extend_from_slice(&[9, 3, 1, 1]); // expiry "12 29" (0+1, 1+1 -> "1229")
    data.extend_from_slice(&[9, 4, 0, 1, 2, 3]); // cvv "123"
    data.extend_from_slice(&[6, 3, 8, 0]);
    let s = fuzz_session(&data).unwrap();
    assert_eq!(s.completes, 1, "{s:?}");
    assert!(s.card_displays >= 2, "{s:?}");
    assert_eq!(s.requests_taken, 1, "{s:?}");
}
