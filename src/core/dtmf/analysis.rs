//! The spectral front end shared by the detector and the masker.
//!
//! # How it works
//! * The input is cut into **sub-blocks** of `M` samples (3.125 ms: 25/50/100/150 samples at
//!   8/16/32/48 kHz). For each complete sub-block a plain DFT at the 8 DTMF frequencies is taken
//!   with precomputed cos/sin tables (shared, read-only; 16 independent multiply-adds per
//!   sample, no recurrence, so the compiler vectorises it), plus the energy (in integers).
//!   At 32 and 48 kHz the sub-block is first summed in groups of 2 or 3 samples (a boxcar
//!   low-pass, −0.1 dB at 1633 Hz, analysed at 16 kHz with each group at its centre time), so
//!   the multiply-adds cost what 16 kHz costs; digital-silence sub-blocks skip them.
//! * Every sub-block completes an analysis **window** of `K = 4` sub-blocks (`N = 4M` = 12.5 ms,
//!   close to the classic 102-sample Goertzel block). Each sub-block spectrum is rotated once to
//!   an absolute time reference (exact integer phase index), so a window's spectrum is the plain
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

/// Samples summed into one DFT point: the sub-block is pre-summed in groups of `D` samples
/// (a boxcar low-pass: −0.1 dB at 1633 Hz, zeros at multiples of 16 kHz) and analysed at
/// 16 kHz, so 32 and 48 kHz cost about what 16 kHz costs. The table takes each group at its
/// centre time, so the sum matches the full-rate DFT at the DTMF frequencies.
pub(crate) fn decimation(rate: u64) -> usize {
    (rate / 16000).max(1) as usize
}

/// Row `n` of a sub-block table: [cos f0 t, sin f0 t, cos f1 t, sin f1 t, ...] at the centre
/// t = D·n + (D − 1)/2 of group n (exact integer phase: f·(2Dn + D − 1) / (2·rate) turns).
fn make_tab(rate: u64) -> Vec<[f32; 16]> {
    let d = decimation(rate) as u64;
    let m = rate / 320 / d;
    (0..m)
        .map(|n| {
            let mut row = [0.0f32; 16];
            for k in 0..8 {
                let num = FREQS[k] * (2 * d * n + d - 1);
                row[2 * k] = cos_turns(num, 2 * rate) as f32;
                row[2 * k + 1] = sin_turns(num, 2 * rate) as f32;
            }
            row
        })
        .collect()
}

/// e^{-i 2π p / 320} for p = 0..320 as (re, im): the phase of sub-block j at frequency f is
/// (j·f mod 320)/320 turns at every rate (a sub-block is 1/320 s).
fn make_phasors() -> [[f32; 2]; 320] {
    let mut t = [[0.0f32; 2]; 320];
    for (p, v) in t.iter_mut().enumerate() {
        v[0] = cos_turns(p as u64, 320) as f32;
        v[1] = -sin_turns(p as u64, 320) as f32;
    }
    t
}

static PHASORS: LazyLock<[[f32; 2]; 320]> = LazyLock::new(make_phasors);

/// Coefficient tables per rate, shared read-only by every channel. Built once on first use
/// (thread-safe `LazyLock`), then only read; `Analyzer::new` takes `&'static` references so the
/// audio path never touches the lock.
struct Tables {
    tab: Vec<[f32; 16]>,
}

