//! The spectral front end shared by the detector and the masker.
//!
//! # How it works
//! * The input is cut into **sub-blocks** of `M` samples (3.125 ms: 25/50/100/150 samples at
//!   8/16/32/48 kHz). For each complete sub-block a plain DFT at the 8 DTMF frequencies is taken
//!   against a shared fixed-point table (cos/sin in Q11): each pair of samples is broadcast and
//!   multiplied into four table columns per instruction (SSE2 `pmaddwd` through the safe
//!   `wide` API), summed exactly in 32-bit integers and moved to floats every 13 pairs, before
//!   a sum could overflow. The energy is taken the same way. At 8 kHz the sub-block is first
//!   folded about its centre sample (half sums for the cos columns, half differences for the
//!   sin columns, see `SymTab`), which halves the multiply-adds. At 32 and 48 kHz the sub-block is
//!   first averaged in groups of 2 or 3 samples (a boxcar low-pass, −0.1 dB at 1633 Hz,
//!   analysed at 16 kHz with each group at its centre time), so the multiply-adds cost what
//!   16 kHz costs; digital-silence sub-blocks skip them.
//! * Every sub-block completes an analysis **window** of `K = 4` sub-blocks (`N = 4M` = 12.5 ms,
//!   close to the classic 102-sample Goertzel block). Each sub-block spectrum is rotated once to
//!   an absolute time reference (a per-channel phasor advanced by one complex multiply per
//!   sub-block and reset to its exact value every 320 sub-blocks), so a window's spectrum is the plain
//!   sum of its four sub-block spectra and windows slide by one sub-block (a "hop") at the cost
//!   of one DFT.
//! * Per hop we compute the tone energy `T_k = 2|X_k|²/N` of each frequency (equal to the energy
//!   a steady tone puts in the window), the strongest row and column, and the **coverage**
//!   `(T_row + T_col) / E_window`: ≈ 1 for a clean DTMF pair filling the window, ≈ the fraction
//!   of the window the pair fills when it starts or stops inside it, small for speech and noise.
//! * The capture tests (spandsp's: level, twist, relative peak, energy ratio) plus a
//!   **frequency test** from the phase advance of each tone between windows half a window apart
//!   (this is what separates ±1.5 % from ±3.5 % with a 12.5 ms window, where the magnitude alone
//!   barely changes) mark a hop `strict`; both tones' offsets together must stay inside a
//!   radius (dual sweeps), and each measurement must agree with the previous hop's (harmonics
//!   beating inside a bin make it wobble). The measured offset also undoes the window's sinc loss
//!   for an off-centre tone before the level, twist and energy tests. Looser tests mark it `mask` (anything a permissive
//!   decoder could read) and `run` (the pair is present, used to measure tone edges).
//!
//! Chunk independence: samples are only ever folded into the spectra a whole sub-block at a
//! time, in a fixed order, so the arithmetic (and therefore every decision) is identical however
//! the stream is split.

use std::sync::LazyLock;

use wide::{f32x4, i16x8, i32x4};

use crate::core::audio::SampleRate;

/// Sub-blocks per analysis window.
pub(crate) const K: usize = 4;
/// Largest sub-block (48 kHz).
pub(crate) const MAX_M: usize = 150;

/// DTMF frequencies in Hz: rows then columns.
pub(crate) const FREQS: [u64; 8] = [697, 770, 852, 941, 1209, 1336, 1477, 1633];

const PI: f64 = std::f64::consts::PI;

/// sin(2π·num/den), with the phase reduced exactly in integers first.
pub(crate) fn sin_turns(num: u64, den: u64) -> f64 {
    (2.0 * PI * (num % den) as f64 / den as f64).sin()
}

/// cos(2π·num/den).
fn cos_turns(num: u64, den: u64) -> f64 {
    (2.0 * PI * (num % den) as f64 / den as f64).cos()
}

/// Samples averaged into one DFT point: at 32 and 48 kHz the sub-block is first averaged in
/// groups of `D` samples (a boxcar low-pass: −0.1 dB at 1633 Hz, zeros at multiples of 16 kHz)
/// and analysed at 16 kHz, so 32 and 48 kHz cost about what 16 kHz costs. The table takes each
/// group at its centre time, so the result matches the full-rate DFT at the DTMF frequencies.
pub(crate) fn decimation(rate: u64) -> usize {
    (rate / 16000).max(1) as usize
}

/// Fixed-point scale of the DFT table (cos/sin × 2048, Q11).
const Q: f32 = 2048.0;

/// Sample pairs summed in 32-bit integers before the partial sums are moved to floats:
/// 13 pairs × 2 × 32768 × 2048 < 2³¹, so the integer sums never overflow.
const CHUNK_PAIRS: usize = 13;
const _: () = assert!((CHUNK_PAIRS as u64) * 2 * 32768 * (Q as u64) < 1 << 31);

/// Most DFT points in a sub-block (16 kHz and up: 50).
const MAX_POINTS: usize = 50;

/// The table for one pair of points (2p, 2p+1): four vectors of 8 lanes, each holding four
/// columns as (value at 2p, value at 2p+1). Vector 0: cos of f0..f3, 1: cos f4..f7,
/// 2: sin f0..f3, 3: sin f4..f7. `i16x8::dot` (SSE2 `pmaddwd`) with the pair broadcast
/// gives the four columns' partial sums in one instruction.
type PairTab = [i16x8; 4];

/// Table of a rate: point n at the centre t = D·n + (D − 1)/2 of its group (exact integer
/// phase: f·(2Dn + D − 1) / (2·rate) turns), in Q11.
fn make_tab(rate: u64) -> Vec<PairTab> {
    let d = decimation(rate) as u64;
    let points = rate / 320 / d;
    let val = |n: u64, col: usize| -> i16 {
        if n >= points {
            return 0;
        }
        let k = col % 8;
        let num = FREQS[k] * (2 * d * n + d - 1);
        let v = if col < 8 {
            cos_turns(num, 2 * rate)
        } else {
            sin_turns(num, 2 * rate)
        };
        (v * Q as f64).round() as i16
    };
    (0..points.div_ceil(2))
        .map(|p| {
            let mut out = [i16x8::ZERO; 4];
            for (j, o) in out.iter_mut().enumerate() {
                let mut lanes = [0i16; 8];
                for q in 0..4 {
                    let col = if j < 2 {
                        4 * j + q
                    } else {
                        8 + 4 * (j - 2) + q
                    };
                    lanes[2 * q] = val(2 * p, col);
                    lanes[2 * q + 1] = val(2 * p + 1, col);
                }
                *o = i16x8::from(lanes);
            }
            out
        })
        .collect()
}

/// The 8 kHz table, folded about the sub-block's centre sample (c = 12 of 25): with
/// u_m = (x[c−m] + x[c+m]) / 2 and v_m = (x[c+m] − x[c−m]) / 2,
/// C_k = x[c] + Σ 2·cos(ω_k m)·u_m and S_k = Σ 2·sin(ω_k m)·v_m (m = 1..12), so each column
/// needs half the multiply-adds. Pairs of points as in [`PairTab`], two vectors each
/// (frequencies f0..f3, f4..f7). Point i of the folded vectors (i = 0..11) is m = 12 − i;
/// the last cos pair is (x[c], 0).
#[derive(Clone, Copy)]
struct SymTab {
    cos: [[i16x8; 2]; 7],
    sin: [[i16x8; 2]; 6],
}

/// Offset m of the folded point i (0..11), and of the centre (i = 12): m = 12 − i.
fn make_sym() -> SymTab {
    let w = |i: usize, k: usize, sine: bool| -> i16 {
        if i > 12 {
            return 0;
        }
        let m = (12 - i) as u64;
        let v = if sine {
            2.0 * sin_turns(FREQS[k] * m, 8000)
        } else if m == 0 {
            1.0
        } else {
            2.0 * cos_turns(FREQS[k] * m, 8000)
        };
        (v * Q as f64).round() as i16
    };
    let pair = |p: usize, sine: bool| -> [i16x8; 2] {
        let mut out = [i16x8::ZERO; 2];
        for (h, o) in out.iter_mut().enumerate() {
            let mut lanes = [0i16; 8];
            for q in 0..4 {
                lanes[2 * q] = w(2 * p, 4 * h + q, sine);
                lanes[2 * q + 1] = w(2 * p + 1, 4 * h + q, sine);
            }
            *o = i16x8::from(lanes);
        }
        out
    };
    let mut t = SymTab {
        cos: [[i16x8::ZERO; 2]; 7],
        sin: [[i16x8::ZERO; 2]; 6],
    };
    for p in 0..6 {
        t.cos[p] = pair(p, false);
        t.sin[p] = pair(p, true);
    }
    // The centre: (x[12], 0) with weight 1 (index 12 → m = 0; index 13 is zero).
    t.cos[6] = pair(6, false);
    t
}

