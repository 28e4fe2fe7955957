//! Masker behaviour against the generator's ground truth: every tone sample replaced (look-ahead
//! ≥ 16 ms), everything else the input delayed sample for sample, long holds masked throughout,
//! and what leaks with a short look-ahead. (The independent judges, multimon-ng and spandsp,
//! run on the masked output in the judge's tests.)

use secure_pay::core::audio::SampleRate;
use secure_pay::core::suppress::{MaskMode, Masker, MaskerConfig};
use secure_pay::gen::*;

const RATES: [u32; 4] = [8000, 16000, 32000, 48000];
const ALL: &str = "123A456B789C*0#D";

fn mask(
    rate: u32,
    input: &[i16],
    lookahead_ms: u32,
    mode: MaskMode,
    frame: usize,
) -> (Vec<i16>, usize, Vec<char>) {
    let cfg = MaskerConfig {
        lookahead_ms,
        mode,
        ..MaskerConfig::default()
    };
    let mut m = Masker::new(SampleRate::from_hz(rate).unwrap(), &cfg).unwrap();
    let d = m.delay_samples();
    let mut out = input.to_vec();
    out.resize(out.len() + d, 0);
    let mut keys = vec![];
    for chunk in out.chunks_mut(frame) {
        m.process(chunk, &mut |e| keys.push(e.digit.as_char()));
    }
    m.flush(&mut |e| keys.push(e.digit.as_char()));
    (out, d, keys)
}

/// Counts tone samples that come out unreplaced (silence mode: replaced = 0).
fn leaked(seq: &Sequence, out: &[i16], d: usize) -> usize {
    seq.tones
        .iter()
        .map(|t| (t.start..t.end).filter(|&s| out[s + d] != 0).count())
        .sum()
}

/// Samples further than `guard` from any tone must be the input, delayed, bit for bit.
fn assert_passthrough_outside(seq: &Sequence, out: &[i16], d: usize, guard: usize, what: &str) {
    let mut near = vec![false; seq.samples.len()];
    for t in &seq.tones {
        for s in t.start.saturating_sub(guard)..(t.end + guard).min(near.len()) {
            near[s] = true;
        }
    }
    for (s, &x) in seq.samples.iter().enumerate() {
        if !near[s] {
            assert_eq!(
                out[s + d],
                x,
                "{what}: sample {s} altered outside the tones"
            );
        }
    }
    assert!(
        out[..d].iter().all(|&x| x == 0),
        "{what}: leading delay is silence"
    );
}

fn specs() -> Vec<(String, DtmfSpec)> {
    let b = DtmfSpec {
        tone_ms: 60.0,
        gap_ms: 60.0,
        lead_ms: 60.0,
        tail_ms: 60.0,
        ..DtmfSpec::default()
    };
    let mut v = vec![];
    for level in [0.0, -10.0, -25.0, -36.0, -45.0, -50.0] {
        v.push((
            format!("level {level}"),
            DtmfSpec {
                level_dbm0: level,
                ..b.clone()
            },
        ));
    }
    // Up to ±14 dB: what spandsp in its permissive setting (14/14 dB twist) still decodes.
    for twist in [-14.0, -12.0, -8.0, 4.0, 8.0, 12.0, 14.0] {
        v.push((
            format!("twist {twist}"),
            DtmfSpec {
                level_dbm0: -6.0,
                twist_db: twist,
                ..b.clone()
            },
        ));
    }
    for (lo, hi) in [
        (2.5, 0.0),
        (-2.5, 0.0),
        (0.0, 2.5),
        (0.0, -2.5),
        (2.5, 2.5),
        (-2.5, -2.5),
        (2.5, -2.5),
    ] {
        v.push((
            format!("offset {lo}/{hi}"),
            DtmfSpec {
                low_offset_pct: lo,
                high_offset_pct: hi,
                ..b.clone()
            },
        ));
    }
    for ms in [10.0, 15.0, 20.0, 23.0, 30.0, 40.0] {
        v.push((
            format!("burst {ms} ms"),
            DtmfSpec {
                tone_ms: ms,
                gap_ms: 40.0,
                ..b.clone()
            },
        ));
    }
    v.push((
        "snr 12".into(),
        DtmfSpec {
            noise_snr_db: Some(12.0),
            ..b.clone()
        },
    ));
    v.push((
        "fast 40/40".into(),
        DtmfSpec {
            tone_ms: 40.0,
            gap_ms: 40.0,
            ..b.clone()
        },
    ));
    v
}

#[test]
fn every_tone_sample_is_replaced_and_nothing_else_changes() {
    let mut report = vec![];
    let mut total_leak = 0;
    for rate in RATES {
        for (i, (name, spec)) in specs().into_iter().enumerate() {
            let seq = dtmf_sequence(rate, ALL, &spec, &mut Rng::new(77 + i as u64)).unwrap();
            let (out, d, _) = mask(rate, &seq.samples, 40, MaskMode::Silence, 160);
            let leak = leaked(&seq, &out, d);
            total_leak += leak;
            if leak > 0 {
                report.push(format!("{rate} Hz {name}: {leak} tone samples leaked"));
            }
            if spec.noise_snr_db.is_none() {
                // Window (12.5 ms) + guard (6 ms) + hangover (6 ms) + a hop: 28 ms.
                assert_passthrough_outside(&seq, &out, d, rate as usize * 28 / 1000, &name);
            }
        }
    }
    for l in &report {
        println!("{l}");
    }
    assert_eq!(total_leak, 0, "no tone sample may reach the output");
}

