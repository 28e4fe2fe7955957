//! Payment hand-off: on submit, POST the captured card to a configured connector over HTTPS
//! (Twilio Generic Pay Connector request/response shape) on a worker thread, never on a media
//! thread. Safe Rust; no FFI.
//!
//! ```text
//! Session::take_submission() -> (Box<PaymentRequest>, SubmitTicket)
//!   --submit()--> slab (the boxed job) + bounded queue (a JobHandle only) --> worker thread:
//!   build JSON into a Zeroizing buffer -> clear card number + postal code
//!   -> HTTPS POST with Idempotency-Key = transaction_id (deadline = timeout_ms)
//!   -> body zeroized right after sending -> answer -> PaymentOutcome (success/error/unknown)
//!   -> sanitised (PANs, and the security code/expiry still held in the request) -> request wiped
//!   -> done(outcome)   (the adapter: Session::on_payment_outcome, or the SubmitTicket's event)
//! ```
//!
//! - [`Connector::submit`] never blocks: it refuses with [`SubmitError::QueueFull`] or
//!   [`SubmitError::ShutDown`] (the request is then dropped, which wipes it).
//! - Every job ends in exactly one `done` call, also when the connector is shut down before the
//!   job ran (`shutdown` error), while it waited for an answer (`unknown`), and when the URL/TLS
//!   configuration is wrong (`config-error`).
//! - `error` = certainly not charged; `unknown` = sent, no usable answer (see
//!   [`PaymentOutcome::Unknown`]). Outcome codes are in [`codes`]; the connector's own
//!   `error_code` is passed on as is (sanitised).
//! - Only outcome codes are logged, never a body, a message from the connector or a digit.
//!
//! Only `https://` URLs are accepted (plain http is refused, also on loopback), TLS 1.2+.

#![forbid(unsafe_code)]

mod body;
mod http;

use std::fmt;
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::payment::{ConnectorProfile, PaymentOutcome, PaymentRequest};

pub use body::sanitize_message;
pub use http::{parse_response_bytes, ResponseError, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};

/// `PaymentOutcome::Error::code` values produced by the connector itself. A connector's
/// own `error_code` (from a 2xx JSON body) is passed on unchanged instead.
pub mod codes {
    /// The connector answered with an HTTP status outside 2xx.
    pub const HTTP_ERROR: &str = "http-error";
    /// The answer is not a Generic Pay Connector response (not HTTP, not JSON, no id, too big).
    pub const BAD_RESPONSE: &str = "bad-response";
    /// Name resolution failed, or the TCP connection was refused / unreachable.
    pub const CONNECT_FAILED: &str = "connect-failed";
    /// TLS failed: untrusted or wrong server certificate, client certificate refused, alert.
    pub const TLS_ERROR: &str = "tls-error";
    /// No complete answer within the profile's `timeout_ms` (connect + TLS + response).
    pub const TIMEOUT: &str = "timeout";
    /// The connection broke while sending or receiving.
    pub const IO_ERROR: &str = "io-error";
    /// The profile is unusable: bad or plain-http URL, unreadable CA / certificate / key.
    pub const CONFIG_ERROR: &str = "config-error";
    /// The connector was shut down before this job could run.
    pub const SHUTDOWN: &str = "shutdown";
    /// The worker failed unexpectedly (a bug); the request was still wiped.
    pub const INTERNAL_ERROR: &str = "internal-error";
}

/// Checks a profile the way a hand-off would, without any network I/O: the URL (https only),
/// the CA file, and the client certificate/key pair. For adapters to call at load time so a
/// bad profile is reported then, not on the first payment. `Err` is a clear message.
pub fn validate_profile(profile: &ConnectorProfile) -> Result<(), String> {
    http::parse_url(&profile.url)?;
    http::tls_config(profile)?;
    Ok(())
}