/// e^{-i 2π f / 320} per frequency: the phase advance of one sub-block (1/320 s at every
/// rate), as a step for the rotating phasor of each channel.
fn make_step() -> Spec {
    let mut re = [0.0f32; 8];
    let mut im = [0.0f32; 8];
    for k in 0..8 {
        re[k] = cos_turns(FREQS[k], 320) as f32;
        im[k] = -sin_turns(FREQS[k], 320) as f32;
    }
    Spec {
        re: [f32x4::from(lane4(&re, 0)), f32x4::from(lane4(&re, 1))],
        im: [f32x4::from(lane4(&im, 0)), f32x4::from(lane4(&im, 1))],
    }
}

/// Coefficient tables per rate, shared read-only by every channel. Built once on first use
/// (thread-safe `LazyLock`), then only read; `Analyzer::new` takes `&'static` references so the
/// audio path never touches the lock.
struct Tables {
    /// Plain table (16 kHz and up; empty at 8 kHz, which uses `sym`).
    tab: Vec<PairTab>,
    sym: Option<SymTab>,
    /// DFT points per sub-block.
    points: usize,
    /// Undoes the table's fixed-point scale and the averaging of groups (×D), so spectra come
    /// out as the plain full-rate DFT.
    gain: f32,
    step: Spec,
}

fn build(rate: u64) -> Tables {
    let d = decimation(rate);
    Tables {
        tab: if rate == 8000 {
            Vec::new()
        } else {
            make_tab(rate)
        },
        sym: (rate == 8000).then(make_sym),
        points: rate as usize / 320 / d,
        gain: (d as f64 / Q as f64) as f32,
        step: make_step(),
    }
}

static T8K: LazyLock<Tables> = LazyLock::new(|| build(8000));
static T16K: LazyLock<Tables> = LazyLock::new(|| build(16000));
static T32K: LazyLock<Tables> = LazyLock::new(|| build(32000));
static T48K: LazyLock<Tables> = LazyLock::new(|| build(48000));

fn tables(rate: SampleRate) -> &'static Tables {
    match rate {
        SampleRate::Hz8000 => &T8K,
        SampleRate::Hz16000 => &T16K,
        SampleRate::Hz32000 => &T32K,
        SampleRate::Hz48000 => &T48K,
    }
}

