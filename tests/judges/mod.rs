//! Independent DTMF judges for the leak, talk-off and benchmark suites.
//!
//! Nothing here uses secure_pay's own detector. The judges are:
//! - `multimon-ng -a DTMF` (Debian package `multimon-ng`), fed 22050 Hz raw PCM (it only takes that
//!   rate; other rates are resampled with `sox`);
//! - spandsp's `dtmf_rx` (Debian `libspandsp-dev` 0.0.6) driven by `tests/judges/spandsp_rx.c`, which
//!   is compiled with `cc ... -lspandsp` into the cargo target dir the first time it is needed, in
//!   two settings: spandsp defaults, and permissive (`dtmf_rx_parms(s, FALSE, 14, 14, -50)`: twist
//!   14 dB either way, threshold -50 dBm0). spandsp is 8 kHz only, so 16/32/48 kHz audio is
//!   resampled to 8 kHz with `sox` first.
//!
//! A missing tool is a test failure with a pointer to `scripts/setup-deps`, never a skip.
//! Scratch files live under the cargo target dir (`CARGO_TARGET_TMPDIR`), never in the repo.
#![allow(dead_code)]

pub mod heads;
pub mod residual;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Scratch directory for judge inputs/outputs and the compiled spandsp harness.
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("judges");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A unique scratch file name (per process, per call), so parallel tests never collide.
pub fn scratch_file(stem: &str, ext: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    scratch_dir().join(format!("{stem}-{}-{n}.{ext}", std::process::id()))
}

/// Removes the listed scratch files when dropped (also on panic).
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_raw(path: &Path, samples: &[i16]) {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read_raw(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (install the judges with scripts/setup-deps)")
    });
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn raw_args(cmd: &mut Command, rate: u32) {
    cmd.args([
        "-t",
        "raw",
        "-r",
        &rate.to_string(),
        "-e",
        "signed",
        "-b",
        "16",
        "-c",
        "1",
    ]);
}

/// Resamples 16-bit mono PCM with `sox` (no dither, so silence stays digital silence).
pub fn resample(samples: &[i16], from_hz: u32, to_hz: u32) -> Vec<i16> {
    if from_hz == to_hz {
        return samples.to_vec();
    }
    let input = scratch_file("rs-in", "raw");
    let output = scratch_file("rs-out", "raw");
    let _guard = Scratch(vec![input.clone(), output.clone()]);
    write_raw(&input, samples);
    let mut cmd = Command::new("sox");
    cmd.arg("-D");
    raw_args(&mut cmd, from_hz);
    cmd.arg(&input);
    raw_args(&mut cmd, to_hz);
    cmd.arg(&output);
    run(&mut cmd, "sox");
    read_raw(&output)
}

/// Reads any audio file sox understands (e.g. espeak-ng's WAV) as mono 16-bit PCM at `rate_hz`.
pub fn load_with_sox(path: &Path, rate_hz: u32) -> Vec<i16> {
    let output = scratch_file("load", "raw");
    let _guard = Scratch(vec![output.clone()]);
    let mut cmd = Command::new("sox");
    cmd.arg("-D").arg(path);
    raw_args(&mut cmd, rate_hz);
    cmd.arg(&output);
    run(&mut cmd, "sox");
    read_raw(&output)
}

/// `multimon-ng -a DTMF` on the audio; returns the decoded digits in order ("" if none).
pub fn multimon(samples: &[i16], rate_hz: u32) -> String {
    let audio = resample(samples, rate_hz, 22050);
    let input = scratch_file("mm", "raw");
    let _guard = Scratch(vec![input.clone()]);
    write_raw(&input, &audio);
    let out = run(
        Command::new("multimon-ng")
            .args(["-q", "-a", "DTMF", "-t", "raw"])
            .arg(&input),
        "multimon-ng",
    );
    parse_multimon(&out)
}

/// Extracts the digits from multimon-ng's `DTMF: x` lines (its output may lack the final newline
/// and carries its banner on stderr only).
pub fn parse_multimon(out: &str) -> String {
    out.split("DTMF: ")
        .skip(1)
        .filter_map(|rest| rest.chars().next())
        .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A' | 'B' | 'C' | 'D'))
        .collect()
}

/// Path of the compiled spandsp harness (built once per test process into the target dir).
pub fn spandsp_harness() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // the repository root (also from the agent crate's tests in agent/tests)
        let m = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = if m.join("build.rs").is_file() {
            m
        } else {
            m.parent().unwrap_or(m)
        };
        let src = root.join("tests/judges/spandsp_rx.c");
        let bin = scratch_dir().join("spandsp_rx");
        // Build to a private name, then rename: other test binaries may build concurrently.
        let tmp = scratch_file("spandsp_rx-build", "bin");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        run(
            Command::new(&cc)
                .args(["-O2", "-Wall", "-o"])
                .arg(&tmp)
                .arg(&src)
                .arg("-lspandsp"),
            "cc (spandsp harness; needs libspandsp-dev)",
        );
        std::fs::rename(&tmp, &bin).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
        bin
    })
}

