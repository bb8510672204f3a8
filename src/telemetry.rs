//! Logs and metrics.
//!
//! Logs are `tracing` events, pretty for a terminal or one JSON object per
//! line for a collector ([`logging`]). They go through a writer that never
//! blocks the service: a stdout nobody reads costs log lines, not requests.
//! No secret, token, `Authorization` or `Cookie` value is ever a field: the
//! types that hold them print as `[REDACTED]`, and the HTTP layer records
//! method, matched route and status only.
//!
//! Metrics are kept in one Prometheus registry and rendered at `/metrics`
//! (see docs/observability.md for the list). Every label value comes from a
//! closed set spelled in the code: an HTTP method outside the standard ones
//! is `other`, a path that matched no route is `unmatched`, so no request
//! can grow the registry.

pub mod exposition;
pub mod logging;
mod process;
pub mod traces;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use logging::{LogError, LogGuard, LogLevel, init_logging};

/// Latency buckets in seconds, from a cache hit to a slow IdP.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// One of the standard methods, or `other` (see [`method_label`]).
    pub method: &'static str,
    /// The matched route template (`/api/v2/routing/queues/{id}`), never the
    /// raw path, so ids do not explode the label space; `unmatched` when no
    /// route matched.
    pub route: String,
    pub status: u16,
}

/// The label value of an HTTP method: the standard methods by name, any
/// other (a client may send any token) as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    engine: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SocketLabels {
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    side: &'static str,
    /// The close code sent, `none` when the connection ended without one.
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    endpoint: &'static str,
    /// `ok`, or the error code of the answer (`invalid_grant`, ...).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Engine operations are timed where they are dispatched, below every
/// caller (records, routing, the bus), which hold no registry: the one
/// process-wide family, which every node's registry exposes.
static ENGINE: LazyLock<EngineMetrics> = LazyLock::new(EngineMetrics::default);

#[derive(Debug)]
struct EngineMetrics {
    latency: Family<EngineLabels, Histogram>,
    errors: Family<EngineLabels, Counter>,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            errors: Family::default(),
        }
    }
}

/// Records one engine operation: its latency, and whether it failed.
pub fn observe_engine(engine: &'static str, op: &'static str, elapsed: Duration, ok: bool) {
    let labels = EngineLabels { engine, op };
    ENGINE
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if !ok {
        ENGINE.errors.get_or_create(&labels).inc();
    }
}

