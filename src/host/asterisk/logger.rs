//! `log::Log` implementation writing to Asterisk's logger through the shim (`ast_log` with a
//! `"%s"` format: the message is never a format string). Messages are formatted into a fixed
//! stack buffer (no allocation) and truncated at 511 bytes. Nothing in this crate logs a
//! captured digit; the capture engine never hands one out except to the payment connector.

use std::ffi::c_int;
use std::fmt::Write;

use crate::ffi::asterisk as ffi;

struct AstLogger;

static LOGGER: AstLogger = AstLogger;

/// Installs the logger (a second install after a reload is fine: the first one stays).
pub fn install() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

struct StackBuf {
    buf: [u8; 512],
    len: usize,
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for &b in s.as_bytes() {
            // keep one byte for the NUL; drop interior NULs
            if self.len + 1 >= self.buf.len() {
                break;
            }
            if b != 0 {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

impl log::Log for AstLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            log::Level::Error => ffi::SP_AST_LOG_ERROR,
            log::Level::Warn => ffi::SP_AST_LOG_WARNING,
            log::Level::Info => ffi::SP_AST_LOG_NOTICE,
            _ => ffi::SP_AST_LOG_DEBUG,
        } as c_int;
        let mut b = StackBuf {
            buf: [0; 512],
            len: 0,
        };
        let _ = write!(b, "{}", r.args());
        b.buf[b.len] = 0;
        // SAFETY: `b.buf` is NUL-terminated (len < 512) and lives across the call; ast_log is
        // thread-safe and the shim passes it as a "%s" argument.
        unsafe { ffi::sp_ast_log(level, b.buf.as_ptr().cast()) };
    }

    fn flush(&self) {}
}
