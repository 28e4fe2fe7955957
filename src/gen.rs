//! Deterministic signal generators for tests, the benchmark and the README demo: DTMF digit
//! sequences (level, twist, frequency offset, durations), white noise at a level or an SNR,
//! plain tone mixes and a crude speech-like signal. Everything is driven by [`Rng`], a small
//! seeded PRNG (SplitMix64), so a seed always gives the same samples. Safe Rust, no extra deps.
//!
//! # Levels
//! Levels are in dBm0 with the G.711 convention spandsp uses: a full-scale 16-bit sine
//! (peak 32767) is **+3.14 dBm0**, so **0 dBm0 is a sine of peak ≈ 22 826** (RMS ≈ 16 141).
//! DTMF levels are *per tone*. Two tones at 0 dBm0 each sum to a peak above full scale and are
//! clipped (saturated), as any 16-bit transmitter would.
//!
//! # Twist and SNR
//! `twist_db` = level(high tone) − level(low tone). The *louder* tone of the pair sits at
//! `level_dbm0`, the other one `|twist_db|` lower (the way spandsp's twist test holds one tone and
//! lowers the other). The SNR is the level of the louder tone over the total power of the white
//! noise across the whole band (spandsp's `dtmf_rx_tests` convention), and noise is added over
//! the whole sequence, gaps included.

use crate::core::digit::Digit;

/// Level of a full-scale 16-bit sine in dBm0 (G.711 / spandsp convention; not π).
#[allow(clippy::approx_constant)]
pub const FULL_SCALE_SINE_DBM0: f64 = 3.14;

/// Peak amplitude (16-bit units) of a sine at `dbm0`. `dbm0_to_peak(0.0)` ≈ 22 826.
pub fn dbm0_to_peak(dbm0: f64) -> f64 {
    32767.0 * 10f64.powf((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0)
}

/// RMS (16-bit units) of any signal at `dbm0`.
pub fn dbm0_to_rms(dbm0: f64) -> f64 {
    dbm0_to_peak(dbm0) / std::f64::consts::SQRT_2
}

/// Level in dBm0 of a signal of RMS `rms` (16-bit units).
pub fn rms_to_dbm0(rms: f64) -> f64 {
    20.0 * (rms * std::f64::consts::SQRT_2 / 32767.0).log10() + FULL_SCALE_SINE_DBM0
}

/// Level in dBm0 of a block of samples (−inf for digital silence).
pub fn power_dbm0(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let e: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    rms_to_dbm0((e / samples.len() as f64).sqrt())
}

/// Low-group (row) frequencies in Hz.
pub const LOW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies in Hz.
pub const HIGH_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Nominal (low, high) frequencies of a key.
pub fn digit_freqs(d: Digit) -> (f64, f64) {
    let (r, c) = d.matrix_pos();
    (LOW_HZ[r], HIGH_HZ[c])
}

/// SplitMix64: tiny, fast, good enough for test signals, identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n) (n > 0; returns 0 for n == 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Approximately standard normal (Irwin–Hall sum of 12 uniforms; exact arithmetic, so the
    /// same on every platform).
    pub fn gaussian(&mut self) -> f64 {
        (0..12).map(|_| self.next_f64()).sum::<f64>() - 6.0
    }
}

/// How to synthesise a DTMF sequence. `Default`: −10 dBm0 per tone, no twist, nominal
/// frequencies, 80 ms tones, 80 ms gaps, 100 ms of silence before and after, no noise.
#[derive(Clone, Debug, PartialEq)]
pub struct DtmfSpec {
    /// Level of the louder tone, dBm0 (see the module doc).
    pub level_dbm0: f64,
    /// level(high) − level(low), dB.
    pub twist_db: f64,
    /// Frequency offset of the low tone, percent (+1.5 = 1.5 % high).
    pub low_offset_pct: f64,
    /// Frequency offset of the high tone, percent.
    pub high_offset_pct: f64,
    pub tone_ms: f64,
    pub gap_ms: f64,
    /// Silence before the first tone.
    pub lead_ms: f64,
    /// Silence after the last tone.
    pub tail_ms: f64,
    /// White noise at this SNR (louder tone over noise), over the whole sequence.
    pub noise_snr_db: Option<f64>,
    /// Start each tone at a random phase (from the RNG) rather than at phase 0.
    pub random_phase: bool,
}