fn build(rate: u64) -> Tables {
    Tables {
        tab: make_tab(rate),
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
    /// Capture: maximum phase advance (radians over half a window) per frequency.
    pub max_dphi: [f32; 8],
    /// Masking: same, much looser.
    pub max_dphi_mask: [f32; 8],
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
}

/// Sub-block DFT front end (one per channel).
#[derive(Clone)]
pub(crate) struct Analyzer {
    m: usize,
    n: usize,
    tab: &'static [[f32; 16]],
    /// Samples pre-summed per DFT point (1 at 8/16 kHz, 2 at 32, 3 at 48).
    dec: usize,
    phasors: &'static [[f32; 2]; 320],
    buf: [i16; MAX_M],
    fill: usize,
    /// Spectra (cos, sin sums) and energies of the last K sub-blocks, ring indexed by count % K.
    sub: [[f32; 16]; K],
    sub_e: [f32; K],
    /// Phase index (0..320) of the next sub-block, per frequency: (j·f mod 320).
    phase: [u16; 8],
    /// Completed sub-blocks since start.
    count: u64,
    /// Window spectra (re, im interleaved) of the previous two hops, ring indexed by hop % 2.
    zhist: [[f32; 16]; 2],
    /// Coverage of the previous two hops, same ring.
    covhist: [f32; 2],
    /// Signed frequency measurements of the previous two hops, ring indexed by hop % 2:
    /// (hop index + 1, row, col, dphi row, dphi col); index 0 = none.
    prev_dev: [(u64, u8, u8, f32, f32); 2],
    tests: HopTests,
}

impl Analyzer {
    pub fn new(rate: SampleRate, tests: HopTests) -> Self {
        let t = tables(rate);
        let (tab, phasors): (&'static [[f32; 16]], &'static [[f32; 2]; 320]) = (&t.tab, &PHASORS);
        let dec = decimation(rate.hz() as u64);
        let m = tab.len() * dec;
        Self {
            m,
            n: m * K,
            tab,
            dec,
            phasors,
            buf: [0; MAX_M],
            fill: 0,
            sub: [[0.0; 16]; K],
            sub_e: [0.0; K],
            phase: [0; 8],
            count: 0,
            zhist: [[0.0; 16]; 2],
            covhist: [0.0; 2],
            prev_dev: [(0, 0, 0, 0.0, 0.0); 2],
            tests,
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
        self.sub = [[0.0; 16]; K];
        self.sub_e = [0.0; K];
        self.phase = [0; 8];
        self.count = 0;
        self.zhist = [[0.0; 16]; 2];
        self.covhist = [0.0; 2];
        self.prev_dev = [(0, 0, 0, 0.0, 0.0); 2];
    }

    /// Feeds samples; calls `on_hop` for every completed analysis window.
    pub fn process(&mut self, mut x: &[i16], on_hop: &mut dyn FnMut(&Hop)) {
        let m = self.m;
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
                let (acc, e) = dft(&self.buf[..m], self.tab, self.dec);
                self.store(acc, e);
            }
            if let Some(h) = self.hop() {
                on_hop(&h);
            }
        }
    }

    /// DFT + energy of one complete sub-block into the ring.
    fn sub_block(&mut self, x: &[i16]) {
        let (acc, e) = dft(x, self.tab, self.dec);
        self.store(acc, e);
    }

    /// Stores a sub-block's spectrum (rotated to the absolute reference) and energy.
    fn store(&mut self, acc: [f32; 16], e: f32) {
        // Rotate the sub-block spectrum (referenced to its own first sample) to the absolute
        // time reference: multiply X = C - iS by e^{-iω j M}. With M = rate/320 the phase is
        // (j·f mod 320)/320 turns, computed exactly in integers (no drift on long streams).
        let slot = (self.count % K as u64) as usize;
        let ph = &self.phasors;
        for k in 0..8 {
            let c = acc[2 * k];
            let sn = acc[2 * k + 1];
            let p = self.phase[k] as usize;
            let [pr, pi] = ph[p % 320];
            // (c - i sn)(pr + i pi)
            self.sub[slot][2 * k] = c * pr + sn * pi;
            self.sub[slot][2 * k + 1] = c * pi - sn * pr;
            let next = p + (FREQS[k] as usize % 320);
            self.phase[k] = if next >= 320 { next - 320 } else { next } as u16;
        }
        self.sub_e[slot] = e;
        self.count += 1;
    }

    /// Evaluates the window ending with the newest sub-block.
    fn hop(&mut self) -> Option<Hop> {
        if self.count < K as u64 {
            return None;
        }
        let h = self.count - 1;
        // The window spectrum is the plain sum of the last K (absolutely referenced)
        // sub-block spectra.
        let mut z = [0.0f32; 16];
        for sub in &self.sub {
            for (zj, sj) in z.iter_mut().zip(sub) {
                *zj += sj;
            }
        }
        let energy: f32 = self.sub_e.iter().sum();
        let prev2 = self.zhist[(h % 2) as usize];
        self.zhist[(h % 2) as usize] = z;
        let prev2_cov = self.covhist[(h % 2) as usize];
        self.covhist[(h % 2) as usize] = 0.0;
        let mut hop = Hop {
            index: h,
            end: (h + 1) * self.m as u64,
            ..Hop::default()
        };
        let e = energy;
        // |X_k|² ≤ N·E (Cauchy–Schwarz), so T_k ≤ 2E: a window this quiet cannot hold a tone
        // for any test (silence, low background noise).
        if 2.0 * e < self.tests.t_mask.min(self.tests.t_run) || e <= 0.0 {
            return Some(hop);
        }
        let mut t = [0.0f32; 8];
        let scale = 2.0 / self.n as f32;
        for k in 0..8 {
            t[k] = (z[2 * k] * z[2 * k] + z[2 * k + 1] * z[2 * k + 1]) * scale;
        }
        let (r, tr) = argmax(&t[0..4]);
        let (c, tc) = argmax(&t[4..8]);
        hop.row = r as u8;
        hop.col = c as u8;
        let cov = (tr + tc) / e;
        hop.cov = cov;
        self.covhist[(h % 2) as usize] = cov;
        let ts = &self.tests;
        if cov < ts.cov_mask.min(ts.cov_run) {
            return Some(hop);
        }
        let twist = tc / tr.max(f32::MIN_POSITIVE);
        hop.run = cov >= ts.cov_run && tr >= ts.t_run && tc >= ts.t_run;
        let rel_ok = |grp: &[f32], peak: usize, pv: f32, rel: f32| {
            grp.iter()
                .enumerate()
                .all(|(i, &v)| i == peak || v * rel <= pv)
        };
        hop.mask = cov >= ts.cov_mask
            && tr >= ts.t_mask
            && tc >= ts.t_mask
            && tr >= ts.share_mask * e
            && tc >= ts.share_mask * e
            && twist >= ts.twist_mask_lo
            && twist <= ts.twist_mask_hi
            && rel_ok(&t[0..4], r, tr, ts.rel_mask)
            && rel_ok(&t[4..8], c, tc, ts.rel_mask);
        // The phase test needs the tone to fill both windows: a partly filled window has its
        // phase centre shifted, which shortens the effective lag and hides a frequency offset.
        let plateau = prev2_cov >= 0.8 * cov && cov >= 0.8 * prev2_cov;
        let sdphi = |k: usize| {
            // Phase advance over half a window (both spectra share the absolute reference, so
            // it is (ω_tone − ω_bin)·2M directly).
            let (zr, zi) = (z[2 * k], z[2 * k + 1]);
            let (pr, pi) = (prev2[2 * k], -prev2[2 * k + 1]);
            let (br, bi) = (zr * pr - zi * pi, zr * pi + zi * pr);
            bi.atan2(br)
        };
        let dphi = |k: usize| sdphi(k).abs();
        if hop.mask {
            // Loose frequency sanity (no plateau needed): rejects gliding speech harmonics,
            // keeps short bursts and tones well beyond what any decoder accepts.
            hop.mask = dphi(r) <= ts.max_dphi_mask[r] && dphi(4 + c) <= ts.max_dphi_mask[4 + c];
        }
        if cov >= ts.cov_pre && plateau && h >= 2 + (K as u64 - 1) {
            let (sr, sc) = (sdphi(r), sdphi(4 + c));
            let (pr, pc) = (sr.abs(), sc.abs());
            // Each tone within the limit, and both together: a pair with BOTH tones near the
            // limit (2-3 % off, e.g. a dual sweep) is not a keypad.
            let (ur, uc) = (pr / ts.max_dphi[r], pc / ts.max_dphi[4 + c]);
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
                let tw = tcc / trc.max(f32::MIN_POSITIVE);
                hop.strict = (trc + tcc) >= ts.cov_strict * e
                    && trc >= ts.t_min
                    && tcc >= ts.t_min
                    && tw >= ts.twist_lo
                    && tw <= ts.twist_hi
                    && rel_ok(&t[0..4], r, tr, ts.rel)
                    && rel_ok(&t[4..8], c, tc, ts.rel);
            }
        }
        // Whatever capture accepts is always masked.
        hop.mask |= hop.strict;
        Some(hop)
    }
}