#[test]
fn non_dtmf_audio_is_delayed_bit_exact() {
    for rate in RATES {
        let n = rate as usize * 3;
        let mut rng = Rng::new(rate as u64);
        let inputs = [
            ("noise -20", white_noise(n, -20.0, &mut rng)),
            ("noise 0", white_noise(n, 0.0, &mut rng)),
            (
                "single 941 Hz",
                tone_mix(rate, &[(941.0, -10.0)], n, &mut rng),
            ),
            (
                "chord 1000+1400",
                tone_mix(rate, &[(1000.0, -10.0), (1400.0, -10.0)], n, &mut rng),
            ),
            (
                "row+row 697+852",
                tone_mix(rate, &[(697.0, -10.0), (852.0, -10.0)], n, &mut rng),
            ),
            (
                "one pair 6 % off",
                tone_mix(
                    rate,
                    &[(697.0 * 1.06, -10.0), (1209.0 * 0.94, -10.0)],
                    n,
                    &mut rng,
                ),
            ),
        ];
        for (name, input) in inputs.iter() {
            for la in [0, 40, 100] {
                let (out, d, keys) = mask(rate, input, la, MaskMode::Silence, 333);
                assert_eq!(d, rate as usize * la as usize / 1000);
                assert!(keys.is_empty(), "{rate} {name}: false digit");
                let diff = out[d..].iter().zip(input).position(|(a, b)| a != b);
                assert_eq!(
                    diff, None,
                    "{rate} Hz {name} look-ahead {la}: first altered sample"
                );
            }
        }
    }
}

#[test]
fn speech_like_audio_is_delayed_or_replaced_never_otherwise_touched() {
    // The synthetic speech has steady formant harmonics that sometimes sit on DTMF pairs, so a
    // little of it is masked (talk-off proper is measured on espeak-ng speech by the judge).
    // Every output sample must be either the delayed input or the replacement, and masking
    // must stay rare.
    for rate in RATES {
        let input = speech_like(rate, rate as usize * 20, -18.0, &mut Rng::new(5));
        let (out, d, _) = mask(rate, &input, 40, MaskMode::Silence, 160);
        let mut altered = 0;
        for (s, &x) in input.iter().enumerate() {
            if out[s + d] != x {
                assert_eq!(
                    out[s + d],
                    0,
                    "{rate} Hz: sample {s} neither delayed nor replaced"
                );
                altered += 1;
            }
        }
        let pct = 100.0 * altered as f64 / input.len() as f64;
        println!("{rate} Hz speech-like: {pct:.2} % of samples masked");
        assert!(pct < 6.0, "{rate} Hz: {pct} % masked");
        // Noise/beep modes replace exactly the same samples.
        for mode in [MaskMode::Noise, MaskMode::Beep] {
            let (o2, _, _) = mask(rate, &input, 40, mode, 441);
            for (s, &x) in input.iter().enumerate() {
                // Silence mode left a non-zero sample: certainly not masked.
                if out[s + d] != 0 {
                    assert_eq!(o2[s + d], x, "{rate} Hz {mode:?}: sample {s} altered");
                }
            }
        }
    }
}

#[test]
fn long_key_hold_is_masked_whole() {
    for rate in RATES {
        let spec = DtmfSpec {
            tone_ms: 3000.0,
            level_dbm0: -8.0,
            ..DtmfSpec::default()
        };
        let seq = dtmf_sequence(rate, "5", &spec, &mut Rng::new(3)).unwrap();
        for mode in [MaskMode::Silence, MaskMode::Noise, MaskMode::Beep] {
            let (out, d, keys) = mask(rate, &seq.samples, 40, mode, 480);
            assert_eq!(keys, vec!['5']);
            let t = seq.tones[0];
            match mode {
                MaskMode::Silence => assert_eq!(leaked(&seq, &out, d), 0),
                _ => {
                    // Replacement is identical for any key: compare with the same hold of '9'.
                    let seq9 = dtmf_sequence(rate, "9", &spec, &mut Rng::new(4)).unwrap();
                    let (out9, _, _) = mask(rate, &seq9.samples, 40, mode, 480);
                    assert_eq!(&out[t.start + d..t.end + d], &out9[t.start + d..t.end + d]);
                    let peak = out[t.start + d..t.end + d]
                        .iter()
                        .map(|x| x.unsigned_abs())
                        .max()
                        .unwrap();
                    assert!(peak < 4000, "replacement is low level");
                }
            }
        }
    }
}

#[test]
fn short_lookahead_leaks_only_the_head() {
    // Documented behaviour: with look-ahead 0 each tone's first few ms pass (under 12 ms);
    // from 16 ms on nothing leaks.
    for rate in RATES {
        let spec = DtmfSpec::default();
        let seq = dtmf_sequence(rate, ALL, &spec, &mut Rng::new(9)).unwrap();
        let (out, d, _) = mask(rate, &seq.samples, 0, MaskMode::Silence, 160);
        assert_eq!(d, 0);
        for t in &seq.tones {
            let first_masked = (t.start..t.end)
                .find(|&s| out[s] == 0 && out[s + 1] == 0)
                .unwrap();
            let head_ms = (first_masked - t.start) as f64 * 1000.0 / rate as f64;
            assert!(head_ms < 12.0, "{rate} Hz: head leak {head_ms} ms");
            assert!(
                (first_masked..t.end).all(|s| out[s] == 0),
                "{rate} Hz: only the head leaks"
            );
        }
        let (out, d, _) = mask(rate, &seq.samples, 16, MaskMode::Silence, 160);
        assert_eq!(
            leaked(&seq, &out, d),
            0,
            "{rate} Hz: 16 ms look-ahead leaks nothing"
        );
    }
}

#[test]
fn state_is_small() {
    let m = Masker::new(SampleRate::Hz48000, &MaskerConfig::default()).unwrap();
    println!("state at 48 kHz, 40 ms: {} bytes", m.state_bytes());
    assert!(m.state_bytes() <= 8192);
}
