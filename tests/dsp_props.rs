//! Property tests: the detector and the masker give identical digits AND identical output
//! samples however the same audio is split into frames (1 sample up to whole seconds).

use proptest::prelude::*;
use secure_pay::core::audio::SampleRate;
use secure_pay::core::dtmf::{Detector, DetectorParams};
use secure_pay::core::suppress::{MaskMode, Masker, MaskerConfig};
use secure_pay::gen::{dtmf_sequence, speech_like, DtmfSpec, Rng};

/// DTMF (some short, weak, twisted, noisy) mixed with speech-like audio.
fn signal(rate: u32, seed: u64) -> Vec<i16> {
    let mut rng = Rng::new(seed);
    let spec = DtmfSpec {
        tone_ms: 45.0,
        gap_ms: 35.0,
        lead_ms: 30.0,
        tail_ms: 30.0,
        noise_snr_db: Some(18.0),
        ..DtmfSpec::default()
    };
    let mut s = dtmf_sequence(rate, "159#0D", &spec, &mut rng)
        .unwrap()
        .samples;
    let burst = DtmfSpec {
        tone_ms: 22.0,
        twist_db: -9.0,
        level_dbm0: -30.0,
        ..spec
    };
    s.extend(dtmf_sequence(rate, "73", &burst, &mut rng).unwrap().samples);
    s.extend(speech_like(rate, rate as usize / 2, -20.0, &mut rng));
    s
}

type Events = Vec<(char, u64, u64)>;

fn masker_run(
    rate: u32,
    input: &[i16],
    mode: MaskMode,
    la: u32,
    splits: &[usize],
) -> (Vec<i16>, Events) {
    let cfg = MaskerConfig {
        lookahead_ms: la,
        mode,
        ..MaskerConfig::default()
    };
    let mut m = Masker::new(SampleRate::from_hz(rate).unwrap(), &cfg).unwrap();
    let mut out = input.to_vec();
    let mut ev = vec![];
    let mut rest: &mut [i16] = &mut out;
    let mut i = 0;
    while !rest.is_empty() {
        let n = splits[i % splits.len()].clamp(1, rest.len());
        i += 1;
        let (a, b) = rest.split_at_mut(n);
        m.process(a, &mut |e| {
            ev.push((e.digit.as_char(), e.start_sample, e.end_sample))
        });
        rest = b;
    }
    m.flush(&mut |e| ev.push((e.digit.as_char(), e.start_sample, e.end_sample)));
    (out, ev)
}

fn detector_run(rate: u32, input: &[i16], splits: &[usize]) -> Events {
    let mut d = Detector::new(
        SampleRate::from_hz(rate).unwrap(),
        &DetectorParams::default(),
    );
    let mut ev = vec![];
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = splits[i % splits.len()].clamp(1, rest.len());
        i += 1;
        d.process(&rest[..n], &mut |e| {
            ev.push((e.digit.as_char(), e.start_sample, e.end_sample))
        });
        rest = &rest[n..];
    }
    d.flush(&mut |e| ev.push((e.digit.as_char(), e.start_sample, e.end_sample)));
    ev
}

fn rate_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![Just(8000u32), Just(16000), Just(32000), Just(48000)]
}

fn mode_strategy() -> impl Strategy<Value = MaskMode> {
    prop_oneof![
        Just(MaskMode::Silence),
        Just(MaskMode::Noise),
        Just(MaskMode::Beep)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn frame_splits_do_not_change_digits_or_output(
        rate in rate_strategy(),
        mode in mode_strategy(),
        la in prop_oneof![Just(0u32), Just(16), Just(40), Just(100), 0u32..=100],
        seed in 0u64..4,
        splits in prop::collection::vec(prop_oneof![1usize..4, 1usize..400, 1usize..5000], 1..12),
    ) {
        let input = signal(rate, seed);
        let (ref_out, ref_ev) = masker_run(rate, &input, mode, la, &[usize::MAX]);
        prop_assert!(ref_ev.len() >= 6, "the reference run captures the digits");
        let (out, ev) = masker_run(rate, &input, mode, la, &splits);
        prop_assert_eq!(&ev, &ref_ev);
        prop_assert!(out == ref_out, "output differs with splits {:?}", splits);
        prop_assert_eq!(detector_run(rate, &input, &splits), ref_ev);
    }
}

#[test]
fn one_sample_frames_match_one_big_frame() {
    for rate in [8000, 48000] {
        let input = signal(rate, 9);
        let big = masker_run(rate, &input, MaskMode::Beep, 40, &[usize::MAX]);
        let tiny = masker_run(rate, &input, MaskMode::Beep, 40, &[1]);
        assert_eq!(big.1, tiny.1);
        assert!(big.0 == tiny.0);
        let keys: String = big.1.iter().map(|e| e.0).collect();
        assert_eq!(keys, "159#0D");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Arbitrary (hostile) samples, including full-scale extremes and DC: no panic, and still
    /// identical digits and output however the stream is split.
    #[test]
    fn arbitrary_samples_are_handled_and_split_invariant(
        rate in rate_strategy(),
        body in prop::collection::vec(any::<i16>(), 0..6000),
        dc in prop_oneof![Just(0i16), Just(i16::MIN), Just(i16::MAX), any::<i16>()],
        splits in prop::collection::vec(1usize..700, 1..8),
    ) {
        let mut input = body;
        input.resize(input.len() + 500, dc);
        let (ref_out, ref_ev) = masker_run(rate, &input, MaskMode::Noise, 40, &[usize::MAX]);
        let (out, ev) = masker_run(rate, &input, MaskMode::Noise, 40, &splits);
        prop_assert_eq!(ev, ref_ev);
        prop_assert!(out == ref_out);
        prop_assert_eq!(out.len(), input.len());
    }
}
