//! The outgoing guard: the last word on what any value leaving the module may carry.
//!
//! Two rules, applied centrally so that no event, response or variable can forget them:
//!
//! 1. **PAN rule** (stateless, [`redact_pans`]): any run of 12 or more digits, also when the
//!    digits are separated by spaces, dashes, dots, slashes, underscores or commas (at most
//!    [`MAX_SEPARATOR_RUN`] in a row), is cut down to what PCI DSS v4.0 Req 3.4.1 allows to be
//!    displayed: the first 6 and last 4 digits for runs of 14+ digits, the last 4 for runs of
//!    12-13 (the same rule as `pan_display=first6last4`, so at least four middle digits stay
//!    hidden). Every other digit becomes `*`; separators and all other text are kept. No Luhn
//!    test: a run of 20 digits that holds a PAN is cut down too. [`Event::for_each_header`]
//!    applies it to every header of every event, so both hosts and the agent page only ever
//!    receive guarded values.
//! 2. **Secret rule** (per call, [`CallSecrets`]): a digit group (or any plain digit run in it)
//!    EQUAL to a security code, or to an expiry or postal code that is not configured to be
//!    shown, captured earlier in the same call, is replaced by `*` whole. The session records a
//!    keyed fingerprint (SipHash with per-session random keys) of each such value when it is
//!    captured, never a copy of the digits, and passes every event it emits through
//!    [`CallSecrets::guard_event`].
//!
//! What the secret rule cannot do: recognise a value typed BEFORE the secret itself was
//! captured (the module cannot know that "123" typed into a generic field is the security code
//! the customer has not entered yet). Generic fields are therefore off unless the admin allows
//! them (`allowed_fields`) and not shown unless the admin sets `show_generic`; see SECURITY.md.
//!
//! [`Event::for_each_header`]: crate::core::events::Event::for_each_header

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::core::events::Event;

/// A run of this many digits (or more) is treated as a card number.
pub const PAN_MIN_DIGITS: usize = 12;
/// At most this many separator characters in a row still join two digit groups.
pub const MAX_SEPARATOR_RUN: usize = 3;
/// Secrets shorter than this are not fingerprinted (a 1-2 digit value says nothing).
pub const SECRET_MIN_DIGITS: usize = 3;

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'-' | b'.' | b'/' | b'_' | b',')
}

/// One digit group: byte positions of its digits (in order) in the input.
struct Group {
    start: usize,
    /// Exclusive end (after the last digit).
    end: usize,
    digits: usize,
}

/// Calls `f` for every digit group of `b`: digits joined by at most [`MAX_SEPARATOR_RUN`]
/// separator bytes.
fn groups(b: &[u8], f: &mut dyn FnMut(Group)) {
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut digits = 0;
        let mut j = i;
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                digits += 1;
                j += 1;
            }
            end = end.max(j);
            let mut k = j;
            while k < b.len() && is_sep(b[k]) && k - j < MAX_SEPARATOR_RUN {
                k += 1;
            }
            if k > j && k < b.len() && b[k].is_ascii_digit() {
                j = k;
            } else {
                break;
            }
        }
        f(Group { start, end, digits });
        i = end;
    }
}

/// Decides whether a digit string (digits only) is a secret of this call.
pub type IsSecret<'a> = dyn Fn(&[u8]) -> bool + 'a;

/// How many leading and trailing digits of a PAN-like run of `n` digits may stay visible.
fn visible(n: usize) -> (usize, usize) {
    if n >= 14 {
        (6, 4)
    } else {
        (0, 4)
    }
}

/// Applies the PAN rule (module docs) to `s`. Borrowed when nothing needed masking.
pub fn redact_pans(s: &str) -> Cow<'_, str> {
    redact(s, None)
}

