//! Duplicate suppression: one key press seen by two paths counts once, and every real press
//! counts, judged from the presses' own timing where the path gives it.
//!
//! A report is `(key, source, report time)` and, when the path knows it, the press's
//! [`PressTime`] (`start_ms..end_ms` on the session clock): the in-band detector measures the
//! tone's first and last sample; an out-of-band event (RFC 4733 end, SIP INFO, a host DTMF end
//! frame) is reported when the key is released and carries the press's duration.
//!
//! **Timed rules** (both reports timed):
//! 1. **Same press on another path**: a key from source S is an echo of an earlier ACCEPTED
//!    press of the same key from a different source S' when the two reports agree on the key's
//!    RELEASE or their spans overlap as reported. Each path reports the release late by a
//!    bounded, path-specific amount ([`late_ms`]: in-band 25 ms for frame jitter, RFC 4733 40
//!    ms, SIP INFO and host frames 60 ms), so the same press gives `end(S) - end(S')` within
//!    `-(late(S') + JITTER_MS) ..= late(S) + JITTER_MS`; a press whose paths give different
//!    durations (a phone's fixed INFO duration) or drift apart still overlaps itself. The
//!    report must come within `dedup_window_ms` of that press, and that press must not yet
//!    have absorbed an echo from S. The oldest such press is paired first. (No widening of the
//!    spans: a SIP INFO reported late reaches into the pause after its press, and widened
//!    spans swallowed the next press of the same key on the other path.)
//! 2. **A new press starts after the previous one ended**: a key from the SAME source is a
//!    transport repeat only when its span starts before the newest press of that key reported
//!    by that source (accepted, or absorbed as an echo) ended; otherwise it is a new press,
//!    however soon it follows. A report with no duration (zero-length span, e.g. a host end
//!    frame without length) also counts as a repeat within `repeat_window_ms` of the first
//!    report, as untimed ones do.
//!
//! **Untimed rules** (a report without timing; the pre-timing behaviour): the same key from a
//! different source within `dedup_window_ms` of an accepted press is its echo (oldest first, as
//! above); the same key from the same source within `repeat_window_ms` (at most 80 ms) of the
//! press's first report is a transport repeat.
//!
//! Limits (documented in docs/capture.md): spans are estimates. An out-of-band report is
//! taken to arrive when the key is released (RFC 4733 end packets, Asterisk's SIP INFO); a
//! phone that sends SIP INFO at key-down reports the press early by one duration, so a repeated
//! key keyed in-band and then as such INFO with a pause shorter than the INFO's duration (at
//! least about 105 ms) is taken as one press (the field is then a digit short and fails
//! validation; a digit is never added or leaked). Two paths whose release reports differ by
//! more than the bounds above and whose spans do not overlap count a true duplicate twice (a
//! digit too many: validation fails). A path switch with a repeated key separates when press
//! plus pause exceeds the two paths' lateness plus `JITTER_MS` (about 110 ms for SIP INFO then
//! in-band) and the pause exceeds the out-of-band lateness (SIP INFO: about 65 ms; keyed 80 ms
//! on / 80 ms off leaves 15 ms to spare). Different keys are never merged.
//!
//! Bounded: the last [`HISTORY`] accepted presses are remembered; no allocation. The keys are
//! wiped with `zeroize` on [`Dedup::reset`] and on drop (they are card digits).

use zeroize::Zeroize;

use crate::core::capture::DigitSource;
use crate::core::digit::Digit;

pub const HISTORY: usize = 16;

/// Slack on top of both paths' lateness when comparing their release reports (measurement
/// error of the in-band edges, rounding of out-of-band durations).
pub const JITTER_MS: u64 = 20;

/// How late a path can report a key's release after the key was released (ms): in-band frames
/// arrive up to a 20 ms frame late and the detector's edge is good to 5 ms; an RFC 4733 end
/// packet within 40 ms; a SIP INFO request (a separate SIP transaction) within 60 ms; a host
/// frame may be either (Asterisk turns both into the same DTMF frame), so it gets the larger.
pub fn late_ms(s: DigitSource) -> u64 {
    match s {
        DigitSource::InBand => 25,
        DigitSource::Rfc4733 => 40,
        DigitSource::SipInfo | DigitSource::HostFrame => 60,
    }
}

