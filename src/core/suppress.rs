//! The masker: a look-ahead delay line around the detector that replaces DTMF audio from its first
//! sample to its last (plus a hangover), so neither the agent nor a recording hears a digit.
//!
//! # How it works
//! Every 3.125 ms the detector's front end judges the last 12.5 ms window (see
//! [`crate::core::dtmf`]). Besides the strict capture tests it applies a deliberately
//! permissive **mask test**: a row and a column tone each down to −90 dBm0 (below a 1-LSB sine,
//! so in practice no level floor: multimon-ng reads DTMF down to about −85 dBm0, and replacing
//! near-silent audio with silence is inaudible; the decision rests on the relative tests), twist −18…+17 dB,
//! each 6 dB above the rest of its group, together ≥ 40 % of the window energy, frequency
//! within ±5.5 % (phase test without the capture's plateau condition; permissive decoders read
//! low-group tones up to about 4 % off, so the window must be wider, or the boundary leaves
//! readable fragments), no duration test.
//! Every window that passes is replaced *whole*, from 6 ms before it starts to 6 ms after it
//! ends. A tone's first window to pass the test contains the tone's first sample, so as long as
//! the look-ahead covers one window plus the guard (12.5 + 6 ms, see
//! [`Masker::min_leak_free_lookahead_ms`]; the default is 40 ms) nothing of the tone reaches the
//! output; a held key stays masked for as long as it is held. Short bursts, weak, twisted or
//! off-frequency pairs that capture rejects are masked all the same.
//!
//! **Tonal stability.** With look-ahead to spare (≥ 25 ms; the default 40 ms) a window that
//! passes the mask test is only masked once a second window at most two hops later holds the
//! same pair (or it passes every capture test, or its pair carries ≥ 70 % of its energy, or the
//! same pair was masked in the last 25 ms); the span then reaches back over both windows, so
//! the tone is still replaced from its first sample while isolated voiced windows of speech
//! pass untouched. With less look-ahead every passing window is masked at once.
//!
//! Outside masked spans the output is the input delayed by exactly [`Masker::delay_samples`],
//! sample for sample. Decisions never reach back further than the look-ahead, and the
//! replacement signal depends only on the sample's position in the stream, so the output is
//! identical however the input is split into frames.
//!
//! With a shorter look-ahead the head of a tone can leak: with 0 ms, each tone's first ~4–12 ms
//! (until the first window it fills enough has been judged) pass unmasked; everything after
//! that is masked. multimon-ng reads a 20 ms head, so keep the look-ahead at 19 ms or more where
//! leaking nothing matters (the tests show no tone sample leaking from 16 ms on; the extra 3 ms
//! are the guard).

use crate::core::audio::SampleRate;
use crate::core::dtmf::analysis::Hop;
use crate::core::dtmf::{Detector, DetectorParams, ToneEvent};

/// What replaces masked audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaskMode {
    /// Digital silence (default).
    #[default]
    Silence,
    /// Low-level comfort noise (white, about −50 dBm0).
    Noise,
    /// One flat 1 kHz tone at −16 dBm0, identical for every key.
    Beep,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MaskerConfig {
    /// Look-ahead delay, 0..=100 ms (default 40).
    pub lookahead_ms: u32,
    pub mode: MaskMode,
    pub detector: DetectorParams,
}

impl Default for MaskerConfig {
    fn default() -> Self {
        Self {
            lookahead_ms: 40,
            mode: MaskMode::Silence,
            detector: DetectorParams::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaskerError {
    LookaheadTooLong { ms: u32, max: u32 },
}

impl std::fmt::Display for MaskerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LookaheadTooLong { ms, max } => {
                write!(f, "look-ahead {ms} ms is over the maximum of {max} ms")
            }
        }
    }
}

impl std::error::Error for MaskerError {}

/// Pending masked spans (input sample indices, `[start, end)`), oldest first.
const MAX_SPANS: usize = 16;

/// One period of the beep: 1 kHz at 48 kHz (stepped through at lower rates), −16 dBm0
/// (peak 22 826 · 10^(−16/20) ≈ 3 614).
fn make_beep() -> [i16; 48] {
    let mut t = [0i16; 48];
    for (i, v) in t.iter_mut().enumerate() {
        *v = (crate::core::dtmf::analysis::sin_turns(i as u64, 48) * 3614.0).round() as i16;
    }
    t
}

/// A single window whose pair carries at least this share of its energy is masked on its own
/// (a 10 ms burst passes the mask test in one window only; voiced speech rarely gets there).
const PURE_COV: f32 = 0.7;

/// A pair masked within this many hops (25 ms) is masked again on a single window.
const ACTIVE_HOPS: u64 = 8;

/// Guard before each masked window and hangover after it, in ms.
const PRE_GUARD_MS: u32 = 6;
const HANGOVER_MS: u32 = 6;