/// Level of a full-scale sine in dBm0 (G.711 / spandsp convention; not π).
#[allow(clippy::approx_constant)]
const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// Mean-square value of a sine at `dbm0` (16-bit units²), spandsp's 3.14 dBm0 convention.
pub(crate) fn dbm0_power(dbm0: f32) -> f32 {
    let peak = 32767.0 * 10f32.powf((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0);
    peak * peak / 2.0
}

/// Capture: (dev_row/limit)² + (dev_col/limit)² at most this (both tones at 1.5 % of a 2.2 %
/// limit give 0.93).
const PAIR_DEV2: f32 = 1.2;

/// Capture: the frequency measured at consecutive hops may differ by at most this fraction of
/// the per-tone limit.
const STEADY: f32 = 0.4;

/// Masking: frequency deviation (percent) up to which a pair is still masked.
const MASK_FREQ_DEV_PCT: f32 = 5.5;
/// A keypad's pair, for the masker's shorter waits (see [`Hop::mask_near`], [`Hop::bg_near`]):
/// each tone within this of nominal (Q.24: accept ±1.5 %; the measurement over a background
/// needs the margin) and the twist within these bounds (keypads send the high group a little
/// louder; speech harmonics fall off towards the column frequencies, 8 to 15 dB "normal twist"
/// where they line up with a pair).
const NEAR_FREQ_DEV_PCT: f32 = 2.0;
const NEAR_NORMAL_TWIST_DB: f32 = 6.0;
const NEAR_REVERSE_TWIST_DB: f32 = 5.0;
/// ... and for a `bg` series (over a background, where speech lines up more often).
const BG_NEAR_FREQ_DEV_PCT: f32 = 1.5;
const BG_NEAR_NORMAL_TWIST_DB: f32 = 4.0;
const BG_NEAR_REVERSE_TWIST_DB: f32 = 3.0;

/// Masking over background: frequency deviation (percent) of each tone, minimum share of the
/// window energy of the pair, how far each tone must stand above the other tones of its group
/// (dB) and above a flat spectral floor (2E/N per bin of an 8 kHz window, dB).
const BG_FREQ_DEV_PCT: f32 = 3.5;
/// ... of each tone of a weak start (see [`bg_candidates`]): a steady two-note chord with
/// a note between two row or column frequencies is not a keypad.
const BG_WEAK_FREQ_DEV_PCT: f32 = 3.0;
const BG_COV: f32 = 0.12;
const BG_REL_DB: f32 = 2.0;
const BG_FLOOR_DB: f32 = 6.0;
/// Masking over background, once a pair is being masked (the masker's watched pair): each of
/// its tones keeps it masked while it carries at least this share of the window.
const KEEP_SHARE: f32 = 0.04;

/// The pair (row, col) the masker is masking right now, watched in every window whatever
/// the strongest pair is (a background may outweigh one tone of it for a while).
pub(crate) type Watch = Option<(u8, u8)>;

fn db_ratio(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

/// Thresholds of the per-hop tests, precomputed as linear ratios.
#[derive(Clone, Debug)]
pub(crate) struct HopTests {
    /// Capture: minimum tone energy in a window (T_k), from the dBm0 threshold.
    pub t_min: f32,
    /// Capture: T_col / T_row bounds (normal twist = low louder, reverse = high louder).
    pub twist_lo: f32,
    pub twist_hi: f32,
    /// Capture: every other tone of a group must be below peak / rel.
    pub rel: f32,
    /// Capture: minimum share of the window energy in the two tones (after offset correction).
    pub cov_strict: f32,
    /// Capture: minimum raw coverage before the phase test is even tried.
    pub cov_pre: f32,
    /// Capture: maximum phase advance (radians over half a window) per frequency, and its
    /// inverse.
    pub max_dphi: [f32; 8],
    pub inv_max_dphi: [f32; 8],
    /// Masking: same, much looser.
    pub max_dphi_mask: [f32; 8],
    /// Masking: frequency and twist bounds of a keypad's pair (`mask_near`, `bg_near`).
    pub max_dphi_near: [f32; 8],
    pub twist_near_lo: f32,
    pub twist_near_hi: f32,
    pub max_dphi_bg_near: [f32; 8],
    pub twist_bg_near_lo: f32,
    pub twist_bg_near_hi: f32,
    /// Edge measurement: minimum coverage and tone energy for a hop to belong to a tone run.
    pub cov_run: f32,
    pub t_run: f32,
    /// Masking (permissive).
    pub cov_mask: f32,
    pub t_mask: f32,
    pub twist_mask_lo: f32,
    pub twist_mask_hi: f32,
    pub rel_mask: f32,
    /// Each tone must carry at least this share of the window energy to be masked.
    pub share_mask: f32,
    /// Masking over background (`bg`): minimum pair share of the window (f32::MAX = off),
    /// relative peak within each group, each tone over the flat floor (× 2E/N), and the
    /// frequency limit (phase advance over half a window).
    pub cov_bg: f32,
    pub rel_bg: f32,
    pub floor_bg: f32,
    pub max_dphi_bg: [f32; 8],
    pub max_dphi_bg_weak: [f32; 8],
    /// Each tone of the watched pair keeps it masked from this share of the window on.
    pub keep: f32,
    /// Coverage gate while a pair is watched.
    pub cov_gate_watch: f32,
    /// Coverage gate of the mask and run tests alone.
    pub cov_gate_plain: f32,
    /// min(t_mask, t_run) and min(cov_mask, cov_run): below these a hop is neither masked nor
    /// part of a run.
    pub t_gate: f32,
    pub cov_gate: f32,
    /// 2 / N: tone energy T_k from |X_k|².
    pub t_scale: f32,
}

/// What the front end found in one window (hop).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hop {
    /// Hop number (window ends after sub-block `index`).
    pub index: u64,
    /// Input sample index one past the window's last sample.
    pub end: u64,
    pub row: u8,
    pub col: u8,
    pub cov: f32,
    /// The pair is present (for edge/duration measurement).
    pub run: bool,
    /// Passes every capture test.
    pub strict: bool,
    /// Something a permissive decoder could read: mask the window.
    pub mask: bool,
    /// `mask`, and the pair looks like a keypad's: both tones near nominal and the twist
    /// within [`NEAR_NORMAL_TWIST_DB`] / [`NEAR_REVERSE_TWIST_DB`] (the masker waits for
    /// fewer windows of such a pair; see [`crate::core::suppress`]).
    pub mask_near: bool,
    /// The pair stands out of a background in its own bands (see [`HopTests::cov_bg`]): mask
    /// it once it is stable over consecutive windows (the masker's decision). Never set on a
    /// window that passes every capture test (`strict`: masked at once anyway).
    pub bg: bool,
    /// The pair `bg` judged (one of the two strongest rows and columns; see
    /// [`Analyzer::judge`]), valid when `bg` is set.
    pub bg_row: u8,
    pub bg_col: u8,
    /// The `bg` pair starts no series of its own yet and is not the strongest pair standing
    /// out of its groups: one of two similar peaks of a group (a series starting here must
    /// last longer, see the masker).
    pub bg_weak: bool,
    /// The `bg` pair looks like a keypad's (tighter than [`Hop::mask_near`]: over a
    /// background speech lines up with a pair more often), valid when `bg` is set.
    pub bg_near: bool,
    /// Signed phase advance over half a window of the `bg` pair's row and column tone
    /// (radians; a steady tone measures the same value hop after hop).
    pub dphi_row: f32,
    pub dphi_col: f32,
    /// Both tones of the watched pair are still there (see [`Watch`]).
    pub keep: bool,
    /// Tone energies of the `bg` pair's row and column in the window (T_k).
    pub t_row: f32,
    pub t_col: f32,
}

/// A spectrum at the 8 DTMF frequencies, split into real and imaginary parts (so the per-hop
/// arithmetic runs 4 frequencies per instruction).
#[derive(Clone, Copy, Debug, Default)]
struct Spec {
    /// Real parts of f0..f3 and f4..f7.
    re: [f32x4; 2],
    /// Imaginary parts, same order.
    im: [f32x4; 2],
}

impl Spec {
    /// `g` + 0i at every frequency.
    fn unit(g: f32) -> Spec {
        Spec {
            re: [f32x4::splat(g); 2],
            im: [f32x4::ZERO; 2],
        }
    }
}

/// A window past the cheap gates, handed to [`Analyzer::judge`].
#[derive(Clone, Copy)]
struct Gate {
    /// Window index (ends after sub-block `h`).
    h: u64,
    /// Window energy.
    e: f32,
    /// Coverage of the window two sub-blocks earlier.
    prev2_cov: f32,
    /// Tone energies T_k of f0..f3 and f4..f7.
    t_lo: f32x4,
    t_hi: f32x4,
}

impl Hop {
    /// A window that is neither run, mask nor strict.
    fn quiet(index: u64, m: usize) -> Hop {
        Hop {
            index,
            end: (index + 1) * m as u64,
            ..Hop::default()
        }
    }
}

/// Sub-block DFT front end (one per channel).
#[derive(Clone)]
pub(crate) struct Analyzer {
    m: usize,
    n: usize,
    tab: &'static [PairTab],
    sym: Option<&'static SymTab>,
    /// DFT points per sub-block (M / D).
    points: usize,
    /// Samples averaged per DFT point (1 at 8/16 kHz, 2 at 32, 3 at 48).
    dec: usize,
    gain: f32,
    step: &'static Spec,
    buf: [i16; MAX_M],
    fill: usize,
    /// Spectra and energies of the last K sub-blocks, ring indexed by count % K.
    sub: [Spec; K],
    sub_e: [f32; K],
    /// e^{-iω j M} × gain for the next sub-block j, per frequency: rotates a sub-block
    /// spectrum to the absolute time reference. Advanced by one complex multiply per sub-block
    /// and reset to its exact value every 320 sub-blocks (one second, where it is exactly
    /// `gain`), so rounding never accumulates beyond 319 steps (≈ 1e-5).
    rot: Spec,
    /// j mod 320.
    jmod: u16,
    /// Completed sub-blocks since start.
    count: u64,
    /// Window spectra of the last hops, ring indexed by hop % 4 (the phase test reads hop − 2).
    zhist: [Spec; 4],
    /// Coverage of the previous two hops, same ring.
    covhist: [f32; 2],
    /// Signed frequency measurements of the previous two hops, ring indexed by hop % 2:
    /// (hop index + 1, row, col, dphi row, dphi col); index 0 = none.
    prev_dev: [(u64, u8, u8, f32, f32); 2],
    tests: HopTests,
    /// The masker's watched pair, as its callback returned it for the last window.
    watch: Watch,
    /// The pair the last `bg` window held: (hop index + 1, row, col); 0 = none. A later
    /// window prefers it among its candidates, so a background tone next to the pair's row or
    /// column frequency can't break the pair's series by taking the peak in turns.
    last_bg: (u64, u8, u8),
}

impl Analyzer {
    pub fn new(rate: SampleRate, tests: HopTests) -> Self {
        let t = tables(rate);
        let dec = decimation(rate.hz() as u64);
        let m = t.points * dec;
        Self {
            m,
            n: m * K,
            tab: &t.tab,
            sym: t.sym.as_ref(),
            points: t.points,
            dec,
            gain: t.gain,
            step: &t.step,
            buf: [0; MAX_M],
            fill: 0,
            sub: [Spec::default(); K],
            sub_e: [0.0; K],
            rot: Spec::unit(t.gain),
            jmod: 0,
            count: 0,
            zhist: [Spec::default(); 4],
            covhist: [0.0; 2],
            prev_dev: [(0, 0, 0, 0.0, 0.0); 2],
            tests,
            watch: None,
            last_bg: (0, 0, 0),
        }
    }

    /// Samples per sub-block (hop).
    pub fn hop_len(&self) -> usize {
        self.m
    }

    /// Samples per analysis window.
    pub fn window_len(&self) -> usize {
        self.n
    }

    pub fn reset(&mut self) {
        self.fill = 0;
        self.sub = [Spec::default(); K];
        self.sub_e = [0.0; K];
        self.rot = Spec::unit(self.gain);
        self.jmod = 0;
        self.count = 0;
        self.zhist = [Spec::default(); 4];
        self.covhist = [0.0; 2];
        self.prev_dev = [(0, 0, 0, 0.0, 0.0); 2];
        self.watch = None;
        self.last_bg = (0, 0, 0);
    }

    /// Feeds samples; calls `on_hop` for the completed analysis windows.
    ///
    /// Quiet windows (neither `run`, `mask` nor `strict`: silence, noise, most speech) are
    /// not handed over one by one: only the last of a series is, just before the next other
    /// window and at the end of the call. For the consumers that is the same: they ignore
    /// quiet windows except to end a tone after a long enough gap, and that test only grows
    /// truer with the window index, so the last quiet window decides it exactly as the whole
    /// series would, within the same call.
    ///
    /// `on_hop` returns the pair to watch from the next window on (see [`Watch`]).
    pub fn process<F: FnMut(&Hop) -> Watch>(&mut self, mut x: &[i16], on_hop: &mut F) {
        let m = self.m;
        let mut quiet: Option<u64> = None;
        while !x.is_empty() {
            if self.fill == 0 && x.len() >= m {
                let (blk, rest) = x.split_at(m);
                self.sub_block(blk);
                x = rest;
            } else {
                let take = (m - self.fill).min(x.len());
                let (part, rest) = x.split_at(take);
                self.buf[self.fill..self.fill + take].copy_from_slice(part);
                self.fill += take;
                x = rest;
                if self.fill < m {
                    continue;
                }
                self.fill = 0;
                let (acc, e) = analyze(&self.buf[..m], self.tab, self.sym, self.points, self.dec);
                self.store(acc, e);
            }
            if self.count < K as u64 {
                continue;
            }
            let Some(g) = self.gate() else {
                quiet = Some(self.count - 1);
                continue;
            };
            let h = self.judge(g);
            if h.run || h.mask || h.strict || h.bg || h.keep {
                if let Some(q) = quiet.take() {
                    self.watch = on_hop(&Hop::quiet(q, self.m));
                }
                self.watch = on_hop(&h);
            } else {
                quiet = Some(h.index);
            }
        }
        if let Some(q) = quiet {
            self.watch = on_hop(&Hop::quiet(q, self.m));
        }
    }

    /// DFT + energy of one complete sub-block into the ring.
    #[inline(always)]
    fn sub_block(&mut self, x: &[i16]) {
        let (acc, e) = analyze(x, self.tab, self.sym, self.points, self.dec);
        self.store(acc, e);
    }

    /// Stores a sub-block's spectrum (rotated to the absolute reference and scaled) and energy.
    #[inline(always)]
    fn store(&mut self, acc: [f32x4; 4], e: f32) {
        // Rotate the sub-block spectrum (referenced to its own first sample) to the absolute
        // time reference: multiply X = C - iS by e^{-iω j M}.
        let slot = (self.count % K as u64) as usize;
        let (rot, step) = (self.rot, self.step);
        let out = &mut self.sub[slot];
        for h in 0..2 {
            let (c, sn) = (acc[h], acc[2 + h]);
            let (r, i) = (rot.re[h], rot.im[h]);
            // (c - i sn)(r + i i)
            out.re[h] = c * r + sn * i;
            out.im[h] = c * i - sn * r;
        }
        self.jmod += 1;
        if self.jmod == 320 {
            self.jmod = 0;
            self.rot = Spec::unit(self.gain);
        } else {
            for h in 0..2 {
                let (r, i) = (rot.re[h], rot.im[h]);
                self.rot.re[h] = r * step.re[h] - i * step.im[h];
                self.rot.im[h] = r * step.im[h] + i * step.re[h];
            }
        }
        self.sub_e[slot] = e;
        self.count += 1;
    }

    /// The cheap part of judging the window ending with the newest sub-block (at least K
    /// sub-blocks in): the window spectrum, energy and tone energies, and the gates. `None`: a
    /// quiet window, done. Inlined into the sample loop; the rest is [`Analyzer::judge`].
    #[inline(always)]
    fn gate(&mut self) -> Option<Gate> {
        let h = self.count - 1;
        // The window spectrum is the plain sum of the last K (absolutely referenced)
        // sub-block spectra.
        let mut z = Spec::default();
        for sub in &self.sub {
            for h in 0..2 {
                z.re[h] += sub.re[h];
                z.im[h] += sub.im[h];
            }
        }
        let energy: f32 = self.sub_e.iter().sum();
        let hi = (h % 2) as usize;
        // Ring of 4, so the window two hops back is read in place while this one is stored.
        self.zhist[(h % 4) as usize] = z;
        let prev2_cov = self.covhist[hi];
        self.covhist[hi] = 0.0;
        let e = energy;
        // |X_k|² ≤ N·E (Cauchy–Schwarz), so T_k ≤ 2E: a window this quiet cannot hold a tone
        // for any test (silence, low background noise).
        if 2.0 * e < self.tests.t_gate || e <= 0.0 {
            return None;
        }
        let scale = f32x4::splat(self.tests.t_scale);
        let t_lo = (z.re[0] * z.re[0] + z.im[0] * z.im[0]) * scale;
        let t_hi = (z.re[1] * z.re[1] + z.im[1] * z.im[1]) * scale;
        // The strongest row and column together carry at most the sum over all eight
        // frequencies: when even that is below the coverage gate (noise, most speech) the hop
        // is done without looking for the peaks. Its coverage is stored as 0, which decides
        // the next plateau test the same way (a coverage under the gate can never make one).
        let ts = &self.tests;
        let sum = (t_lo + t_hi).reduce_add();
        if sum < ts.cov_gate_plain * e {
            // Only the background test (or the watched pair) can still pass: for `bg` a row
            // and a column bin must each stand over the floor (white noise rarely gets there).
            let pass = if self.watch.is_some() {
                sum >= ts.cov_gate_watch * e
            } else {
                // The strongest row and column, as `judge` will find them.
                let max4 = |v: f32x4| {
                    let a = v.to_array();
                    max_finite(max_finite(a[0], a[1]), max_finite(a[2], a[3]))
                };
                let (tr, tc) = (max4(t_lo), max4(t_hi));
                let fl = ts.floor_bg * e;
                tr + tc >= ts.cov_bg * e && tr >= fl && tc >= fl
            };
            if !pass {
                return None;
            }
        }
        Some(Gate {
            h,
            e,
            prev2_cov,
            t_lo,
            t_hi,
        })
    }

    /// The tests of a window that passed the gates (see the module doc).
    #[inline(never)]
    fn judge(&mut self, g: Gate) -> Hop {
        let Gate {
            h,
            e,
            prev2_cov,
            t_lo,
            t_hi,
        } = g;
        let hi = (h % 2) as usize;
        let z = self.zhist[(h % 4) as usize];
        let prev2 = &self.zhist[((h + 2) % 4) as usize];
        let mut hop = Hop {
            index: h,
            end: (h + 1) * self.m as u64,
            ..Hop::default()
        };
        let mut t = [0.0f32; 8];
        t[..4].copy_from_slice(&t_lo.to_array());
        t[4..].copy_from_slice(&t_hi.to_array());
        let (r, tr) = argmax4(&t, 0);
        let (c, tc) = argmax4(&t, 4);
        hop.row = r as u8;
        hop.col = c as u8;
        // Tests are written as products, not ratios, where they can be (no division on the
        // path to the branches).
        let pair = tr + tc;
        let cov = pair / e;
        hop.cov = cov;
        self.covhist[hi] = cov;
        let ts = &self.tests;
        if let Some((wr, wc)) = self.watch {
            let (a, b) = (t[wr as usize & 3], t[4 + (wc as usize & 3)]);
            hop.keep = a >= ts.keep * e
                && b >= ts.keep * e
                && a >= ts.t_mask
                && b >= ts.t_mask
                && b >= ts.twist_mask_lo * a
                && b <= ts.twist_mask_hi * a;
        }
        if pair < ts.cov_gate * e {
            return hop;
        }
        hop.run = pair >= ts.cov_run * e && tr >= ts.t_run && tc >= ts.t_run;
        // Every other tone of a group at most peak / rel ⇔ the group's second largest is.
        let (sec_r, sec_c) = (second4(&t, 0, r), second4(&t, 4, c));
        let rel_ok = |second: f32, pv: f32, rel: f32| second * rel <= pv;
        // (tr ≥ t_mask > 0 comes first, so the twist products compare against a positive tr.)
        hop.mask = tr >= ts.t_mask
            && tc >= ts.t_mask
            && pair >= ts.cov_mask * e
            && tr >= ts.share_mask * e
            && tc >= ts.share_mask * e
            && tc >= ts.twist_mask_lo * tr
            && tc <= ts.twist_mask_hi * tr
            && rel_ok(sec_r, tr, ts.rel_mask)
            && rel_ok(sec_c, tc, ts.rel_mask);
        // The phase test needs the tone to fill both windows: a partly filled window has its
        // phase centre shifted, which shortens the effective lag and hides a frequency offset.
        let plateau = prev2_cov >= 0.8 * cov && cov >= 0.8 * prev2_cov;
        let capture = cov >= ts.cov_pre && plateau && h >= 2 + (K as u64 - 1);
        // Over a background the pair's share of the window is small, but it still stands
        // out of its own bands (see [`bg_candidates`]). Every candidate's tones are at most
        // the strongest row's and column's, so when those fail the floor, level or share
        // test no candidate can pass.
        // (Filled in place: a returned array of 3-byte entries was read back with wide loads
        // that could not be forwarded from the byte stores, a stall on every judged window.)
        // Computed here for a window only `bg` can pass; for the others after the capture
        // tests, and not at all for a window that passes them (see below).
        let bg_possible = tr + tc >= ts.cov_bg * e
            && tr >= ts.t_mask
            && tc >= ts.t_mask
            && tr >= ts.floor_bg * e
            && tc >= ts.floor_bg * e;
        let mut bg_cands = [BgCand::default(); 5];
        // How many of `bg_cands` hold candidates; `None` until computed.
        let mut n_bg: Option<usize> = None;
        let bg_cands_of = |last_bg: (u64, u8, u8), out: &mut [BgCand; 5]| {
            let last = (last_bg.0 == h).then_some((last_bg.1, last_bg.2));
            bg_candidates(&t, (r, tr, sec_r), (c, tc, sec_c), e, ts, last, out)
        };
        if !hop.mask && !capture {
            if !bg_possible {
                return hop;
            }
            let n = bg_cands_of(self.last_bg, &mut bg_cands);
            if n == 0 {
                return hop;
            }
            n_bg = Some(n);
        }
        // Phase advance over half a window of every tone (both spectra share the absolute
        // reference, so it is (ω_tone − ω_bin)·2M directly), all eight at once: the row and
        // column tones and any `bg` candidate read theirs from it.
        let sdphi = {
            let mut d = [0.0f32; 8];
            for h in 0..2 {
                let (zr, zi) = (z.re[h], z.im[h]);
                let (pr, pi) = (prev2.re[h], -prev2.im[h]);
                let v = atan2x4(zr * pi + zi * pr, zr * pr - zi * pi).to_array();
                d[4 * h..4 * h + 4].copy_from_slice(&v);
            }
            d
        };
        let (sr, sc) = (sdphi[r], sdphi[4 + c]);
        let (pr, pc) = (sr.abs(), sc.abs());
        if hop.mask {
            // Loose frequency sanity (no plateau needed): rejects gliding speech harmonics,
            // keeps short bursts and tones well beyond what any decoder accepts.
            hop.mask = pr <= ts.max_dphi_mask[r] && pc <= ts.max_dphi_mask[4 + c];
            hop.mask_near = hop.mask
                && pr <= ts.max_dphi_near[r]
                && pc <= ts.max_dphi_near[4 + c]
                && tc >= ts.twist_near_lo * tr
                && tc <= ts.twist_near_hi * tr;
        }
        if capture {
            // Each tone within the limit, and both together: a pair with BOTH tones near the
            // limit (2-3 % off, e.g. a dual sweep) is not a keypad.
            let (ur, uc) = (pr * ts.inv_max_dphi[r], pc * ts.inv_max_dphi[4 + c]);
            // A steady tone measures the same frequency one and two hops later; two partials
            // beating in one bin (an organ's 2nd harmonic next to a column tone) make the
            // measurement wobble.
            // The partner tone's sidelobe wobbles a much weaker tone's phase too, so the
            // tolerance grows with the twist (a 4 dB weaker tone gets 1.6x).
            let tol_r = STEADY * ts.max_dphi[r] * (tc / tr).sqrt().max(1.0);
            let tol_c = STEADY * ts.max_dphi[4 + c] * (tr / tc).sqrt().max(1.0);
            let steady = {
                let (pi, pr0, pc0, psr, psc) = self.prev_dev[(h % 2) as usize];
                pi + 1 == h
                    && pr0 == hop.row
                    && pc0 == hop.col
                    && (sr - psr).abs() <= tol_r
                    && (sc - psc).abs() <= tol_c
            };
            self.prev_dev[(h % 2) as usize] = (h + 1, hop.row, hop.col, sr, sc);
            if steady && ur <= 1.0 && uc <= 1.0 && ur * ur + uc * uc <= PAIR_DEV2 {
                // Undo the window's loss for an off-centre tone (sinc², known from the
                // measured offset) before the level, twist and energy-share tests, so ±1.5 %
                // tones pass as easily as nominal ones and the share can be strict.
                let trc = tr * offset_gain(pr);
                let tcc = tc * offset_gain(pc);
                hop.strict = (trc + tcc) >= ts.cov_strict * e
                    && trc >= ts.t_min
                    && tcc >= ts.t_min
                    && tcc >= ts.twist_lo * trc
                    && tcc <= ts.twist_hi * trc
                    && rel_ok(sec_r, tr, ts.rel)
                    && rel_ok(sec_c, tc, ts.rel);
            }
        }
        // Over a background (see [`bg_candidates`]); not for a window that passes every
        // capture test (a clean keypad tone, masked at once by the plain path): half of the
        // cost of judging a clean tone's windows went here.
        if !hop.strict && bg_possible {
            let n_bg = *n_bg.get_or_insert_with(|| bg_cands_of(self.last_bg, &mut bg_cands));
            for &BgCand {
                row: br,
                col: bc,
                weak,
            } in &bg_cands[..n_bg]
            {
                let (br, bc) = (br as usize & 3, bc as usize & 3);
                let (btr, btc) = (t[br], t[4 + bc]);
                let (dr, dc) = (sdphi[br], sdphi[4 + bc]);
                let lim = if weak {
                    &ts.max_dphi_bg_weak
                } else {
                    &ts.max_dphi_bg
                };
                if dr.abs() <= lim[br] && dc.abs() <= lim[4 + bc] {
                    hop.bg = true;
                    hop.bg_weak = weak;
                    hop.bg_near = dr.abs() <= ts.max_dphi_bg_near[br]
                        && dc.abs() <= ts.max_dphi_bg_near[4 + bc]
                        && btc >= ts.twist_bg_near_lo * btr
                        && btc <= ts.twist_bg_near_hi * btr;
                    hop.bg_row = br as u8;
                    hop.bg_col = bc as u8;
                    hop.dphi_row = dr;
                    hop.dphi_col = dc;
                    hop.t_row = btr;
                    hop.t_col = btc;
                    self.last_bg = (h + 1, br as u8, bc as u8);
                    break;
                }
            }
        }
        // Whatever capture accepts is always masked, as a keypad's pair.
        hop.mask |= hop.strict;
        hop.mask_near |= hop.strict;
        hop
    }
}

/// DFT (unscaled, see [`dft`]) and energy of one complete sub-block. Always called on a whole
/// sub-block, so the arithmetic never depends on how the stream was chunked.
#[inline(always)]
fn analyze(
    x: &[i16],
    tab: &[PairTab],
    sym: Option<&SymTab>,
    points: usize,
    dec: usize,
) -> ([f32x4; 4], f32) {
    if let (Some(sym), Ok(x)) = (sym, <&[i16; 25]>::try_from(x)) {
        return dft25(x, sym);
    }
    let e = energy(x);
    // Digital silence (the gaps between key presses, muted legs): its spectrum is exactly zero,
    // so the multiply-adds are skipped with an identical result.
    let acc = if e == 0.0 {
        [f32x4::ZERO; 4]
    } else if dec == 1 {
        dft(x, tab)
    } else {
        let mut pts = [0i16; MAX_POINTS];
        let n = points.min(MAX_POINTS);
        match dec {
            2 => average::<2>(x, &mut pts[..n]),
            _ => average::<3>(x, &mut pts[..n]),
        }
        dft(&pts[..n], tab)
    };
    (acc, e)
}

/// Four lanes `4h..4h+4` of an 8-array.
#[inline(always)]
fn lane4(v: &[f32; 8], h: usize) -> [f32; 4] {
    [v[4 * h], v[4 * h + 1], v[4 * h + 2], v[4 * h + 3]]
}

/// Correlations of the points `x` with the table columns, as (cos f0..f3, cos f4..f7,
/// sin f0..f3, sin f4..f7), unscaled (Q11). Each pair of points is broadcast to 8 lanes and
/// multiplied into four columns at once (`pmaddwd`); the 32-bit sums are moved to floats every
/// `CHUNK_PAIRS` pairs, before they could overflow. Exact integer arithmetic per chunk, fixed
/// order: the result never depends on how the stream was chunked. Any other length (none
/// exists) gives a zero spectrum.
fn dft(x: &[i16], tab: &[PairTab]) -> [f32x4; 4] {
    // Fixed size (50 points), so the loops unroll without checks.
    if let (Ok(x), Ok(t)) = (<&[i16; 50]>::try_from(x), <&[PairTab; 25]>::try_from(tab)) {
        return dft50(x, t);
    }
    [f32x4::ZERO; 4]
}

/// 8 kHz: spectrum (referenced to the centre sample, see [`SymTab`]) and energy of 25
/// samples. The halves u_m, v_m are formed exactly as floor((a ± b) / 2) without overflow;
/// the dropped half LSB is far below any signal that matters (the mask floor is −90 dBm0,
/// the quietest tested tone −70 dBm0, 7 LSB). Digital silence skips the multiply-adds.
#[inline(always)]
fn dft25(x: &[i16; 25], t: &SymTab) -> ([f32x4; 4], f32) {
    let ld = |i: usize| {
        let mut v = [0i16; 8];
        v.copy_from_slice(&x[i..i + 8]);
        i16x8::from(v)
    };
    let (a1, a2, a3) = (ld(0), ld(8), ld(16));
    let e = (energy8(a1) + energy8(a2) + energy8(a3)).reduce_add() + sq(x[24]);
    if e == 0.0 {
        return ([f32x4::ZERO; 4], 0.0);
    }
    // Folded points: lane i of (a1, b1) pairs x[i] with x[24 − i] (i = 0..7); lanes 0..3 of
    // (a2, b2) pair x[8 + i] with x[16 − i] (i = 0..3, the rest is unused).
    let b1 = rev(ld(17));
    let b2 = rev(ld(9));
    let (u1, v1) = (half_sum(a1, b1), half_diff(b1, a1));
    let (u2, v2) = (half_sum(a2, b2), half_diff(b2, a2));
    let (u1, v1, u2, v2): ([i32; 4], [i32; 4], [i32; 4], [i32; 4]) = (
        bytemuck::cast(u1),
        bytemuck::cast(v1),
        bytemuck::cast(u2),
        bytemuck::cast(v2),
    );
    let mut c = [i32x4::ZERO; 2];
    let mut s = [i32x4::ZERO; 2];
    for p in 0..4 {
        mac2(&mut c, u1[p], &t.cos[p]);
        mac2(&mut s, v1[p], &t.sin[p]);
    }
    for p in 0..2 {
        mac2(&mut c, u2[p], &t.cos[4 + p]);
        mac2(&mut s, v2[p], &t.sin[4 + p]);
    }
    mac2(&mut c, bytemuck::cast([x[12], 0i16]), &t.cos[6]);
    (
        [
            c[0].round_float(),
            c[1].round_float(),
            s[0].round_float(),
            s[1].round_float(),
        ],
        e,
    )
}

/// One pair, broadcast, into two column accumulators (frequencies f0..f3, f4..f7).
#[inline(always)]
fn mac2(a: &mut [i32x4; 2], w: i32, t: &[i16x8; 2]) {
    let b: i16x8 = bytemuck::cast(i32x4::splat(w));
    a[0] += b.dot(t[0]);
    a[1] += b.dot(t[1]);
}

/// Lanes in reverse order.
#[inline(always)]
fn rev(v: i16x8) -> i16x8 {
    let a = v.to_array();
    i16x8::from([a[7], a[6], a[5], a[4], a[3], a[2], a[1], a[0]])
}

/// floor((a + b) / 2) per lane, without overflow.
#[inline(always)]
fn half_sum(a: i16x8, b: i16x8) -> i16x8 {
    (a >> 1) + (b >> 1) + (a & b & i16x8::splat(1))
}

/// floor((b − a) / 2) per lane, without overflow.
#[inline(always)]
fn half_diff(b: i16x8, a: i16x8) -> i16x8 {
    (b >> 1) - (a >> 1) - (a & !b & i16x8::splat(1))
}

/// Σ x² of eight samples in four float lanes (see [`energy`]).
#[inline(always)]
fn energy8(v: i16x8) -> f32x4 {
    let v = v.max(i16x8::splat(-32767));
    v.dot(v).round_float()
}

#[inline(always)]
fn sq(v: i16) -> f32 {
    let v = v.max(-32767) as i32;
    (v * v) as f32
}

/// 50 points (16 kHz, and 32/48 kHz after averaging): pairs 0..13 and 13..25 in two integer
/// chunks (`CHUNK_PAIRS` = 13).
#[inline(never)]
fn dft50(x: &[i16; 50], tab: &[PairTab; 25]) -> [f32x4; 4] {
    let mut a = [i32x4::ZERO; 4];
    for o in 0..3 {
        macs8(&mut a, &x[8 * o..8 * o + 8], &tab[4 * o..4 * o + 4]);
    }
    mac(&mut a, bytemuck::cast([x[24], x[25]]), &tab[12]);
    let mut f = a.map(|v| v.round_float());
    let mut a = [i32x4::ZERO; 4];
    for o in 0..3 {
        macs8(
            &mut a,
            &x[26 + 8 * o..34 + 8 * o],
            &tab[13 + 4 * o..17 + 4 * o],
        );
    }
    for j in 0..4 {
        f[j] += a[j].round_float();
    }
    f
}

/// Multiply-adds of eight points (four pairs) into the four column accumulators.
#[inline(always)]
fn macs8(a: &mut [i32x4; 4], x: &[i16], tab: &[PairTab]) {
    let mut v = [0i16; 8];
    v.copy_from_slice(x);
    let pairs: [i32; 4] = bytemuck::cast(v);
    for (w, t) in pairs.into_iter().zip(tab) {
        mac(a, w, t);
    }
}

/// One pair (two points as one 32-bit lane), broadcast, into the four column accumulators.
#[inline(always)]
fn mac(a: &mut [i32x4; 4], w: i32, t: &PairTab) {
    let b: i16x8 = bytemuck::cast(i32x4::splat(w));
    for j in 0..4 {
        a[j] += b.dot(t[j]);
    }
}

/// Σ x² (16-bit units²) in floats: squares of sample pairs summed exactly in 32 bits
/// (`pmaddwd`; −32768 counts as −32767 so a pair never reaches 2³¹), then accumulated in four
/// float lanes. Zero exactly when every sample is zero.
#[inline(always)]
fn energy(x: &[i16]) -> f32 {
    let floor = i16x8::splat(-32767);
    let mut acc = f32x4::ZERO;
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        let mut v = [0i16; 8];
        v.copy_from_slice(c);
        let v = i16x8::from(v).max(floor);
        acc += v.dot(v).round_float();
    }
    let mut e = acc.reduce_add();
    for &v in chunks.remainder() {
        let v = v.max(-32767) as i32;
        e += (v * v) as f32;
    }
    e
}

