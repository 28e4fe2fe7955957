//! `secure-pay`: offline tools around the DSP core.
//!
//! ```text
//! secure-pay suppress IN.wav OUT.wav [--delay-ms N] [--mode silence|noise|beep]
//! secure-pay gen OUT.wav --digits KEYS [--rate HZ] [--level-dbm0 L] [--twist-db T]
//!                [--tone-ms MS] [--gap-ms MS] [--noise-snr-db SNR] [--seed N]
//! secure-pay --help
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use secure_pay::core::audio::SampleRate;
use secure_pay::core::suppress::{MaskMode, Masker, MaskerConfig};
use secure_pay::gen::{dtmf_sequence, DtmfSpec, Rng};
use secure_pay::wav;

const USAGE: &str = "\
secure-pay: offline DTMF masking tools (16-bit PCM mono WAV at 8, 16, 32 or 48 kHz)

USAGE:
  secure-pay suppress IN.wav OUT.wav [--delay-ms N] [--mode silence|noise|beep]
      Masks every DTMF tone in IN.wav and writes OUT.wav at the same rate. The look-ahead
      (--delay-ms, 0..100, default 40) shows as a leading delay: OUT is N ms longer than IN.
      Prints one JSON object per captured digit on stdout, times in IN's timeline:
        {\"digit\":\"5\",\"start_ms\":1234.5,\"end_ms\":1290.0}
      --mode: what replaces a tone: silence (default), noise (low-level comfort noise) or
      beep (one flat 1 kHz tone, the same for every key).

  secure-pay gen OUT.wav --digits KEYS [--rate HZ] [--level-dbm0 L] [--twist-db T]
                 [--tone-ms MS] [--gap-ms MS] [--noise-snr-db SNR] [--seed N]
      Writes a DTMF sample: KEYS from 0-9 * # A-D; rate 8000 (default), 16000, 32000 or
      48000; level per tone in dBm0 (default -10; 0 dBm0 = sine peak 22826); twist =
      high minus low tone level in dB (default 0); tone and gap length (default 80 ms);
      optional white noise at an SNR in dB; seed for the noise and tone phases (default 1).

  secure-pay --help
";

/// A failure: message for stderr and the exit code (2 = usage, 1 = input/output).
struct Fail(String, u8);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(format!("{} (see secure-pay --help)", msg.into()), 2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => Err(usage("missing command")),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some("suppress") => suppress(&args[1..]),
        Some("gen") => gen(&args[1..]),
        Some(other) => Err(usage(format!("unknown command '{other}'"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg, code)) => {
            eprintln!("secure-pay: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Positional arguments and `(flag, value)` pairs.
type Parsed<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Splits `args` into positionals and `--flag value` pairs (only the flags in `known`).
fn parse<'a>(args: &'a [String], known: &[&str]) -> Result<Parsed<'a>, Fail> {
    let mut pos = vec![];
    let mut flags = vec![];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (name, None),
            };
            if !known.contains(&name) {
                return Err(usage(format!("unknown option '--{name}'")));
            }
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .map(String::as_str)
                    .ok_or_else(|| usage(format!("option '--{name}' needs a value")))?,
            };
            flags.push((name, v));
        } else if a.starts_with('-') && a.len() > 1 && a.parse::<f64>().is_err() {
            return Err(usage(format!("unknown option '{a}'")));
        } else {
            pos.push(a.as_str());
        }
    }
    Ok((pos, flags))
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, Fail> {
    v.parse()
        .map_err(|_| usage(format!("--{name}: '{v}' is not a valid number")))
}

/// Writes through a temporary file in the same directory, renamed on success, so a failure
/// never leaves a partial output behind.
fn write_atomic(out: &Path, rate: u32, samples: &[i16]) -> Result<(), Fail> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| usage(format!("'{}' is not a file name", out.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = wav::write_file(&tmp, rate, samples).and_then(|()| Ok(std::fs::rename(&tmp, out)?));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Fail(format!("cannot write {}: {e}", out.display()), 1));
    }
    Ok(())
}

