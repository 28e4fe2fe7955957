//! What the AMI and ESL clients share: the reconnect loop with exponential backoff and the
//! PBX status it reports to the page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::state::Hub;

/// Locks `m`; a panic while it was held leaves plain data behind, so keep using it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `session` (one connection: connect, log in, read until it ends) until `stop` is set.
/// `session` returns `Ok` when the PBX closed the connection after a login, or `Err((logged_in,
/// reason))`. After each session the PBX is reported down with the reason (`closed` for `Ok`),
/// `after` drops the connection's leftovers, and the next attempt waits `min`, doubling up to
/// `max`; a session that got past the login starts the backoff again from `min`.
pub(crate) fn keep_connected(
    what: &str,
    stop: &AtomicBool,
    (min, max): (Duration, Duration),
    hub: &Hub,
    closed: &str,
    mut session: impl FnMut() -> Result<(), (bool, String)>,
    mut after: impl FnMut(),
) {
    let mut backoff = min;
    while !stop.load(Ordering::SeqCst) {
        let (logged_in, reason) = match session() {
            Ok(()) => (true, closed.to_string()),
            Err(e) => e,
        };
        if logged_in {
            backoff = min;
        }
        log::warn!("secure-pay-agent: {what}: {reason}");
        hub.set_pbx(|p| {
            p.connected = false;
            if !logged_in {
                p.attempts = p.attempts.saturating_add(1);
            }
            p.last_error = Some(reason);
        });
        after();
        let end = Instant::now() + backoff;
        while !stop.load(Ordering::SeqCst) && Instant::now() < end {
            thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
        backoff = (backoff * 2).min(max);
    }
}