/// Averages of `D` consecutive samples, rounded (constant `D`, so the compiler unrolls it).
/// The result always fits 16 bits.
#[inline(always)]
fn average<const D: usize>(x: &[i16], out: &mut [i16]) {
    for (o, g) in out.iter_mut().zip(x.chunks_exact(D)) {
        let mut acc = 0i32;
        for &v in g {
            acc += v as i32;
        }
        *o = (acc + (D as i32) / 2).div_euclid(D as i32) as i16;
    }
}

/// atan2 by a polynomial (error about 1e-7 rad in f32, far under any threshold it is compared
/// with), in plain arithmetic: the same result on every platform and libm.
#[cfg(test)]
fn atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let (mx, mn) = (ax.max(ay), ax.min(ay));
    if mx == 0.0 {
        return 0.0;
    }
    let a = mn / mx;
    let s = a * a;
    // Abramowitz & Stegun 4.4.49 (odd polynomial of degree 17, error ≤ 2e-8 on [0, 1]),
    // evaluated by Estrin's scheme (short dependency chains).
    const C: [f32; 8] = [
        -0.333_331_45,
        0.199_935_51,
        -0.142_089,
        0.106_562_64,
        -0.075_289_64,
        0.042_909_614,
        -0.016_165_737,
        0.002_866_225_7,
    ];
    let s2 = s * s;
    let s4 = s2 * s2;
    let q01 = C[0] + C[1] * s;
    let q23 = C[2] + C[3] * s;
    let q45 = C[4] + C[5] * s;
    let q67 = C[6] + C[7] * s;
    let p = (q01 + q23 * s2) + s4 * (q45 + q67 * s2);
    let mut r = a + a * s * p;
    if ay > ax {
        r = std::f32::consts::FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = std::f32::consts::PI - r;
    }
    if y < 0.0 {
        -r
    } else {
        r
    }
}

