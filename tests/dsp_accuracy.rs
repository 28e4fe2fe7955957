//! Accept/reject matrix against the ITU-T Q.24 / GR-506 numbers, on a generated corpus with fixed
//! seeds (every digit, several levels, twists, frequency offsets, durations, SNRs, gaps, G.711
//! round trips, all four rates). Run in release (`scripts/test` does).
//!
//! Scoring per generated tone: "detected" = a digit with the right key whose start lies within
//! 20 ms of the true start. Must-accept conditions need 100 %; must-reject conditions ≤ 1 %.

use secure_pay::core::audio::SampleRate;
use secure_pay::core::dtmf::{Detector, DetectorParams};
use secure_pay::core::g711;
use secure_pay::gen::*;

const RATES: [u32; 4] = [8000, 16000, 32000, 48000];
const ALL: &str = "123A456B789C*0#D";

struct Case {
    name: String,
    rate: u32,
    spec: DtmfSpec,
    codec: Option<&'static str>,
    dropout_ms: f64,
}

fn detect(rate: u32, s: &[i16]) -> Vec<(char, u64, u64)> {
    let mut d = Detector::new(
        SampleRate::from_hz(rate).unwrap(),
        &DetectorParams::default(),
    );
    let mut out = vec![];
    // Odd frame size on purpose: chunking must not matter.
    for chunk in s.chunks(97) {
        d.process(chunk, &mut |e| {
            out.push((e.digit.as_char(), e.start_sample, e.end_sample))
        });
    }
    d.flush(&mut |e| out.push((e.digit.as_char(), e.start_sample, e.end_sample)));
    out
}

/// Returns (tones, detected, extra detections not matching any tone).
fn run(case: &Case, seed: u64) -> (usize, usize, usize) {
    let mut rng = Rng::new(seed);
    let mut seq = dtmf_sequence(case.rate, ALL, &case.spec, &mut rng).unwrap();
    if case.dropout_ms > 0.0 {
        let gap = (case.dropout_ms * case.rate as f64 / 1000.0) as usize;
        for t in &seq.tones {
            let mid = (t.start + t.end) / 2;
            for s in &mut seq.samples[mid - gap / 2..mid - gap / 2 + gap] {
                *s = 0;
            }
        }
    }
    match case.codec {
        Some("ulaw") => g711::ulaw_round_trip(&mut seq.samples),
        Some("alaw") => g711::alaw_round_trip(&mut seq.samples),
        _ => {}
    }
    let found = detect(case.rate, &seq.samples);
    let tol = (case.rate / 50) as i64; // 20 ms
    let mut used = vec![false; found.len()];
    let mut hits = 0;
    for t in &seq.tones {
        if let Some(i) = found.iter().enumerate().position(|(i, f)| {
            !used[i] && f.0 == t.key && (f.1 as i64 - t.start as i64).abs() <= tol
        }) {
            used[i] = true;
            hits += 1;
        }
    }
    let extra = used.iter().filter(|u| !**u).count();
    (seq.tones.len(), hits, extra)
}

fn base(rate: u32) -> DtmfSpec {
    let _ = rate;
    DtmfSpec {
        tone_ms: 60.0,
        gap_ms: 60.0,
        lead_ms: 60.0,
        tail_ms: 60.0,
        ..DtmfSpec::default()
    }
}