impl Default for DtmfSpec {
    fn default() -> Self {
        Self {
            level_dbm0: -10.0,
            twist_db: 0.0,
            low_offset_pct: 0.0,
            high_offset_pct: 0.0,
            tone_ms: 80.0,
            gap_ms: 80.0,
            lead_ms: 100.0,
            tail_ms: 100.0,
            noise_snr_db: None,
            random_phase: true,
        }
    }
}

impl DtmfSpec {
    /// (low, high) tone levels in dBm0.
    pub fn tone_levels(&self) -> (f64, f64) {
        if self.twist_db >= 0.0 {
            (self.level_dbm0 - self.twist_db, self.level_dbm0)
        } else {
            (self.level_dbm0, self.level_dbm0 + self.twist_db)
        }
    }
}

/// Where one generated key sounds, in samples of the generated buffer (`end` exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToneSpan {
    pub key: char,
    pub start: usize,
    pub end: usize,
}

/// A generated signal plus the ground truth of where its tones are.
#[derive(Clone, Debug)]
pub struct Sequence {
    pub rate_hz: u32,
    pub samples: Vec<i16>,
    pub tones: Vec<ToneSpan>,
}

/// A key string that is not DTMF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadKey(pub char);

impl std::fmt::Display for BadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a DTMF key (use 0-9, *, #, A-D)", self.0)
    }
}

impl std::error::Error for BadKey {}

fn ms_to_samples(rate_hz: u32, ms: f64) -> usize {
    (ms.max(0.0) * rate_hz as f64 / 1000.0).round() as usize
}

/// Quantises to 16 bits with rounding and saturation.
pub fn quantize(x: f64) -> i16 {
    x.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16
}

/// Adds `amp_peak * sin(2π f t + phase)` for `n` samples into `buf[start..]`.
fn add_sine(buf: &mut [f64], start: usize, n: usize, rate_hz: u32, hz: f64, amp: f64, phase: f64) {
    let w = std::f64::consts::TAU * hz / rate_hz as f64;
    for (i, v) in buf.iter_mut().skip(start).take(n).enumerate() {
        *v += amp * (w * i as f64 + phase).sin();
    }
}

/// Synthesises `keys` as DTMF at `rate_hz` (any rate; the core takes 8/16/32/48 kHz).
pub fn dtmf_sequence(
    rate_hz: u32,
    keys: &str,
    spec: &DtmfSpec,
    rng: &mut Rng,
) -> Result<Sequence, BadKey> {
    let digits = keys
        .chars()
        .map(|c| Digit::from_char(c).ok_or(BadKey(c)))
        .collect::<Result<Vec<_>, _>>()?;
    let lead = ms_to_samples(rate_hz, spec.lead_ms);
    let tone = ms_to_samples(rate_hz, spec.tone_ms);
    let gap = ms_to_samples(rate_hz, spec.gap_ms);
    let tail = ms_to_samples(rate_hz, spec.tail_ms);
    let n = lead + digits.len() * tone + digits.len().saturating_sub(1) * gap + tail;
    let mut buf = vec![0.0f64; n];
    let (low_db, high_db) = spec.tone_levels();
    let mut tones = Vec::with_capacity(digits.len());
    let mut pos = lead;
    for d in digits {
        let (fl, fh) = digit_freqs(d);
        let fl = fl * (1.0 + spec.low_offset_pct / 100.0);
        let fh = fh * (1.0 + spec.high_offset_pct / 100.0);
        let (pl, ph) = if spec.random_phase {
            (
                rng.uniform(0.0, std::f64::consts::TAU),
                rng.uniform(0.0, std::f64::consts::TAU),
            )
        } else {
            (0.0, 0.0)
        };
        add_sine(&mut buf, pos, tone, rate_hz, fl, dbm0_to_peak(low_db), pl);
        add_sine(&mut buf, pos, tone, rate_hz, fh, dbm0_to_peak(high_db), ph);
        tones.push(ToneSpan {
            key: d.as_char(),
            start: pos,
            end: pos + tone,
        });
        pos += tone + gap;
    }
    if let Some(snr) = spec.noise_snr_db {
        let rms = dbm0_to_rms(spec.level_dbm0 - snr);
        for v in buf.iter_mut() {
            *v += rms * rng.gaussian();
        }
    }
    Ok(Sequence {
        rate_hz,
        samples: buf.iter().map(|&x| quantize(x)).collect(),
        tones,
    })
}