/// Per-channel masker. Allocates only in `new` (the delay line).
#[derive(Clone)]
pub struct Masker {
    rate: SampleRate,
    det: Detector,
    mode: MaskMode,
    ring: Vec<i16>,
    pos: usize,
    /// Input samples consumed so far.
    t: u64,
    spans: [(u64, u64); MAX_SPANS],
    nspans: usize,
    /// How far back (from a window's end) a masked window reaches, and the hangover.
    back: u64,
    hang: u64,
    beep_step: usize,
    beep: [i16; 48],
    /// The last window that passed the mask test: (window end, row, col); end 0 = none.
    prev_mask: (u64, u8, u8),
    /// Last masked window: (window end, row, col); end 0 = none. Windows of the same pair
    /// shortly after are masked without waiting for a second one, so a tone whose test
    /// flickers is masked whole, never in readable fragments.
    active: (u64, u8, u8),
}

impl Masker {
    pub const MAX_LOOKAHEAD_MS: u32 = 100;

    pub fn new(rate: SampleRate, cfg: &MaskerConfig) -> Result<Self, MaskerError> {
        if cfg.lookahead_ms > Self::MAX_LOOKAHEAD_MS {
            return Err(MaskerError::LookaheadTooLong {
                ms: cfg.lookahead_ms,
                max: Self::MAX_LOOKAHEAD_MS,
            });
        }
        let det = Detector::new(rate, &cfg.detector);
        let back = (det.window_samples() + rate.samples_for_ms(PRE_GUARD_MS)) as u64;
        Ok(Self {
            rate,
            mode: cfg.mode,
            ring: vec![0; rate.samples_for_ms(cfg.lookahead_ms)],
            pos: 0,
            t: 0,
            spans: [(0, 0); MAX_SPANS],
            nspans: 0,
            back,
            hang: rate.samples_for_ms(HANGOVER_MS) as u64,
            beep_step: (48000 / rate.hz()) as usize,
            beep: make_beep(),
            prev_mask: (0, 0, 0),
            active: (0, 0, 0),
            det,
        })
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Look-ahead that covers one analysis window plus the full guard (12.5 + 6 ms), in ms,
    /// rounded up: from here on nothing of a tone can reach the output.
    pub fn min_leak_free_lookahead_ms() -> u32 {
        19
    }

    /// Bytes of per-channel state, delay line included.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.ring.capacity() * std::mem::size_of::<i16>()
    }

    /// Processes `frame` in place: on return it holds the input delayed by
    /// [`Masker::delay_samples`], with DTMF spans replaced. Digits go to `sink`.
    pub fn process(&mut self, frame: &mut [i16], sink: &mut dyn FnMut(ToneEvent)) {
        // Work in pieces of at most 32 hops (100 ms). Two masked windows closer than 24.5 ms
        // merge into one span (a span reaches 18.5 ms before its window's end and 6 ms after),
        // so spans in the queue end more than 24.5 ms apart: at most 5 are still ahead of the
        // output between pieces (100 ms look-ahead + 6 ms hangover), and a piece adds at most 5.
        // The queue (16) therefore never overflows, whatever the frame size, and the output is
        // identical however the input is framed.
        let hop = 32 * self.det.hop_samples() as u64;
        let mut rest = frame;
        while !rest.is_empty() {
            let room = (hop - self.t % hop) as usize;
            let (piece, tail) = rest.split_at_mut(room.min(rest.len()));
            self.process_piece(piece, sink);
            rest = tail;
        }
    }

    fn process_piece(&mut self, frame: &mut [i16], sink: &mut dyn FnMut(ToneEvent)) {
        let t0 = self.t;
        let d = self.ring.len() as u64;
        {
            let back = self.back;
            let hang = self.hang;
            let m = self.det.hop_samples() as u64;
            let spans = &mut self.spans;
            let nspans = &mut self.nspans;
            let prev = &mut self.prev_mask;
            let active = &mut self.active;
            // Waiting for a second window needs look-ahead for it (window + guard + two hops,
            // 25 ms); with less, every window that passes is masked at once (more speech is
            // touched, but nothing more leaks).
            let wait = d >= back + 2 * m;
            self.det.process_hops(frame, sink, &mut |h: &Hop| {
                if !h.mask {
                    return;
                }
                // Tonal stability: mask once two windows at most two hops apart hold the same
                // pair (or one passes every capture test), reaching back over both, so the
                // tone is still replaced from its first sample while a single voiced window
                // of speech is left alone.
                let stable =
                    prev.0 != 0 && prev.0 + 2 * m >= h.end && prev.1 == h.row && prev.2 == h.col;
                let from = if stable { prev.0 } else { h.end };
                *prev = (h.end, h.row, h.col);
                let recent = active.0 != 0
                    && h.end <= active.0 + ACTIVE_HOPS * m
                    && active.1 == h.row
                    && active.2 == h.col;
                if !wait || stable || h.strict || recent || h.cov >= PURE_COV {
                    *active = (h.end, h.row, h.col);
                    // Never reach back into audio already output when this window is judged.
                    let a = from.saturating_sub(back).max(h.end.saturating_sub(d));
                    push_span(spans, nspans, a, h.end + hang);
                }
            });
        }
        let len = frame.len() as u64;
        self.t += len;
        self.delay(frame);
        // Output covers input indices [t0 - d, t0 + len - d).
        let out_start = t0 as i64 - d as i64;
        let out_end = out_start + len as i64;
        let mut keep = 0;
        for i in 0..self.nspans {
            let (a, b) = self.spans[i];
            let lo = (a as i64).max(out_start).max(0);
            let hi = (b as i64).min(out_end);
            if lo < hi {
                let from = (lo - out_start) as usize;
                let to = (hi - out_start) as usize;
                fill(
                    self.mode,
                    self.beep_step,
                    &self.beep,
                    &mut frame[from..to],
                    lo as u64,
                );
            }
            if (b as i64) > out_end {
                self.spans[keep] = (a, b);
                keep += 1;
            }
        }
        self.nspans = keep;
    }

