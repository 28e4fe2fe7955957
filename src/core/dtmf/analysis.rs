//! The spectral front end shared by the detector and the masker.
//!
//! # How it works
//! * The input is cut into **sub-blocks** of `M` samples (3.125 ms: 25/50/100/150 samples at
//!   8/16/32/48 kHz). For each complete sub-block a plain DFT at the 8 DTMF frequencies is taken
//!   with `const` cos/sin tables (16 independent multiply-adds per sample, no recurrence, so the
//!   compiler vectorises it), plus the exact integer energy.
//! * Every sub-block completes an analysis **window** of `K = 4` sub-blocks (`N = 4M` = 12.5 ms,
//!   close to the classic 102-sample Goertzel block). The window spectrum is the phase-corrected
//!   sum of its four sub-block spectra, so windows slide by one sub-block (a "hop") at the cost
//!   of one DFT.
//! * Per hop we compute the tone energy `T_k = 2|X_k|²/N` of each frequency (equal to the energy
//!   a steady tone puts in the window), the strongest row and column, and the **coverage**
//!   `(T_row + T_col) / E_window`: ≈ 1 for a clean DTMF pair filling the window, ≈ the fraction
//!   of the window the pair fills when it starts or stops inside it, small for speech and noise.
//! * The capture tests (spandsp's order: level, twist, relative peak, energy ratio) plus a
//!   **frequency test** from the phase advance of each tone between windows half a window apart
//!   (this is what separates ±1.5 % from ±3.5 % with a 12.5 ms window, where the magnitude alone
//!   barely changes) mark a hop `strict`. Looser tests mark it `mask` (anything a permissive
//!   decoder could read) and `run` (the pair is present, used to measure tone edges).
//!
//! Chunk independence: samples are only ever folded into the spectra a whole sub-block at a
//! time, in a fixed order, so the arithmetic (and therefore every decision) is identical however
//! the stream is split.

use crate::core::audio::SampleRate;

/// Sub-blocks per analysis window.
pub(crate) const K: usize = 4;
/// Largest sub-block (48 kHz).
pub(crate) const MAX_M: usize = 150;

/// DTMF frequencies in Hz: rows then columns.
pub(crate) const FREQS: [u64; 8] = [697, 770, 852, 941, 1209, 1336, 1477, 1633];

const PI: f64 = std::f64::consts::PI;

/// sin(2π·num/den), usable in `const` context (Taylor series after range reduction).
pub(crate) const fn sin_turns(num: u64, den: u64) -> f64 {
    let r = num % den;
    let mut t = r as f64 / den as f64;
    if t > 0.5 {
        t -= 1.0;
    }
    let x = t * 2.0 * PI;
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut i = 1u64;
    while i < 24 {
        term = -term * x2 / (((2 * i) * (2 * i + 1)) as f64);
        sum += term;
        i += 1;
    }
    sum
}

/// cos(2π·num/den).
const fn cos_turns(num: u64, den: u64) -> f64 {
    sin_turns((4 * (num % den)) + den, 4 * den)
}

/// Row `n` of a sub-block table: [cos f0 n, sin f0 n, cos f1 n, sin f1 n, ...].
const fn make_tab<const M: usize>(rate: u64) -> [[f32; 16]; M] {
    let mut t = [[0.0f32; 16]; M];
    let mut n = 0;
    while n < M {
        let mut k = 0;
        while k < 8 {
            t[n][2 * k] = cos_turns(FREQS[k] * n as u64, rate) as f32;
            t[n][2 * k + 1] = sin_turns(FREQS[k] * n as u64, rate) as f32;
            k += 1;
        }
        n += 1;
    }
    t
}

/// e^{-iω q M} for q = 0..K, per frequency: [k][q] = (re, im).
const fn make_w(rate: u64, m: u64) -> [[[f32; 2]; K]; 8] {
    let mut w = [[[0.0f32; 2]; K]; 8];
    let mut k = 0;
    while k < 8 {
        let mut q = 0;
        while q < K {
            w[k][q][0] = cos_turns(FREQS[k] * q as u64 * m, rate) as f32;
            w[k][q][1] = -sin_turns(FREQS[k] * q as u64 * m, rate) as f32;
            q += 1;
        }
        k += 1;
    }
    w
}