fn must_accept_cases() -> Vec<Case> {
    let mut v = vec![];
    for rate in RATES {
        let c = |name: String, spec: DtmfSpec| Case {
            name,
            rate,
            spec,
            codec: None,
            dropout_ms: 0.0,
        };
        for level in [0.0, -3.0, -10.0, -20.0, -30.0, -36.0] {
            v.push(c(
                format!("level {level}"),
                DtmfSpec {
                    level_dbm0: level,
                    ..base(rate)
                },
            ));
        }
        for level in [-6.0, -20.0] {
            for twist in [-8.0, -6.0, -4.0, 2.0, 4.0] {
                v.push(c(
                    format!("twist {twist} at {level}"),
                    DtmfSpec {
                        level_dbm0: level,
                        twist_db: twist,
                        ..base(rate)
                    },
                ));
            }
        }
        for (lo, hi) in [
            (1.5, 0.0),
            (-1.5, 0.0),
            (0.0, 1.5),
            (0.0, -1.5),
            (1.5, 1.5),
            (-1.5, -1.5),
            (1.5, -1.5),
            (-1.5, 1.5),
        ] {
            for twist in [-8.0, 0.0, 4.0] {
                v.push(c(
                    format!("offset {lo}/{hi} twist {twist}"),
                    DtmfSpec {
                        level_dbm0: -12.0,
                        twist_db: twist,
                        low_offset_pct: lo,
                        high_offset_pct: hi,
                        ..base(rate)
                    },
                ));
            }
        }
        for (lo, hi, twist) in [
            (1.5, -1.5, 4.0),
            (-1.5, 1.5, -8.0),
            (1.5, 1.5, 0.0),
            (-1.5, -1.5, 0.0),
        ] {
            v.push(c(
                format!("snr 12 offset {lo}/{hi} twist {twist}"),
                DtmfSpec {
                    level_dbm0: -15.0,
                    twist_db: twist,
                    low_offset_pct: lo,
                    high_offset_pct: hi,
                    noise_snr_db: Some(12.0),
                    tone_ms: 40.0,
                    gap_ms: 40.0,
                    ..base(rate)
                },
            ));
        }
        for (tone, gap) in [
            (40.0, 40.0),
            (45.0, 40.0),
            (50.0, 50.0),
            (40.0, 60.0),
            (500.0, 40.0),
        ] {
            v.push(c(
                format!("timing {tone}/{gap}"),
                DtmfSpec {
                    tone_ms: tone,
                    gap_ms: gap,
                    ..base(rate)
                },
            ));
        }
        for snr in [12.0, 15.0, 20.0, 30.0] {
            for twist in [-8.0, -4.0, 0.0, 2.0, 4.0] {
                v.push(c(
                    format!("snr {snr} twist {twist}"),
                    DtmfSpec {
                        level_dbm0: -10.0,
                        twist_db: twist,
                        noise_snr_db: Some(snr),
                        ..base(rate)
                    },
                ));
            }
        }
        v.push(c(
            "snr 12 at -30, 40 ms".into(),
            DtmfSpec {
                level_dbm0: -30.0,
                tone_ms: 40.0,
                gap_ms: 40.0,
                noise_snr_db: Some(12.0),
                ..base(rate)
            },
        ));
        for codec in ["ulaw", "alaw"] {
            for level in [-3.0, -20.0, -36.0] {
                v.push(Case {
                    name: format!("{codec} {level}"),
                    rate,
                    spec: DtmfSpec {
                        level_dbm0: level,
                        ..base(rate)
                    },
                    codec: Some(codec),
                    dropout_ms: 0.0,
                });
            }
            v.push(Case {
                name: format!("{codec} 40ms twist +4 offset 1.5"),
                rate,
                spec: DtmfSpec {
                    level_dbm0: -15.0,
                    twist_db: 4.0,
                    high_offset_pct: 1.5,
                    tone_ms: 40.0,
                    gap_ms: 40.0,
                    ..base(rate)
                },
                codec: Some(codec),
                dropout_ms: 0.0,
            });
        }
        for d in [5.0, 10.0] {
            v.push(Case {
                name: format!("dropout {d} ms"),
                rate,
                spec: DtmfSpec {
                    tone_ms: 120.0,
                    ..base(rate)
                },
                codec: None,
                dropout_ms: d,
            });
        }
    }
    v
}

fn must_reject_cases() -> Vec<Case> {
    let mut v = vec![];
    for rate in RATES {
        let c = |name: String, spec: DtmfSpec| Case {
            name,
            rate,
            spec,
            codec: None,
            dropout_ms: 0.0,
        };
        for ms in [10.0, 15.0, 20.0, 23.0] {
            for level in [-3.0, -20.0] {
                v.push(c(
                    format!("duration {ms} at {level}"),
                    DtmfSpec {
                        tone_ms: ms,
                        level_dbm0: level,
                        ..base(rate)
                    },
                ));
            }
        }
        for (lo, hi) in [
            (3.5, 0.0),
            (-3.5, 0.0),
            (0.0, 3.5),
            (0.0, -3.5),
            (3.5, 3.5),
            (-3.5, -3.5),
            (5.0, 0.0),
            (0.0, -5.0),
        ] {
            for twist in [-4.0, 0.0, 2.0] {
                v.push(c(
                    format!("offset {lo}/{hi} twist {twist}"),
                    DtmfSpec {
                        level_dbm0: -12.0,
                        twist_db: twist,
                        low_offset_pct: lo,
                        high_offset_pct: hi,
                        ..base(rate)
                    },
                ));
            }
        }
        for twist in [8.0, 10.0, 12.0, -12.0, -14.0] {
            v.push(c(
                format!("twist {twist}"),
                DtmfSpec {
                    level_dbm0: -6.0,
                    twist_db: twist,
                    ..base(rate)
                },
            ));
        }
        for level in [-48.0, -50.0, -55.0] {
            v.push(c(
                format!("level {level}"),
                DtmfSpec {
                    level_dbm0: level,
                    ..base(rate)
                },
            ));
        }
    }
    v
}

