//! The masker: a look-ahead delay line around the detector that replaces DTMF audio from its first
//! sample to its last (plus a hangover), so neither the agent nor a recording hears a digit.
//!
//! # How it works
//! Every 3.125 ms the detector's front end judges the last 12.5 ms window (see
//! [`crate::core::dtmf`]). Besides the strict capture tests it applies a deliberately
//! permissive **mask test**: a row and a column tone each down to −90 dBm0 (below a 1-LSB sine,
//! so in practice no level floor: multimon-ng reads DTMF down to about −85 dBm0, and replacing
//! near-silent audio with silence is inaudible; the decision rests on the relative tests),
//! twist −18…+17 dB, each 6 dB above the rest of its group, together ≥ 40 % of the window
//! energy, frequency within ±5.5 % (phase test without the capture's plateau condition; permissive decoders read
//! low-group tones up to about 4 % off, so the window must be wider, or the boundary leaves
//! readable fragments), no duration test.
//! Every window that passes is replaced *whole*, from 6 ms before it starts to 6 ms after it
//! ends. A tone's first window to pass the test contains the tone's first sample, so as long as
//! the look-ahead covers one window plus the guard (12.5 + 6 ms, see
//! [`Masker::min_leak_free_lookahead_ms`]; the default is 40 ms) nothing of the tone reaches the
//! output; a held key stays masked for as long as it is held. Short bursts, weak, twisted or
//! off-frequency pairs that capture rejects are masked all the same.
//!
//! **Tonal stability.** With look-ahead to spare a window that passes the mask test is only
//! masked once a series of windows of the same pair, each at most two hops after the previous,
//! is long enough: **2** windows when every window of the series holds a keypad's pair (both
//! tones within ±2 % and the twist within −6…+5 dB, `Hop::mask_near`), **4** otherwise (a pair
//! at the mask test's wide limits: off-frequency, strongly twisted); as many as the look-ahead
//! can reach back over (25 ms for 2, 37.25 ms for 4; the default is 40 ms). A window is masked
//! at once if it passes every capture test, carries ≥ 70 % of its energy in the pair (a tone
//! on silence), or the same pair was masked in the last 25 ms. The span reaches back over the
//! whole series; the first decision on a keypad's pair (a stable series of it, or one window
//! of it carrying ≥ 70 %) reaches back over the whole look-ahead. So the tone is still replaced
//! from its first sample while voiced speech passes untouched: where speech harmonics line up
//! with a row and a column, the column harmonic is typically 8–15 dB weaker (a twist no keypad
//! sends), and a short series of such windows is common in vowels. With less look-ahead every
//! passing window is masked at once.
//!
//! **Over a background** (speech, music, noise on the customer's side: issue #11) the pair's
//! share of the window falls under 40 % and the test above gives up. A second, `bg` test judges
//! the pair in its own bands instead: pair ≥ 12 % of the window, each tone ≥ 6 dB over a flat
//! telephone-band floor and ≥ 2 dB over the other tones of its group, both within ±3.5 %. A
//! window passing it is masked only once four consecutive windows hold the same pair with a
//! steady frequency (phase advance within 0.5 rad) and level (within 2 dB) — a tone, where
//! speech harmonics glide — and then from 10 ms before the first of them. While a pair is being
//! masked the front end watches that pair's two bins in every window, whatever else is louder,
//! and masking goes on while each still carries ≥ 4 % of the window (with a 10 ms hangover).
//! A steady background tone next to a row or column frequency can take that group's peak in
//! turns with the tone, so `bg` keeps two candidates per group (`bg_candidates` in
//! `dtmf/analysis.rs`): the window after a `bg` window judges that window's pair on its own
//! bins, and a series may also start "weak" on the strongest pair ≥ 2 dB over the third
//! strongest of each group (each tone within ±3 %); such a series is masked after six steady
//! windows instead of four, and a series whose first window holds a keypad's pair (each tone
//! within ±1.5 %, twist −4…+3 dB, `Hop::bg_near`) after three, its windows may wobble more
//! (0.9 rad, 3 dB) while the pair carries ≥ 45 % of them; the first span of such a series
//! reaches back over the whole look-ahead instead of 10 ms before its first window (over a
//! background a keypad's tone often passes the test only well after it began). This needs 32 ms
//! of look-ahead, 38 ms for a weak start (the default is 40). The front end watches the masked
//! pair's bins only for a pair found by `bg` or a plain series of a keypad's pair: watching
//! speech harmonics that passed the plain test kept a whole vowel masked. Measured in
//! `tests/masking_background.rs`, `tests/talkoff_real.rs` and docs/masking.md.
//!
//! **Armed after a digit.** For `DetectorParams::mask_armed_ms` (3 s) after the end of each digit
//! the detector captured, the customer is keying, so the masker masks after fewer windows: 2
//! for any plain series, and 2 / 3 / 4 for a `bg` series (keypad start / other / weak start).
//! Over a background at 0 dB SNR that leaves 49 of 1614 tones over the residual target instead
//! of 69, at the cost of 0.7–5 % of speech frames altered in those 3 s (docs/masking.md). Speech
//! with no key press before it is judged unarmed, and so is everything with the `notch` option
//! on (arming made its residuals worse). The adapters also arm it for each out-of-band key
//! press of the customer ([`Masker::key_pressed`]), and a host can arm it for any time
//! ([`Masker::arm`]).
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
use crate::core::dtmf::analysis::{Hop, Watch};
use crate::core::dtmf::{Detector, DetectorParams, ToneEvent};
use crate::core::notch::Notch;

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
    /// Band-stop at the 8 DTMF frequencies on everything that comes out (admin key `notch`,
    /// default off; see [`crate::core::notch`]).
    pub notch: bool,
}