static TAB_8K: [[f32; 16]; 25] = make_tab::<25>(8000);
static TAB_16K: [[f32; 16]; 50] = make_tab::<50>(16000);
static TAB_32K: [[f32; 16]; 100] = make_tab::<100>(32000);
static TAB_48K: [[f32; 16]; 150] = make_tab::<150>(48000);
static W_8K: [[[f32; 2]; K]; 8] = make_w(8000, 25);
static W_16K: [[[f32; 2]; K]; 8] = make_w(16000, 50);
static W_32K: [[[f32; 2]; K]; 8] = make_w(32000, 100);
static W_48K: [[[f32; 2]; K]; 8] = make_w(48000, 150);

/// Level of a full-scale sine in dBm0 (G.711 / spandsp convention; not π).
#[allow(clippy::approx_constant)]
const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// Mean-square value of a sine at `dbm0` (16-bit units²), spandsp's 3.14 dBm0 convention.
pub(crate) fn dbm0_power(dbm0: f32) -> f32 {
    let peak = 32767.0 * 10f32.powf((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0);
    peak * peak / 2.0
}

/// Masking: frequency deviation (percent) up to which a pair is still masked.
const MASK_FREQ_DEV_PCT: f32 = 5.0;

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
    /// Capture: minimum coverage (energy ratio).
    pub cov_strict: f32,
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
    w: &'static [[[f32; 2]; K]; 8],
    buf: [i16; MAX_M],
    fill: usize,
    /// Spectra (cos, sin sums) and energies of the last K sub-blocks, ring indexed by count % K.
    sub: [[f32; 16]; K],
    sub_e: [i64; K],
    /// Completed sub-blocks since start.
    count: u64,
    /// Window spectra (re, im interleaved) of the previous two hops, ring indexed by hop % 2.
    zhist: [[f32; 16]; 2],
    /// Coverage of the previous two hops, same ring.
    covhist: [f32; 2],
    tests: HopTests,
}