    /// End of stream: report a digit still pending (the audio still in the delay line comes out
    /// by feeding [`Masker::delay_samples`] more samples, e.g. silence, to `process`).
    pub fn flush(&mut self, sink: &mut dyn FnMut(ToneEvent)) {
        self.det.flush(sink);
    }

    /// Input samples processed so far (the detector's stream position, the base of
    /// [`ToneEvent`] sample numbers; lets an adapter turn a tone's samples into times).
    pub fn samples_in(&self) -> u64 {
        self.t
    }

    /// Samples of delay the masker adds (the look-ahead).
    pub fn delay_samples(&self) -> usize {
        self.ring.len()
    }

    /// Forget all state (delay line to silence, detector reset).
    pub fn reset(&mut self) {
        self.det.reset();
        self.ring.fill(0);
        self.pos = 0;
        self.t = 0;
        self.nspans = 0;
        self.prev_mask = (0, 0, 0);
        self.active = (0, 0, 0);
    }

    /// Swaps the frame through the ring: frame gets the delayed samples, ring the new ones.
    fn delay(&mut self, frame: &mut [i16]) {
        let d = self.ring.len();
        if d == 0 {
            return;
        }
        let mut rest = frame;
        while !rest.is_empty() {
            let n = (d - self.pos).min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            head.swap_with_slice(&mut self.ring[self.pos..self.pos + n]);
            self.pos = (self.pos + n) % d;
            rest = tail;
        }
    }
}

fn push_span(spans: &mut [(u64, u64); MAX_SPANS], n: &mut usize, a: u64, b: u64) {
    if *n > 0 {
        let last = &mut spans[*n - 1];
        // Starts only grow; join overlapping or touching spans (and, if the queue is full,
        // anything: masking more is the safe side).
        if a <= last.1 || *n == MAX_SPANS {
            last.1 = last.1.max(b);
            return;
        }
    }
    spans[*n] = (a, b);
    *n += 1;
}

/// Replacement audio for output samples starting at input index `first`.
fn fill(mode: MaskMode, beep_step: usize, beep: &[i16; 48], out: &mut [i16], first: u64) {
    match mode {
        MaskMode::Silence => out.fill(0),
        MaskMode::Noise => {
            for (i, s) in out.iter_mut().enumerate() {
                // Stateless hash of the position: same output however frames are split.
                let mut z = (first + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z ^= z >> 29;
                // Uniform in −88..=88: RMS ≈ 51, about −50 dBm0.
                *s = (z % 177) as i16 - 88;
            }
        }
        MaskMode::Beep => {
            for (i, s) in out.iter_mut().enumerate() {
                let idx = ((first + i as u64) % 48) as usize * beep_step % 48;
                *s = beep[idx];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beep_table_is_a_1khz_sine() {
        let b = make_beep();
        assert_eq!(b[0], 0);
        assert_eq!(b[12], 3614);
        assert_eq!(b[36], -3614);
    }

    #[test]
    fn lookahead_limit() {
        let cfg = MaskerConfig {
            lookahead_ms: 101,
            ..MaskerConfig::default()
        };
        assert!(matches!(
            Masker::new(SampleRate::Hz8000, &cfg),
            Err(MaskerError::LookaheadTooLong { ms: 101, max: 100 })
        ));
    }

    #[test]
    fn spans_merge_and_cap() {
        let mut s = [(0u64, 0u64); MAX_SPANS];
        let mut n = 0;
        push_span(&mut s, &mut n, 10, 20);
        push_span(&mut s, &mut n, 15, 30);
        assert_eq!((n, s[0]), (1, (10, 30)));
        for i in 0..40u64 {
            push_span(&mut s, &mut n, 100 + i * 100, 150 + i * 100);
        }
        assert_eq!(n, MAX_SPANS);
        assert_eq!(s[MAX_SPANS - 1].1, 150 + 39 * 100);
    }
}