/// Correlations of `x` with the 16 table columns (cos and sin of the 8 frequencies), and the
/// energy of `x`. Two samples per step, one fused add per lane, so the 4 accumulator vectors
/// stay in registers. Always called on a whole sub-block: the summation order never depends on
/// chunking.
/// Digital silence (the gaps between key presses, muted legs) is answered without the
/// multiply-adds: its spectrum and energy are exactly zero, so the result is identical.
/// Always called on a whole sub-block: the summation order never depends on chunking.
#[inline(always)]
fn dft(x: &[i16], tab: &[[f32; 16]], dec: usize) -> ([f32; 16], f32) {
    // Energy in integers (exact, and off the floating-point dependency chains); zero energy
    // is digital silence.
    let e = energy(x);
    if e == 0 {
        return ([0.0; 16], 0.0);
    }
    let acc = if dec == 1 {
        dft_mac(x, tab)
    } else {
        let mut yf = [0i32; MAX_M];
        match dec {
            2 => presum::<2>(x, &mut yf),
            3 => presum::<3>(x, &mut yf),
            _ => {
                for (o, g) in yf.iter_mut().zip(x.chunks_exact(dec)) {
                    *o = g.iter().map(|&v| v as i32).sum();
                }
            }
        }
        dft_mac32(&yf[..x.len() / dec], tab)
    };
    (acc, e as f32)
}

