//! Logs and metrics.
//!
//! Logs are `tracing` events, pretty for a terminal or JSON for a collector.
//! No secret, token, `Authorization` or `Cookie` value is ever a field: the
//! types that hold them print as `[REDACTED]`, and the HTTP trace layer
//! records method, path and status only.
//!
//! Metrics are kept in one Prometheus registry and rendered at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` refines the default level.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,redb=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests start many servers in one process) is harmless.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route template (`/api/v2/routing/queues/{id}`), never the
    /// raw path, so ids do not explode the label space.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    pub op: &'static str,
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
    engine_ops: Family<EngineLabels, Counter>,
    engine_errors: Family<EngineLabels, Counter>,
    /// Open WebSocket connections, by side.
    sockets: Family<SocketLabels, Gauge>,
    messages: Family<SocketLabels, Counter>,
    /// Log entries read to answer history requests: what a page costs.
    history_entries_read: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabels {
    pub side: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        let engine_ops = Family::<EngineLabels, Counter>::default();
        let engine_errors = Family::<EngineLabels, Counter>::default();
        let sockets = Family::<SocketLabels, Gauge>::default();
        let messages = Family::<SocketLabels, Counter>::default();
        let history_entries_read = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            http_latency.clone(),
        );
        registry.register(
            "engine_operations",
            "Engine operations by kind",
            engine_ops.clone(),
        );
        registry.register(
            "engine_errors",
            "Failed engine operations by kind",
            engine_errors.clone(),
        );
        registry.register(
            "websockets_open",
            "Open WebSocket connections",
            sockets.clone(),
        );
        registry.register(
            "websocket_messages",
            "Conversation messages handled",
            messages.clone(),
        );
        registry.register(
            "history_log_entries_read",
            "Conversation log entries read to answer history requests",
            history_entries_read.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_latency,
                engine_ops,
                engine_errors,
                sockets,
                messages,
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

    pub fn observe_engine(&self, op: &'static str, ok: bool) {
        let labels = EngineLabels { op };
        self.inner.engine_ops.get_or_create(&labels).inc();
        if !ok {
            self.inner.engine_errors.get_or_create(&labels).inc();
        }
    }

    pub fn sockets(&self, side: &'static str) -> Gauge {
        self.inner
            .sockets
            .get_or_create(&SocketLabels { side })
            .clone()
    }

    pub fn messages(&self, side: &'static str) -> Counter {
        self.inner
            .messages
            .get_or_create(&SocketLabels { side })
            .clone()
    }

    /// Counts log entries read for a history answer.
    pub fn history_entries_read(&self, entries: usize) {
        self.inner
            .history_entries_read
            .inc_by(u64::try_from(entries).unwrap_or(u64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}