/// [`atan2`] in four lanes: the same operations in the same order, so every lane equals the
/// scalar result bit for bit (`atan2x4_is_the_scalar_atan2` checks it).
#[inline(always)]
fn atan2x4(y: f32x4, x: f32x4) -> f32x4 {
    let (ax, ay) = (x.abs(), y.abs());
    let (mx, mn) = (ax.max(ay), ax.min(ay));
    let a = mn / mx;
    let s = a * a;
    let c = |v: f32| f32x4::splat(v);
    let s2 = s * s;
    let s4 = s2 * s2;
    let q01 = c(-0.333_331_45) + c(0.199_935_51) * s;
    let q23 = c(-0.142_089) + c(0.106_562_64) * s;
    let q45 = c(-0.075_289_64) + c(0.042_909_614) * s;
    let q67 = c(-0.016_165_737) + c(0.002_866_225_7) * s;
    let p = (q01 + q23 * s2) + s4 * (q45 + q67 * s2);
    let mut r = a + a * s * p;
    r = ay.simd_gt(ax).select(c(std::f32::consts::FRAC_PI_2) - r, r);
    r = x
        .simd_lt(f32x4::ZERO)
        .select(c(std::f32::consts::PI) - r, r);
    r = y.simd_lt(f32x4::ZERO).select(-r, r);
    mx.simd_eq(f32x4::ZERO).select(f32x4::ZERO, r)
}