impl Analyzer {
    pub fn new(rate: SampleRate, tests: HopTests) -> Self {
        let (tab, w): (&'static [[f32; 16]], &'static [[[f32; 2]; K]; 8]) = match rate {
            SampleRate::Hz8000 => (&TAB_8K, &W_8K),
            SampleRate::Hz16000 => (&TAB_16K, &W_16K),
            SampleRate::Hz32000 => (&TAB_32K, &W_32K),
            SampleRate::Hz48000 => (&TAB_48K, &W_48K),
        };
        let m = tab.len();
        Self {
            m,
            n: m * K,
            tab,
            w,
            buf: [0; MAX_M],
            fill: 0,
            sub: [[0.0; 16]; K],
            sub_e: [0; K],
            count: 0,
            zhist: [[0.0; 16]; 2],
            covhist: [0.0; 2],
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
        self.sub_e = [0; K];
        self.count = 0;
        self.zhist = [[0.0; 16]; 2];
        self.covhist = [0.0; 2];
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
                let buf = self.buf;
                self.sub_block(&buf[..m]);
            }
            if let Some(h) = self.hop() {
                on_hop(&h);
            }
        }
    }

    /// DFT + energy of one complete sub-block into the ring.
    fn sub_block(&mut self, x: &[i16]) {
        let mut a = [0.0f32; 16];
        let mut b = [0.0f32; 16];
        let mut e: i64 = 0;
        let tab = &self.tab[..x.len()];
        let mut pairs = x.chunks_exact(2).zip(tab.chunks_exact(2));
        for (xs, ts) in &mut pairs {
            let v0 = xs[0] as f32;
            let v1 = xs[1] as f32;
            for k in 0..16 {
                a[k] += v0 * ts[0][k];
                b[k] += v1 * ts[1][k];
            }
            e += (xs[0] as i32 * xs[0] as i32) as i64 + (xs[1] as i32 * xs[1] as i32) as i64;
        }
        if x.len() % 2 == 1 {
            let i = x.len() - 1;
            let v = x[i] as f32;
            for k in 0..16 {
                a[k] += v * tab[i][k];
            }
            e += (x[i] as i32 * x[i] as i32) as i64;
        }
        let slot = (self.count % K as u64) as usize;
        for k in 0..16 {
            self.sub[slot][k] = a[k] + b[k];
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
        let oldest = self.count - K as u64;
        let mut z = [0.0f32; 16];
        let mut energy: i64 = 0;
        for q in 0..K {
            let slot = ((oldest + q as u64) % K as u64) as usize;
            let s = &self.sub[slot];
            energy += self.sub_e[slot];
            for k in 0..8 {
                // X = C - iS, times W = (wr + i wi).
                let c = s[2 * k];
                let sn = s[2 * k + 1];
                let wr = self.w[k][q][0];
                let wi = self.w[k][q][1];
                z[2 * k] += c * wr + sn * wi;
                z[2 * k + 1] += c * wi - sn * wr;
            }
        }
        let prev2 = self.zhist[(h % 2) as usize];
        self.zhist[(h % 2) as usize] = z;
        let prev2_cov = self.covhist[(h % 2) as usize];
        self.covhist[(h % 2) as usize] = 0.0;
        let mut t = [0.0f32; 8];
        let scale = 2.0 / self.n as f32;
        for k in 0..8 {
            t[k] = (z[2 * k] * z[2 * k] + z[2 * k + 1] * z[2 * k + 1]) * scale;
        }
        let mut hop = Hop {
            index: h,
            end: (h + 1) * self.m as u64,
            ..Hop::default()
        };
        let e = energy as f32;
        if e <= 0.0 {
            return Some(hop);
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
        let strict = cov >= ts.cov_strict
            && tr >= ts.t_min
            && tc >= ts.t_min
            && twist >= ts.twist_lo
            && twist <= ts.twist_hi
            && rel_ok(&t[0..4], r, tr, ts.rel)
            && rel_ok(&t[4..8], c, tc, ts.rel);
        // The phase test needs the tone to fill both windows: a partly filled window has its
        // phase centre shifted, which shortens the effective lag and hides a frequency offset.
        let plateau = prev2_cov >= 0.9 * cov && cov >= 0.9 * prev2_cov;
        let dphi = |k: usize| {
            // Phase advance over half a window, corrected by the nominal advance W[k][2].
            let (zr, zi) = (z[2 * k], z[2 * k + 1]);
            let (pr, pi) = (prev2[2 * k], -prev2[2 * k + 1]);
            let (ar, ai) = (zr * pr - zi * pi, zr * pi + zi * pr);
            let (wr, wi) = (self.w[k][2][0], self.w[k][2][1]);
            let (br, bi) = (ar * wr - ai * wi, ar * wi + ai * wr);
            bi.atan2(br).abs()
        };
        if hop.mask {
            // Loose frequency sanity (no plateau needed): rejects gliding speech harmonics,
            // keeps short bursts and tones well beyond what any decoder accepts.
            hop.mask = dphi(r) <= ts.max_dphi_mask[r] && dphi(4 + c) <= ts.max_dphi_mask[4 + c];
        }
        if strict && plateau && h >= 2 + (K as u64 - 1) {
            hop.strict = dphi(r) <= ts.max_dphi[r] && dphi(4 + c) <= ts.max_dphi[4 + c];
        }
        // Whatever capture accepts is always masked.
        hop.mask |= hop.strict;
        Some(hop)
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
            max_dphi,
            max_dphi_mask,
            cov_run: 0.4,
            t_run: n * dbm0_power(threshold_dbm0 - 10.0),
            cov_mask: 0.4,
            t_mask: n * dbm0_power(mask_threshold_dbm0),
            twist_mask_lo: db_ratio(-18.0),
            twist_mask_hi: db_ratio(14.0),
            rel_mask: db_ratio(6.0),
            share_mask: 0.015,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_trig_is_accurate() {
        for (num, den) in [
            (0u64, 8000u64),
            (697, 8000),
            (1633 * 77, 8000),
            (1, 4),
            (3, 4),
            (1, 2),
        ] {
            let x = 2.0 * PI * (num % den) as f64 / den as f64;
            assert!(
                (sin_turns(num, den) - x.sin()).abs() < 1e-12,
                "sin {num}/{den}"
            );
            assert!(
                (cos_turns(num, den) - x.cos()).abs() < 1e-12,
                "cos {num}/{den}"
            );
        }
    }

    #[test]
    fn table_shapes() {
        assert_eq!(TAB_8K.len() * 320, 8000);
        assert_eq!(TAB_48K.len() * 320, 48000);
        assert!((TAB_8K[1][0] - (2.0 * PI * 697.0 / 8000.0).cos() as f32).abs() < 1e-7);
    }
}