/// The service's metrics. Cheap to clone; every clone updates one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<HttpLabels, Histogram>,
    /// Open WebSocket connections, by side.
    sockets: Family<SocketLabels, Gauge>,
    sockets_closed: Family<ClosedLabels, Counter>,
    token_exchanges: Family<TokenLabels, Counter>,
    messages_accepted: Family<SocketLabels, Counter>,
    messages_refused: Family<SocketLabels, Counter>,
    messages_delivered: Family<SocketLabels, Counter>,
    messages_dropped: Family<SocketLabels, Counter>,
    /// Log entries read to answer history requests: what a page costs.
    history_entries_read: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Process metrics keep their standard unprefixed names, so stock
        // dashboards and alerts find them.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("switchboard");
        registry.register(
            "build",
            "The running version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let sockets = Family::<SocketLabels, Gauge>::default();
        let sockets_closed = Family::<ClosedLabels, Counter>::default();
        let token_exchanges = Family::<TokenLabels, Counter>::default();
        let messages_accepted = Family::<SocketLabels, Counter>::default();
        let messages_refused = Family::<SocketLabels, Counter>::default();
        let messages_delivered = Family::<SocketLabels, Counter>::default();
        let messages_dropped = Family::<SocketLabels, Counter>::default();
        let history_entries_read = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, matched route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, matched route and status",
            http_latency.clone(),
        );
        registry.register(
            "engine_operation_duration_seconds",
            "Engine (storage and bus) operation latency by engine and operation",
            ENGINE.latency.clone(),
        );
        registry.register(
            "engine_errors",
            "Failed engine operations by engine and operation",
            ENGINE.errors.clone(),
        );
        registry.register(
            "websockets_open",
            "Open WebSocket connections by side (guest or agent)",
            sockets.clone(),
        );
        registry.register(
            "websockets_closed",
            "Closed WebSocket connections by side and the close code sent (none: the connection ended without one)",
            sockets_closed.clone(),
        );
        registry.register(
            "token_exchanges",
            "Visitor token endpoint answers by endpoint and outcome (ok, or the error code)",
            token_exchanges.clone(),
        );
        registry.register(
            "messages_accepted",
            "Conversation messages written to a conversation's log, by the side that sent them",
            messages_accepted.clone(),
        );
        registry.register(
            "messages_refused",
            "Conversation messages a client sent that were refused (rate limit, size, not allowed), by side",
            messages_refused.clone(),
        );
        registry.register(
            "messages_delivered",
            "Conversation messages written to a socket, by the side of the receiving socket",
            messages_delivered.clone(),
        );
        registry.register(
            "messages_dropped",
            "Conversation messages not delivered because the receiving socket was gone or too slow (the client catches up from the log on reconnect), by side",
            messages_dropped.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log output did not keep up",
            logging::dropped_lines(),
        );
        registry.register(
            "history_log_entries_read",
            "Conversation log entries read to answer history requests",
            history_entries_read.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: root,
                http_requests,
                http_latency,
                sockets,
                sockets_closed,
                token_exchanges,
                messages_accepted,
                messages_refused,
                messages_delivered,
                messages_dropped,
                history_entries_read,
            }),
        }
    }

    pub fn observe_http(&self, labels: HttpLabels, elapsed: Duration) {
        self.inner
            .http_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.inner.http_requests.get_or_create(&labels).inc();
    }

    /// The open-sockets gauge of `side`.
    pub fn sockets(&self, side: &'static str) -> Gauge {
        self.inner
            .sockets
            .get_or_create(&SocketLabels { side })
            .clone()
    }

    /// Counts a closed socket of `side` by the close code it was sent.
    pub fn socket_closed(&self, side: &'static str, code: Option<u16>) {
        let code = close_code_label(code);
        self.inner
            .sockets_closed
            .get_or_create(&ClosedLabels { side, code })
            .inc();
    }

    /// Counts a token endpoint's answer.
    pub fn token_exchange(&self, endpoint: &'static str, outcome: &'static str) {
        self.inner
            .token_exchanges
            .get_or_create(&TokenLabels { endpoint, outcome })
            .inc();
    }

    pub fn message_accepted(&self, side: &'static str) {
        self.count(&self.inner.messages_accepted, side, 1);
    }

    pub fn message_refused(&self, side: &'static str) {
        self.count(&self.inner.messages_refused, side, 1);
    }

    pub fn messages_delivered(&self, side: &'static str, n: u64) {
        self.count(&self.inner.messages_delivered, side, n);
    }

    pub fn messages_dropped(&self, side: &'static str, n: u64) {
        self.count(&self.inner.messages_dropped, side, n);
    }

    fn count(&self, family: &Family<SocketLabels, Counter>, side: &'static str, n: u64) {
        if n > 0 {
            family.get_or_create(&SocketLabels { side }).inc_by(n);
        }
    }

    /// Counts log entries read for a history answer.
    pub fn history_entries_read(&self, entries: usize) {
        self.inner
            .history_entries_read
            .inc_by(u64::try_from(entries).unwrap_or(u64::MAX));
    }

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: exposition::Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        match format {
            exposition::Format::OpenMetrics => out,
            exposition::Format::Text => exposition::to_text_format(&out),
        }
    }
}

/// The label value of a close code: the codes the gateway sends by number,
/// anything else as `other`.
fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1002) => "1002",
        Some(1003) => "1003",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1011) => "1011",
        Some(4000..=4999) => "4xxx",
        Some(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let made_up = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::GET), "GET");
    }

    #[test]
    fn the_text_format_names_counters_as_their_samples() {
        let metrics = Metrics::new();
        metrics.message_accepted("guest");
        let text = metrics.render(exposition::Format::Text);
        assert!(text.contains("# TYPE switchboard_messages_accepted_total counter\n"));
        assert!(text.contains("switchboard_messages_accepted_total{side=\"guest\"} 1\n"));
        assert!(text.contains("# TYPE switchboard_build_info gauge\n"));
        assert!(!text.contains("# EOF"));
        let open = metrics.render(exposition::Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"));
    }
}