/// Why [`Connector::submit`] refused a job. The request was dropped (and so wiped) and
/// `done` will not be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The bounded queue is full (the connector is slow or down); try again later.
    QueueFull,
    /// The connector is shutting down.
    ShutDown,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::QueueFull => f.write_str("payment connector queue is full"),
            SubmitError::ShutDown => f.write_str("payment connector is shut down"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Observer called by the worker with the request right after its card data was wiped and
/// just before it is dropped. For tests and audits: it can only see empty fields.
pub type WipeObserver = Arc<dyn Fn(&PaymentRequest) + Send + Sync>;

/// Tuning of a [`Connector`]; `Default` is what [`Connector::start`] uses.
#[derive(Clone)]
pub struct ConnectorOptions {
    /// Worker threads (at least 1). Default 2.
    pub workers: usize,
    /// Jobs waiting beyond the ones being sent (at least 1). Default 64.
    pub queue_capacity: usize,
    /// How long [`Connector::shutdown`] waits for in-flight hand-offs. Default 5 s.
    pub shutdown_wait: Duration,
    /// See [`WipeObserver`]. Default none.
    pub after_wipe: Option<WipeObserver>,
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            queue_capacity: 64,
            shutdown_wait: Duration::from_secs(5),
            after_wipe: None,
        }
    }
}

impl fmt::Debug for ConnectorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorOptions")
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("shutdown_wait", &self.shutdown_wait)
            .field("after_wipe", &self.after_wipe.is_some())
            .finish()
    }
}

struct Job {
    profile: ConnectorProfile,
    req: Box<PaymentRequest>,
    done: Box<dyn FnOnce(PaymentOutcome) + Send>,
}

/// What the job queue carries: an index into the connector's slab, never card data. The
/// crossbeam channel copies its items into ring slots that it does not wipe after a `recv`;
/// so the only thing those slots can ever retain is this number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobHandle(u32);

/// Queued jobs, owned by the connector. Each job is boxed once in [`Connector::submit`] (the
/// request itself arrives boxed from the session), and only the `Box` pointers move from then
/// on, so the digits stay in one heap place until the worker wipes them.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Box<Job>>>,
    free: Vec<usize>,
}

impl Slab {
    fn insert(&mut self, job: Box<Job>) -> Option<JobHandle> {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let h = u32::try_from(i).ok()?;
        self.slots[i] = Some(job);
        Some(JobHandle(h))
    }

    fn take(&mut self, h: JobHandle) -> Option<Box<Job>> {
        let i = h.0 as usize;
        let job = self.slots.get_mut(i)?.take()?;
        self.free.push(i);
        Some(job)
    }
}

/// State shared by the connector handle and its workers.
struct Shared {
    slab: Mutex<Slab>,
    stopping: AtomicBool,
    /// Per worker: a clone of the socket of the exchange in flight, so [`Connector::shutdown`]
    /// can break a wait for a slow answer (the outcome is then `unknown`, never lost).
    sockets: Vec<Mutex<Option<TcpStream>>>,
    /// Set (before the sockets are shut down) when shutdown breaks the exchanges in flight.
    aborting: AtomicBool,
    /// Jobs taken by a worker whose `done` has not returned yet.
    busy: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long [`Connector::shutdown`] waits for workers after breaking their connections.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Owns the worker threads. Dropping it without [`Connector::shutdown`] stops accepting jobs
/// and lets the workers finish in the background (queued jobs get a `shutdown` error).
pub struct Connector {
    tx: Option<Sender<JobHandle>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    shutdown_wait: Duration,
}

impl Connector {
    /// Starts the workers with [`ConnectorOptions::default`].
    pub fn start() -> Connector {
        Self::with_options(ConnectorOptions::default())
    }