/// Correlations of `x` with the 16 table columns (cos and sin of the 8 frequencies). Two
/// samples per step, one fused add per lane, so the 4 accumulator vectors stay in registers.
#[inline(never)]
fn dft_mac(x: &[i16], tab: &[[f32; 16]]) -> [f32; 16] {
    let mut a = [0.0f32; 16];
    for (xs, ts) in x.chunks_exact(2).zip(tab.chunks_exact(2)) {
        let v0 = xs[0] as f32;
        let v1 = xs[1] as f32;
        for k in 0..16 {
            a[k] += v0 * ts[0][k] + v1 * ts[1][k];
        }
    }
    if x.len() % 2 == 1 {
        if let (Some(&v), Some(t)) = (x.last(), tab.get(x.len() - 1)) {
            let v = v as f32;
            for k in 0..16 {
                a[k] += v * t[k];
            }
        }
    }
    a
}

/// Σ x² exactly: squares of sample pairs summed in u32 (≤ 2³¹, so `pmaddwd`'s wrap is
/// harmless), 8 u64 lanes so the compiler vectorises it.
#[inline(always)]
fn energy(x: &[i16]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut pairs = x.chunks_exact(16);
    for c in &mut pairs {
        for (i, l) in lanes.iter_mut().enumerate() {
            let (a, b) = (c[2 * i] as i32, c[2 * i + 1] as i32);
            *l += (a * a) as u32 as u64 + (b * b) as u32 as u64;
        }
    }
    let tail: u64 = pairs
        .remainder()
        .iter()
        .map(|&v| (v as i32 * v as i32) as u32 as u64)
        .sum();
    lanes.iter().sum::<u64>() + tail
}