/// 1 / sinc² of a tone whose phase advances `dphi` radians per half window off its bin: a
/// window of N samples sees `sinc(Δf·N/R)` of the amplitude, and `Δf·N/R = dphi/π`.
#[inline(always)]
fn offset_gain(dphi: f32) -> f32 {
    if dphi < 1e-3 {
        1.0
    } else {
        let g = dphi / sin_small(dphi);
        g * g
    }
}

/// sin x for |x| ≤ π/2 (Taylor series to x¹¹: error below 1e-7 there), plain arithmetic.
#[inline(always)]
fn sin_small(x: f32) -> f32 {
    const C3: f32 = -1.0 / 6.0;
    const C5: f32 = 1.0 / 120.0;
    const C7: f32 = -1.0 / 5040.0;
    const C9: f32 = 1.0 / 362_880.0;
    const C11: f32 = -1.0 / 39_916_800.0;
    let s = x * x;
    let s2 = s * s;
    // Estrin's scheme: short dependency chains.
    let lo = (1.0 + C3 * s) + s2 * (C5 + C7 * s);
    let hi = C9 + C11 * s;
    x * (lo + s2 * s2 * hi)
}

/// Largest of `t[from..from + 4]` other than index `peak` (energies are ≥ 0).
#[inline(always)]
fn second4(t: &[f32; 8], from: usize, peak: usize) -> f32 {
    let mut m = 0.0f32;
    for i in 0..4 {
        let v = if i == peak { 0.0 } else { t[from + i] };
        m = if v > m { v } else { m };
    }
    m
}

