//! The live-update streams (Server-Sent Events) of every open page, held by ONE writer thread
//! instead of a thread per page: sockets are non-blocking, each stream has a small outgoing
//! buffer, and the thread wakes on every state change (and at least every 250 ms) to send new
//! snapshots, keep-alives and the closing events. A client that stops reading is dropped once
//! its buffer passes [`MAX_PENDING`]; a client that went away is noticed by a zero-length read.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::limits::Slot;
use crate::link::lock;
use crate::state::{Access, Hub, Notifier, SeenVersion};
use crate::unix_now;

/// Bytes a stream may have waiting for a slow client before it is dropped (a few snapshots).
pub const MAX_PENDING: usize = 256 * 1024;
/// How long a closing stream may take to deliver its last bytes.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// One page's stream.
pub struct Stream {
    sock: TcpStream,
    /// The call key (`<node>~<call-id>` or the call id): the per-call cap counts by it.
    id: String,
    /// The call's node state and its id there.
    hub: Arc<Hub>,
    call: String,
    /// Session expiry (unix seconds).
    exp: u64,
    seen: SeenVersion,
    out: Vec<u8>,
    last_write: Instant,
    close_by: Option<Instant>,
    _slot: Slot,
}

impl Stream {
    /// A stream whose first bytes (`head`: HTTP head + first snapshot) are already prepared;
    /// `id` is the call key, `call` the call's id in `hub` (its node).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sock: TcpStream,
        id: &str,
        hub: Arc<Hub>,
        call: &str,
        exp: u64,
        seen: SeenVersion,
        head: Vec<u8>,
        slot: Slot,
    ) -> Stream {
        Stream {
            sock,
            id: id.to_string(),
            hub,
            call: call.to_string(),
            exp,
            seen,
            out: head,
            last_write: Instant::now(),
            close_by: None,
            _slot: slot,
        }
    }

    /// The socket back (a stream that was not adopted).
    pub fn into_socket(self) -> TcpStream {
        self.sock
    }

    fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn close_after(&mut self, last: &[u8]) {
        if self.close_by.is_none() {
            self.push(last);
            self.close_by = Some(Instant::now() + CLOSE_LINGER);
        }
    }

    /// Writes what the socket takes now. `false`: the stream is dead.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match (&self.sock).write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                    self.last_write = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        self.out.len() <= MAX_PENDING
    }

    /// Has the client gone away (end of stream or error on a non-blocking read), or sent
    /// anything? An EventSource sends nothing after its request: a client that does is not
    /// one, and reading what it sends would keep the one writer thread of every page busy.
    fn peer_gone(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match (&self.sock).read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => return true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

/// Timing of the streams.
#[derive(Clone, Copy, Debug)]
pub struct StreamTiming {
    pub keepalive: Duration,
    /// How long after the call's end a page may keep watching for a pending payment outcome.
    pub outcome_grace: Duration,
}

/// All open streams.
pub struct Streams {
    list: Mutex<Vec<Stream>>,
    max_per_call: usize,
}

impl Streams {
    pub fn new(max_per_call: usize) -> Streams {
        Streams {
            list: Mutex::new(Vec::new()),
            max_per_call,
        }
    }

    /// Adopts a stream (and sends what it can of its first bytes now), or gives it back when
    /// the call already has its maximum of streams.
    pub fn add(&self, mut s: Stream) -> Result<(), Box<Stream>> {
        let mut g = lock(&self.list);
        if g.iter().filter(|o| o.id == s.id).count() >= self.max_per_call {
            return Err(Box::new(s));
        }
        if s.sock.set_nonblocking(true).is_err() || !s.flush() {
            return Ok(()); // dead already: dropped
        }
        g.push(s);
        Ok(())
    }

    /// Open streams now.
    pub fn len(&self) -> usize {
        lock(&self.list).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open streams of one call.
    pub fn count_for(&self, id: &str) -> usize {
        lock(&self.list).iter().filter(|s| s.id == id).count()
    }

    /// The writer loop; returns (closing every stream) when `stop` is set.
    pub fn run(&self, notifier: &Notifier, stop: &AtomicBool, t: StreamTiming) {
        let mut epoch = notifier.epoch();
        while !stop.load(Ordering::SeqCst) {
            epoch = notifier.wait_epoch(epoch, Duration::from_millis(250));
            let now = Instant::now();
            let unix = unix_now();
            let mut g = lock(&self.list);
            g.retain_mut(|s| service(s, now, unix, t));
        }
        lock(&self.list).clear();
    }
}

/// One round for one stream; `false`: drop it.
fn service(s: &mut Stream, now: Instant, unix: u64, t: StreamTiming) -> bool {
    let hub = Arc::clone(&s.hub);
    if s.close_by.is_none() {
        if unix >= s.exp {
            s.close_after(b"event: expired\ndata: {}\n\n");
        } else {
            // Access first, then the snapshot. The hub marks a call ended and bumps its version
            // in one step, so a call seen ended here has its last snapshot (ended, outcome if
            // any) read below. The other order lost it when the hangup came between the two
            // reads: the page got `ended` without ever seeing the call end.
            let over = match hub.access(&s.call) {
                Access::Live => false,
                Access::Unknown => true,
                Access::Ended(at, pending) => !pending || now.duration_since(at) > t.outcome_grace,
            };
            if hub.version(&s.call) != Some(s.seen) {
                if let Some((json, v)) = hub.snapshot(&s.call) {
                    s.push(format!("event: snapshot\ndata: {json}\n\n").as_bytes());
                    s.seen = v;
                }
            }
            if over {
                // the last snapshot (call ended, outcome if any) went out just above
                s.close_after(b"event: ended\ndata: {}\n\n");
            } else if s.out.is_empty() && now.duration_since(s.last_write) >= t.keepalive {
                s.push(b": keep-alive\n\n");
            }
        }
    }
    if !s.flush() || s.peer_gone() {
        return false;
    }
    match s.close_by {
        Some(by) => !s.out.is_empty() && now < by,
        None => true,
    }
}