/// When a key press happened, as far as the path that reports it knows (session clock, ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PressTime {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl PressTime {
    /// A press that ended at `end_ms` after lasting `duration_ms` (out-of-band end events).
    pub fn ended(end_ms: u64, duration_ms: u64) -> Self {
        Self {
            start_ms: end_ms.saturating_sub(duration_ms),
            end_ms,
        }
    }

    /// A tone measured by the in-band detector: samples `start..end` (exclusive end) of a stream
    /// at `rate_hz` whose sample `stream_end` (exclusive: the end of the frame just processed)
    /// arrived at `now_ms`.
    pub fn from_samples(start: u64, end: u64, stream_end: u64, rate_hz: u32, now_ms: u64) -> Self {
        let rate = u64::from(rate_hz.max(1));
        let ago = |s: u64| stream_end.saturating_sub(s).saturating_mul(1000) / rate;
        Self {
            start_ms: now_ms.saturating_sub(ago(start)),
            end_ms: now_ms.saturating_sub(ago(end)),
        }
    }
}

fn bit(s: DigitSource) -> u8 {
    match s {
        DigitSource::InBand => 1,
        DigitSource::Rfc4733 => 2,
        DigitSource::SipInfo => 4,
        DigitSource::HostFrame => 8,
    }
}

fn source(b: u8) -> DigitSource {
    match b {
        1 => DigitSource::InBand,
        2 => DigitSource::Rfc4733,
        4 => DigitSource::SipInfo,
        _ => DigitSource::HostFrame,
    }
}

/// Remembers recent presses; see the module docs for the rules. Kept as parallel arrays so the
/// keys (card digits) can be wiped in place.
pub struct Dedup {
    /// ASCII key of each slot; 0 = empty slot.
    keys: [u8; HISTORY],
    src: [u8; HISTORY],
    /// Report time of the press's first report.
    at_ms: [u64; HISTORY],
    /// The press's span; `timed` says whether it is known.
    start_ms: [u64; HISTORY],
    end_ms: [u64; HISTORY],
    timed: [bool; HISTORY],
    /// Sources whose echo of this press has been absorbed (bit per source).
    echoed: [u8; HISTORY],
    /// Report time and span end of the latest echo absorbed (so a transport repeat of the echo
    /// is recognised as one too).
    echo_at_ms: [u64; HISTORY],
    echo_end_ms: [u64; HISTORY],
    next: usize,
    window_ms: u64,
    repeat_ms: u64,
}

impl Dedup {
    pub fn new(window_ms: u64, repeat_ms: u64) -> Self {
        Self {
            keys: [0; HISTORY],
            src: [0; HISTORY],
            at_ms: [0; HISTORY],
            start_ms: [0; HISTORY],
            end_ms: [0; HISTORY],
            timed: [false; HISTORY],
            echoed: [0; HISTORY],
            echo_at_ms: [0; HISTORY],
            echo_end_ms: [0; HISTORY],
            next: 0,
            window_ms,
            repeat_ms,
        }
    }

    /// Untimed report: true if the press is new (count it), false if it is a duplicate.
    pub fn accept(&mut self, key: Digit, src: DigitSource, now_ms: u64) -> bool {
        self.accept_timed(key, src, None, now_ms)
    }