    pub fn with_options(opts: ConnectorOptions) -> Connector {
        let n = opts.workers.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<JobHandle>(opts.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            slab: Mutex::new(Slab::default()),
            stopping: AtomicBool::new(false),
            sockets: (0..n).map(|_| Mutex::new(None)).collect(),
            aborting: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        });
        let mut workers = Vec::new();
        for i in 0..n {
            let rx = rx.clone();
            let shared = Arc::clone(&shared);
            let observer = opts.after_wipe.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("secure_pay-connector-{i}"))
                .spawn(move || worker(i, rx, shared, observer));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => log::error!("secure_pay connector: cannot start worker thread: {e}"),
            }
        }
        if workers.is_empty() {
            // No worker: refuse every submit rather than queueing jobs nobody runs.
            log::error!("secure_pay connector: no worker thread, payments will be refused");
            return Connector {
                tx: None,
                workers,
                shared,
                shutdown_wait: opts.shutdown_wait,
            };
        }
        Connector {
            tx: Some(tx),
            workers,
            shared,
            shutdown_wait: opts.shutdown_wait,
        }
    }

    /// Queues one hand-off. Never blocks. `done` is called exactly once, on a worker thread,
    /// with the outcome; on `Err` the request is dropped (wiped) and `done` is not called.
    /// Pass the `Box` from [`crate::core::capture::Session::take_submission`] to keep the
    /// digits in one place; a `PaymentRequest` by value is boxed here.
    pub fn submit(
        &self,
        profile: &ConnectorProfile,
        req: impl Into<Box<PaymentRequest>>,
        done: Box<dyn FnOnce(PaymentOutcome) + Send>,
    ) -> Result<(), SubmitError> {
        let req = req.into();
        let Some(tx) = &self.tx else {
            return Err(SubmitError::ShutDown);
        };
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::ShutDown);
        }
        let job = Box::new(Job {
            profile: profile.clone(),
            req,
            done,
        });
        let Some(h) = lock(&self.shared.slab).insert(job) else {
            return Err(SubmitError::QueueFull);
        };
        match tx.try_send(h) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Not queued: take it back (dropping it wipes the request).
                drop(lock(&self.shared.slab).take(h));
                match e {
                    TrySendError::Full(_) => {
                        log::warn!("secure_pay connector: queue full, payment refused");
                        Err(SubmitError::QueueFull)
                    }
                    TrySendError::Disconnected(_) => Err(SubmitError::ShutDown),
                }
            }
        }
    }

    /// Hand-offs taken by a worker whose outcome callback has not returned yet.
    pub fn in_flight(&self) -> usize {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Jobs held in the slab (queued, not yet taken by a worker). For tests and audits.
    pub fn queued(&self) -> usize {
        let slab = lock(&self.shared.slab);
        slab.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Stops accepting jobs, fails the queued ones with a `shutdown` error, waits up to
    /// `shutdown_wait` for in-flight hand-offs, then breaks the connections still waiting for
    /// an answer (their outcome is `unknown`, reported through `done` as always) and waits up
    /// to 2 s more. Returns the number of worker threads that are still running after that
    /// (0 normally: every worker was joined); those are left running (only a blocking DNS
    /// lookup or a stuck `done` callback can cause it). Idempotent.
    pub fn shutdown_bounded(&mut self) -> usize {
        self.stop();
        self.join_until(Instant::now() + self.shutdown_wait);
        if !self.workers.is_empty() {
            self.shared.aborting.store(true, Ordering::SeqCst);
            let mut broken = 0;
            for slot in &self.shared.sockets {
                if let Some(sock) = lock(slot).take() {
                    let _ = sock.shutdown(Shutdown::Both);
                    broken += 1;
                }
            }
            log::warn!(
                "secure_pay connector: {broken} hand-off(s) still waiting after {:?}: connection(s) \
                 closed, outcome reported as unknown",
                self.shutdown_wait
            );
            self.join_until(Instant::now() + ABORT_GRACE);
        }
        if !self.workers.is_empty() {
            log::error!(
                "secure_pay connector: {} worker thread(s) did not finish",
                self.workers.len()
            );
        }
        self.workers.len()
    }

    /// [`Connector::shutdown_bounded`] that consumes the connector; threads still running
    /// after the bounded wait are detached (the number is returned).
    pub fn shutdown(mut self) -> usize {
        self.shutdown_bounded()
    }

    fn join_until(&mut self, deadline: Instant) {
        loop {
            let (finished, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.workers)
                .into_iter()
                .partition(|h| h.is_finished());
            for h in finished {
                if h.join().is_err() {
                    log::error!("secure_pay connector: a worker thread panicked");
                }
            }
            self.workers = running;
            if self.workers.is_empty() || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.tx = None; // workers drain the queue, then see the channel closed
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(
    index: usize,
    rx: Receiver<JobHandle>,
    shared: Arc<Shared>,
    observer: Option<WipeObserver>,
) {
    while let Ok(h) = rx.recv() {
        let Some(job) = lock(&shared.slab).take(h) else {
            continue;
        };
        shared.busy.fetch_add(1, Ordering::AcqRel);
        // Only pointers move here: the request stays in its box.
        let Job { profile, req, done } = *job;
        let tx_id = req.transaction_id.clone();
        let outcome = if shared.stopping.load(Ordering::Acquire) {
            wipe_and_drop(req, observer.as_ref());
            PaymentOutcome::Error {
                code: codes::SHUTDOWN.into(),
                message: "payment connector shut down before the request was sent".into(),
            }
        } else {
            let obs = observer.as_ref();
            let slot = http::AbortSlot {
                socket: &shared.sockets[index],
                aborting: &shared.aborting,
            };
            let run = catch_unwind(AssertUnwindSafe(move || hand_off(&profile, req, obs, slot)));
            *lock(&shared.sockets[index]) = None;
            run.unwrap_or_else(|_| PaymentOutcome::Unknown {
                code: codes::INTERNAL_ERROR.into(),
                message:
                    "payment connector worker failed unexpectedly; the request may have been sent"
                        .into(),
            })
        };
        match &outcome {
            PaymentOutcome::Success { .. } => {
                log::info!("secure_pay connector: transaction {tx_id}: success")
            }
            PaymentOutcome::Error { code, .. } => {
                log::warn!("secure_pay connector: transaction {tx_id}: error code={code}")
            }
            PaymentOutcome::Unknown { code, .. } => {
                log::warn!("secure_pay connector: transaction {tx_id}: unknown code={code}")
            }
        }
        if catch_unwind(AssertUnwindSafe(move || done(outcome))).is_err() {
            log::error!("secure_pay connector: the outcome callback panicked");
        }
        shared.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Clears every card field of the request (SecretDigits zeroize their whole buffer), shows
/// the wiped request to the observer, and drops it.
fn wipe_and_drop(mut req: Box<PaymentRequest>, observer: Option<&WipeObserver>) {
    req.card_number.clear();
    req.security_code.clear();
    req.expiry_month.clear();
    req.expiry_year.clear();
    req.postal_code.clear();
    if let Some(obs) = observer {
        obs(&req);
    }
    drop(req);
}

/// One hand-off. The body buffer lives only until it is sent. The request's card number is
/// wiped as soon as the body is built; its security code, expiry and postal code stay (in the
/// same box) until the answer is read, so the sanitiser can mask an echo of them in the
/// processor's messages; then everything is wiped.
fn hand_off(
    profile: &ConnectorProfile,
    mut req: Box<PaymentRequest>,
    observer: Option<&WipeObserver>,
    slot: http::AbortSlot<'_>,
) -> PaymentOutcome {
    let method = req.method;
    let body = body::build(profile, &req);
    req.card_number.clear();
    let outcome = http::post(profile, method, &req.transaction_id, body, slot);
    let outcome = body::scrub_outcome(outcome, &req);
    wipe_and_drop(req, observer);
    outcome
}

/// The fuzz/property harness of the response parser, shared by `fuzz/` (target
/// `connector_http`) and `tests/connector_fuzz.rs`: the first byte picks the read size (so
/// every split point is exercised), the rest is the server's answer. Checks that a parsed
/// response is a final one (no `1xx`) within the size limit, and that the sanitiser, fed the
/// same bytes, stays within its length bound. A panic is a failure by itself.
pub fn fuzz_http_response(data: &[u8]) -> Result<(), String> {
    let (step, bytes) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s) % 64 + 1, rest),
        None => (1, data),
    };
    if let Ok((status, body)) = http::parse_response_bytes(bytes, step) {
        if !(200..600).contains(&status) {
            return Err(format!("accepted status {status}"));
        }
        if body.len() > 64 * 1024 {
            return Err(format!("accepted a {}-byte body", body.len()));
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let clean = sanitize_message(&text, 256, &[b"737", b"1228"]);
    if clean.chars().count() > 256 {
        return Err("sanitised message longer than its bound".into());
    }
    if clean.chars().any(char::is_control) {
        return Err("control character in a sanitised message".into());
    }
    Ok(())
}
