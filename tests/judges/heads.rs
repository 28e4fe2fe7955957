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

/// The out-of-band arming tests on a real PBX (`asterisk_oob_arming`, `freeswitch_oob_arming`):
/// files of white noise with tone heads, played on the customer's side of a call, and the
/// agent's recording judged head by head.
pub mod calls {
    use super::super::residual::{measure, ToneSpan};
    use super::{lay_head, to_i16, Rng};

    pub const RATE: u32 = 8000;
    /// Files per call, heads per file, and where in a file the heads are (samples).
    pub const FILES: usize = 30;
    pub const HEADS: usize = 6;
    pub const FILE_LEN: usize = RATE as usize * 24 / 10;
    const FIRST_HEAD: usize = RATE as usize / 2;
    const HEAD_STEP: usize = RATE as usize * 3 / 10;

    /// One file: white noise (about -18 dBm0) with `HEADS` tone heads of 20, 25 and 30 ms at
    /// 0 dB SNR, each up to ±2 % off nominal, twist -4..+2 dB. Returns the samples and the
    /// heads.
    pub fn file_audio(rng: &mut Rng) -> (Vec<i16>, Vec<ToneSpan>) {
        let mut x: Vec<f64> = (0..FILE_LEN).map(|_| rng.gauss() * 2000.0).collect();
        let heads = (0..HEADS)
            .map(|h| {
                lay_head(
                    &mut x,
                    FIRST_HEAD + h * HEAD_STEP,
                    [20u32, 25, 30][h % 3],
                    rng,
                )
            })
            .collect();
        (to_i16(x), heads)
    }

    /// Where `file` starts in `rec` (searching `from` up to `span` samples later): the lag
    /// with the largest correlation over the file's first 0.4 s (noise only; the heads start
    /// at 0.5 s).
    fn locate(rec: &[i16], file: &[i16], from: usize, span: usize) -> usize {
        let probe = &file[..RATE as usize * 2 / 5];
        let last = rec.len().saturating_sub(FILE_LEN);
        let end = (from + span).min(last);
        let corr = |lag: usize| -> f64 {
            probe
                .iter()
                .zip(&rec[lag..lag + probe.len()])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        (from.min(end)..=end)
            .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
            .expect("a lag")
    }

    /// Heads over the residual target (-40 dB) in the agent's recording `rec` of one call
    /// that played `files` in order, the first within `first_s` seconds of the recording's
    /// start and each next one within `gap_s` seconds of the previous one's end. Returns
    /// (heads over the target, heads judged).
    pub fn heads_over(
        rec: &[i16],
        files: &[(Vec<i16>, Vec<ToneSpan>)],
        first_s: usize,
        gap_s: usize,
    ) -> (usize, usize) {
        // The last file's last 40 ms stay in the masker's delay line: pad the end.
        let mut rec = rec.to_vec();
        rec.resize(rec.len() + FILE_LEN, 0);
        let (mut over, mut n, mut from) = (0, 0, 0);
        for (i, (audio, heads)) in files.iter().enumerate() {
            let span = RATE as usize * if i == 0 { first_s } else { gap_s };
            let at = locate(&rec, audio, from, span);
            let out = &rec[at..at + FILE_LEN];
            for h in heads {
                n += 1;
                if measure(audio, out, RATE, h).db > -40.0 {
                    over += 1;
                }
            }
            // A file may come out a frame short: search from a little before its end.
            from = at + FILE_LEN - RATE as usize / 10;
        }
        (over, n)
    }

    /// The verdict of an out-of-band arming test: `over_plain` and `over_armed` heads over the
    /// residual target of `n` on the unarmed and the armed call. Control: the unarmed masker
    /// misses some (at least 5) over 0 dB noise; armed, at least a third fewer.
    pub fn assert_arming_helps(over_plain: usize, over_armed: usize, n: usize, how: &str) {
        println!(
            "tone heads over the residual target on the agent's recording: {over_plain} of {n} unarmed, {over_armed} armed by {how}"
        );
        assert_eq!(n, FILES * HEADS);
        assert!(
            over_plain >= 5,
            "control: the unarmed masker should miss some heads over 0 dB noise ({over_plain} of {n})"
        );
        assert!(
            over_armed * 3 <= over_plain * 2,
            "armed by {how}: {over_armed} heads over the target, unarmed {over_plain} (of {n})"
        );
    }

    /// Control of the judge: it finds every head in the input.
    pub fn assert_heads_present(files: &[(Vec<i16>, Vec<ToneSpan>)]) {
        for (audio, heads) in files {
            for h in heads {
                assert!(
                    measure(audio, audio, RATE, h).db > -1.0,
                    "control: a head is there"
                );
            }
        }
    }
}