    /// True if the press is new (count it), false if it is a duplicate (drop it). `time` is the
    /// press's span if the path knows it; `now_ms` is when it is reported.
    pub fn accept_timed(
        &mut self,
        key: Digit,
        src: DigitSource,
        time: Option<PressTime>,
        now_ms: u64,
    ) -> bool {
        let k = key.as_char() as u8;
        let sb = bit(src);
        // Rule 2: the newest press of this key reported by this source (as the accepted
        // report or as an absorbed echo): its report time and span end on this source.
        let own = |i: usize| {
            if self.src[i] == sb {
                (self.at_ms[i], self.end_ms[i])
            } else {
                (self.echo_at_ms[i], self.echo_end_ms[i])
            }
        };
        let mut newest: Option<usize> = None;
        for i in 0..HISTORY {
            if self.keys[i] == k
                && (self.src[i] == sb || self.echoed[i] & sb != 0)
                && newest.map_or(true, |j| own(j).0 <= own(i).0)
            {
                newest = Some(i);
            }
        }
        if let Some(i) = newest {
            let (at, end) = own(i);
            let repeat = match (time, self.timed[i]) {
                // Overlaps the previous press: the same press reported again. A report that
                // gives no duration (zero-length span) also keeps the fixed repeat window.
                (Some(t), true) => {
                    t.start_ms < end
                        || (t.end_ms <= t.start_ms && now_ms.saturating_sub(at) < self.repeat_ms)
                }
                // Measured from the first report, so a chain of repeats never swallows a real
                // press that follows.
                _ => now_ms.saturating_sub(at) < self.repeat_ms,
            };
            if repeat {
                return false;
            }
        }
        // Rule 1: oldest unpaired press of this key from another source that matches.
        let mut oldest: Option<usize> = None;
        for i in 0..HISTORY {
            if self.keys[i] != k
                || self.src[i] == sb
                || self.echoed[i] & sb != 0
                || now_ms.saturating_sub(self.at_ms[i]) > self.window_ms
            {
                continue;
            }
            let same = match (time, self.timed[i]) {
                (Some(t), true) => {
                    // The releases agree: end(S) - end(S') within
                    // -(late(S') + J) ..= late(S) + J ...
                    let (te, pe) = (t.end_ms.max(t.start_ms), self.end_ms[i]);
                    let ends = te + late_ms(source(self.src[i])) + JITTER_MS >= pe
                        && te <= pe + late_ms(src) + JITTER_MS;
                    // ... or the two spans, as reported, overlap (one press whose two paths
                    // give different durations, or whose clocks drift apart over a number).
                    ends || (t.start_ms < pe && self.start_ms[i] < te)
                }
                _ => true,
            };
            if same && oldest.map_or(true, |j| self.at_ms[i] < self.at_ms[j]) {
                oldest = Some(i);
            }
        }
        if let Some(i) = oldest {
            self.echoed[i] |= sb;
            self.echo_at_ms[i] = now_ms;
            self.echo_end_ms[i] = time.map_or(now_ms, |t| t.end_ms.max(t.start_ms));
            return false;
        }
        let n = self.next;
        self.keys[n] = k;
        self.src[n] = sb;
        self.at_ms[n] = now_ms;
        let t = time.unwrap_or(PressTime {
            start_ms: now_ms,
            end_ms: now_ms,
        });
        self.start_ms[n] = t.start_ms;
        self.end_ms[n] = t.end_ms.max(t.start_ms);
        self.timed[n] = time.is_some();
        self.echoed[n] = 0;
        self.echo_at_ms[n] = 0;
        self.echo_end_ms[n] = 0;
        self.next = (n + 1) % HISTORY;
        true
    }

    /// Forgets everything; the remembered keys are wiped.
    pub fn reset(&mut self) {
        self.keys.zeroize();
        self.src.zeroize();
        self.at_ms.zeroize();
        self.start_ms.zeroize();
        self.end_ms.zeroize();
        self.timed.zeroize();
        self.echoed.zeroize();
        self.echo_at_ms.zeroize();
        self.echo_end_ms.zeroize();
        self.next = 0;
    }

    /// True when no key is remembered (every slot wiped).
    pub fn is_wiped(&self) -> bool {
        self.keys.iter().all(|&k| k == 0)
    }
}

