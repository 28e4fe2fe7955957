//! Payment hand-off: on submit, POST the captured card to a configured connector over HTTPS
//! (Twilio Generic Pay Connector request/response shape) on a worker thread, never on a media
//! thread. Safe Rust; no FFI.
//!
//! ```text
//! Session::take_payment_request() --submit()--> bounded queue --> worker thread:
//!   build JSON into a Zeroizing buffer -> wipe the PaymentRequest's digits -> drop it
//!   -> HTTPS POST (deadline = timeout_ms) -> buffer zeroized right after sending
//!   -> PaymentOutcome -> done(outcome)   (the adapter feeds it to Session::on_payment_outcome)
//! ```
//!
//! - [`Connector::submit`] never blocks: it refuses with [`SubmitError::QueueFull`] or
//!   [`SubmitError::ShutDown`] (the request is then dropped, which wipes it).
//! - Every job ends in exactly one `done` call, also when the connector is shut down before the
//!   job ran (`shutdown` error) and when the URL/TLS configuration is wrong (`config-error`).
//! - Outcome error codes are in [`codes`]; the connector's own `error_code` is passed on as is.
//! - Only outcome codes are logged, never a body, a message from the connector or a digit.
//!
//! Only `https://` URLs are accepted (plain http is refused, also on loopback), TLS 1.2+.

#![forbid(unsafe_code)]

mod body;
mod http;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::payment::{ConnectorProfile, PaymentOutcome, PaymentRequest};

pub use http::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};

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
    req: PaymentRequest,
    done: Box<dyn FnOnce(PaymentOutcome) + Send>,
}

/// Owns the worker threads. Dropping it without [`Connector::shutdown`] stops accepting jobs
/// and lets the workers finish in the background (queued jobs get a `shutdown` error).
pub struct Connector {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    shutdown_wait: Duration,
}

impl Connector {
    /// Starts the workers with [`ConnectorOptions::default`].
    pub fn start() -> Connector {
        Self::with_options(ConnectorOptions::default())
    }

    pub fn with_options(opts: ConnectorOptions) -> Connector {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(opts.queue_capacity.max(1));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for i in 0..opts.workers.max(1) {
            let rx = rx.clone();
            let stopping = Arc::clone(&stopping);
            let observer = opts.after_wipe.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("secure_pay-connector-{i}"))
                .spawn(move || worker(rx, stopping, observer));
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
                stopping,
                shutdown_wait: opts.shutdown_wait,
            };
        }
        Connector {
            tx: Some(tx),
            workers,
            stopping,
            shutdown_wait: opts.shutdown_wait,
        }
    }

    /// Queues one hand-off. Never blocks. `done` is called exactly once, on a worker thread,
    /// with the outcome; on `Err` the request is dropped (wiped) and `done` is not called.
    pub fn submit(
        &self,
        profile: &ConnectorProfile,
        req: PaymentRequest,
        done: Box<dyn FnOnce(PaymentOutcome) + Send>,
    ) -> Result<(), SubmitError> {
        let Some(tx) = &self.tx else {
            return Err(SubmitError::ShutDown);
        };
        if self.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::ShutDown);
        }
        let job = Job {
            profile: profile.clone(),
            req,
            done,
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_job)) => {
                log::warn!("secure_pay connector: queue full, payment refused");
                Err(SubmitError::QueueFull)
            }
            Err(TrySendError::Disconnected(_job)) => Err(SubmitError::ShutDown),
        }
    }

    /// Stops accepting jobs, fails the queued ones with a `shutdown` error, and waits up to
    /// `shutdown_wait` for in-flight hand-offs (each is bounded by its own `timeout_ms`).
    /// Workers still busy after that are left to finish on their own (detached).
    pub fn shutdown(mut self) {
        self.stop();
        let deadline = Instant::now() + self.shutdown_wait;
        let mut workers = std::mem::take(&mut self.workers);
        while !workers.is_empty() && Instant::now() < deadline {
            let (finished, running): (Vec<_>, Vec<_>) =
                workers.into_iter().partition(|h| h.is_finished());
            for h in finished {
                if h.join().is_err() {
                    log::error!("secure_pay connector: a worker thread panicked");
                }
            }
            workers = running;
            if !workers.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !workers.is_empty() {
            log::warn!(
                "secure_pay connector: {} hand-off(s) still running after {:?}, detached",
                workers.len(),
                self.shutdown_wait
            );
        }
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.tx = None; // workers drain the queue, then see the channel closed
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(rx: Receiver<Job>, stopping: Arc<AtomicBool>, observer: Option<WipeObserver>) {
    while let Ok(job) = rx.recv() {
        let Job { profile, req, done } = job;
        let tx_id = req.transaction_id.clone();
        let outcome = if stopping.load(Ordering::Acquire) {
            wipe_and_drop(req, observer.as_ref());
            PaymentOutcome::Error {
                code: codes::SHUTDOWN.into(),
                message: "payment connector shut down before the request was sent".into(),
            }
        } else {
            let obs = observer.as_ref();
            let run = catch_unwind(AssertUnwindSafe(move || hand_off(&profile, req, obs)));
            run.unwrap_or_else(|_| PaymentOutcome::Error {
                code: codes::INTERNAL_ERROR.into(),
                message: "payment connector worker failed unexpectedly".into(),
            })
        };
        match &outcome {
            PaymentOutcome::Success { .. } => {
                log::info!("secure_pay connector: transaction {tx_id}: success")
            }
            PaymentOutcome::Error { code, .. } => {
                log::warn!("secure_pay connector: transaction {tx_id}: error code={code}")
            }
        }
        if catch_unwind(AssertUnwindSafe(move || done(outcome))).is_err() {
            log::error!("secure_pay connector: the outcome callback panicked");
        }
    }
}

/// Clears every card field of the request (SecretDigits zeroize their whole buffer), shows
/// the wiped request to the observer, and drops it.
fn wipe_and_drop(mut req: PaymentRequest, observer: Option<&WipeObserver>) {
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

/// One hand-off. The request lives only until its body is built; the body buffer only until
/// it is sent.
fn hand_off(
    profile: &ConnectorProfile,
    req: PaymentRequest,
    observer: Option<&WipeObserver>,
) -> PaymentOutcome {
    let method = req.method;
    let body = body::build(profile, &req);
    wipe_and_drop(req, observer);
    http::post(profile, method, body)
}
