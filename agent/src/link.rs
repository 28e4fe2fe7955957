//! What the AMI and ESL clients share: the reconnect loop with exponential backoff and the
//! PBX status it reports to the page, and the keepalive that notices a half-open connection.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// Liveness of one PBX connection: when bytes last arrived, and why the watchdog killed it.
pub(crate) struct Liveness {
    t0: Instant,
    last_ms: AtomicU64,
    alive: AtomicBool,
    dead: Mutex<Option<String>>,
}

impl Liveness {
    pub(crate) fn new() -> Arc<Liveness> {
        Arc::new(Liveness {
            t0: Instant::now(),
            last_ms: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            dead: Mutex::new(None),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.t0
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// The session is over (the watchdog stops).
    pub(crate) fn end(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    /// Why the watchdog declared the connection dead, if it did.
    pub(crate) fn dead_reason(&self) -> Option<String> {
        lock(&self.dead).clone()
    }
}

/// A reader that records every arrival of bytes in a [`Liveness`].
pub(crate) struct Touch<R> {
    pub(crate) inner: R,
    pub(crate) live: Arc<Liveness>,
}

impl<R: Read> Read for Touch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.live.touch();
        }
        Ok(n)
    }
}

/// Keepalive for a half-open TCP connection (the PBX host vanished without a FIN/RST): after
/// `every` without a byte from the PBX, `ping(timeout)` sends a request that must be answered
/// within `timeout`; if it is not (and still nothing else arrived), the connection is declared
/// dead and `kill` shuts the socket, so the reader ends and the reconnect loop reports it.
/// Detection takes at most `every + timeout` (+ 250 ms).
pub(crate) fn spawn_watchdog(
    name: &str,
    live: Arc<Liveness>,
    every: Duration,
    timeout: Duration,
    ping: impl Fn(Duration) -> Result<(), String> + Send + 'static,
    kill: impl FnOnce() + Send + 'static,
) {
    let what = name.to_string();
    let _ = thread::Builder::new()
        .name(format!("{name}-keepalive"))
        .spawn(move || {
            live.touch();
            while live.alive.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(250).min(every));
                if !live.alive.load(Ordering::SeqCst) || live.idle() < every {
                    continue;
                }
                log::trace!("secure-pay-agent: {what}: idle, sending a keepalive");
                if let Err(e) = ping(timeout) {
                    if !live.alive.load(Ordering::SeqCst) || live.idle() < every {
                        continue;
                    }
                    let reason = format!(
                        "no answer from the PBX to a keepalive within {} s ({e}): the connection \
                         is presumed dead (half-open); reconnecting",
                        (every + timeout).as_secs()
                    );
                    *lock(&live.dead) = Some(reason);
                    kill();
                    return;
                }
            }
        });
}