/// spandsp `dtmf_rx` on the audio (resampled to 8 kHz when needed), 20 ms chunks.
/// `permissive`: twist 14/14 dB and threshold -50 dBm0 instead of spandsp's defaults.
pub fn spandsp(samples: &[i16], rate_hz: u32, permissive: bool) -> String {
    let audio = resample(samples, rate_hz, 8000);
    spandsp_8k(&audio, permissive)
}

/// spandsp on audio that is already at 8 kHz.
pub fn spandsp_8k(samples: &[i16], permissive: bool) -> String {
    let input = scratch_file("sp", "raw");
    let _guard = Scratch(vec![input.clone()]);
    write_raw(&input, samples);
    let mut cmd = Command::new(spandsp_harness());
    if permissive {
        cmd.arg("-p");
    }
    cmd.arg(&input);
    run(&mut cmd, "spandsp harness").trim().to_string()
}

/// What the three judges read from one piece of audio.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub multimon: String,
    pub spandsp: String,
    pub spandsp_permissive: String,
}

impl Verdict {
    /// True if no judge decoded any digit.
    pub fn is_silent(&self) -> bool {
        self.multimon.is_empty() && self.spandsp.is_empty() && self.spandsp_permissive.is_empty()
    }

    /// Total digits decoded over the three judges.
    pub fn total(&self) -> usize {
        self.multimon.len() + self.spandsp.len() + self.spandsp_permissive.len()
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "multimon-ng={:?} spandsp={:?} spandsp-permissive={:?}",
            self.multimon, self.spandsp, self.spandsp_permissive
        )
    }
}

/// Runs all three judges (resampling once for spandsp).
pub fn judge_all(samples: &[i16], rate_hz: u32) -> Verdict {
    let at8k = resample(samples, rate_hz, 8000);
    Verdict {
        multimon: multimon(samples, rate_hz),
        spandsp: spandsp_8k(&at8k, false),
        spandsp_permissive: spandsp_8k(&at8k, true),
    }
}

/// Peak amplitude of a 0 dBm0 sine in 16-bit PCM: full scale is +3.14 dBm0 (G.711 µ-law; the
/// convention spandsp uses), so 32768 * 10^(-3.14/20).
pub const ZERO_DBM0_AMPLITUDE: f64 = 22_827.0;

/// A minimal DTMF synthesiser that shares no code with `secure_pay::gen`, used only to show the
/// judges themselves work (their own control). Level is per tone in dBm0 (see
/// [`ZERO_DBM0_AMPLITUDE`]); `twist_db` = high - low.
pub fn reference_tone(
    digit: char,
    rate_hz: u32,
    ms: u32,
    low_dbm0: f64,
    twist_db: f64,
) -> Vec<i16> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: &str = "123A456B789C*0#D";
    let i = KEYS
        .find(digit)
        .unwrap_or_else(|| panic!("not a DTMF key: {digit}"));
    let (fl, fh) = (ROWS[i / 4], COLS[i % 4]);
    let a_low = ZERO_DBM0_AMPLITUDE * 10f64.powf(low_dbm0 / 20.0);
    let a_high = a_low * 10f64.powf(twist_db / 20.0);
    let n = (rate_hz as u64 * ms as u64 / 1000) as usize;
    let w = 2.0 * std::f64::consts::PI / rate_hz as f64;
    (0..n)
        .map(|k| {
            let t = k as f64 * w;
            (a_low * (fl * t).sin() + a_high * (fh * t).sin()).round() as i16
        })
        .collect()
}

/// Goertzel power of `freq` over `x` (normalised by length^2), for the leaked-time meter.
fn goertzel_power(x: &[i16], rate_hz: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate_hz as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    p / (x.len() as f64 * x.len() as f64)
}

/// Residual-energy "leaked ms" meter (dtmf-standards.md §5): slides a 10 ms window (5 ms hop)
/// over the audio and counts the milliseconds where some DTMF row AND some column tone are both
/// above `floor_dbm0` and together carry at least half of the window's energy. It knows the true
/// DTMF frequencies, so it also catches fragments too short for a decoder.
pub fn leaked_ms(samples: &[i16], rate_hz: u32, floor_dbm0: f64) -> f64 {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let win = (rate_hz / 100) as usize;
    let hop = win / 2;
    // Power of a sine of amplitude A over a window, as goertzel_power returns it: A^2/4.
    let a0 = ZERO_DBM0_AMPLITUDE * 10f64.powf(floor_dbm0 / 20.0);
    let floor = a0 * a0 / 4.0;
    let mut leaked = 0usize;
    let mut start = 0usize;
    while start + win <= samples.len() {
        let x = &samples[start..start + win];
        let energy: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / win as f64;
        let best = |fs: &[f64; 4]| {
            fs.iter()
                .map(|&f| goertzel_power(x, rate_hz, f))
                .fold(0.0f64, f64::max)
        };
        let (r, c) = (best(&ROWS), best(&COLS));
        // A sine of amplitude A has mean power A^2/2 = 2 * goertzel_power.
        if r >= floor && c >= floor && 2.0 * (r + c) >= 0.5 * energy {
            leaked += hop;
        }
        start += hop;
    }
    leaked as f64 * 1000.0 / rate_hz as f64
}
