//! `/metrics`: the service's counters in the OpenMetrics text format (which Prometheus scrapes
//! natively), encoded by `prometheus-client`, the Prometheus project's own Rust client.
//!
//! Every label value comes from a fixed set or from the operator's configuration (the node
//! name): never from a digit, a masked value, a call id or anything else an event carries.
//! Values an event carries that are not in the fixed set are counted under `other`.
//!
//! Metrics (all with the `node` label, the configured PBX node name; empty for the single
//! unnamed node of `--ami`/`--esl`):
//! - `secure_pay_agent_sessions_active` (gauge): calls in secure mode now (starting, capturing
//!   or submitted, not ended).
//! - `secure_pay_agent_digits_total{path}` (counter): key presses the module reported
//!   (`SecurePayDigit` with a length above 0; never sent for the security code) by detection
//!   path (its `SecurePay-Source`): `in-band`, `rfc4733` (`telephone-event`), `sip-info`,
//!   `host-frame`, `other`, or `unreported` when the event does not name it.
//! - `secure_pay_agent_fields_total{field,result}` (counter): fields ended `complete` or
//!   `invalid`, by field name (`payment-card-number`, `expiration-date`, ...).
//! - `secure_pay_agent_submits_total{result}` (counter): payment hand-off events by outcome
//!   (`pending`, `success`, `error`, `unknown`).
//! - `secure_pay_agent_connector_latency_seconds` (histogram): from a payment's `pending` event
//!   to its outcome event, as the service sees them (connector round trip + event delivery).
//! - `secure_pay_agent_pbx_up{kind}` (gauge): 1 while the node's AMI / event-socket link is
//!   logged in, else 0 (`kind`: `asterisk` or `freeswitch`).
//! - `secure_pay_agent_pbx_reconnects_total{kind}` (counter): links re-established after a loss.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use secure_pay::core::capture::{parse_command, Command};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PbxLabels {
    node: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DigitLabels {
    node: String,
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabels {
    node: String,
    field: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubmitLabels {
    node: String,
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 ms .. ~51 s
    Histogram::new(exponential_buckets(0.05, 2.0, 11))
}

/// Every metric of the service (one registry for all nodes).
pub struct Metrics {
    registry: Registry,
    sessions_active: Family<NodeLabels, Gauge>,
    digits: Family<DigitLabels, Counter>,
    fields: Family<FieldLabels, Counter>,
    submits: Family<SubmitLabels, Counter>,
    latency: Family<NodeLabels, Histogram, fn() -> Histogram>,
    pbx_up: Family<PbxLabels, Gauge>,
    reconnects: Family<PbxLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("secure_pay_agent");
        let sessions_active = Family::<NodeLabels, Gauge>::default();
        let digits = Family::<DigitLabels, Counter>::default();
        let fields = Family::<FieldLabels, Counter>::default();
        let submits = Family::<SubmitLabels, Counter>::default();
        let latency = Family::<NodeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let pbx_up = Family::<PbxLabels, Gauge>::default();
        let reconnects = Family::<PbxLabels, Counter>::default();
        registry.register(
            "sessions_active",
            "Calls in secure mode now (starting, capturing or submitted)",
            sessions_active.clone(),
        );
        registry.register(
            "digits",
            "Key presses captured by the module, by detection path",
            digits.clone(),
        );
        registry.register(
            "fields",
            "Card fields ended, by field and result (complete or invalid)",
            fields.clone(),
        );
        registry.register(
            "submits",
            "Payment hand-off events by outcome",
            submits.clone(),
        );
        registry.register(
            "connector_latency_seconds",
            "From a payment's pending event to its outcome event",
            latency.clone(),
        );
        registry.register(
            "pbx_up",
            "1 while the node's PBX link (AMI / event socket) is logged in",
            pbx_up.clone(),
        );
        registry.register(
            "pbx_reconnects",
            "PBX links re-established after a loss",
            reconnects.clone(),
        );
        Arc::new(Metrics {
            registry,
            sessions_active,
            digits,
            fields,
            submits,
            latency,
            pbx_up,
            reconnects,
        })
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// A handle that labels everything with `node` (`kind`: `asterisk` or `freeswitch`).
    pub fn node(self: &Arc<Self>, node: &str, kind: &'static str) -> NodeMetrics {
        let m = NodeMetrics {
            m: Arc::clone(self),
            node: node.to_string(),
            kind,
        };
        // every configured node shows up at once, before its first event
        m.set_up(false);
        m.set_active(0);
        m
    }
}

/// The metrics of one PBX node.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    m: Arc<Metrics>,
    node: String,
    kind: &'static str,
}

/// The label for a detection path named by an event (fixed set).
fn path_label(v: Option<&str>) -> &'static str {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => "unreported",
        Some("in-band" | "inband") => "in-band",
        Some("telephone-event" | "rfc4733" | "rfc2833") => "rfc4733",
        Some("sip-info" | "info") => "sip-info",
        Some("host-frame" | "hostframe") => "host-frame",
        Some(_) => "other",
    }
}