/// White Gaussian noise of total power `dbm0`.
pub fn white_noise(n: usize, dbm0: f64, rng: &mut Rng) -> Vec<i16> {
    let rms = dbm0_to_rms(dbm0);
    (0..n).map(|_| quantize(rms * rng.gaussian())).collect()
}

/// Adds white noise so that the SNR against a signal of level `signal_dbm0` is `snr_db`.
pub fn add_noise_snr(samples: &mut [i16], signal_dbm0: f64, snr_db: f64, rng: &mut Rng) {
    let rms = dbm0_to_rms(signal_dbm0 - snr_db);
    for s in samples.iter_mut() {
        *s = quantize(*s as f64 + rms * rng.gaussian());
    }
}

/// A mix of steady sines `(hz, dbm0)` for `n` samples, each at a random phase (chords, beeps,
/// near-miss tones).
pub fn tone_mix(rate_hz: u32, parts: &[(f64, f64)], n: usize, rng: &mut Rng) -> Vec<i16> {
    let mut buf = vec![0.0f64; n];
    for &(hz, db) in parts {
        let ph = rng.uniform(0.0, std::f64::consts::TAU);
        add_sine(&mut buf, 0, n, rate_hz, hz, dbm0_to_peak(db), ph);
    }
    buf.iter().map(|&x| quantize(x)).collect()
}