/// A pair the `bg` test passes before its frequency test (see [`bg_candidates`]).
#[derive(Clone, Copy, Default)]
struct BgCand {
    row: u8,
    col: u8,
    weak: bool,
}

/// The pairs that stand out of a background in their own bands, in order of preference:
/// each tone over a flat floor, the pair's share, level and twist within the `bg` limits,
/// and each tone `rel_bg` over the tones of its group other than the two strongest. A
/// background tone next to a row (column) frequency can outweigh the pair's own tone there,
/// so each group has two candidates, the two strongest, each judged on its own bins:
/// - the pair of the last `bg` window (`last`, if it was the window right before), while
///   its tones are among the two strongest of their groups (a second, steady background tone
///   may take the peak in turns);
/// - the strongest pair, if each of its tones is also `rel_bg` over the second strongest;
/// - otherwise, as weak starts (the masker wants a longer series), the pairs of the two
///   strongest of each group.
///
/// `row` and `col` are (index, T, second strongest T of the group).
#[inline(never)]
fn bg_candidates(
    t: &[f32; 8],
    row: (usize, f32, f32),
    col: (usize, f32, f32),
    e: f32,
    ts: &HopTests,
    last: Option<(u8, u8)>,
    out: &mut [BgCand; 5],
) -> usize {
    let (r, tr, sec_r) = row;
    let (c, tc, sec_c) = col;
    let rel_ok = |other: f32, pv: f32| other * ts.rel_bg <= pv;
    let pair_ok = |a: f32, b: f32| {
        a + b >= ts.cov_bg * e
            && a >= ts.t_mask
            && b >= ts.t_mask
            && a >= ts.floor_bg * e
            && b >= ts.floor_bg * e
            && b >= ts.twist_mask_lo * a
            && b <= ts.twist_mask_hi * a
    };
    let strict = rel_ok(sec_r, tr) && rel_ok(sec_c, tc) && pair_ok(tr, tc);
    if strict && last.map_or(true, |l| l == (r as u8, c as u8)) {
        // The common case (a clean tone, or none), as cheap as before the candidates.
        out[0] = BgCand {
            row: r as u8,
            col: c as u8,
            weak: false,
        };
        return 1;
    }
    let (r2, tr2) = second4i(t, 0, r);
    let (c2, tc2) = second4i(t, 4, c);
    let (third_r, third_c) = (third4(t, 0, r, r2), third4(t, 4, c, c2));
    let rows = [
        (r, tr, rel_ok(third_r, tr)),
        (r2, tr2, rel_ok(third_r, tr2)),
    ];
    let cols = [
        (c, tc, rel_ok(third_c, tc)),
        (c2, tc2, rel_ok(third_c, tc2)),
    ];
    let order = [(0usize, 0usize), (1, 0), (0, 1), (1, 1)];
    let mut n = 0;
    let mut push = |i: usize, j: usize, weak: bool| {
        let ((kr, ar, okr), (kc, ac, okc)) = (rows[i], cols[j]);
        if okr && okc && pair_ok(ar, ac) {
            out[n] = BgCand {
                row: kr as u8,
                col: kc as u8,
                weak,
            };
            n += 1;
        }
    };
    if let Some((lr, lc)) = last {
        for (i, j) in order {
            if rows[i].0 as u8 == lr && cols[j].0 as u8 == lc {
                push(i, j, false);
            }
        }
    }
    if strict {
        push(0, 0, false);
    } else {
        push(0, 0, true);
    }
    n
}

/// Index (0..4) and value of the largest of `t[from..from + 4]` other than index `peak`.
#[inline(always)]
fn second4i(t: &[f32; 8], from: usize, peak: usize) -> (usize, f32) {
    let (mut k, mut m) = (if peak == 0 { 1 } else { 0 }, -1.0f32);
    for i in 0..4 {
        if i != peak && t[from + i] > m {
            (k, m) = (i, t[from + i]);
        }
    }
    (k, m)
}

/// Largest of `t[from..from + 4]` other than indices `a` and `b` (energies are ≥ 0).
#[inline(always)]
fn third4(t: &[f32; 8], from: usize, a: usize, b: usize) -> f32 {
    let mut m = 0.0f32;
    for i in 0..4 {
        if i != a && i != b {
            m = m.max(t[from + i]);
        }
    }
    m
}

