//! DTMF detection (capture grade, ITU-T Q.24 / Telcordia GR-506). One [`Detector`] per channel,
//! fed chunks of any length (1 sample and up); results do not depend on how the audio is chunked.
//!
//! # Design
//! [`analysis`] turns the stream into 12.5 ms windows sliding by 3.125 ms, each tested like
//! spandsp tests its blocks (level, twist, relative peak, share of total energy) plus a
//! phase-based frequency test. On top of that the detector tracks **runs**: consecutive windows
//! where the same row/column pair covers at least 40 % of the window. The length of a run
//! measures the tone's duration to about ±3 ms (a window counts once the tone fills 40 % of it,
//! so the run is the tone's length + 0.2 window), which is what lets us accept every 40 ms tone
//! and reject 23 ms ones, something a two-block debounce cannot do. Runs of the same pair
//! separated by a short gap are joined (dropout bridging); a gap at or beyond
//! `(max_dropout_ms + min_pause_ms) / 2` ends the digit. A run becomes a digit when at least
//! three windows passed every capture test and its measured duration is at least `min_tone_ms`.
//! One of those tests is steadiness: each tone's measured frequency must agree with the
//! previous hop's, which refuses chords whose harmonics beat inside a DTMF bin (an organ's
//! F5 + E6, whose 2nd harmonic of F5 sits between the 1336 and 1477 Hz bins).
//! The digit is reported once its end is confirmed.
//!
//! | property | accepted | rejected |
//! |---|---|---|
//! | frequency deviation | ≤ ±1.5 % (test at ±2.2 % per tone; both tones together within a
//! radius of 1.1 × 2.2 %, so pairs with BOTH tones 2–3 % off are refused) | ≥ ±3.5 % |
//! | duration | ≥ 40 ms (`min_tone_ms` 32) | ≤ 23 ms |
//! | pause | ≥ 40 ms separates | ≤ 10 ms bridged |
//! | twist (high − low) | −8 … +4 dB (tests at −10 / +6) | beyond |
//! | level per tone | 0 … −36 dBm0 (floor −42) | below the floor |
//! | noise | white noise at ≥ 12 dB SNR | |

pub(crate) mod analysis;

use crate::core::audio::SampleRate;
use crate::core::digit::Digit;
use analysis::{Analyzer, Hop, HopTests, Watch};

/// Detection thresholds. `Default` is the Q.24 profile described in the module doc.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorParams {
    /// Tones measured shorter than this are not accepted as digits (must accept >= 40 ms,
    /// reject <= 23 ms; the measurement is good to about ±3 ms).
    pub min_tone_ms: u32,
    /// Silence/dropout up to this long inside a tone is always bridged.
    pub max_dropout_ms: u32,
    /// Pauses at least this long always separate two digits (gaps between the two limits are
    /// split at their midpoint).
    pub min_pause_ms: u32,
    /// Minimum level of each tone, dBm0 (spandsp: about −42).
    pub threshold_dbm0: f32,
    /// Low group louder than high by up to this many dB ("normal" twist; Q.24: 8).
    pub normal_twist_db: f32,
    /// High group louder than low by up to this many dB ("reverse" twist; Q.24: 4).
    pub reverse_twist_db: f32,
    /// Other tones of a group must be this far below the group's peak (dB).
    pub relative_peak_db: f32,
    /// The two tones must carry at least this share of the window's energy (0..1), after
    /// correcting each tone's energy for its measured frequency offset (spandsp: about 0.82).
    pub min_energy_ratio: f32,
    /// Maximum deviation of each tone from its nominal frequency, percent (Q.24: accept 1.5,
    /// reject 3.5).
    pub max_freq_dev_pct: f32,
    /// Masking only: per-tone level from which a tone pair is masked even if not captured.
    /// Default −90 dBm0 (below a 1-LSB sine): multimon-ng has no level floor and reads DTMF
    /// down to about −85 dBm0, so masking relies on the relative tests, not on level.
    pub mask_threshold_dbm0: f32,
    /// Masking only: also mask a pair that sits on a background (speech, music, noise) and so
    /// fails the share-of-window test, judged against its own bands instead (see
    /// [`crate::core::suppress`]). Default on; off only to measure what it buys.
    pub mask_over_background: bool,
    /// Masking only: after each captured digit, for this long (ms), mask a pair after fewer
    /// windows: the customer is keying (see [`crate::core::suppress`]). Default 3000; 0 = off,
    /// only to measure what it buys.
    pub mask_armed_ms: u32,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            min_tone_ms: 32,
            max_dropout_ms: 10,
            min_pause_ms: 40,
            threshold_dbm0: -42.0,
            normal_twist_db: 10.0,
            reverse_twist_db: 6.0,
            relative_peak_db: 8.0,
            min_energy_ratio: 0.85,
            max_freq_dev_pct: 2.2,
            mask_threshold_dbm0: -90.0,
            mask_over_background: true,
            mask_armed_ms: 3000,
        }
    }
}

