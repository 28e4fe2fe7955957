//! Tone-residual judge (issue #11): a measurement at the KNOWN tone positions of a generated
//! file, not a detector. For each tone span it measures, with a Goertzel filter, the energy at
//! the tone's two frequencies in the module's output against the same measurement on its input,
//! in dB, and the longest run of output samples inside the span that passed unaltered.
//!
//! Each tone may sit anywhere within ±2 % of its nominal frequency, so both powers are taken at
//! the frequency of a ±2 % grid (0.25 % steps) where the INPUT is strongest, and compared at that
//! same frequency. Nothing here shares code with secure_pay's detector.

/// One tone of a generated file: `[start, end)` in input samples, and its nominal pair in Hz.
#[derive(Clone, Copy, Debug)]
pub struct ToneSpan {
    pub start: usize,
    pub end: usize,
    pub low_hz: f64,
    pub high_hz: f64,
}

/// What the judge measured for one tone.
#[derive(Clone, Copy, Debug)]
pub struct Residual {
    /// Output over input energy at the tone's frequencies, the larger of the two tones, in dB
    /// (-200 for digital silence).
    pub db: f64,
    /// Longest run of consecutive samples of the span that the module passed unaltered, in ms.
    pub unmasked_ms: f64,
}

/// Goertzel power of `freq` over `x` (normalised by the length squared).
pub fn goertzel(x: &[i16], rate_hz: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate_hz as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    p / (x.len().max(1) as f64).powi(2)
}

/// (input power, output power) at the frequency within ±2 % of `nominal` where the input is
/// strongest.
fn tone_pair_power(inp: &[i16], out: &[i16], rate_hz: u32, nominal: f64) -> (f64, f64) {
    let mut best = (f64::MIN, 0.0);
    for step in -8..=8 {
        let f = nominal * (1.0 + step as f64 * 0.0025);
        let pi = goertzel(inp, rate_hz, f);
        if pi > best.0 {
            best = (pi, goertzel(out, rate_hz, f));
        }
    }
    best
}

fn db(num: f64, den: f64) -> f64 {
    if num <= 0.0 {
        return -200.0;
    }
    10.0 * (num / den.max(1e-30)).log10()
}

/// Measures one tone. `input` is what the module was fed; `output` is what it produced, already
/// aligned to the input (the module's delay removed), at least as long as the span.
pub fn measure(input: &[i16], output: &[i16], rate_hz: u32, t: &ToneSpan) -> Residual {
    let inp = &input[t.start..t.end];
    let out = &output[t.start..t.end];
    let (il, ol) = tone_pair_power(inp, out, rate_hz, t.low_hz);
    let (ih, oh) = tone_pair_power(inp, out, rate_hz, t.high_hz);
    let mut run = 0usize;
    let mut longest = 0usize;
    for (a, b) in inp.iter().zip(out) {
        if a == b {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    Residual {
        db: db(ol, il).max(db(oh, ih)),
        unmasked_ms: longest as f64 * 1000.0 / rate_hz as f64,
    }
}

/// The same measurement with the background taken out on both sides, for a module that is
/// linear where it does not mask (the `notch` option): the tone's own residual is
/// `output(tone + background) − output(background)` against the tone alone, at the tone's
/// frequencies. Without this, a short span's Goertzel (20 ms resolves about 50 Hz) also counts
/// the background's energy next to the tone, which passes the band-stop as it should.
pub fn measure_differential(
    tone: &[i16],
    out_mix: &[i16],
    out_bg: &[i16],
    rate_hz: u32,
    t: &ToneSpan,
) -> f64 {
    let inp = &tone[t.start..t.end];
    let diff: Vec<i16> = out_mix[t.start..t.end]
        .iter()
        .zip(&out_bg[t.start..t.end])
        .map(|(&a, &b)| (a as i32 - b as i32).clamp(-32768, 32767) as i16)
        .collect();
    let (il, ol) = tone_pair_power(inp, &diff, rate_hz, t.low_hz);
    let (ih, oh) = tone_pair_power(inp, &diff, rate_hz, t.high_hz);
    db(ol, il).max(db(oh, ih))
}
