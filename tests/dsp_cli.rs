//! The `secure-pay` CLI: good runs (gen -> suppress, JSON digits, leading delay, all modes and
//! rates) and every bad input (one clear stderr line, non-zero exit, no output file left).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secure_pay::wav;

const BIN: &str = env!("CARGO_BIN_EXE_secure-pay");

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("secure-pay-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// No file other than `keep` in the directory (no temp file left behind either).
    fn only(&self, keep: &[&str]) -> bool {
        std::fs::read_dir(&self.0).unwrap().all(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            keep.contains(&n.as_str())
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn digits_of(stdout: &[u8]) -> Vec<(String, f64, f64)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            (
                v["digit"].as_str().unwrap().to_string(),
                v["start_ms"].as_f64().unwrap(),
                v["end_ms"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn gen_then_suppress_every_rate_and_mode() {
    let dir = TempDir::new("good");
    for rate in ["8000", "16000", "32000", "48000"] {
        let input = dir.path(&format!("in{rate}.wav"));
        let o = run(&[
            "gen",
            s(&input),
            "--digits",
            "4111#*0D",
            "--rate",
            rate,
            "--tone-ms",
            "60",
            "--gap-ms",
            "60",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let inw = wav::read_file(&input).unwrap();
        assert_eq!(inw.sample_rate.to_string(), rate);
        for (mode, delay) in [("silence", "40"), ("noise", "0"), ("beep", "100")] {
            let out = dir.path("out.wav");
            let o = run(&[
                "suppress",
                s(&input),
                s(&out),
                "--delay-ms",
                delay,
                "--mode",
                mode,
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let d = digits_of(&o.stdout);
            let keys: String = d.iter().map(|x| x.0.as_str()).collect();
            assert_eq!(keys, "4111#*0D", "{rate} {mode}");
            // First tone starts at 500 ms (gen's lead), 60 ms long, in the input timeline.
            assert!(
                (d[0].1 - 500.0).abs() < 5.0 && (d[0].2 - 560.0).abs() < 5.0,
                "{:?}",
                d[0]
            );
            let outw = wav::read_file(&out).unwrap();
            let delay_samples = inw.sample_rate as usize * delay.parse::<usize>().unwrap() / 1000;
            assert_eq!(outw.sample_rate, inw.sample_rate);
            assert_eq!(outw.samples.len(), inw.samples.len() + delay_samples);
            // Before the first tone: the input, delayed.
            let lead = inw.sample_rate as usize * 400 / 1000;
            assert_eq!(
                &outw.samples[delay_samples..delay_samples + lead],
                &inw.samples[..lead]
            );
            // The tones themselves do not come out.
            // (With no look-ahead the first few ms of each tone leak, as documented.)
            let head = if delay == "0" { 12 } else { 0 };
            let t0 = inw.sample_rate as usize * (500 + head) / 1000;
            let t1 = inw.sample_rate as usize * 560 / 1000;
            let peak_in = inw.samples[t0..t1]
                .iter()
                .map(|x| x.unsigned_abs())
                .max()
                .unwrap();
            let peak_out = outw.samples[t0 + delay_samples..t1 + delay_samples]
                .iter()
                .map(|x| x.unsigned_abs())
                .max()
                .unwrap();
            assert!(
                peak_in > 5000 && peak_out < 4000,
                "{rate} {mode}: {peak_in} -> {peak_out}"
            );
        }
    }
    assert!(dir.only(&[
        "in8000.wav",
        "in16000.wav",
        "in32000.wav",
        "in48000.wav",
        "out.wav"
    ]));
}

#[test]
fn help_and_gen_with_noise() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("secure-pay suppress IN.wav OUT.wav") && help.contains("--mode"));
    let dir = TempDir::new("noise");
    let p = dir.path("n.wav");
    let o = run(&[
        "gen",
        s(&p),
        "--digits",
        "5",
        "--noise-snr-db",
        "15",
        "--level-dbm0",
        "-20",
        "--seed",
        "7",
    ]);
    assert!(o.status.success());
    let w = wav::read_file(&p).unwrap();
    assert!(
        w.samples[..100].iter().any(|&x| x != 0),
        "noise in the lead-in"
    );
}

/// A WAV with an arbitrary header.
fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut v = wav::header(tag, channels, rate, bits, data.len() as u32);
    v.extend_from_slice(data);
    v
}

fn assert_fails(args: &[&str], dir: &TempDir, keep: &[&str], expect: &str) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one stderr line, got {err:?}"
    );
    assert!(err.starts_with("secure-pay: "), "{err}");
    assert!(
        err.to_lowercase().contains(expect),
        "{args:?}: {err:?} should mention {expect:?}"
    );
    assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
    assert!(dir.only(keep), "{args:?}: no output file left behind");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = TempDir::new("bad");
    let data = vec![0u8; 800];
    let files: Vec<(&str, Vec<u8>, &str)> = vec![
        ("stereo.wav", wav_bytes(1, 2, 8000, 16, &data), "channels"),
        ("8bit.wav", wav_bytes(1, 1, 8000, 8, &data), "8-bit"),
        (
            "float.wav",
            wav_bytes(3, 1, 8000, 32, &data),
            "floating-point",
        ),
        ("alaw.wav", wav_bytes(6, 1, 8000, 8, &data), "encoding"),
        ("44k.wav", wav_bytes(1, 1, 44100, 16, &data), "44100"),
        (
            "trunc.wav",
            wav_bytes(1, 1, 8000, 16, &data)[..300].to_vec(),
            "truncated",
        ),
        (
            "text.wav",
            b"this is not a wav file at all".to_vec(),
            "not a wav",
        ),
        ("empty.wav", vec![], "not a wav"),
    ];
    let mut keep: Vec<&str> = files.iter().map(|f| f.0).collect();
    keep.push("good.wav");
    for (name, bytes, _) in &files {
        std::fs::write(dir.path(name), bytes).unwrap();
    }
    let good = dir.path("good.wav");
    assert!(run(&["gen", s(&good), "--digits", "1"]).status.success());
    let out = dir.path("out.wav");
    for (name, _, expect) in &files {
        assert_fails(
            &["suppress", s(&dir.path(name)), s(&out)],
            &dir,
            &keep,
            expect,
        );
    }
    let missing = dir.path("missing.wav");
    assert_fails(
        &["suppress", s(&missing), s(&out)],
        &dir,
        &keep,
        "no such file",
    );
    for (args, expect) in [
        (vec!["--mode", "loud"], "--mode"),
        (vec!["--delay-ms", "101"], "maximum"),
        (vec!["--delay-ms", "-5"], "not a valid number"),
        (vec!["--delay-ms", "abc"], "not a valid number"),
        (vec!["--delay-ms"], "needs a value"),
        (vec!["--volume", "3"], "unknown option"),
        (vec!["extra.wav"], "needs in.wav and out.wav"),
    ] {
        let mut a = vec!["suppress", s(&good), s(&out)];
        a.extend(args);
        assert_fails(&a, &dir, &keep, expect);
    }
    assert_fails(&["suppress", s(&good)], &dir, &keep, "needs in.wav");
    assert_fails(&[], &dir, &keep, "missing command");
    assert_fails(&["frobnicate"], &dir, &keep, "unknown command");
    // Output into a directory that does not exist: clean failure, nothing written.
    let nowhere = dir.path("no/such/dir/out.wav");
    assert_fails(
        &["suppress", s(&good), s(&nowhere)],
        &dir,
        &keep,
        "cannot write",
    );
    // gen errors.
    assert_fails(
        &["gen", s(&out), "--digits", "12x"],
        &dir,
        &keep,
        "not a dtmf key",
    );
    assert_fails(
        &["gen", s(&out), "--digits", "1", "--rate", "11025"],
        &dir,
        &keep,
        "not supported",
    );
    assert_fails(&["gen", s(&out)], &dir, &keep, "--digits");
    assert_fails(
        &["gen", s(&out), "--digits", "1", "--tone-ms", "-3"],
        &dir,
        &keep,
        "non-negative",
    );
}
