//! Plain data exchanged between the capture engine and the payment connector
//! ([`crate::connector`]): the request built on submit, the outcome that becomes the `submit`
//! event, and a connector profile from the configuration. No I/O here.
//!
//! Sensitive fields are [`SecretDigits`] (zeroized on drop, no Debug). A `PaymentRequest` is
//! moved into the connector worker and dropped (wiped) right after the hand-off.

use crate::core::secret::SecretDigits;

/// Twilio Generic Pay Connector `method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PaymentMethod {
    #[default]
    Charge,
    Tokenize,
}

/// Everything the connector needs for one hand-off. No `Debug`, no `Clone`.
pub struct PaymentRequest {
    pub method: PaymentMethod,
    /// Our id for this payment, sent as `transaction_id` and as the `Idempotency-Key` header.
    /// Stable for one captured card: a retry of the same data sends the same id (the
    /// processor answers it once), a re-entered field gives a new one.
    pub transaction_id: String,
    pub card_number: SecretDigits,
    pub security_code: SecretDigits,
    /// `MM` as captured.
    pub expiry_month: SecretDigits,
    /// `YY` as captured (the connector sends the 4-digit year).
    pub expiry_year: SecretDigits,
    pub postal_code: SecretDigits,
    /// Amount in minor units (cents), if known.
    pub amount_minor: Option<u64>,
    pub currency_code: String,
    pub description: String,
    /// `reusable` or `one-time` (tokenize only).
    pub token_type: String,
    /// Extra key/values sent as `parameters` (never card data).
    pub parameters: Vec<(String, String)>,
}

/// What came back from the connector (or why nothing did). Masked-safe: no card data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    Success {
        charge_id: Option<String>,
        token_id: Option<String>,
    },
    /// Certainly not charged: refused before the request was sent (connect, TLS, config,
    /// queue), or the processor answered and declined it (`error_code`, HTTP 4xx).
    Error { code: String, message: String },
    /// The request (with the card) was sent but no usable answer came back (timeout, broken
    /// connection, truncated or unreadable answer, HTTP 5xx/409): the payment may or may not
    /// have gone through. Never reported as a decline; a retry of the same card reuses the
    /// same idempotency key, so the processor cannot charge twice.
    Unknown { code: String, message: String },
}

impl PaymentOutcome {
    /// `success`, `error` or `unknown` (the `SecurePay-Result` header).
    pub fn class(&self) -> &'static str {
        match self {
            PaymentOutcome::Success { .. } => "success",
            PaymentOutcome::Error { .. } => "error",
            PaymentOutcome::Unknown { .. } => "unknown",
        }
    }
}

/// A named connector from the configuration.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConnectorProfile {
    pub name: String,
    /// `https://...` endpoint (plain http only to 127.0.0.1/localhost for tests is the
    /// connector's decision, documented there).
    pub url: String,
    pub method: PaymentMethod,
    pub timeout_ms: u64,
    /// PEM file of extra trusted root CAs (e.g. a private CA); system roots otherwise.
    pub ca_file: Option<String>,
    /// PEM client certificate chain and key for mutual TLS.
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// Optional HTTP basic auth.
    pub username: Option<String>,
    pub password: Option<String>,
    pub currency_code: String,
    pub description: String,
    pub token_type: String,
}

/// Debug without secrets: the password is shown as `<set>`/`None` (a `Config` or profile may be
/// debug-printed in logs).
impl std::fmt::Debug for ConnectorProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorProfile")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("currency_code", &self.currency_code)
            .field("description", &self.description)
            .field("token_type", &self.token_type)
            .finish()
    }
}