/// One accepted key press, with its position in samples of the input stream (first sample fed
/// to the detector = 0). `end_sample` is exclusive.
#[derive(Clone, Copy)]
pub struct ToneEvent {
    pub digit: Digit,
    pub start_sample: u64,
    pub end_sample: u64,
}

/// A run of windows with the same pair (a tone being measured).
#[derive(Clone, Copy, Debug)]
struct Run {
    row: u8,
    col: u8,
    first: u64,
    last: u64,
    strict: u32,
}

/// Per-channel DTMF receiver.
#[derive(Clone)]
pub struct Detector {
    rate: SampleRate,
    an: Analyzer,
    run: Option<Run>,
    /// A different pair seen while `run` is open (may take over, see `TAKEOVER_WINDOWS`).
    cand: Option<Run>,
    /// Hop length and window length in samples.
    m: u64,
    n: u64,
    /// Minimum measured duration (samples) for a digit.
    min_tone: u64,
    /// A gap of at least this many samples (measured) ends a digit.
    bridge: u64,
}

impl Detector {
    pub fn new(rate: SampleRate, params: &DetectorParams) -> Self {
        // Masking over background is the masker's business: a bare detector skips its tests.
        Self::build(rate, params, false)
    }

    /// The masker's detector: `mask_over_background` as configured.
    pub(crate) fn for_masker(rate: SampleRate, params: &DetectorParams) -> Self {
        Self::build(rate, params, params.mask_over_background)
    }

    fn build(rate: SampleRate, params: &DetectorParams, over_background: bool) -> Self {
        let tests = HopTests::new(
            rate,
            params.threshold_dbm0,
            params.normal_twist_db,
            params.reverse_twist_db,
            params.relative_peak_db,
            params.min_energy_ratio,
            params.max_freq_dev_pct,
            params.mask_threshold_dbm0,
            over_background,
        );
        let an = Analyzer::new(rate, tests);
        let per_ms = rate.hz() as u64 / 1000;
        let bridge_ms = (params.max_dropout_ms as u64 + params.min_pause_ms as u64).div_ceil(2);
        Self {
            rate,
            m: an.hop_len() as u64,
            n: an.window_len() as u64,
            an,
            run: None,
            cand: None,
            min_tone: params.min_tone_ms as u64 * per_ms,
            bridge: bridge_ms.max(1) * per_ms,
        }
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Length of the analysis window in samples (12.5 ms). A masker needs at least this much
    /// look-ahead (plus its guard) to remove a tone from its first sample.
    pub fn window_samples(&self) -> usize {
        self.an.window_len()
    }

    /// Hop of the analysis in samples (3.125 ms): windows are judged this often.
    pub fn hop_samples(&self) -> usize {
        self.an.hop_len()
    }

    /// Feeds samples; calls `sink` for each digit whose end is confirmed.
    pub fn process(&mut self, samples: &[i16], sink: &mut dyn FnMut(ToneEvent)) {
        self.process_hops(samples, sink, &mut |_| None);
    }

    /// As `process`, also handing the analysis windows to `on_hop` (the masker's hook; quiet
    /// windows only as the last of a series, see `Analyzer::process`).
    pub(crate) fn process_hops<F: FnMut(&Hop) -> Watch>(
        &mut self,
        samples: &[i16],
        sink: &mut dyn FnMut(ToneEvent),
        on_hop: &mut F,
    ) {
        // Split borrows: the analyzer calls back into the run tracker.
        let an = &mut self.an;
        let mut tracker = Tracker {
            run: &mut self.run,
            cand: &mut self.cand,
            m: self.m,
            n: self.n,
            min_tone: self.min_tone,
            bridge: self.bridge,
        };
        an.process(samples, &mut |h| {
            tracker.on_hop(h, sink);
            on_hop(h)
        });
    }

    /// End of stream: report a digit still sounding (or whose end is not yet confirmed).
    pub fn flush(&mut self, sink: &mut dyn FnMut(ToneEvent)) {
        self.cand = None;
        if let Some(r) = self.run.take() {
            finish(&r, self.m, self.n, self.min_tone, sink);
        }
    }

    /// Forget all state, as if newly created.
    pub fn reset(&mut self) {
        self.an.reset();
        self.run = None;
        self.cand = None;
    }
}

struct Tracker<'a> {
    run: &'a mut Option<Run>,
    cand: &'a mut Option<Run>,
    m: u64,
    n: u64,
    min_tone: u64,
    bridge: u64,
}

