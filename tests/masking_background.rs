//! Masking over background (issue #11): DTMF keyed while the customer's side is NOT quiet.
//!
//! Corpus (generated at test time into the cargo target dir, never committed): tones of 20 to
//! 130 ms, -30 to -3 dBm0 per tone, each tone up to ±2 % off nominal, twist -4..+2 dB, laid over
//! - speech: three espeak-ng voices, and real recorded human voice prompts from Debian's
//!   `asterisk-core-sounds-en-wav` (Allison) and `asterisk-core-sounds-fr-wav` (June);
//! - music: Debian's `asterisk-moh-opsound-wav` (real music on hold) and `drascula-music`
//!   (game soundtrack, Ogg);
//! - noise: white and pink (seeded);
//!
//! at a given SNR = tone pair power / background power over the tone's own span (the tone's
//! level is set from the background there; where the background is quiet the tone stays at
//! -30 dBm0 and the real SNR is higher, which is reported).
//!
//! Judge: the tone-residual judge (`judges::residual`), NOT a detector: energy at each tone's
//! own frequencies in the output against the input over the tone's span, and the longest run of
//! samples of the span passed unaltered. Targets (issue #11): at SNR >= 0 dB no unmasked
//! fragment >= 5 ms and residual <= -40 dB; with `notch` on, down to SNR -10 dB, residual <=
//! -30 dB. Controls: an identity "masker" measures 0 dB on every tone (the judge sees a tone
//! that is there); the masker with the background test switched off leaks on this corpus (the
//! corpus reproduces the leak).
//!
//! Run `cargo test --release --test masking_background -- --nocapture` for the tables; they are
//! also written to `target/tmp/judges/masking-background-*.txt`.

mod judges;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use judges::heads::{lay_head, to_i16, Rng, COLS, ROWS};
use judges::residual::{measure, measure_differential, Residual, ToneSpan};
use secure_pay::core::audio::SampleRate;
use secure_pay::core::suppress::{Masker, MaskerConfig};

const RATE: u32 = 8000;
/// Peak of a 0 dBm0 sine (full scale = +3.14 dBm0).
const A0: f64 = judges::ZERO_DBM0_AMPLITUDE;
/// Seconds of each background used.
const SECONDS: usize = 60;

fn espeak(voice: &str, text: &str) -> PathBuf {
    let wav = judges::scratch_file("bg-espeak", "wav");
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "165", "-w"])
        .arg(&wav)
        .arg(text)
        .output()
        .unwrap_or_else(|e| panic!("cannot run espeak-ng: {e} (scripts/setup-deps installs it)"));
    assert!(out.status.success(), "espeak-ng -v {voice} failed");
    wav
}