fn suppress(args: &[String]) -> Result<(), Fail> {
    let (pos, flags) = parse(args, &["delay-ms", "mode"])?;
    let [input, output] = pos[..] else {
        return Err(usage("suppress needs IN.wav and OUT.wav"));
    };
    let mut cfg = MaskerConfig::default();
    for (name, v) in flags {
        match name {
            "delay-ms" => {
                let ms: u32 = num(name, v)?;
                if ms > Masker::MAX_LOOKAHEAD_MS {
                    return Err(usage(format!(
                        "--delay-ms {ms} is over the maximum of {} ms",
                        Masker::MAX_LOOKAHEAD_MS
                    )));
                }
                cfg.lookahead_ms = ms;
            }
            _ => {
                cfg.mode = match v {
                    "silence" => MaskMode::Silence,
                    "noise" => MaskMode::Noise,
                    "beep" => MaskMode::Beep,
                    _ => {
                        return Err(usage(format!(
                            "--mode '{v}' is not one of silence, noise, beep"
                        )))
                    }
                }
            }
        }
    }
    let w = wav::read_file(input).map_err(|e| Fail(format!("{input}: {e}"), 1))?;
    let rate = w.rate().map_err(|e| Fail(format!("{input}: {e}"), 1))?;
    let mut masker = Masker::new(rate, &cfg).map_err(|e| usage(e.to_string()))?;
    let d = masker.delay_samples();
    let mut audio = w.samples;
    // Room for the look-ahead tail: the last `d` input samples come out during the flush.
    audio.resize(audio.len() + d, 0);
    let mut events = vec![];
    for frame in audio.chunks_mut(rate.samples_for_ms(20)) {
        masker.process(frame, &mut |e| events.push(e));
    }
    masker.flush(&mut |e| events.push(e));
    write_atomic(Path::new(output), rate.hz(), &audio)?;
    let per_ms = rate.hz() as f64 / 1000.0;
    let mut out = std::io::stdout().lock();
    for e in events {
        let line = writeln!(
            out,
            "{{\"digit\":\"{}\",\"start_ms\":{:.1},\"end_ms\":{:.1}}}",
            e.digit.as_char(),
            e.start_sample as f64 / per_ms,
            e.end_sample as f64 / per_ms
        );
        // A closed pipe (`| head`) ends the listing quietly; the WAV is already written.
        if line.is_err() {
            break;
        }
    }
    Ok(())
}

fn gen(args: &[String]) -> Result<(), Fail> {
    let (pos, flags) = parse(
        args,
        &[
            "digits",
            "rate",
            "level-dbm0",
            "twist-db",
            "tone-ms",
            "gap-ms",
            "noise-snr-db",
            "seed",
        ],
    )?;
    let [output] = pos[..] else {
        return Err(usage("gen needs exactly one OUT.wav"));
    };
    let mut spec = DtmfSpec {
        lead_ms: 500.0,
        tail_ms: 500.0,
        ..DtmfSpec::default()
    };
    let mut digits = None;
    let mut rate = 8000u32;
    let mut seed = 1u64;
    for (name, v) in flags {
        match name {
            "digits" => digits = Some(v),
            "rate" => rate = num(name, v)?,
            "level-dbm0" => spec.level_dbm0 = num(name, v)?,
            "twist-db" => spec.twist_db = num(name, v)?,
            "tone-ms" => spec.tone_ms = num(name, v)?,
            "gap-ms" => spec.gap_ms = num(name, v)?,
            "noise-snr-db" => spec.noise_snr_db = Some(num(name, v)?),
            _ => seed = num(name, v)?,
        }
    }
    let digits = digits.ok_or_else(|| usage("gen needs --digits"))?;
    if SampleRate::from_hz(rate).is_none() {
        return Err(usage(format!(
            "--rate {rate} is not supported; use 8000, 16000, 32000 or 48000"
        )));
    }
    let finite = [spec.level_dbm0, spec.twist_db, spec.tone_ms, spec.gap_ms];
    if finite.iter().any(|x| !x.is_finite()) || spec.tone_ms < 0.0 || spec.gap_ms < 0.0 {
        return Err(usage(
            "levels must be finite numbers and durations non-negative",
        ));
    }
    if spec.tone_ms > 60_000.0 || spec.gap_ms > 60_000.0 || digits.len() > 1000 {
        return Err(usage("at most 1000 keys and 60 s per tone or gap"));
    }
    let seq = dtmf_sequence(rate, digits, &spec, &mut Rng::new(seed))
        .map_err(|e| usage(format!("--digits: {e}")))?;
    write_atomic(Path::new(output), rate, &seq.samples)
}
