//! Duplicate suppression: one key press seen by two paths counts once.
//!
//! Rules, on `(key, source, now_ms)`:
//! 1. **Cross-source echo**: a key from source S is a duplicate of an earlier ACCEPTED press of
//!    the same key from a different source S' if it comes within `dedup_window_ms` (default
//!    300 ms) of it and that press has not already absorbed an echo from S. The oldest such
//!    press is paired first, so a run of fast identical presses on two paths pairs up 1:1 even
//!    when one path lags the other by more than the press interval (as long as the lag stays
//!    under the window).
//! 2. **Same-source repeat**: the same key from the SAME source within `repeat_window_ms`
//!    (default 50 ms, at most 80 ms) of the press's FIRST report is a transport repeat (e.g. RFC 4733 end packets reported
//!    more than once). A human cannot press a key twice that fast (ITU-T Q.24: a digit cycle
//!    is at least ~80 ms), so two real presses on one path always count twice.
//!
//! Limit (documented): if path A reports a press that path B never sees, and the customer
//! presses the same key again within the window and only B reports it, the second press is
//! absorbed as an echo of the first. With the default 300 ms window this needs two identical
//! presses under 300 ms apart AND an asymmetric loss; the field then fails validation (a digit
//! short), never gains a digit. Presses of different keys are never merged.
//!
//! Bounded: the last [`HISTORY`] accepted presses are remembered; no allocation.

use crate::core::capture::DigitSource;
use crate::core::digit::Digit;

pub const HISTORY: usize = 16;

#[derive(Clone, Copy)]
struct Press {
    key: Digit,
    src: DigitSource,
    at_ms: u64,
    /// Sources whose echo of this press has been absorbed (bit per source).
    echoed: u8,
}

fn bit(s: DigitSource) -> u8 {
    match s {
        DigitSource::InBand => 1,
        DigitSource::Rfc4733 => 2,
        DigitSource::SipInfo => 4,
        DigitSource::HostFrame => 8,
    }
}

/// Remembers recent presses; see the module docs for the rules.
pub struct Dedup {
    ring: [Option<Press>; HISTORY],
    next: usize,
    window_ms: u64,
    repeat_ms: u64,
}

impl Dedup {
    pub fn new(window_ms: u64, repeat_ms: u64) -> Self {
        Self {
            ring: [None; HISTORY],
            next: 0,
            window_ms,
            repeat_ms,
        }
    }

    /// True if the press is new (count it), false if it is a duplicate (drop it).
    pub fn accept(&mut self, key: Digit, src: DigitSource, now_ms: u64) -> bool {
        // Rule 2: same source repeat of the most recent press of this key from this source.
        let mut newest_same: Option<usize> = None;
        for (i, p) in self.ring.iter().enumerate() {
            if let Some(p) = p {
                if p.key == key
                    && p.src == src
                    && newest_same
                        .map_or(true, |j| self.ring[j].map_or(true, |q| q.at_ms <= p.at_ms))
                {
                    newest_same = Some(i);
                }
            }
        }
        if let Some(i) = newest_same {
            if let Some(p) = self.ring[i] {
                // Measured from the first report of the press, so a chain of repeats can never
                // swallow a real press that follows.
                if now_ms.saturating_sub(p.at_ms) < self.repeat_ms {
                    return false;
                }
            }
        }
        // Rule 1: oldest unpaired press of this key from another source within the window.
        let mut oldest: Option<usize> = None;
        for (i, p) in self.ring.iter().enumerate() {
            if let Some(p) = p {
                if p.key == key
                    && p.src != src
                    && p.echoed & bit(src) == 0
                    && now_ms.saturating_sub(p.at_ms) <= self.window_ms
                    && oldest.map_or(true, |j| self.ring[j].map_or(true, |q| p.at_ms < q.at_ms))
                {
                    oldest = Some(i);
                }
            }
        }
        if let Some(i) = oldest {
            if let Some(p) = self.ring[i].as_mut() {
                p.echoed |= bit(src);
            }
            return false;
        }
        self.ring[self.next] = Some(Press {
            key,
            src,
            at_ms: now_ms,
            echoed: 0,
        });
        self.next = (self.next + 1) % HISTORY;
        true
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.ring = [None; HISTORY];
        self.next = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    #[test]
    fn echo_pairs_and_fast_repeats() {
        let mut dd = Dedup::new(300, 50);
        // "11" on RFC 4733, each echoed in-band 160 ms later (after the next press!).
        assert!(dd.accept(d('1'), DigitSource::Rfc4733, 0));
        assert!(dd.accept(d('1'), DigitSource::Rfc4733, 150));
        assert!(!dd.accept(d('1'), DigitSource::InBand, 160));
        assert!(!dd.accept(d('1'), DigitSource::InBand, 310));
        // end-packet repeats
        assert!(dd.accept(d('2'), DigitSource::Rfc4733, 1000));
        assert!(!dd.accept(d('2'), DigitSource::Rfc4733, 1020));
        assert!(!dd.accept(d('2'), DigitSource::Rfc4733, 1040));
        // a real second press 100 ms later on the same path counts
        assert!(dd.accept(d('2'), DigitSource::Rfc4733, 1140));
        // out of window: counts
        assert!(dd.accept(d('3'), DigitSource::Rfc4733, 2000));
        assert!(dd.accept(d('3'), DigitSource::InBand, 2400));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod chain_tests {
    use super::*;

    #[test]
    fn a_chain_of_repeats_never_swallows_the_next_real_press() {
        let mut dd = Dedup::new(300, 50);
        let d = Digit::from_char('7').unwrap();
        assert!(dd.accept(d, DigitSource::Rfc4733, 0));
        assert!(!dd.accept(d, DigitSource::Rfc4733, 21));
        assert!(!dd.accept(d, DigitSource::Rfc4733, 42));
        // 48 ms after the last repeat, 90 ms after the press: a new press.
        assert!(dd.accept(d, DigitSource::Rfc4733, 90));
    }
}
