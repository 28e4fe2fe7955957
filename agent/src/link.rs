//! What the AMI and ESL clients share: the reconnect loop with exponential backoff and the
//! PBX status it reports to the page, and the keepalive that notices a half-open connection.

use std::io::{BufReader, Read};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
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

/// One TCP connection to a PBX: the socket, a buffered reader that records every arrival of
/// bytes, and that liveness. Dropping it ends the keepalive watchdog of the session.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) reader: BufReader<Touch<TcpStream>>,
    pub(crate) live: Arc<Liveness>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.live.end();
    }
}

/// Connects to `addr` (`host:port`) within 3 s, with a 10 s read timeout for the login (the
/// caller lifts it once logged in). Errors are `(false, reason)`: never logged in.
pub(crate) fn connect(addr: &str) -> Result<Conn, (bool, String)> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| (false, format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| (false, format!("cannot resolve {addr}")))?;
    let stream = TcpStream::connect_timeout(&sa, Duration::from_secs(3))
        .map_err(|e| (false, format!("cannot connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| (false, e.to_string()))?;
    let live = Liveness::new();
    let reader = BufReader::new(Touch {
        inner: stream.try_clone().map_err(|e| (false, e.to_string()))?,
        live: Arc::clone(&live),
    });
    Ok(Conn {
        stream,
        reader,
        live,
    })
}

impl Conn {
    /// Logged in: no read timeout any more (events may be rare), a bounded write (a write to a
    /// dead peer must not hold the writer lock forever), and the watchdog that pings after
    /// `every` idle and shuts the socket when `ping` fails (see [`spawn_watchdog`]). Returns a
    /// second handle on the socket, for the client's writer.
    pub(crate) fn logged_in(
        &self,
        name: &str,
        write_timeout: Duration,
        (every, timeout): (Duration, Duration),
        ping: impl Fn(Duration) -> Result<(), String> + Send + 'static,
    ) -> Result<TcpStream, (bool, String)> {
        let e = |e: std::io::Error| (true, e.to_string());
        self.stream.set_read_timeout(None).map_err(e)?;
        let _ = self.stream.set_write_timeout(Some(write_timeout));
        let sock = self.stream.try_clone().map_err(e)?;
        spawn_watchdog(
            name,
            Arc::clone(&self.live),
            every,
            timeout,
            ping,
            move || {
                let _ = sock.shutdown(Shutdown::Both);
            },
        );
        self.stream.try_clone().map_err(e)
    }

    /// Runs `resync` (the first thing after a login: which calls still exist and their secure
    /// state) on its own thread. If it fails the connection is unusable: the calls the service
    /// shows may be stale while the link would be reported up. It is then ended from that
    /// thread: the reader stops, the PBX is reported down with the reason (as a failed login,
    /// so the reconnects back off) and the next login resyncs again.
    pub(crate) fn spawn_resync(
        &self,
        name: &str,
        resync: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<(), (bool, String)> {
        let sock = self.stream.try_clone().map_err(|e| (true, e.to_string()))?;
        let live = Arc::clone(&self.live);
        let _ = thread::Builder::new()
            .name(format!("{name}-resync"))
            .spawn(move || {
                if let Err(e) = resync() {
                    live.end_with(false, format!("resync failed ({e}); reconnecting"));
                    let _ = sock.shutdown(Shutdown::Both);
                }
            });
        Ok(())
    }

    /// How a read that ended the session is reported: the watchdog's verdict first, then a
    /// clean end (`Ok`: closed by the PBX, or we are stopping) or the error.
    pub(crate) fn ended<T>(
        &self,
        got: &std::io::Result<Option<T>>,
        stop: &AtomicBool,
    ) -> Option<Result<(), (bool, String)>> {
        if let Some(verdict) = self.live.verdict() {
            return Some(Err(verdict));
        }
        match got {
            Ok(Some(_)) => None,
            Ok(None) => Some(Ok(())),
            Err(_) if stop.load(Ordering::SeqCst) => Some(Ok(())),
            Err(e) => Some(Err((true, format!("connection lost: {e}")))),
        }
    }
}

/// Reports the PBX link up after a login; `ever` counts reconnects after the first.
pub(crate) fn mark_connected(hub: &Hub, ever: &mut bool) {
    let was = std::mem::replace(ever, true);
    hub.set_pbx(|p| {
        p.connected = true;
        p.attempts = 0;
        p.last_error = None;
        if was {
            p.reconnects = p.reconnects.saturating_add(1);
        }
    });
}

/// Liveness of one PBX connection: when bytes last arrived, and why the watchdog killed it.
pub(crate) struct Liveness {
    t0: Instant,
    last_ms: AtomicU64,
    alive: AtomicBool,
    /// Why the connection was declared dead, as the session reports it: `(logged_in, reason)`
    /// (the watchdog: `true`, a half-open link; a failed resync: `false`, so the reconnects
    /// back off as after a failed login). The first verdict stays.
    dead: Mutex<Option<(bool, String)>>,
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

    /// Why the connection was declared dead, if it was: `(logged_in, reason)`.
    pub(crate) fn verdict(&self) -> Option<(bool, String)> {
        lock(&self.dead).clone()
    }

    /// Declares the connection dead (the first verdict stays).
    fn end_with(&self, logged_in: bool, reason: String) {
        lock(&self.dead).get_or_insert((logged_in, reason));
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
                    live.end_with(true, reason);
                    kill();
                    return;
                }
            }
        });
}
