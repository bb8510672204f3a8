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
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over
/// `level` (the `SWITCHBOARD_LOG_LEVEL` setting). The answer changes the
/// filter of the running process (SIGHUP).
pub fn init_logging(format: LogFormat, level: &str) -> LogLevel {
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter_for(level));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests start many servers in one process) is harmless.
    let _ = match format {
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    LogLevel {
        handle,
        current: Arc::new(std::sync::Mutex::new(level.to_owned())),
    }
}

/// `RUST_LOG` when set and not empty (as with every setting, empty is
/// unset).
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn filter_for(level: &str) -> EnvFilter {
    rust_log()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new(crate::config::DEFAULT_LOG_LEVEL))
}

/// The running process's log filter, changed on SIGHUP.
#[derive(Clone)]
pub struct LogLevel {
    handle: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    current: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevel").finish_non_exhaustive()
    }
}

impl LogLevel {
    /// Applies `level` (unless `RUST_LOG` is set, which wins). Answers what
    /// changed, or `None` when it is the filter already in force.
    pub fn set(&self, level: &str) -> Result<Option<String>, String> {
        if rust_log().is_some() {
            return Ok(None);
        }
        let mut current = self.current.lock().map_err(|_| "poisoned".to_owned())?;
        if *current == level {
            return Ok(None);
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())?;
        let change = format!("{} -> {level}", *current);
        *current = level.to_owned();
        Ok(Some(change))
    }
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
        Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_latency,
                engine_ops,
                engine_errors,
                sockets,
                messages,
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}
