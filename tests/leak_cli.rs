//! Leak test through the offline CLI: `secure-pay suppress IN.wav OUT.wav [--mode M]` must write a
//! WAV from which no independent judge (multimon-ng, spandsp default, spandsp permissive) decodes
//! a digit, while they decode the keys from IN.wav (control), and the same run must still print
//! every key on stdout (capture). At 8, 16, 32 and 48 kHz, in silence, beep and noise modes.

mod judges;

use std::path::Path;
use std::process::Command;

use judges::{judge_all, scratch_file};
use secure_pay::gen::{self, DtmfSpec, Rng};
use secure_pay::wav;

const KEYS: &str = "4532015112830366#";

fn run_cli(rate: u32, spec: &DtmfSpec, args: &[&str]) {
    let seq = gen::dtmf_sequence(rate, KEYS, spec, &mut Rng::new(42))
        .unwrap_or_else(|e| panic!("gen: {e}"));
    let input = scratch_file("cli-in", "wav");
    let output = scratch_file("cli-out", "wav");
    wav::write_file(&input, rate, &seq.samples).unwrap_or_else(|e| panic!("write wav: {e}"));

    let control = judge_all(&seq.samples, rate);
    assert_eq!(control.multimon, KEYS, "control {rate} Hz: {control}");
    assert_eq!(control.spandsp, KEYS, "control {rate} Hz: {control}");
    assert_eq!(
        control.spandsp_permissive, KEYS,
        "control {rate} Hz: {control}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_secure-pay"))
        .arg("suppress")
        .arg(&input)
        .arg(&output)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run secure-pay: {e}"));
    let _ = std::fs::remove_file(&input);
    assert!(
        out.status.success(),
        "secure-pay suppress {args:?} at {rate} Hz failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let masked =
        wav::read_file(&output).unwrap_or_else(|e| panic!("read {}: {e}", output.display()));
    let _ = std::fs::remove_file(Path::new(&output));
    assert_eq!(masked.sample_rate, rate, "output rate");
    let v = judge_all(&masked.samples, rate);
    assert!(
        v.is_silent(),
        "secure-pay suppress {args:?} at {rate} Hz leaks: {v}"
    );
    // Mask aggressively, capture conservatively: the same run still captures every key of
    // Q.24 must-accept length (>= 40 ms; stdout: one {"digit":"5",...} object per line).
    if spec.tone_ms < 40.0 {
        return;
    }
    let captured: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split("\"digit\":\"")
                .nth(1)
                .and_then(|r| r.chars().next())
        })
        .collect();
    assert_eq!(
        captured, KEYS,
        "secure-pay suppress {args:?} at {rate} Hz: captured digits"
    );
}

#[test]
fn cli_suppress_leaves_nothing_for_the_judges_8k() {
    run_cli(
        8000,
        &DtmfSpec {
            tone_ms: 70.0,
            gap_ms: 70.0,
            ..DtmfSpec::default()
        },
        &[],
    );
}

#[test]
fn cli_suppress_leaves_nothing_for_the_judges_48k_weak_short() {
    // 35 ms bursts at -30 dBm0: still read by all three judges (control).
    run_cli(
        48000,
        &DtmfSpec {
            tone_ms: 35.0,
            gap_ms: 60.0,
            level_dbm0: -30.0,
            ..DtmfSpec::default()
        },
        &["--delay-ms", "40"],
    );
}

#[test]
fn cli_suppress_beep_mode_beep_is_not_a_digit() {
    run_cli(16000, &DtmfSpec::default(), &["--mode", "beep"]);
}

#[test]
fn cli_suppress_noise_mode() {
    run_cli(32000, &DtmfSpec::default(), &["--mode", "noise"]);
}