/// The PAN rule plus the secret rule with `is_secret` deciding whether a digit string (digits
/// only, separators removed) is a secret of this call.
pub fn redact<'a>(s: &'a str, is_secret: Option<&IsSecret<'_>>) -> Cow<'a, str> {
    let b = s.as_bytes();
    // (start, end, head, tail): mask digits in start..end except the first `head` and last
    // `tail` digits. At most a few groups per value; fixed capacity, overflow masks all.
    let mut cuts: arrayvec::ArrayVec<(usize, usize, usize, usize), 16> = arrayvec::ArrayVec::new();
    let mut overflow = false;
    groups(b, &mut |g| {
        let secret = is_secret.is_some_and(|f| group_is_secret(&b[g.start..g.end], f));
        let cut = if secret {
            Some((g.start, g.end, 0, 0))
        } else if g.digits >= PAN_MIN_DIGITS {
            let (h, t) = visible(g.digits);
            Some((g.start, g.end, h, t))
        } else {
            None
        };
        if let Some(c) = cut {
            if cuts.try_push(c).is_err() {
                overflow = true;
            }
        }
    });
    if cuts.is_empty() && !overflow {
        return Cow::Borrowed(s);
    }
    let mut out = b.to_vec();
    if overflow {
        // More suspicious groups than we track: every digit goes.
        for c in &mut out {
            if c.is_ascii_digit() {
                *c = b'*';
            }
        }
    } else {
        for (start, end, head, tail) in cuts {
            let n = out[start..end]
                .iter()
                .filter(|c| c.is_ascii_digit())
                .count();
            let mut k = 0;
            for c in &mut out[start..end] {
                if c.is_ascii_digit() {
                    if k >= head && k + tail < n {
                        *c = b'*';
                    }
                    k += 1;
                }
            }
        }
    }
    // Only ASCII digits were replaced by ASCII '*': still valid UTF-8.
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// True if the group's digits, or any plain digit run inside it, is a secret.
fn group_is_secret(g: &[u8], is_secret: &dyn Fn(&[u8]) -> bool) -> bool {
    let mut all: arrayvec::ArrayVec<u8, 64> = arrayvec::ArrayVec::new();
    let mut long = false;
    for &c in g {
        if c.is_ascii_digit() && all.try_push(c).is_err() {
            long = true;
        }
    }
    if !long && is_secret(&all) {
        return true;
    }
    g.split(|c| !c.is_ascii_digit())
        .filter(|r| r.len() >= SECRET_MIN_DIGITS)
        .any(is_secret)
}

/// Keyed fingerprints of the secrets captured in one call (security code; expiry and postal
/// code when they are not shown). Shared by a session and the guarded sink of each call into
/// it; lock-free, no allocation after creation.
#[derive(Debug)]
pub struct CallSecrets {
    keys: RandomState,
    slots: [AtomicU64; 8],
    n: AtomicUsize,
}

impl Default for CallSecrets {
    fn default() -> Self {
        Self::new()
    }
}

impl CallSecrets {
    pub fn new() -> Self {
        Self {
            keys: RandomState::new(),
            slots: Default::default(),
            n: AtomicUsize::new(0),
        }
    }

    fn fingerprint(&self, digits: &[u8]) -> u64 {
        self.keys.hash_one(digits)
    }

    /// A keyed fingerprint of several values together (with this call's keys): lets the
    /// session recognise data it sent before without keeping a copy of it.
    pub fn fingerprint_parts(&self, parts: &[&[u8]]) -> u64 {
        self.keys.hash_one(parts)
    }

    /// Records a secret (digits only). Values shorter than [`SECRET_MIN_DIGITS`] are ignored.
    /// When all slots are used the oldest is replaced.
    pub fn record(&self, digits: &[u8]) {
        if digits.len() < SECRET_MIN_DIGITS {
            return;
        }
        let fp = self.fingerprint(digits);
        if self.contains(digits) {
            return;
        }
        let i = self.n.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].store(fp, Ordering::Relaxed);
    }

    /// True if `digits` equals a recorded secret.
    pub fn contains(&self, digits: &[u8]) -> bool {
        if digits.len() < SECRET_MIN_DIGITS {
            return false;
        }
        let used = self.n.load(Ordering::Relaxed).min(self.slots.len());
        let fp = self.fingerprint(digits);
        self.slots[..used]
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == fp)
    }

    /// Both rules on one value.
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        redact(s, Some(&|d: &[u8]| self.contains(d)))
    }

    /// Both rules on every data-carrying value of `e` (masked values, card number, expiry,
    /// connector name and result texts); the card number's own display gets the PAN rule only.
    pub fn guard_event(&self, e: &mut Event) {
        e.map_values(&mut |v, card_display| {
            let r = if card_display {
                redact_pans(v)
            } else {
                self.redact(v)
            };
            match r {
                Cow::Borrowed(_) => None,
                Cow::Owned(o) => Some(o),
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pans_in_any_layout() {
        for (i, o) in [
            ("4111111111111111", "411111******1111"),
            ("4111 1111 1111 1111", "4111 11** **** 1111"),
            ("4111-1111-1111-1111", "4111-11**-****-1111"),
            ("card 4111.1111.1111.1111 ok", "card 4111.11**.****.1111 ok"),
            ("501800000009", "********0009"),
            ("12345678901234567890123", "123456*************0123"),
            ("ref 12345678901 x", "ref 12345678901 x"),
            ("************1111", "************1111"),
            ("411111******1111", "411111******1111"),
            (
                "payment-card-number,expiration-date",
                "payment-card-number,expiration-date",
            ),
            ("", ""),
        ] {
            assert_eq!(redact_pans(i), o, "{i}");
        }
        // Separated too far apart: two groups, neither a PAN.
        assert_eq!(redact_pans("411111    1111111111"), "411111    1111111111");
        assert!(matches!(redact_pans("no digits"), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_equal_values_are_masked_whole() {
        let s = CallSecrets::new();
        // Control: before the secret is known nothing is masked.
        assert_eq!(s.redact("123"), "123");
        s.record(b"123");
        s.record(b"1228");
        s.record(b"12"); // too short, ignored
        assert_eq!(s.redact("123"), "***");
        assert_eq!(s.redact("ref 123"), "ref ***");
        assert_eq!(s.redact("12/28"), "**/**");
        assert_eq!(s.redact("1228 123"), "**** ***");
        assert_eq!(s.redact("1234"), "1234");
        assert_eq!(s.redact("12"), "12");
        assert_eq!(s.redact("9123"), "9123");
        // Slots roll over without forgetting the newest.
        for k in 0..20u32 {
            s.record(format!("9{k:03}").as_bytes());
        }
        assert_eq!(s.redact("9019"), "****");
    }

    /// Every digit the guard leaves in a PAN-like group is within its first 6 / last 4.
    fn revealed_ok(out: &str) -> bool {
        let mut ok = true;
        // After guarding, no group of >= 12 real digits exists.
        groups(out.as_bytes(), &mut |g| {
            if g.digits >= PAN_MIN_DIGITS {
                ok = false;
            }
        });
        ok
    }

    fn pan_like() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(0u8..10, 12..=19),
            proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just(". ")], 19),
            "[a-z ]{0,5}",
            "[a-z ]{0,5}",
        )
            .prop_map(|(d, seps, pre, post)| {
                let mut s = pre;
                for (i, x) in d.iter().enumerate() {
                    if i > 0 {
                        s.push_str(seps[i]);
                    }
                    s.push(char::from(b'0' + x));
                }
                s.push_str(&post);
                s
            })
    }

    proptest! {
        #[test]
        fn no_pan_survives_the_guard(s in pan_like()) {
            let out = redact_pans(&s);
            let digits_in: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
            let digits_out = out.bytes().filter(u8::is_ascii_digit).count();
            let (h, t) = visible(digits_in.len());
            prop_assert!(digits_out <= h + t, "{s} -> {out}");
            prop_assert!(revealed_ok(&out), "{s} -> {out}");
            // The visible digits are the first h and the last t, in place.
            let kept: Vec<u8> = out.bytes().filter(|c| c.is_ascii_digit() || *c == b'*').collect();
            prop_assert_eq!(kept.len(), digits_in.len());
            for (k, (&a, &b)) in digits_in.iter().zip(&kept).enumerate() {
                if k < h || k + t >= digits_in.len() { prop_assert_eq!(a, b); } else { prop_assert_eq!(b, b'*'); }
            }
            // Length and non-digit text unchanged.
            prop_assert_eq!(out.len(), s.len());
        }

        #[test]
        fn guard_is_idempotent_and_total(s in "\\PC{0,60}") {
            let once = redact_pans(&s).into_owned();
            let twice = redact_pans(&once).into_owned();
            prop_assert_eq!(&once, &twice);
            prop_assert!(revealed_ok(&once));
            prop_assert_eq!(once.chars().count(), s.chars().count());
        }

        #[test]
        fn secret_never_survives(secret in "[0-9]{3,4}", pre in "[a-z]{0,3}", post in "[a-z]{0,3}") {
            let c = CallSecrets::new();
            let value = format!("{pre}{secret}{post}");
            prop_assert!(c.redact(&value).contains(secret.as_str()), "control");
            c.record(secret.as_bytes());
            let out = c.redact(&value).into_owned();
            prop_assert!(!out.contains(secret.as_str()), "{value} -> {out}");
        }
    }
}