/// The larger of two finite values by a plain comparison (`f32::max` also handles NaN, which
/// the energies never are, and costs more instructions on the per-window path).
#[inline(always)]
fn max_finite(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// Index (0..4) and value of the largest of `t[from..from + 4]`; the first one on ties.
/// Branch-free (on noise the winner is random, and a branch would mispredict every time).
#[inline(always)]
fn argmax4(t: &[f32; 8], from: usize) -> (usize, f32) {
    let (a0, a1, a2, a3) = (t[from], t[from + 1], t[from + 2], t[from + 3]);
    let m = max_finite(max_finite(a0, a1), max_finite(a2, a3));
    let ne = |v: f32| (v != m) as usize;
    (ne(a0) * (1 + ne(a1) * (1 + ne(a2))), m)
}

impl HopTests {
    fn with_gates(mut self) -> Self {
        self.t_gate = self.t_mask.min(self.t_run);
        self.cov_gate_plain = self.cov_mask.min(self.cov_run);
        self.cov_gate = self.cov_gate_plain.min(self.cov_bg);
        self.cov_gate_watch = self.cov_gate.min(2.0 * self.keep);
        self
    }

    /// Builds the linear thresholds for a rate from dB figures.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rate: SampleRate,
        threshold_dbm0: f32,
        normal_twist_db: f32,
        reverse_twist_db: f32,
        relative_peak_db: f32,
        min_energy_ratio: f32,
        max_freq_dev_pct: f32,
        mask_threshold_dbm0: f32,
        mask_over_background: bool,
    ) -> Self {
        let m = rate.hz() as f32 / 320.0; // 3.125 ms
        let n = m * K as f32;
        let dphi = |pct: f32| {
            let mut out = [0.0f32; 8];
            for (k, d) in out.iter_mut().enumerate() {
                let df = FREQS[k] as f32 * pct / 100.0;
                *d = 2.0 * std::f32::consts::PI * df * (2.0 * m) / rate.hz() as f32;
            }
            out
        };
        let max_dphi = dphi(max_freq_dev_pct);
        let max_dphi_mask = dphi(MASK_FREQ_DEV_PCT);
        let max_dphi_near = dphi(NEAR_FREQ_DEV_PCT);
        let max_dphi_bg_near = dphi(BG_NEAR_FREQ_DEV_PCT);
        let max_dphi_bg = dphi(BG_FREQ_DEV_PCT);
        let max_dphi_bg_weak = dphi(BG_WEAK_FREQ_DEV_PCT);
        Self {
            t_min: n * dbm0_power(threshold_dbm0),
            twist_lo: db_ratio(-normal_twist_db),
            twist_hi: db_ratio(reverse_twist_db),
            rel: db_ratio(relative_peak_db),
            cov_strict: min_energy_ratio,
            cov_pre: 0.5,
            max_dphi,
            inv_max_dphi: max_dphi.map(|d| 1.0 / d),
            max_dphi_mask,
            max_dphi_near,
            twist_near_lo: db_ratio(-NEAR_NORMAL_TWIST_DB),
            twist_near_hi: db_ratio(NEAR_REVERSE_TWIST_DB),
            max_dphi_bg_near,
            twist_bg_near_lo: db_ratio(-BG_NEAR_NORMAL_TWIST_DB),
            twist_bg_near_hi: db_ratio(BG_NEAR_REVERSE_TWIST_DB),
            cov_run: 0.4,
            t_run: n * dbm0_power(threshold_dbm0 - 10.0),
            cov_mask: 0.4,
            t_mask: n * dbm0_power(mask_threshold_dbm0),
            twist_mask_lo: db_ratio(-18.0),
            twist_mask_hi: db_ratio(17.0),
            rel_mask: db_ratio(6.0),
            share_mask: 0.015,
            cov_bg: if mask_over_background {
                BG_COV
            } else {
                f32::MAX
            },
            rel_bg: db_ratio(BG_REL_DB),
            // The telephone band's flat floor (2E/N of a 100-sample window at 8 kHz) at every
            // rate: above 4 kHz a call carries little, so a wideband floor would be too low.
            floor_bg: db_ratio(BG_FLOOR_DB) * 2.0 / (K as f32 * 25.0),
            max_dphi_bg,
            max_dphi_bg_weak,
            keep: KEEP_SHARE,
            cov_gate_watch: 0.0,
            cov_gate_plain: 0.0,
            t_gate: 0.0,
            cov_gate: 0.0,
            t_scale: 2.0 / n,
        }
        .with_gates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_matches_the_exact_sum() {
        let y: Vec<i16> = (0..150).map(|n| (n * 437 % 65536 - 32768) as i16).collect();
        for len in [1, 7, 8, 25, 150] {
            let x = &y[..len];
            let want: f64 = x.iter().map(|&v| (v as f64).max(-32767.0).powi(2)).sum();
            let got = energy(x) as f64;
            assert!((got - want).abs() <= want * 1e-6, "{len}: {got} vs {want}");
        }
        assert_eq!(energy(&[0; 25]), 0.0);
        assert!(energy(&[0, 0, 1, 0]) > 0.0);
        // Full scale: no overflow in the pair sums.
        assert!((energy(&[i16::MIN; 150]) as f64 - 150.0 * 32767f64.powi(2)).abs() < 1e6);
    }

    /// Table value of point n, column col (0..8 cos, 8..16 sin), in floats.
    fn tab_val(t: &[PairTab], n: usize, col: usize) -> f32 {
        let (j, q) = if col < 8 {
            (col / 4, col % 4)
        } else {
            (2 + (col - 8) / 4, col % 4)
        };
        t[n / 2][j].to_array()[2 * q + n % 2] as f32 / Q
    }

    #[test]
    fn table_shapes() {
        assert_eq!(tables(SampleRate::Hz8000).points * 320, 8000);
        assert_eq!(tables(SampleRate::Hz48000).points * 3 * 320, 48000);
        assert_eq!(tables(SampleRate::Hz32000).points * 2 * 320, 32000);
        assert!(tables(SampleRate::Hz8000).tab.is_empty());
        assert!(tables(SampleRate::Hz16000).sym.is_none());
        let t48 = &tables(SampleRate::Hz48000).tab;
        // Group 2 of 3 samples is centred on sample 7.
        let want = (2.0 * PI * 697.0 * 7.0 / 48000.0).cos() as f32;
        assert!((tab_val(t48, 2, 0) - want).abs() < 1.0 / Q);
        let t16 = &tables(SampleRate::Hz16000).tab;
        let want = (2.0 * PI * 1633.0 * 3.0 / 16000.0).sin() as f32;
        assert!((tab_val(t16, 3, 15) - want).abs() < 1.0 / Q);
        // 8 kHz, folded: point 0 is m = 12 (weight 2 cos), the centre has weight 1.
        let sym = tables(SampleRate::Hz8000).sym.expect("8 kHz folded table");
        let w = sym.cos[0][0].to_array()[0] as f32 / Q;
        assert!((w - 2.0 * (2.0 * PI * 697.0 * 12.0 / 8000.0).cos() as f32).abs() < 1.0 / Q);
        assert_eq!(sym.cos[6][1].to_array()[0], Q as i16);
        assert_eq!(sym.cos[6][1].to_array()[1], 0);
    }

    /// Float DFT of `x` at the 8 frequencies, time referenced to sample `c`.
    fn float_dft(x: &[i16], hz: u64, c: f64) -> Vec<(f64, f64)> {
        (0..8)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (n, &v) in x.iter().enumerate() {
                    let a = 2.0 * PI * FREQS[k] as f64 * (n as f64 - c) / hz as f64;
                    re += v as f64 * a.cos();
                    im += v as f64 * a.sin();
                }
                (re, im)
            })
            .collect()
    }

    /// `got` (unscaled DFT output) matches `want` (float (cos, sin) sums) within `tol`.
    fn assert_spectrum(got: &[f32x4; 4], want: &[(f64, f64)], tol: f64, what: &str) {
        for (k, w) in want.iter().enumerate() {
            let gc = got[k / 4].to_array()[k % 4] as f64 / Q as f64;
            let gs = got[2 + k / 4].to_array()[k % 4] as f64 / Q as f64;
            assert!(
                (gc - w.0).abs() < tol && (gs - w.1).abs() < tol,
                "{what} {k}"
            );
        }
    }

    #[test]
    fn dft_matches_a_float_dft() {
        for amp in [30000.0, 300.0] {
            let x: Vec<i16> = (0..50)
                .map(|n| {
                    ((n as f64 * 0.77).sin() * amp + (n as f64 * 2.1).cos() * amp / 3.0) as i16
                })
                .collect();
            // 16 kHz: plain table, referenced to the first sample.
            let t = tables(SampleRate::Hz16000);
            let got = dft(&x, &t.tab);
            let want = float_dft(&x, 16000, 0.0);
            let tol = 3e-4 * amp * 50.0 + 2.0;
            assert_spectrum(&got, &want, tol, "16k");
            // 8 kHz: folded table, referenced to the centre sample; energy exact.
            let x25: &[i16; 25] = x[..25].try_into().unwrap();
            let sym = tables(SampleRate::Hz8000).sym.expect("8 kHz folded table");
            let (got, e) = dft25(x25, &sym);
            let want = float_dft(x25, 8000, 12.0);
            // Halving drops at most half an LSB per folded point.
            let tol = 3e-4 * amp * 25.0 + 25.0;
            assert_spectrum(&got, &want, tol, "8k");
            // (−32768 counts as −32767, see `energy`)
            let want_e: f64 = x25.iter().map(|&v| (v as f64).max(-32767.0).powi(2)).sum();
            assert!((e as f64 - want_e).abs() <= want_e * 1e-6, "{e} {want_e}");
        }
        let sym = tables(SampleRate::Hz8000).sym.expect("8 kHz folded table");
        assert_eq!(dft25(&[0; 25], &sym).1, 0.0);
    }

    #[test]
    fn halving_is_exact_floor() {
        let vals = [i16::MIN, -32767, -3, -2, -1, 0, 1, 2, 3, 32766, i16::MAX];
        for &a in &vals {
            for &b in &vals {
                let (va, vb) = (i16x8::splat(a), i16x8::splat(b));
                let want_s = (a as i32 + b as i32).div_euclid(2);
                let want_d = (b as i32 - a as i32).div_euclid(2);
                assert_eq!(half_sum(va, vb).to_array()[3] as i32, want_s, "{a} {b}");
                assert_eq!(half_diff(vb, va).to_array()[5] as i32, want_d, "{a} {b}");
            }
        }
        let r = rev(i16x8::from([0, 1, 2, 3, 4, 5, 6, 7])).to_array();
        assert_eq!(r, [7, 6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn atan2_is_close_to_std() {
        for i in 0..2000 {
            let a = i as f32 * 0.0031 - 3.1;
            let (y, x) = (a.sin() * 3.0, a.cos() * 3.0);
            assert!((atan2(y, x) - y.atan2(x)).abs() < 2e-5, "{a}");
        }
        assert_eq!(atan2(0.0, 0.0), 0.0);
        assert!((atan2(0.0, -1.0) - std::f32::consts::PI).abs() < 1e-6);
    }

    #[test]
    fn atan2x4_is_the_scalar_atan2() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut cases: Vec<(f32, f32)> = (0..4000)
            .map(|i| {
                let scale = 10f32.powi(i % 9 - 4);
                (next() * scale, next() * scale)
            })
            .collect();
        for v in [0.0f32, -0.0, 1.0, -1.0, 1e-30, -1e-30] {
            for w in [0.0f32, -0.0, 1.0, -1.0, 1e-30, -1e-30] {
                cases.push((v, w));
            }
        }
        for q in cases.chunks(4) {
            let mut ys = [0.0f32; 4];
            let mut xs = [0.0f32; 4];
            for (i, &(y, x)) in q.iter().enumerate() {
                (ys[i], xs[i]) = (y, x);
            }
            let v = atan2x4(f32x4::from(ys), f32x4::from(xs)).to_array();
            for i in 0..4 {
                let want = atan2(ys[i], xs[i]);
                assert_eq!(
                    v[i].to_bits(),
                    want.to_bits(),
                    "atan2({}, {})",
                    ys[i],
                    xs[i]
                );
            }
        }
    }

    #[test]
    fn averaging_rounds_and_fits() {
        let mut o = [0i16; 2];
        average::<3>(&[i16::MIN, i16::MIN, i16::MIN, 1, 1, 2], &mut o);
        assert_eq!(o, [i16::MIN, 1]);
        let mut o = [0i16; 1];
        average::<2>(&[i16::MAX, i16::MAX], &mut o);
        assert_eq!(o, [i16::MAX]);
    }
}