/// A crude speech-like signal at about `dbm0`: voiced "syllables" (a gliding 90–260 Hz
/// fundamental with vibrato and jitter, up to 24 harmonics shaped by two moving formant peaks and a 3–6 Hz syllable
/// envelope), unvoiced noise bursts and short pauses. Not speech, but harmonic-rich and
/// non-stationary: good for delay/bit-exactness checks and quick talk-off smoke tests.
pub fn speech_like(rate_hz: u32, n: usize, dbm0: f64, rng: &mut Rng) -> Vec<i16> {
    let fs = rate_hz as f64;
    let nyq = fs / 2.0;
    let mut buf = vec![0.0f64; n];
    let mut pos = 0usize;
    while pos < n {
        let syl = ms_to_samples(rate_hz, rng.uniform(120.0, 350.0)).max(1);
        let len = syl.min(n - pos);
        let kind = rng.below(10);
        if kind < 7 {
            let f0a = rng.uniform(90.0, 260.0);
            let f0b = f0a * rng.uniform(0.8, 1.25);
            let f1 = rng.uniform(300.0, 900.0);
            let f2 = rng.uniform(900.0, 2500.0);
            let mut phases = [0.0f64; 24];
            for p in phases.iter_mut() {
                *p = rng.uniform(0.0, std::f64::consts::TAU);
            }
            let mut acc_phase = 0.0f64;
            // Natural micro-variation of the pitch: ~5.5 Hz vibrato of ±2 % plus slow jitter.
            let vib_rate = rng.uniform(4.0, 7.0);
            let vib_phase = rng.uniform(0.0, std::f64::consts::TAU);
            let mut jitter = 0.0f64;
            for i in 0..len {
                let t = i as f64 / len as f64;
                if i % (rate_hz as usize / 200).max(1) == 0 {
                    jitter = 0.9 * jitter + 0.1 * rng.uniform(-0.03, 0.03);
                }
                let vib =
                    0.02 * (std::f64::consts::TAU * vib_rate * i as f64 / fs + vib_phase).sin();
                let f0 = (f0a + (f0b - f0a) * t) * (1.0 + vib + jitter);
                acc_phase += std::f64::consts::TAU * f0 / fs;
                let env = (std::f64::consts::PI * t).sin();
                let mut v = 0.0;
                for (k, ph) in phases.iter().enumerate() {
                    let h = (k + 1) as f64;
                    let fk = f0 * h;
                    if fk >= nyq * 0.95 {
                        break;
                    }
                    let g = 1.0 / (1.0 + ((fk - f1) / 150.0).powi(2))
                        + 0.5 / (1.0 + ((fk - f2) / 250.0).powi(2))
                        + 0.05 / h;
                    v += g * (acc_phase * h + ph).sin();
                }
                buf[pos + i] = env * v;
            }
        } else if kind < 9 {
            // Unvoiced: noise burst, lightly high-passed by a first difference.
            let mut prev = 0.0;
            for i in 0..len {
                let x = rng.gaussian();
                let t = i as f64 / len as f64;
                buf[pos + i] = 0.5 * (x - prev) * (std::f64::consts::PI * t).sin();
                prev = x;
            }
        }
        // kind == 9: pause (zeros).
        pos += len;
    }
    let e: f64 = buf.iter().map(|x| x * x).sum::<f64>() / n.max(1) as f64;
    let scale = if e > 0.0 {
        dbm0_to_rms(dbm0) / e.sqrt()
    } else {
        0.0
    };
    buf.iter().map(|&x| quantize(x * scale)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_convention() {
        assert!(
            (dbm0_to_peak(0.0) - 22826.4).abs() < 0.5,
            "{}",
            dbm0_to_peak(0.0)
        );
        assert!((dbm0_to_peak(FULL_SCALE_SINE_DBM0) - 32767.0).abs() < 1e-6);
        let mut rng = Rng::new(1);
        let s = tone_mix(8000, &[(1000.0, -10.0)], 8000, &mut rng);
        assert!((power_dbm0(&s) + 10.0).abs() < 0.05, "{}", power_dbm0(&s));
        let w = white_noise(80000, -20.0, &mut rng);
        assert!((power_dbm0(&w) + 20.0).abs() < 0.1, "{}", power_dbm0(&w));
    }

    #[test]
    fn sequence_is_deterministic_and_placed() {
        let spec = DtmfSpec {
            noise_snr_db: Some(20.0),
            ..DtmfSpec::default()
        };
        let a = dtmf_sequence(16000, "12#", &spec, &mut Rng::new(7)).unwrap();
        let b = dtmf_sequence(16000, "12#", &spec, &mut Rng::new(7)).unwrap();
        let c = dtmf_sequence(16000, "12#", &spec, &mut Rng::new(8)).unwrap();
        assert_eq!(a.samples, b.samples);
        assert_ne!(a.samples, c.samples);
        assert_eq!(a.tones.len(), 3);
        assert_eq!(
            a.tones[0],
            ToneSpan {
                key: '1',
                start: 1600,
                end: 1600 + 1280
            }
        );
        assert_eq!(a.tones[1].start, 1600 + 1280 * 2);
        assert_eq!(a.samples.len(), 1600 * 2 + 1280 * 5);
        assert_eq!(
            dtmf_sequence(8000, "1x", &spec, &mut Rng::new(1)).unwrap_err(),
            BadKey('x')
        );
    }

    #[test]
    fn twist_and_level() {
        let spec = DtmfSpec {
            level_dbm0: -6.0,
            twist_db: -8.0,
            ..DtmfSpec::default()
        };
        assert_eq!(spec.tone_levels(), (-6.0, -14.0));
        let spec = DtmfSpec {
            level_dbm0: -6.0,
            twist_db: 4.0,
            ..DtmfSpec::default()
        };
        assert_eq!(spec.tone_levels(), (-10.0, -6.0));
        // Power of a tone pair = sum of the two tone powers.
        let spec = DtmfSpec {
            lead_ms: 0.0,
            tail_ms: 0.0,
            tone_ms: 1000.0,
            ..spec
        };
        let s = dtmf_sequence(8000, "5", &spec, &mut Rng::new(3)).unwrap();
        let expect = 10.0 * (10f64.powf(-1.0) + 10f64.powf(-0.6)).log10();
        assert!((power_dbm0(&s.samples) - expect).abs() < 0.05);
    }

    #[test]
    fn speech_like_has_the_level() {
        let s = speech_like(8000, 16000, -20.0, &mut Rng::new(5));
        assert!((power_dbm0(&s) + 20.0).abs() < 0.1);
    }
}