impl Default for MaskerConfig {
    fn default() -> Self {
        Self {
            lookahead_ms: 40,
            mode: MaskMode::Silence,
            detector: DetectorParams::default(),
            notch: false,
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

/// Tonal stability of the plain mask test: windows of one pair (each at most two hops after the
/// previous) before a pair carrying less than [`PURE_COV`] of its windows is masked, as far as
/// the look-ahead allows; a keypad's pair ([`Hop::mask_near`] in every window) waits for
/// fewer.
const PLAIN_STABLE_WINDOWS: u64 = 4;
const PLAIN_STABLE_WINDOWS_NEAR: u64 = 2;

/// Guard before each masked window and hangover after it, in ms.
const PRE_GUARD_MS: u32 = 6;
const HANGOVER_MS: u32 = 6;

/// Masking over background: consecutive windows holding the same pair with a steady frequency
/// before it is masked, the largest change of each tone's measured phase advance between two
/// consecutive windows (radians over half a window: 0.5 rad ≈ 13 Hz), and the guard and
/// hangover of such a span (a tone on a background passes the test only once it fills most
/// of a window, so its edges need more than the 6 ms of a clean tone).
const BG_STABLE_HOPS: u32 = 4;
/// ... and of a series that starts on a keypad's pair (see `Hop::bg_near`).
const BG_STABLE_HOPS_NEAR: u32 = 3;
/// ... and of a series that starts on a weak `bg` window (see `Hop::bg_weak`).
const BG_STABLE_HOPS_WEAK: u32 = 6;
const BG_DPHI_TOL: f32 = 0.5;
/// ... and the largest change of each tone's energy between them (2 dB as a ratio).
const BG_AMP: f32 = 1.585;
/// A series that started on a keypad's pair continues with more wobble (0.9 rad, 3 dB) while
/// the window's strongest pair carries at least [`BG_NEAR_HOLD_COV`] of it: a keypad's tone
/// under noise or speech wobbles in its bins (over white noise at 0 dB SNR a 20 ms tone missed
/// the 0.5 rad by 0.01 and passed whole), and a pair that strong is rarely speech (at 40 % an
/// espeak voice had 2 % of its frames altered).
const BG_DPHI_TOL_NEAR: f32 = 0.9;
const BG_AMP_NEAR: f32 = 1.995;
const BG_NEAR_HOLD_COV: f32 = 0.45;
const BG_GUARD_MS: u32 = 10;

/// After a captured digit the customer is keying: for `DetectorParams::mask_armed_ms` after the
/// tone's end the masker waits for fewer windows before masking. Windows a plain series of any
/// pair needs while armed (a keypad's pair: as unarmed).
const ARMED_PLAIN_WINDOWS: u64 = 2;
/// Windows a `bg` series needs while armed: keypad start, any other, weak start.
const ARMED_BG_HOPS: [u32; 3] = [2, 3, 4];

/// A series of consecutive `bg` windows of one pair.
#[derive(Clone, Copy, Debug, Default)]
struct BgRun {
    /// End of the first window of the series (0 = none) and of the last.
    first: u64,
    last: u64,
    row: u8,
    col: u8,
    count: u32,
    /// Windows needed before the series is masked.
    need: u32,
    dphi_row: f32,
    dphi_col: f32,
    t_row: f32,
    t_col: f32,
    /// The series started on a keypad's pair (`Hop::bg_near`).
    near: bool,
}

/// A series of windows of one pair passing the plain mask test.
#[derive(Clone, Copy, Debug, Default)]
struct PlainRun {
    /// End of the first window of the series and of the last (0 = none).
    first: u64,
    last: u64,
    row: u8,
    col: u8,
    count: u64,
    /// Every window of the series is a keypad's pair ([`Hop::mask_near`]).
    near: bool,
}

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
    /// The current series of windows that passed the plain mask test.
    plain_run: PlainRun,
    /// Windows a plain series needs before it is masked (see [`PLAIN_STABLE_WINDOWS`]), and
    /// a series of a keypad's pair.
    plain_need: u64,
    plain_need_near: u64,
    /// Last masked window: (window end, row, col); end 0 = none. Windows of the same pair
    /// shortly after are masked without waiting for a second one, so a tone whose test
    /// flickers is masked whole, never in readable fragments.
    active: (u64, u8, u8),
    /// The front end watches the active pair's bins: it was found by the background test, or
    /// a plain series of a keypad's pair.
    watched: bool,
    /// Masking over background: the current series of `bg` windows, and the look-back and
    /// hangover of its spans.
    bg_run: BgRun,
    bg_back: u64,
    bg_hang: u64,
    /// Input index up to which the masker is armed (a digit was captured shortly before; see
    /// [`ARMED_PLAIN_WINDOWS`]); 0 = never. `arm`: samples armed after each digit (0 = off).
    armed_until: u64,
    arm: u64,
    /// The `notch` option's band-stop, applied to the output after masking.
    notch: Option<Box<Notch>>,
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
        let det = Detector::for_masker(rate, &cfg.detector);
        let back = (det.window_samples() + rate.samples_for_ms(PRE_GUARD_MS)) as u64;
        // A series of n windows, each at most two hops after the previous, spans up to
        // 2(n - 1) hops before its last window: wait for as many as the look-ahead can reach
        // back over (with less than one window plus the guard, every window is masked at once).
        let d = rate.samples_for_ms(cfg.lookahead_ms) as u64;
        let m = det.hop_samples() as u64;
        let plain_need = (1 + d.saturating_sub(back) / (2 * m)).min(PLAIN_STABLE_WINDOWS);
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
            plain_run: PlainRun::default(),
            plain_need,
            plain_need_near: plain_need.min(PLAIN_STABLE_WINDOWS_NEAR),
            active: (0, 0, 0),
            watched: false,
            bg_run: BgRun::default(),
            bg_back: (det.window_samples() + rate.samples_for_ms(BG_GUARD_MS)) as u64,
            bg_hang: rate.samples_for_ms(BG_GUARD_MS) as u64,
            armed_until: 0,
            // With the notch on, arming raised the tones over -30 dB at SNR -10..0 dB from 13
            // to 18 of 8038 (docs/masking.md), so notch mode keeps the unarmed decisions.
            arm: if cfg.notch {
                0
            } else {
                rate.samples_for_ms(cfg.detector.mask_armed_ms) as u64
            },
            notch: cfg.notch.then(|| Box::new(Notch::new(rate))),
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
        std::mem::size_of::<Self>()
            + self.ring.capacity() * std::mem::size_of::<i16>()
            + self
                .notch
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Notch>())
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
            let run = &mut self.plain_run;
            let (need, need_near) = (self.plain_need, self.plain_need_near);
            let active = &mut self.active;
            let watched = &mut self.watched;
            let bg_run = &mut self.bg_run;
            let (bg_back, bg_hang) = (self.bg_back, self.bg_hang);
            let armed_until = std::cell::Cell::new(self.armed_until);
            let arm = self.arm;
            let mut digit = |ev: ToneEvent| {
                if arm > 0 {
                    armed_until.set(armed_until.get().max(ev.end_sample + arm));
                }
                sink(ev)
            };
            let det = &mut self.det;
            det.process_hops(frame, &mut digit, &mut |h: &Hop| -> Watch {
                let armed = h.end <= armed_until.get();
                let live = |active: &(u64, u8, u8), end: u64| {
                    active.0 != 0 && end <= active.0 + ACTIVE_HOPS * m
                };
                if h.keep && live(active, h.end) {
                    // Both tones of the pair being masked are still there (whatever else
                    // the background puts in the window): keep masking.
                    let a = h.end.saturating_sub(bg_back).max(h.end.saturating_sub(d));
                    push_span(spans, nspans, a, h.end + bg_hang);
                    active.0 = h.end;
                }
                if h.bg {
                    // Over a background: mask once BG_STABLE_HOPS consecutive windows hold
                    // the same pair at a steady frequency (a tone; speech harmonics glide),
                    // from the first of them, and every later window of that series at once.
                    let r = &mut *bg_run;
                    let (tol, amp) = if r.near && h.cov >= BG_NEAR_HOLD_COV {
                        (BG_DPHI_TOL_NEAR, BG_AMP_NEAR)
                    } else {
                        (BG_DPHI_TOL, BG_AMP)
                    };
                    let cont = r.first != 0
                        && r.last + m == h.end
                        && r.row == h.bg_row
                        && r.col == h.bg_col
                        && (h.dphi_row - r.dphi_row).abs() <= tol
                        && (h.dphi_col - r.dphi_col).abs() <= tol
                        && h.t_row <= amp * r.t_row
                        && r.t_row <= amp * h.t_row
                        && h.t_col <= amp * r.t_col
                        && r.t_col <= amp * h.t_col;
                    if cont {
                        r.count += 1;
                    } else {
                        *r = BgRun {
                            first: h.end,
                            row: h.bg_row,
                            col: h.bg_col,
                            count: 1,
                            need: match (h.bg_weak, h.bg_near, armed) {
                                (true, _, false) => BG_STABLE_HOPS_WEAK,
                                (false, true, false) => BG_STABLE_HOPS_NEAR,
                                (false, false, false) => BG_STABLE_HOPS,
                                (true, _, true) => ARMED_BG_HOPS[2],
                                (false, true, true) => ARMED_BG_HOPS[0],
                                (false, false, true) => ARMED_BG_HOPS[1],
                            },
                            near: h.bg_near && !h.bg_weak,
                            ..BgRun::default()
                        };
                    }
                    r.last = h.end;
                    r.dphi_row = h.dphi_row;
                    r.dphi_col = h.dphi_col;
                    r.t_row = h.t_row;
                    r.t_col = h.t_col;
                    if r.count >= r.need {
                        let a = if r.count > r.need {
                            h.end.saturating_sub(bg_back)
                        } else if r.near {
                            // The first decision on a keypad's pair: everything still in the
                            // look-ahead (its head passed the test late, under the background).
                            0
                        } else {
                            r.first.saturating_sub(bg_back)
                        };
                        let a = a.max(h.end.saturating_sub(d));
                        push_span(spans, nspans, a, h.end + bg_hang);
                        *active = (h.end, h.bg_row, h.bg_col);
                        *watched = true;
                    }
                }
                // Only a pair found over a background or a keypad's pair is watched: speech
                // harmonics that passed the plain test would keep their bins "still there" for
                // a whole vowel.
                let watch = |active: &(u64, u8, u8), on: bool| {
                    (on && live(active, h.end + m)).then_some((active.1, active.2))
                };
                if !h.mask {
                    return watch(active, *watched);
                }
                // Tonal stability: mask once `need` windows (`need_near` for a keypad's pair),
                // each at most two hops after the previous, hold the same pair (or one passes
                // every capture test, or carries PURE_COV of its window), reaching back over all
                // of them, so the tone is still replaced from its first sample while voiced
                // speech whose harmonics briefly line up with a row and a column is left alone.
                if run.first != 0
                    && run.last + 2 * m >= h.end
                    && run.row == h.row
                    && run.col == h.col
                {
                    run.count += 1;
                    run.near &= h.mask_near;
                } else {
                    *run = PlainRun {
                        first: h.end,
                        row: h.row,
                        col: h.col,
                        count: 1,
                        near: h.mask_near,
                        ..PlainRun::default()
                    };
                }
                run.last = h.end;
                let stable = run.count
                    >= if run.near {
                        need_near
                    } else if armed {
                        need.min(ARMED_PLAIN_WINDOWS)
                    } else {
                        need
                    };
                let recent = active.0 != 0
                    && h.end <= active.0 + ACTIVE_HOPS * m
                    && active.1 == h.row
                    && active.2 == h.col;
                // The first decision on a keypad's pair (a stable series of it, or one window
                // that carries PURE_COV of its energy) masks everything still in the
                // look-ahead: over a background its head passes the tests late.
                let from =
                    if !recent && ((stable && run.near) || (h.mask_near && h.cov >= PURE_COV)) {
                        0
                    } else if stable {
                        run.first.saturating_sub(back)
                    } else {
                        h.end.saturating_sub(back)
                    };
                if stable || h.strict || recent || h.cov >= PURE_COV {
                    // A new pair is watched only if it is a keypad's; the same pair masked again
                    // keeps its watch.
                    *watched = (*watched && recent) || (stable && run.near);
                    *active = (h.end, h.row, h.col);
                    // Never reach back into audio already output when this window is judged.
                    let a = from.max(h.end.saturating_sub(d));
                    push_span(spans, nspans, a, h.end + hang);
                }
                watch(active, *watched)
            });
            self.armed_until = armed_until.get();
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
        if let Some(n) = self.notch.as_mut() {
            n.process(frame);
        }
    }