impl Drop for Dedup {
    fn drop(&mut self) {
        self.reset();
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

    #[test]
    fn timed_path_switch_with_a_repeated_key_counts_both() {
        // The issue #17 case: '1' as RFC 4733 (100 ms), then '1' in-band 100 ms later. The
        // untimed rule drops the second; the timed one counts it.
        let mut untimed = Dedup::new(300, 50);
        assert!(untimed.accept(d('1'), DigitSource::HostFrame, 100));
        assert!(!untimed.accept(d('1'), DigitSource::InBand, 330));
        let mut dd = Dedup::new(300, 50);
        let oob = PressTime::ended(100, 100);
        assert!(dd.accept_timed(d('1'), DigitSource::HostFrame, Some(oob), 100));
        let inband = PressTime {
            start_ms: 200,
            end_ms: 300,
        };
        assert!(dd.accept_timed(d('1'), DigitSource::InBand, Some(inband), 330));
        // ...while the same press on both paths counts once
        let both = PressTime {
            start_ms: 400,
            end_ms: 500,
        };
        assert!(dd.accept_timed(d('1'), DigitSource::HostFrame, Some(both), 500));
        let echo = PressTime {
            start_ms: 405,
            end_ms: 497,
        };
        assert!(!dd.accept_timed(d('1'), DigitSource::InBand, Some(echo), 530));
    }

    #[test]
    fn a_late_sip_info_does_not_swallow_the_next_in_band_press() {
        // CI's case: '0' keyed 80 on / 80 off; the last out-of-band '0' (SIP INFO) released at
        // 1080 and reported 42 ms late, then '0' in-band at 1160..1240 (edge 5 ms early). The
        // late INFO's span reaches to 1122, 33 ms from the in-band start: not the same press.
        let mut dd = Dedup::new(300, 50);
        let info = PressTime::ended(1122, 80);
        assert!(dd.accept_timed(d('0'), DigitSource::SipInfo, Some(info), 1122));
        let next = PressTime {
            start_ms: 1155,
            end_ms: 1240,
        };
        assert!(dd.accept_timed(d('0'), DigitSource::InBand, Some(next), 1265));
        // ...while the same press heard in-band (release 1080, reported 1105) is its echo, and
        // so is a SIP INFO 60 ms late after an in-band press.
        let mut dd = Dedup::new(300, 50);
        assert!(dd.accept_timed(d('0'), DigitSource::SipInfo, Some(info), 1122));
        let echo = PressTime {
            start_ms: 1000,
            end_ms: 1080,
        };
        assert!(!dd.accept_timed(d('0'), DigitSource::InBand, Some(echo), 1105));
        assert!(dd.accept_timed(d('5'), DigitSource::InBand, Some(echo), 1105));
        let late = PressTime::ended(1140, 80);
        assert!(!dd.accept_timed(d('5'), DigitSource::SipInfo, Some(late), 1140));
    }

    #[test]
    fn one_press_whose_paths_drift_apart_still_counts_once() {
        // Asterisk's SendDTMF (SIP INFO at release) drifting 100 ms behind the in-band tones
        // of the same 150 ms presses: the releases disagree, the spans still overlap.
        let mut dd = Dedup::new(300, 50);
        let tone = PressTime {
            start_ms: 1000,
            end_ms: 1150,
        };
        assert!(dd.accept_timed(d('4'), DigitSource::InBand, Some(tone), 1180));
        let info = PressTime::ended(1250, 150);
        assert!(!dd.accept_timed(d('4'), DigitSource::HostFrame, Some(info), 1250));
        // ...but a report entirely after the press, releases 118 ms apart, is a new press.
        let mut dd = Dedup::new(300, 50);
        assert!(dd.accept_timed(d('4'), DigitSource::InBand, Some(tone), 1180));
        let next = PressTime::ended(1268, 80);
        assert!(dd.accept_timed(d('4'), DigitSource::HostFrame, Some(next), 1268));
    }

    #[test]
    fn zero_length_reports_keep_the_repeat_window() {
        let mut dd = Dedup::new(300, 50);
        let at = |t| Some(PressTime::ended(t, 0));
        assert!(dd.accept_timed(d('5'), DigitSource::HostFrame, at(1000), 1000));
        assert!(!dd.accept_timed(d('5'), DigitSource::HostFrame, at(1020), 1020));
        assert!(dd.accept_timed(d('5'), DigitSource::HostFrame, at(1100), 1100));
    }

    #[test]
    fn reset_wipes_the_keys() {
        let mut dd = Dedup::new(300, 50);
        assert!(dd.accept(d('7'), DigitSource::Rfc4733, 0));
        assert!(!dd.is_wiped());
        dd.reset();
        assert!(dd.is_wiped());
        assert_eq!(dd.keys, [0; HISTORY]);
    }

    #[test]
    fn samples_to_ms() {
        // tone at samples 800..1600 of an 8 kHz stream whose sample 2400 arrived at t=10_000
        let t = PressTime::from_samples(800, 1600, 2400, 8000, 10_000);
        assert_eq!(
            t,
            PressTime {
                start_ms: 9_800,
                end_ms: 9_900
            }
        );
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
