//! Seeded material for the tone-residual judge's tests: a small RNG (the same corpus on every
//! run) and DTMF tone heads laid over a background at known positions, as a phone that lets the
//! first milliseconds of a key through before its out-of-band event would leave them. Nothing
//! here uses secure_pay's code.

use super::residual::ToneSpan;

pub const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
pub const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const RATE: f64 = 8000.0;

/// Small seeded xorshift64* RNG.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn gauss(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Adds a DTMF head of `ms` at sample `at` of `x` (8 kHz): a random key, each tone up to ±2 %
/// off nominal, twist −4…+2 dB, the pair's power equal to the background's over the span
/// (SNR 0 dB). Returns where it is.
pub fn lay_head(x: &mut [f64], at: usize, ms: u32, rng: &mut Rng) -> ToneSpan {
    let n = ms as usize * RATE as usize / 1000;
    let key = (rng.next_u64() % 16) as usize;
    let fl = ROWS[key / 4] * (1.0 + (rng.unit() * 4.0 - 2.0) / 100.0);
    let fh = COLS[key % 4] * (1.0 + (rng.unit() * 4.0 - 2.0) / 100.0);
    let g = 10f64.powf((rng.unit() * 6.0 - 4.0) / 20.0);
    let p_bg = x[at..at + n].iter().map(|v| v * v).sum::<f64>() / n as f64;
    let al = (2.0 * p_bg / (1.0 + g * g)).sqrt();
    let ph = rng.unit() * std::f64::consts::TAU;
    for k in 0..n {
        let t = k as f64 / RATE;
        x[at + k] += al * (std::f64::consts::TAU * fl * t + ph).sin()
            + al * g * (std::f64::consts::TAU * fh * t).sin();
    }
    ToneSpan {
        start: at,
        end: at + n,
        low_hz: ROWS[key / 4],
        high_hz: COLS[key % 4],
    }
}

/// Rounds a mix to 16-bit samples.
pub fn to_i16(x: Vec<f64>) -> Vec<i16> {
    x.into_iter()
        .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}