    /// End of stream: report a digit still pending (the audio still in the delay line comes out
    /// by feeding [`Masker::delay_samples`] more samples, e.g. silence, to `process`).
    pub fn flush(&mut self, sink: &mut dyn FnMut(ToneEvent)) {
        self.det.flush(sink);
    }

    /// Treats the customer as keying for the next `ms` of input: the masker masks after fewer
    /// windows, as it does for `DetectorParams::mask_armed_ms` after each digit it captures
    /// itself. For a host that learnt of a key press another way (an RFC 4733 event: some
    /// phones also send the tone), and for measuring what arming costs on speech. No effect
    /// with the `notch` option on (never armed, see the module docs).
    pub fn arm(&mut self, ms: u32) {
        if self.notch.is_some() {
            return;
        }
        let until = self.t + self.rate.samples_for_ms(ms) as u64;
        self.armed_until = self.armed_until.max(until);
    }

    /// The host saw a key press the detector did not hear (an out-of-band digit: RFC 4733,
    /// SIP INFO, an Asterisk DTMF frame): the customer is keying, so the masker is armed for
    /// `DetectorParams::mask_armed_ms` from here, as after a digit it captured itself. Some
    /// phones and gateways let the first tens of ms of each tone through in the audio before
    /// they switch to the out-of-band event; armed, a head like that over a background is
    /// masked after fewer windows. No effect when `mask_armed_ms` is 0 or the `notch` option
    /// is on. Constant work, no allocation (called from the audio path).
    pub fn key_pressed(&mut self) {
        if self.arm == 0 {
            return;
        }
        self.armed_until = self.armed_until.max(self.t + self.arm);
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
        self.plain_run = PlainRun::default();
        self.active = (0, 0, 0);
        self.watched = false;
        self.bg_run = BgRun::default();
        self.armed_until = 0;
        if let Some(n) = self.notch.as_mut() {
            n.reset();
        }
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

fn push_span(spans: &mut [(u64, u64); MAX_SPANS], n: &mut usize, mut a: u64, mut b: u64) {
    // Join overlapping or touching spans, also those a span reaching further back (masking
    // over background looks back over several windows) overlaps; if the queue is full, join
    // anything: masking more is the safe side.
    while *n > 0 && (a <= spans[*n - 1].1 || *n == MAX_SPANS) {
        let last = spans[*n - 1];
        a = a.min(last.0);
        b = b.max(last.1);
        *n -= 1;
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
        // A span reaching back over the last two joins them, start included.
        let mut s = [(0u64, 0u64); MAX_SPANS];
        let mut n = 0;
        push_span(&mut s, &mut n, 100, 120);
        push_span(&mut s, &mut n, 200, 220);
        push_span(&mut s, &mut n, 90, 230);
        assert_eq!((n, s[0]), (1, (90, 230)));
    }
}