/// The label for a field name (the module's field names only).
fn field_label(v: Option<&str>) -> &'static str {
    let Some(f) = v else { return "other" };
    if f.is_empty() || f.len() > 40 || !f.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        return "other";
    }
    match parse_command(&format!("capture {f}")) {
        Ok(Command::Capture(k)) => k.name(),
        _ => "other",
    }
}

fn submit_label(v: Option<&str>) -> &'static str {
    match v.unwrap_or("pending") {
        "pending" => "pending",
        "success" => "success",
        "error" => "error",
        "unknown" => "unknown",
        _ => "other",
    }
}

impl NodeMetrics {
    fn labels(&self) -> NodeLabels {
        NodeLabels {
            node: self.node.clone(),
        }
    }

    fn pbx(&self) -> PbxLabels {
        PbxLabels {
            node: self.node.clone(),
            kind: self.kind,
        }
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// A `SecurePayDigit` event (`path`: its detection-path header, if any).
    pub fn digit(&self, path: Option<&str>) {
        self.m
            .digits
            .get_or_create(&DigitLabels {
                node: self.node.clone(),
                path: path_label(path),
            })
            .inc();
    }

    /// A `SecurePayField` event.
    pub fn field(&self, field: Option<&str>, complete: bool) {
        self.m
            .fields
            .get_or_create(&FieldLabels {
                node: self.node.clone(),
                field: field_label(field),
                result: if complete { "complete" } else { "invalid" },
            })
            .inc();
    }

    /// A `SecurePaySubmit` event; `latency`: since the payment's pending event, for an outcome.
    pub fn submit(&self, result: Option<&str>, latency: Option<Duration>) {
        self.m
            .submits
            .get_or_create(&SubmitLabels {
                node: self.node.clone(),
                result: submit_label(result),
            })
            .inc();
        if let Some(d) = latency {
            self.m
                .latency
                .get_or_create(&self.labels())
                .observe(d.as_secs_f64());
        }
    }

    /// The node's link is up (logged in) or down.
    pub fn set_up(&self, up: bool) {
        self.m.pbx_up.get_or_create(&self.pbx()).set(i64::from(up));
    }

    /// The node's link was re-established after a loss.
    pub fn reconnected(&self) {
        self.m.reconnects.get_or_create(&self.pbx()).inc();
    }

    /// Calls in secure mode now.
    pub fn set_active(&self, n: usize) {
        self.m
            .sessions_active
            .get_or_create(&self.labels())
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets_only() {
        assert_eq!(path_label(None), "unreported");
        assert_eq!(path_label(Some("RFC4733")), "rfc4733");
        assert_eq!(path_label(Some("4242424242424242")), "other");
        assert_eq!(
            field_label(Some("payment-card-number")),
            "payment-card-number"
        );
        assert_eq!(field_label(Some("4242")), "other");
        assert_eq!(field_label(Some("card number")), "other");
        assert_eq!(submit_label(Some("success")), "success");
        assert_eq!(submit_label(Some("************4242")), "other");
        let m = Metrics::new();
        let n = m.node("ast1", "asterisk");
        n.digit(Some("4242424242424242"));
        n.field(Some("payment-card-number"), true);
        n.submit(Some("success"), Some(Duration::from_millis(120)));
        let text = m.encode();
        assert!(!text.contains("4242"), "{text}");
        assert!(
            text.contains("secure_pay_agent_digits_total{node=\"ast1\",path=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("secure_pay_agent_pbx_up{node=\"ast1\",kind=\"asterisk\"} 0"));
        assert!(text.contains("secure_pay_agent_connector_latency_seconds_count{node=\"ast1\"} 1"));
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