/// Files of a Debian package's directory, sorted, read through sox and concatenated until
/// `SECONDS` (scaled to a speech/music level of about -20 dBm0 RMS, as a telephone line carries).
fn from_files(dir: &str, ext: &str, skip: usize) -> Vec<i16> {
    let mut files: Vec<PathBuf> = walk(Path::new(dir))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert!(
        !files.is_empty(),
        "no .{ext} under {dir}: install the corpus packages with scripts/setup-deps"
    );
    files.sort();
    let mut out = Vec::new();
    for f in files.iter().skip(skip) {
        out.extend(judges::load_with_sox(f, RATE));
        if out.len() >= SECONDS * RATE as usize {
            break;
        }
    }
    out.truncate(SECONDS * RATE as usize);
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn repeat_to(mut x: Vec<i16>, n: usize) -> Vec<i16> {
    assert!(!x.is_empty());
    let base = x.clone();
    while x.len() < n {
        x.extend_from_slice(&base);
    }
    x.truncate(n);
    x
}

/// Backgrounds: (name, class, samples at 8 kHz).
fn backgrounds() -> Vec<(String, &'static str, Vec<i16>)> {
    let n = SECONDS * RATE as usize;
    let text = "Yes, hello, I am calling about my account. The number should be on the letter \
                you sent me last week, hold on, let me find it. Sorry, the kids are watching \
                television in the other room. Can you hear me? It is quite loud here, we are \
                on the street. Right, so the reference is twelve, forty, ninety seven.";
    let mut bgs = Vec::new();
    for voice in ["en-us+m3", "en-gb+f4", "de+m1"] {
        let wav = espeak(voice, text);
        let x = judges::load_with_sox(&wav, RATE);
        let _ = std::fs::remove_file(&wav);
        bgs.push((format!("espeak {voice}"), "speech", repeat_to(x, n)));
    }
    bgs.push((
        "real speech en (Allison)".into(),
        "speech",
        from_files("/usr/share/asterisk/sounds/en_US_f_Allison", "wav", 40),
    ));
    bgs.push((
        "real speech fr (June)".into(),
        "speech",
        from_files("/usr/share/asterisk/sounds/fr_CA_f_June", "wav", 40),
    ));
    bgs.push((
        "real music (opsound moh)".into(),
        "music",
        from_files("/usr/share/asterisk/moh", "wav", 0),
    ));
    bgs.push((
        "real music (drascula)".into(),
        "music",
        from_files("/usr/share/scummvm/drascula/audio", "ogg", 3),
    ));
    let mut rng = Rng(0x5EED_0011);
    let white: Vec<i16> = (0..n).map(|_| (rng.gauss() * 2000.0) as i16).collect();
    // Pink-ish: white through a leaky integrator bank (Paul Kellet's economy filter).
    let (mut b0, mut b1, mut b2) = (0.0f64, 0.0f64, 0.0f64);
    let pink: Vec<i16> = (0..n)
        .map(|_| {
            let w = rng.gauss();
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            ((b0 + b1 + b2 + w * 0.1848) * 1500.0) as i16
        })
        .collect();
    bgs.push(("white noise".into(), "noise", white));
    bgs.push(("pink noise".into(), "noise", pink));
    bgs
}

/// One laid tone: its span and the SNR it really got.
#[derive(Clone, Copy)]
struct Laid {
    span: ToneSpan,
    snr_db: f64,
    ms: u32,
}

const DURS_MS: [u32; 8] = [20, 25, 30, 40, 50, 70, 100, 130];

/// Lays tones every ~300 ms over `bg` at `snr_db`. Returns the mix and the tones.
fn lay_tones(bg: &[i16], snr_db: f64, seed: u64) -> (Vec<i16>, Vec<Laid>) {
    let mut rng = Rng(seed | 1);
    let mut mix: Vec<f64> = bg.iter().map(|&v| v as f64).collect();
    let mut laid = Vec::new();
    let mut at = RATE as usize / 5;
    let mut i = 0usize;
    while at + RATE as usize / 5 < bg.len() {
        let ms = DURS_MS[i % DURS_MS.len()];
        i += 1;
        let n = (RATE * ms / 1000) as usize;
        let key = (rng.next_u64() % 16) as usize;
        let fl = ROWS[key / 4] * (1.0 + (rng.unit() * 4.0 - 2.0) / 100.0);
        let fh = COLS[key % 4] * (1.0 + (rng.unit() * 4.0 - 2.0) / 100.0);
        let twist_db = rng.unit() * 6.0 - 4.0;
        let p_bg: f64 = bg[at..at + n]
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        // Pair power = (al^2 + ah^2) / 2 with ah = al * 10^(twist/20).
        let g = 10f64.powf(twist_db / 20.0);
        let want = p_bg * 10f64.powf(snr_db / 10.0);
        let mut al = (2.0 * want / (1.0 + g * g)).sqrt();
        let lo = A0 * 10f64.powf(-30.0 / 20.0);
        let hi = A0 * 10f64.powf(-3.0 / 20.0);
        if al * g.max(1.0) > hi {
            // The background is too loud for this SNR within Q.24 levels: no tone here.
            at += RATE as usize * 3 / 10;
            continue;
        }
        al = al.max(lo);
        let ah = al * g;
        let ph = rng.unit() * std::f64::consts::TAU;
        for k in 0..n {
            let t = k as f64 / RATE as f64;
            mix[at + k] += al * (2.0 * std::f64::consts::PI * fl * t + ph).sin()
                + ah * (2.0 * std::f64::consts::PI * fh * t).sin();
        }
        let p_pair = (al * al + ah * ah) / 2.0;
        laid.push(Laid {
            span: ToneSpan {
                start: at,
                end: at + n,
                low_hz: ROWS[key / 4],
                high_hz: COLS[key % 4],
            },
            snr_db: 10.0 * (p_pair / p_bg.max(1e-9)).log10(),
            ms,
        });
        at += n + RATE as usize * (200 + (rng.next_u64() % 150) as usize) / 1000;
    }
    let mix = mix
        .into_iter()
        .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    (mix, laid)
}

/// The masker's output aligned with its input (20 ms frames).
fn masked(input: &[i16], cfg: &MaskerConfig) -> Vec<i16> {
    masked_by(input, cfg, &mut |_, _| {})
}

/// As [`masked`], with the masker armed from the first sample to the last.
fn masked_armed(input: &[i16], cfg: &MaskerConfig) -> Vec<i16> {
    let ms = (input.len() / 8 + 1000) as u32;
    masked_by(input, cfg, &mut |m, at| {
        if at.start == 0 {
            m.arm(ms);
        }
    })
}

/// As [`masked`], telling the masker of a key press (as the adapters do for an out-of-band
/// digit) before each frame that contains one of `presses` (input sample indices).
fn masked_with_presses(input: &[i16], cfg: &MaskerConfig, presses: &[usize]) -> Vec<i16> {
    masked_by(input, cfg, &mut |m, at| {
        if presses.iter().any(|p| at.contains(p)) {
            m.key_pressed();
        }
    })
}

/// Runs the masker over `input` in 20 ms frames, calling `before` with each frame's input
/// sample range first; returns the output aligned with the input.
fn masked_by(
    input: &[i16],
    cfg: &MaskerConfig,
    before: &mut dyn FnMut(&mut Masker, std::ops::Range<usize>),
) -> Vec<i16> {
    let mut m = Masker::new(SampleRate::Hz8000, cfg).expect("masker");
    let d = m.delay_samples();
    let mut out = input.to_vec();
    out.extend(std::iter::repeat(0).take(d));
    for (i, c) in out.chunks_mut(160).enumerate() {
        before(&mut m, i * 160..i * 160 + c.len());
        m.process(c, &mut |_| {});
    }
    out.drain(..d);
    out
}

#[derive(Default)]
struct Bucket {
    n: usize,
    fail: usize,
    worst_db: f64,
    worst_ms: f64,
    worst_what: String,
    hist: [usize; 5],
    /// Tones of at least `LONG_MS` that passed whole (residual above -1 dB).
    whole_long: usize,
}

/// A tone this long passing whole is the worst leak (issue #11: music on hold next to a row
/// frequency let a 130 ms tone through untouched).
const LONG_MS: u32 = 50;

impl Bucket {
    fn add(&mut self, r: &Residual, l: &Laid, what: &str, db_limit: f64) {
        if self.n == 0 {
            self.worst_db = -200.0;
        }
        self.n += 1;
        if r.db > db_limit || r.unmasked_ms >= 5.0 {
            self.fail += 1;
        }
        if l.ms >= LONG_MS && r.db > -1.0 {
            self.whole_long += 1;
        }
        // Histogram of the residual: <= -60, -60..-40, -40..-30, -30..-10, > -10 dB.
        let b = match r.db {
            d if d <= -60.0 => 0,
            d if d <= -40.0 => 1,
            d if d <= -30.0 => 2,
            d if d <= -10.0 => 3,
            _ => 4,
        };
        self.hist[b] += 1;
        if r.db > self.worst_db || r.unmasked_ms > self.worst_ms {
            self.worst_what = format!(
                "{what} @{:.3}s {} ms snr {:.1} dB: {:.1} dB, {:.1} ms unaltered",
                l.span.start as f64 / RATE as f64,
                l.ms,
                l.snr_db,
                r.db,
                r.unmasked_ms
            );
        }
        self.worst_db = self.worst_db.max(r.db);
        self.worst_ms = self.worst_ms.max(r.unmasked_ms);
    }
}

/// Runs `f` (input -> aligned output) over every background at every SNR; returns the report,
/// the failing count per SNR (residual above `db_limit` or a fragment >= 5 ms), the number of
/// tones and the tones of at least `LONG_MS` that passed whole.
fn run(
    label: &str,
    snrs: &[f64],
    db_limit: f64,
    bgs: &[(String, &'static str, Vec<i16>)],
    f: &dyn Fn(&[i16]) -> Vec<i16>,
    differential: bool,
) -> (String, Vec<usize>, usize, usize) {
    let mut rep = String::new();
    let _ = writeln!(
        rep,
        "{label}: residual (dB, output vs input at the tone's own frequencies) per background and SNR\n\
         {:<26} {:>5} {:>5} {:>5} {:>8} {:>8}  {:>23}  worst tone",
        "background", "SNR", "tones", "fail", "worst dB", "frag ms", "<=-60 -40 -30 -10 >-10"
    );
    let (mut fails, mut total, mut whole_long) = (vec![0; snrs.len()], 0, 0);
    for (bi, (name, _class, bg)) in bgs.iter().enumerate() {
        for (si, &snr) in snrs.iter().enumerate() {
            let (mix, laid) = lay_tones(bg, snr, 0x1234 + (bi * 31 + si) as u64);
            let out = f(&mix);
            let (tone, out_bg) = if differential {
                let tone: Vec<i16> = mix
                    .iter()
                    .zip(bg)
                    .map(|(&m, &b)| (m as i32 - b as i32).clamp(-32768, 32767) as i16)
                    .collect();
                (tone, f(bg))
            } else {
                (Vec::new(), Vec::new())
            };
            let mut b = Bucket::default();
            for l in &laid {
                let mut r = measure(&mix, &out, RATE, &l.span);
                if differential {
                    // Both measurements over-state the tone's own residual, each where the
                    // other is exact: the plain one counts the background next to the tone
                    // where the output passes (notched) audio, the differential one counts
                    // the background where the output was masked. Take the smaller.
                    r.db =
                        r.db.min(measure_differential(&tone, &out, &out_bg, RATE, &l.span));
                }
                b.add(&r, l, name, db_limit);
            }
            fails[si] += b.fail;
            total += b.n;
            whole_long += b.whole_long;
            let _ = writeln!(
                rep,
                "{name:<26} {snr:>5.0} {:>5} {:>5} {:>8.1} {:>8.1}  {:>5}{:>4}{:>4}{:>4}{:>6}  {}",
                b.n,
                b.fail,
                b.worst_db,
                b.worst_ms,
                b.hist[0],
                b.hist[1],
                b.hist[2],
                b.hist[3],
                b.hist[4],
                b.worst_what
            );
        }
    }
    for (snr, f) in snrs.iter().zip(&fails) {
        let _ = writeln!(rep, "{label}: SNR {snr:>3} dB: {f} tones over the limit");
    }
    let _ = writeln!(
        rep,
        "{label}: {} of {total} tones over the limit; {whole_long} tones of >= {LONG_MS} ms passed whole",
        fails.iter().sum::<usize>()
    );
    (rep, fails, total, whole_long)
}

fn save(name: &str, rep: &str) {
    print!("{rep}");
    let _ = std::fs::write(judges::scratch_dir().join(name), rep);
}

/// Share of 20 ms frames of `x` that the masker altered in `out` (aligned).
fn frames_altered(x: &[i16], out: &[i16]) -> f64 {
    let (mut n, mut alt) = (0usize, 0usize);
    for (a, b) in x.chunks(160).zip(out.chunks(160)) {
        n += 1;
        alt += usize::from(a != b);
    }
    alt as f64 / n.max(1) as f64
}

#[test]
fn masking_over_speech_music_and_noise() {
    let bgs = backgrounds();
    // The cost: 20 ms frames of each background ALONE (no tone) that the masker alters.
    let cfg = MaskerConfig::default();
    let mut rep = String::from("frames altered on the backgrounds alone (no DTMF):\n");
    let mut speech_worst = 0.0f64;
    for (name, class, bg) in &bgs {
        let f = frames_altered(bg, &masked(bg, &cfg));
        let _ = writeln!(rep, "  {name:<26} {class:<6} {:>6.2} %", 100.0 * f);
        if *class == "speech" {
            speech_worst = speech_worst.max(f);
        }
    }
    // The same while armed the whole time (as for 3 s after each captured digit: the customer
    // is keying): what arming costs on speech. Reported, not asserted.
    let _ = writeln!(
        rep,
        "the same, armed the whole time (after a captured digit):"
    );
    for (name, class, bg) in &bgs {
        let f = frames_altered(bg, &masked_armed(bg, &cfg));
        let _ = writeln!(rep, "  {name:<26} {class:<6} {:>6.2} %", 100.0 * f);
    }
    save("masking-background-cost.txt", &rep);
    // Control 1: the judge measures a tone that is there (identity: 0 dB, whole span unaltered).
    let (rep, fails, total, _) = run(
        "identity (control)",
        &[0.0],
        -1.0,
        &bgs,
        &|x| x.to_vec(),
        false,
    );
    save("masking-background-control.txt", &rep);
    assert_eq!(
        fails[0], total,
        "identity control: every tone must measure ~0 dB and unaltered\n{rep}"
    );
    assert!(total > 1000, "corpus too small: {total} tones");
    // Control 2: the masker without the background test leaks on this corpus (the issue's
    // leak, reproduced).
    let mut old = MaskerConfig::default();
    old.detector.mask_over_background = false;
    let (rep, old_fails, _, old_whole_long) = run(
        "masker without the background test (control)",
        &[0.0, 6.0],
        -40.0,
        &bgs,
        &|x| masked(x, &old),
        false,
    );
    save("masking-background-old.txt", &rep);
    let old_fails: usize = old_fails.iter().sum();
    assert!(
        old_fails > 0,
        "control: the corpus must reproduce the leak without the background test\n{rep}"
    );
    // ... including long tones passing whole (the judge sees that class).
    assert!(
        old_whole_long > 0,
        "control: without the background test some tones of >= {LONG_MS} ms must pass whole\n{rep}"
    );
    // The default masker. Issue #11's target is 0 tones over the limit from SNR 0 dB on; what
    // holds today (docs/masking.md): 0 from 6 dB on, at most 49 (of 1614) at 0 dB (armed after
    // the first captured digit), and no tone of >= 50 ms passes whole.
    let (rep, fails, _, whole_long) = run(
        "default masker",
        &[0.0, 6.0, 12.0, 20.0],
        -40.0,
        &bgs,
        &|x| masked(x, &cfg),
        false,
    );
    save("masking-background.txt", &rep);
    // What arming buys: the tones are laid every 0.3 s, so after the first captured digit the
    // masker is armed for nearly all of them. Unarmed, every tone is judged as the first of a
    // call is (docs/masking.md): at most 69 of 1614 at 0 dB, 0 at 6 dB.
    let mut unarmed = cfg.clone();
    unarmed.detector.mask_armed_ms = 0;
    let (rep_u, fails_u, _, _) = run(
        "default masker, never armed",
        &[0.0, 6.0],
        -40.0,
        &bgs,
        &|x| masked(x, &unarmed),
        false,
    );
    save("masking-background-unarmed.txt", &rep_u);
    assert!(
        fails_u[0] <= 69 && fails_u[1] == 0,
        "unarmed masker over background: {} tones over the limit at SNR 0 dB, {} at 6 dB\n{rep_u}",
        fails_u[0],
        fails_u[1]
    );
    assert_eq!(
        fails[1] + fails[2] + fails[3],
        0,
        "tones leaked over background at SNR >= 6 dB\n{rep}"
    );
    assert!(
        fails[0] <= 49,
        "masking over background: {} tones over the limit at SNR 0 dB\n{rep}",
        fails[0]
    );
    assert_eq!(
        whole_long, 0,
        "tones of >= {LONG_MS} ms passed whole over a background\n{rep}"
    );
    assert!(
        speech_worst <= 0.01,
        "masking alters more than 1 % of speech frames: {:.2} %",
        100.0 * speech_worst
    );
}

/// Power of `out` against `x` in dB (negative: what the notch removed).
fn power_ratio_db(x: &[i16], out: &[i16]) -> f64 {
    let p = |v: &[i16]| v.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
    10.0 * (p(out).max(1e-9) / p(x).max(1e-9)).log10()
}

#[test]
fn notch_option_over_background_down_to_minus_10_db() {
    let bgs = backgrounds();
    let cfg = MaskerConfig {
        notch: true,
        ..MaskerConfig::default()
    };
    // Its cost on what it passes: the backgrounds alone through the masker with the notch.
    let mut rep = String::from("notch on, backgrounds alone (no DTMF): power passed\n");
    for (name, class, bg) in &bgs {
        let out = masked(bg, &cfg);
        let _ = writeln!(
            rep,
            "  {name:<26} {class:<6} {:>6.1} dB",
            power_ratio_db(bg, &out)
        );
    }
    save("masking-background-notch-cost.txt", &rep);
    let snrs = [-10.0, -6.0, -3.0, 0.0, 6.0];
    let (rep, fails, total, _) = run(
        "masker with notch (differential residual)",
        &snrs,
        -30.0,
        &bgs,
        &|x| masked(x, &cfg),
        true,
    );
    save("masking-background-notch.txt", &rep);
    assert!(total > 1000, "corpus too small: {total} tones");
    // Control: the same tones without the notch.
    let (rep_off, fails_off, _, _) = run(
        "masker without notch (control)",
        &snrs,
        -30.0,
        &bgs,
        &|x| masked(x, &MaskerConfig::default()),
        true,
    );
    save("masking-background-notch-control.txt", &rep_off);
    assert!(
        fails_off[0] > 0,
        "control: without the notch some tones must pass at SNR -10 dB\n{rep_off}"
    );
    // Issue #11's target is 0 tones over -30 dB down to SNR -10 dB. What holds today
    // (docs/masking.md): 0 from SNR 0 dB on, the worst tone is about -23 dB (short tones
    // while the band-stop settles), under 2 % of the tones are over -30 dB, and at SNR <= -3
    // dB the notch leaves at most a tenth of what passes without it.
    for (i, snr) in snrs.iter().enumerate().take(3) {
        assert!(
            10 * fails[i] <= fails_off[i],
            "SNR {snr} dB: {} tones over -30 dB with the notch, {} without\n{rep}\n{rep_off}",
            fails[i],
            fails_off[i]
        );
    }
    let all: usize = fails.iter().sum();
    assert!(
        50 * all <= total,
        "{all} of {total} tones over -30 dB with the notch\n{rep}"
    );
    // Measured (docs/masking.md): 5, 6, 2, 0 and 0 tones over -30 dB at SNR -10, -6, -3, 0
    // and 6 dB, 13 of 8038 in all (112 with the 5 % band-stop before).
    for ((snr, &f), most) in snrs.iter().zip(&fails).zip([5, 6, 2, 0, 0]) {
        assert!(
            f <= most,
            "SNR {snr} dB: {f} tones over -30 dB with the notch (measured: {most})\n{rep}"
        );
    }
}

#[test]
fn notch_is_an_admin_key_that_a_call_may_only_turn_on() {
    use secure_pay::core::config::Config;
    let mut admin = Config::default();
    assert!(!admin.masker.notch, "default off");
    // Admin off: a call may turn it on.
    let call = admin.for_call("notch=on").expect("per call on");
    assert!(call.masker.notch);
    // Admin on: a call may not turn it off (hostile), may restate it.
    admin.set("notch", "yes").expect("admin key");
    assert!(admin.masker.notch);
    let e = admin
        .for_call("notch=off")
        .expect_err("per call off refused");
    assert!(e.to_string().contains("notch"), "{e}");
    assert!(admin.for_call("notch=on").expect("restate").masker.notch);
    assert!(admin.for_call("").expect("no options").masker.notch);
    // A bad value names the key.
    let e = Config::default()
        .set("notch", "maybe")
        .expect_err("bad value");
    assert!(e.to_string().contains("notch"), "{e}");
}

#[test]
fn independent_decoders_read_nothing_from_the_masked_mix() {
    // Next to the residual judge: multimon-ng and spandsp (default and permissive) on the same
    // corpus. Control: they read digits from the unmasked mix. From SNR 6 dB on they must read
    // nothing from the masker's output; at 0 dB at most 2 digits over the whole corpus (measured:
    // 1, multimon-ng over music on hold, of the 416 it reads from the input at 0 dB).
    let bgs = backgrounds();
    let cfg = MaskerConfig::default();
    let mut rep = String::from(
        "independent decoders, digits read (input -> masked output): multimon-ng, spandsp, spandsp permissive\n",
    );
    let mut leaks = Vec::new();
    let mut control = 0usize;
    let mut at_0 = 0usize;
    for (bi, (name, _, bg)) in bgs.iter().enumerate() {
        for (si, snr) in [0.0, 6.0, 12.0].into_iter().enumerate() {
            // The same mixes as `masking_over_speech_music_and_noise` (same seeds).
            let seed_si = [0usize, 1, 2][si];
            let (mix, _) = lay_tones(bg, snr, 0x1234 + (bi * 31 + seed_si) as u64);
            let out = masked(&mix, &cfg);
            let vin = judges::judge_all(&mix, RATE);
            let vout = judges::judge_all(&out, RATE);
            let _ = writeln!(
                rep,
                "  {name:<26} {snr:>4.0} dB: {:>4} {:>4} {:>4} -> {:>3} {:>3} {:>3}",
                vin.multimon.len(),
                vin.spandsp.len(),
                vin.spandsp_permissive.len(),
                vout.multimon.len(),
                vout.spandsp.len(),
                vout.spandsp_permissive.len()
            );
            control += vin.total();
            if snr == 0.0 {
                at_0 += vout.total();
            }
            if snr >= 6.0 && !vout.is_silent() {
                leaks.push(format!("{name}: {vout}"));
            }
        }
    }
    save("masking-background-decoders.txt", &rep);
    assert!(
        control > 1000,
        "control: the decoders must read the unmasked tones\n{rep}"
    );
    assert!(leaks.is_empty(), "{leaks:?}\n{rep}");
    assert!(
        at_0 <= 2,
        "{at_0} digits read from the masked output at SNR 0 dB\n{rep}"
    );
}

#[test]
fn output_over_background_does_not_depend_on_framing() {
    // The background test, its series and the watched pair must decide the same however the
    // stream is cut (frames of 1 sample up to 100 ms), notch on and off.
    let bgs = backgrounds();
    for (bi, (name, _, bg)) in bgs
        .iter()
        .enumerate()
        .filter(|(i, _)| [0, 3, 5, 7].contains(i))
    {
        let (mix, laid) = lay_tones(&bg[..8000 * 10], 0.0, 0x99 + bi as u64);
        assert!(!laid.is_empty());
        for notch in [false, true] {
            let cfg = MaskerConfig {
                notch,
                ..MaskerConfig::default()
            };
            let run_with = |frame: usize| {
                let mut m = Masker::new(SampleRate::Hz8000, &cfg).expect("masker");
                let mut out = mix.clone();
                out.extend(std::iter::repeat(0).take(m.delay_samples()));
                for c in out.chunks_mut(frame) {
                    m.process(c, &mut |_| {});
                }
                out
            };
            let want = run_with(160);
            // Control: the stream is not merely delayed (tones were masked).
            let d = Masker::new(SampleRate::Hz8000, &cfg)
                .expect("masker")
                .delay_samples();
            assert_ne!(want[d..], mix[..], "{name}: nothing masked at all?");
            for frame in [1, 7, 25, 37, 480, 800] {
                let got = run_with(frame);
                let diff = got.iter().zip(&want).position(|(a, b)| a != b);
                assert_eq!(
                    diff, None,
                    "{name} notch {notch} frame {frame}: first difference"
                );
            }
        }
    }
}

#[test]
fn an_out_of_band_key_press_arms_the_masker() {
    // Some phones and gateways let the first 20-30 ms of each tone through in the audio before
    // they send the key as an RFC 4733 event. Such heads are too short to capture, so only the
    // host's out-of-band digit tells the masker that the customer is keying. Corpus: white
    // noise (seeded, about -18 dBm0), one head of 20, 25 or 30 ms every 0.5 s at SNR 0 dB
    // (each tone up to ±2 % off, twist -4..+2 dB, as in `lay_tones`), the host reporting a key
    // press 0.3 s before each head. Judge: the tone-residual judge, as above.
    let mut rng = Rng(0x00B_A2D);
    let (block, heads) = (RATE as usize / 2, 300);
    let mut mix: Vec<f64> = (0..block * heads).map(|_| rng.gauss() * 2000.0).collect();
    let mut laid = Vec::new();
    let mut presses = Vec::new();
    for i in 0..heads {
        let at = i * block + block * 3 / 5;
        laid.push(lay_head(&mut mix, at, [20u32, 25, 30][i % 3], &mut rng));
        presses.push(at - RATE as usize * 3 / 10);
    }
    let mix = to_i16(mix);
    let over = |out: &[i16]| {
        laid.iter()
            .filter(|t| {
                let r = measure(&mix, out, RATE, t);
                r.db > -40.0 || r.unmasked_ms >= 5.0
            })
            .count()
    };
    let cfg = MaskerConfig::default();
    let plain = masked_with_presses(&mix, &cfg, &[]);
    let told = masked_with_presses(&mix, &cfg, &presses);
    let (n_plain, n_told) = (over(&plain), over(&told));
    // Control: the judge sees the heads in the input (an identity output is over on every one).
    assert_eq!(over(&mix), heads, "control: every head is in the input");
    println!("tone heads over the target: {n_plain} of {heads} without the key presses, {n_told} with them");
    assert!(
        n_plain >= 10,
        "control: the unarmed masker should miss some heads over 0 dB noise ({n_plain})"
    );
    assert!(
        n_told * 3 <= n_plain * 2,
        "armed by the host's key presses: {n_told} heads over the target, unarmed {n_plain}"
    );
    // Off means off: with arming disabled, or with the notch (never armed), a key press
    // changes nothing, sample for sample.
    for cfg in [
        MaskerConfig {
            detector: secure_pay::core::dtmf::DetectorParams {
                mask_armed_ms: 0,
                ..Default::default()
            },
            ..MaskerConfig::default()
        },
        MaskerConfig {
            notch: true,
            ..MaskerConfig::default()
        },
    ] {
        assert!(
            masked_with_presses(&mix, &cfg, &presses) == masked_with_presses(&mix, &cfg, &[]),
            "a key press changed the output with arming off ({cfg:?})"
        );
    }
}
