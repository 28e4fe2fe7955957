//! Talk-off on REAL recordings (issue #11): about 2.5 hours of human speech (three voices,
//! three languages) and music (music on hold, a game soundtrack) that ship in Debian packages,
//! built once by `scripts/talkoff-corpus` into a cache outside git. Besides the synthetic corpus
//! of `tests/talkoff.rs`, which the detector was tuned on; this one it never saw.
//!
//! Per corpus: false digits of OUR detector against spandsp `dtmf_rx` (default parameters, the
//! accuracy anchor), and the 20 ms frames our default masker alters. Asserts: ours <= spandsp on
//! every corpus, 0 on speech; at most 1 % of the speech frames altered by masking (reported
//! with and without the masker's background test). Control: both detectors
//! read a clean 16-key sequence (so "0 false digits" means something).
//!
//! `capture_over_real_backgrounds_at_least_spandsps`: about 6,000 keys per level laid over the
//! real corpora; asserts ours reads at least as many as spandsp (issue #11), with a control on
//! silence.
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

/// Longest common subsequence of the keyed and the read digits: the keys read right, in order
/// (a missed key or a false digit in between does not shift the rest).
fn keys_read(keyed: &str, read: &str) -> usize {
    let (a, b) = (keyed.as_bytes(), read.as_bytes());
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for &x in a {
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Issue #11: capture over a background at least spandsp's. Keys (60 ms, a seeded random
/// sequence, one every 0.5 s) laid over up to 10 minutes of each real corpus at -6 and -16 dBm0
/// per tone; both detectors read the same mixes. Asserts ours reads at least as many keys as
/// spandsp over all corpora at each level. Control: the same keys on silence are read whole by
/// both.
#[test]
fn capture_over_real_backgrounds_at_least_spandsps() {
    const KEYS: &[u8] = b"0123456789*#ABCD";
    let dir = corpus_dir();
    let mut report = String::from(
        "keys over real backgrounds (60 ms, one every 0.5 s): read right / keyed (extra digits)\n",
    );
    let mut problems = Vec::new();
    for level in [-6.0, -16.0] {
        let (mut n_all, mut o_all, mut s_all) = (0usize, 0usize, 0usize);
        for (name, _) in CORPORA {
            let audio = load(&dir.join(format!("{name}.raw")));
            let mut mix = audio[..(8000 * 600).min(audio.len())].to_vec();
            let mut silent = vec![0i16; mix.len()];
            let mut keyed = String::new();
            // Seeded by the corpus' name (FNV-1a): each corpus gets its own key sequence.
            let mut rng = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let mut at = 8000;
            while at + 8000 / 2 <= mix.len() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = KEYS[(rng % 16) as usize] as char;
                keyed.push(k);
                for (i, v) in judges::reference_tone(k, 8000, 60, level, 0.0)
                    .into_iter()
                    .enumerate()
                {
                    mix[at + i] = mix[at + i].saturating_add(v);
                    silent[at + i] = v;
                }
                at += 8000 / 2;
            }
            let (o, s) = (ours(&mix), judges::spandsp_8k(&mix, false));
            let (ro, rs) = (keys_read(&keyed, &o), keys_read(&keyed, &s));
            let _ = writeln!(
                report,
                "  {level:>4} dBm0 {name:<11} ours {ro:>4} / {} ({:>2})   spandsp {rs:>4} / {} ({:>2})",
                keyed.len(),
                o.len() - ro,
                keyed.len(),
                s.len() - rs
            );
            let (co, cs) = (ours(&silent), judges::spandsp_8k(&silent, false));
            if co != keyed || cs != keyed {
                problems.push(format!(
                    "control {name} {level} dBm0: on silence ours read {} and spandsp {} of {} keys",
                    keys_read(&keyed, &co),
                    keys_read(&keyed, &cs),
                    keyed.len()
                ));
            }
            n_all += keyed.len();
            o_all += ro;
            s_all += rs;
        }
        let _ = writeln!(
            report,
            "  {level:>4} dBm0 all         ours {o_all:>4} / {n_all} ({:.1} %)   spandsp {s_all:>4} / {n_all} ({:.1} %)",
            100.0 * o_all as f64 / n_all as f64,
            100.0 * s_all as f64 / n_all as f64
        );
        if o_all < s_all {
            problems.push(format!(
                "{level} dBm0: ours read {o_all} keys, spandsp {s_all} (of {n_all})"
            ));
        }
    }
    print!("{report}");
    let _ = std::fs::write(
        judges::scratch_dir().join("capture-over-real-backgrounds.txt"),
        &report,
    );
    assert!(problems.is_empty(), "{problems:?}\n{report}");
}
