//! Talk-off on REAL recordings (issue #11): about 2.5 hours of human speech (three voices,
//! three languages) and music (music on hold, a game soundtrack) that ship in Debian packages,
//! built once by `scripts/talkoff-corpus` into a cache outside git. Besides the synthetic corpus
//! of `tests/talkoff.rs`, which the detector was tuned on; this one it never saw.
//!
//! Per corpus: false digits of OUR detector against spandsp `dtmf_rx` (default parameters, the
//! accuracy anchor), and the 20 ms frames our default masker alters. Asserts: ours <= spandsp on
//! every corpus, 0 on speech; at most 1 % of the speech frames altered by masking (reported
//! with and without the masker's background test). Control: both detectors
//! read a clean 16-key sequence (so "0 false digits" means something); keys laid over each
//! corpus show the capture over background of both.
//!
//! `cargo test --release --test talkoff_real -- --nocapture` prints the table; it is also written
//! to `target/tmp/judges/talkoff-real-report.txt`.

mod judges;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use secure_pay::core::audio::SampleRate;
use secure_pay::core::dtmf::{Detector, DetectorParams};
use secure_pay::core::suppress::{Masker, MaskerConfig};

const CORPORA: [(&str, bool); 5] = [
    ("speech-en", true),
    ("speech-es", true),
    ("speech-fr", true),
    ("music-moh", false),
    ("music-game", false),
];

fn corpus_dir() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/talkoff-corpus");
    let out = Command::new(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed (install the corpus packages with scripts/setup-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn load(path: &PathBuf) -> Vec<i16> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    b.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Our detector's digits (20 ms chunks).
fn ours(audio: &[i16]) -> String {
    let mut det = Detector::new(SampleRate::Hz8000, &DetectorParams::default());
    let mut s = String::new();
    for c in audio.chunks(160) {
        det.process(c, &mut |e| s.push(e.digit.as_char()));
    }
    det.flush(&mut |e| s.push(e.digit.as_char()));
    s
}

/// Share of 20 ms frames the masker altered.
fn frames_altered(audio: &[i16], cfg: &MaskerConfig) -> f64 {
    let mut m = Masker::new(SampleRate::Hz8000, cfg).expect("masker");
    let d = m.delay_samples();
    let mut out = audio.to_vec();
    out.extend(std::iter::repeat(0).take(d));
    for c in out.chunks_mut(160) {
        m.process(c, &mut |_| {});
    }
    let (mut n, mut alt) = (0usize, 0usize);
    for (a, b) in audio.chunks(160).zip(out[d..].chunks(160)) {
        n += 1;
        alt += usize::from(a != b);
    }
    alt as f64 / n.max(1) as f64
}

#[test]
fn talkoff_on_real_speech_and_music() {
    const KEYS: &str = "123A456B789C*0#D";
    let dir = corpus_dir();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{:<11} {:>8} {:>5} {:>8} {:>9} {:>14}",
        "corpus", "minutes", "ours", "spandsp", "altered%", "without bg%"
    );
    let mut no_bg = MaskerConfig::default();
    no_bg.detector.mask_over_background = false;
    let mut problems = Vec::new();
    let mut minutes = 0.0;
    for (name, speech) in CORPORA {
        let audio = load(&dir.join(format!("{name}.raw")));
        let mins = audio.len() as f64 / 8000.0 / 60.0;
        minutes += mins;
        let o = ours(&audio);
        let sp = judges::spandsp_8k(&audio, false);
        let alt = frames_altered(&audio, &MaskerConfig::default());
        let alt_old = frames_altered(&audio, &no_bg);
        let _ = writeln!(
            report,
            "{name:<11} {mins:>8.1} {:>5} {:>8} {:>8.2}% {:>13.2}%  ours {o:?} spandsp {sp:?}",
            o.len(),
            sp.len(),
            100.0 * alt,
            100.0 * alt_old
        );
        if o.len() > sp.len() {
            problems.push(format!("{name}: ours {} > spandsp {}", o.len(), sp.len()));
        }
        if speech && !o.is_empty() {
            problems.push(format!("{name}: {} false digit(s) on speech", o.len()));
        }
        // Issue #11's target: masking alters at most 1 % of the speech frames.
        if speech && alt > 0.01 {
            problems.push(format!(
                "{name}: {:.2} % of speech frames altered ({:.2} % without the background test)",
                100.0 * alt,
                100.0 * alt_old
            ));
        }
        // Over-background capture (information): a sequence laid over this corpus's first
        // minute at -6 dBm0 per tone, 60 ms on, one key every 0.5 s.
        let mut ctl = audio[..(8000 * 60).min(audio.len())].to_vec();
        let mut at = 8000;
        for k in KEYS.chars() {
            for (i, v) in judges::reference_tone(k, 8000, 60, -6.0, 0.0)
                .into_iter()
                .enumerate()
            {
                ctl[at + i] = ctl[at + i].saturating_add(v);
            }
            at += 8000 / 2;
        }
        let (co, cs) = (ours(&ctl), judges::spandsp_8k(&ctl, false));
        let _ = writeln!(report, "    keys over it: ours {co:?} spandsp {cs:?}");
    }
    // Control: both detectors read a clean sequence (they are not blind).
    let mut clean = vec![0i16; 800];
    for k in KEYS.chars() {
        clean.extend(judges::reference_tone(k, 8000, 60, -10.0, 0.0));
        clean.extend(vec![0i16; 480]);
    }
    let (co, cs) = (ours(&clean), judges::spandsp_8k(&clean, false));
    let _ = writeln!(
        report,
        "control, clean sequence: ours {co:?} spandsp {cs:?}"
    );
    if co != KEYS || cs != KEYS {
        problems.push(format!("control: ours {co:?} spandsp {cs:?}"));
    }
    let _ = writeln!(report, "total {minutes:.1} minutes");
    print!("{report}");
    let _ = std::fs::write(
        judges::scratch_dir().join("talkoff-real-report.txt"),
        &report,
    );
    assert!(minutes >= 60.0, "corpus under an hour: {minutes:.1} min");
    assert!(problems.is_empty(), "{problems:?}\n{report}");
}