fn score(cases: &[Case], expect: fn(usize) -> usize) -> (usize, usize, usize, Vec<String>) {
    let (mut tones, mut hits, mut extra) = (0, 0, 0);
    let mut lines = vec![];
    for (i, case) in cases.iter().enumerate() {
        let (t, h, x) = run(case, 1000 + i as u64);
        tones += t;
        hits += h;
        extra += x;
        if h != expect(t) || x != 0 {
            lines.push(format!(
                "{} Hz {}: {h}/{t} detected, {x} extra",
                case.rate, case.name
            ));
        }
    }
    (tones, hits, extra, lines)
}

#[test]
fn q24_must_accept_all() {
    let cases = must_accept_cases();
    let (tones, hits, extra, lines) = score(&cases, |t| t);
    println!("must-accept: {hits}/{tones} detected, {extra} extra detections");
    for l in &lines {
        println!("  {l}");
    }
    assert_eq!(hits, tones, "every must-accept tone is detected");
    assert_eq!(extra, 0, "no extra digits (split tones, wrong keys)");
}

#[test]
fn q24_must_reject_at_most_one_percent() {
    let cases = must_reject_cases();
    let (tones, hits, extra, lines) = score(&cases, |_| 0);
    println!(
        "must-reject: {hits}/{tones} accepted ({:.2} %), {extra} other detections",
        100.0 * hits as f64 / tones as f64
    );
    for l in &lines {
        println!("  {l}");
    }
    assert!(
        hits * 100 <= tones,
        "at most 1 % of must-reject tones accepted"
    );
    assert!(extra * 100 <= tones);
}

#[test]
fn same_key_pauses_separate_and_dropouts_bridge() {
    for rate in RATES {
        for (gap, expect) in [(40.0, 8), (50.0, 8), (80.0, 8), (10.0, 1), (5.0, 1)] {
            for key in ["5", "*", "D"] {
                let keys = key.repeat(8);
                let spec = DtmfSpec {
                    tone_ms: 60.0,
                    gap_ms: gap,
                    level_dbm0: -15.0,
                    ..base(rate)
                };
                let seq = dtmf_sequence(rate, &keys, &spec, &mut Rng::new(gap as u64)).unwrap();
                let found = detect(rate, &seq.samples);
                assert_eq!(
                    found.len(),
                    expect,
                    "{rate} Hz key {key} gap {gap} ms: {found:?}"
                );
                assert!(found.iter().all(|f| f.0 == key.chars().next().unwrap()));
            }
        }
    }
}

#[test]
fn reported_times_match_the_tones() {
    // start/end within 4 ms of the truth (the detector measures edges to about ±3 ms).
    for rate in RATES {
        for tone in [40.0, 65.0, 300.0] {
            let spec = DtmfSpec {
                tone_ms: tone,
                ..base(rate)
            };
            let seq = dtmf_sequence(rate, ALL, &spec, &mut Rng::new(11)).unwrap();
            let found = detect(rate, &seq.samples);
            assert_eq!(found.len(), 16);
            let tol = 4 * rate as i64 / 1000;
            for (f, t) in found.iter().zip(&seq.tones) {
                assert!(
                    (f.1 as i64 - t.start as i64).abs() <= tol,
                    "{rate} {tone}: start {f:?} {t:?}"
                );
                assert!(
                    (f.2 as i64 - t.end as i64).abs() <= tol,
                    "{rate} {tone}: end {f:?} {t:?}"
                );
            }
        }
    }
}

#[test]
fn different_keys_back_to_back_are_both_reported() {
    for rate in RATES {
        let spec = DtmfSpec {
            tone_ms: 60.0,
            gap_ms: 0.0,
            ..base(rate)
        };
        let seq = dtmf_sequence(rate, ALL, &spec, &mut Rng::new(21)).unwrap();
        let keys: String = detect(rate, &seq.samples).iter().map(|f| f.0).collect();
        assert_eq!(keys, ALL, "{rate} Hz");
    }
}
