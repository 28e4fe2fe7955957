//! The service's logger: the `log` crate's records to stderr, one line each, with a level
//! filter (`secure-pay-agent serve --log-level`, default `info`).
//!
//! Nothing the service logs carries event values or request queries (card data only ever
//! exists masked in events; link signatures only in queries). As a second line of defence every
//! line is scrubbed: any run of 12 or more digits (single spaces or dashes between them allowed,
//! the way card numbers are written) becomes `[redacted]`, and control characters are escaped
//! so a logged value cannot forge lines.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;
/// One JSON object per line (`--log-format json`) instead of text.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let line = if JSON.load(std::sync::atomic::Ordering::Relaxed) {
            json_line(now, r.level(), &r.args().to_string())
        } else {
            format!(
                "{}.{:03} {:<5} {}\n",
                now.as_secs(),
                now.subsec_millis(),
                r.level(),
                scrub(&r.args().to_string())
            )
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger with `level` (once per process; later calls only change the level).
pub fn init(level: LevelFilter) {
    init_with(level, false);
}

/// [`init`], with one JSON object per line when `json` (structured logs for a collector):
/// `{"ts":<unix seconds, ms precision>,"level":"INFO","msg":"..."}`, the message scrubbed the
/// same way as the text lines.
pub fn init_with(level: LevelFilter, json: bool) {
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// One structured log line.
pub fn json_line(now: std::time::Duration, level: log::Level, msg: &str) -> String {
    let mut line = serde_json::json!({
        "ts": now.as_millis() as f64 / 1000.0,
        "level": level.as_str(),
        "msg": scrub(msg),
    })
    .to_string();
    line.push('\n');
    line
}

/// Parses `error|warn|info|debug|trace|off`.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse::<LevelFilter>()
        .map_err(|_| format!("log level {s:?}: give off, error, warn, info, debug or trace"))
}

/// Shortest digit run (separators not counted) that is redacted.
pub const REDACT_DIGITS: usize = 12;

/// The line as logged: digit runs of [`REDACT_DIGITS`] or more (allowing single ' ' or '-'
/// between digits) replaced, control characters escaped.
pub fn scrub(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            // extend over digits with single separators between them
            let mut j = i;
            let mut digits = 0;
            let mut end = i;
            while j < chars.len() {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if matches!(chars[j], ' ' | '-')
                    && j + 1 < chars.len()
                    && chars[j + 1].is_ascii_digit()
                {
                    j += 1;
                } else {
                    break;
                }
            }
            if digits >= REDACT_DIGITS {
                out.push_str("[redacted]");
            } else {
                out.extend(&chars[i..end]);
            }
            i = end;
            continue;
        }
        let c = chars[i];
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_like_runs_are_redacted_ids_are_not() {
        assert_eq!(scrub("pan 4242424242424242 x"), "pan [redacted] x");
        assert_eq!(scrub("4242 4242 4242 4242"), "[redacted]");
        assert_eq!(scrub("4242-4242-4242-4242."), "[redacted].");
        assert_eq!(scrub("call 1700000000.12 ok"), "call 1700000000.12 ok");
        assert_eq!(scrub("12345678901"), "12345678901");
        assert_eq!(scrub("123456789012"), "[redacted]");
        assert_eq!(scrub("a\nb\r\u{1b}"), "a\\nb\\r\\u{1b}");
        assert_eq!(scrub("127.0.0.1:8090 4 2"), "127.0.0.1:8090 4 2");
        assert_eq!(parse_level("TRACE"), Ok(LevelFilter::Trace));
        assert!(parse_level("loud").is_err());
        let j = json_line(
            std::time::Duration::from_millis(1_700_000_000_123),
            log::Level::Warn,
            "card 4242424242424242\nforged",
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["msg"], "card [redacted]\\nforged");
        assert!(!j.contains("4242"), "{j}");
    }
}