/// Sums of `D` consecutive samples (constant `D`, so the compiler unrolls it).
#[inline(always)]
fn presum<const D: usize>(x: &[i16], out: &mut [i32]) {
    for (o, g) in out.iter_mut().zip(x.chunks_exact(D)) {
        let mut acc = 0i32;
        for &v in g {
            acc += v as i32;
        }
        *o = acc;
    }
}

/// As `dft_mac`, on pre-summed groups (i32).
#[inline(never)]
fn dft_mac32(x: &[i32], tab: &[[f32; 16]]) -> [f32; 16] {
    let mut a = [0.0f32; 16];
    for (xs, ts) in x.chunks_exact(2).zip(tab.chunks_exact(2)) {
        let v0 = xs[0] as f32;
        let v1 = xs[1] as f32;
        for k in 0..16 {
            a[k] += v0 * ts[0][k] + v1 * ts[1][k];
        }
    }
    if x.len() % 2 == 1 {
        if let (Some(&v), Some(t)) = (x.last(), tab.get(x.len() - 1)) {
            let v = v as f32;
            for k in 0..16 {
                a[k] += v * t[k];
            }
        }
    }
    a
}

/// 1 / sinc² of a tone whose phase advances `dphi` radians per half window off its bin: a
/// window of N samples sees `sinc(Δf·N/R)` of the amplitude, and `Δf·N/R = dphi/π`.
fn offset_gain(dphi: f32) -> f32 {
    if dphi < 1e-3 {
        1.0
    } else {
        let g = dphi / dphi.sin();
        g * g
    }
}

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = 0;
    let mut bv = f32::MIN;
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    (best, bv)
}

impl HopTests {
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
        Self {
            t_min: n * dbm0_power(threshold_dbm0),
            twist_lo: db_ratio(-normal_twist_db),
            twist_hi: db_ratio(reverse_twist_db),
            rel: db_ratio(relative_peak_db),
            cov_strict: min_energy_ratio,
            cov_pre: 0.5,
            max_dphi,
            max_dphi_mask,
            cov_run: 0.4,
            t_run: n * dbm0_power(threshold_dbm0 - 10.0),
            cov_mask: 0.4,
            t_mask: n * dbm0_power(mask_threshold_dbm0),
            twist_mask_lo: db_ratio(-18.0),
            twist_mask_hi: db_ratio(17.0),
            rel_mask: db_ratio(6.0),
            share_mask: 0.015,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_exact_at_full_scale() {
        let x = [i16::MIN; 37];
        assert_eq!(energy(&x), 37 << 30);
        let y: Vec<i16> = (0..150).map(|n| (n * 437 % 65536 - 32768) as i16).collect();
        let want: u64 = y.iter().map(|&v| (v as i64 * v as i64) as u64).sum();
        assert_eq!(energy(&y), want);
    }

    #[test]
    fn table_shapes() {
        assert_eq!(tables(SampleRate::Hz8000).tab.len() * 320, 8000);
        assert_eq!(tables(SampleRate::Hz48000).tab.len() * 3 * 320, 48000);
        assert_eq!(tables(SampleRate::Hz32000).tab.len() * 2 * 320, 32000);
        let t48 = &tables(SampleRate::Hz48000).tab;
        // Group 2 of 3 samples is centred on sample 7.
        assert!((t48[2][0] - (2.0 * PI * 697.0 * 7.0 / 48000.0).cos() as f32).abs() < 1e-6);
        let t8 = &tables(SampleRate::Hz8000).tab;
        assert!((t8[1][0] - (2.0 * PI * 697.0 / 8000.0).cos() as f32).abs() < 1e-7);
        assert!((t8[3][1] - (2.0 * PI * 697.0 * 3.0 / 8000.0).sin() as f32).abs() < 1e-7);
    }
}