/// Measured tone start/end (samples) of a run: a window joins the run once the tone fills 40 %
/// of it, so the tone starts about 0.4 window (+ half a hop) before the first window's end.
fn span(r: &Run, m: u64, n: u64) -> (u64, u64) {
    let first_end = (r.first + 1) * m;
    let last_start = ((r.last + 1) * m).saturating_sub(n);
    let edge = (2 * n) / 5 + m / 2;
    let start = first_end.saturating_sub(edge);
    let end = (last_start + edge).max(start);
    (start, end)
}

/// Consecutive windows another pair needs to end the current run (one window length).
const TAKEOVER_WINDOWS: u64 = 4;

/// Windows (of the run) that must pass every capture test for a digit.
const MIN_STRICT_WINDOWS: u32 = 3;

fn finish(r: &Run, m: u64, n: u64, min_tone: u64, sink: &mut dyn FnMut(ToneEvent)) {
    let (start, end) = span(r, m, n);
    if r.strict >= MIN_STRICT_WINDOWS && end - start >= min_tone {
        if let Some(digit) = Digit::from_matrix(r.row as usize, r.col as usize) {
            sink(ToneEvent {
                digit,
                start_sample: start,
                end_sample: end,
            });
        }
    }
}

impl Tracker<'_> {
    fn on_hop(&mut self, h: &Hop, sink: &mut dyn FnMut(ToneEvent)) {
        if h.run {
            match self.run.as_mut() {
                Some(r) if r.row == h.row && r.col == h.col => {
                    r.last = h.index;
                    r.strict = r.strict.saturating_add(h.strict as u32);
                    *self.cand = None;
                    return;
                }
                None => {
                    *self.run = Some(Run::start(h));
                    return;
                }
                Some(_) => {}
            }
            // Another pair: it takes over only after TAKEOVER_WINDOWS consecutive windows (or a
            // window passing every capture test), so the splatter of a phase jump or a click
            // inside a tone does not split a digit.
            match self.cand.as_mut() {
                Some(c) if c.row == h.row && c.col == h.col && c.last + 1 == h.index => {
                    c.last = h.index;
                    c.strict = c.strict.saturating_add(h.strict as u32);
                    if c.last - c.first + 1 < TAKEOVER_WINDOWS && c.strict == 0 {
                        return;
                    }
                    if let Some(done) = self.run.take() {
                        finish(&done, self.m, self.n, self.min_tone, sink);
                    }
                    *self.run = self.cand.take();
                }
                _ => *self.cand = Some(Run::start(h)),
            }
        } else {
            *self.cand = None;
            if let Some(r) = *self.run {
                // Measured gap so far: from the run's end to where this window's tone would
                // start.
                let (_, end) = span(&r, self.m, self.n);
                let next_start =
                    ((h.index + 1) * self.m).saturating_sub((2 * self.n) / 5 + self.m / 2);
                if next_start.saturating_sub(end) >= self.bridge {
                    finish(&r, self.m, self.n, self.min_tone, sink);
                    *self.run = None;
                }
            }
        }
    }
}

impl Run {
    fn start(h: &Hop) -> Self {
        Run {
            row: h.row,
            col: h.col,
            first: h.index,
            last: h.index,
            strict: h.strict as u32,
        }
    }
}
