//! Traces (optional): spans of HTTP requests and of socket messages,
//! exported over OTLP/HTTP to a collector when `SWITCHBOARD_OTLP_ENDPOINT`
//! is set; nothing is traced otherwise.
//!
//! The spans are the ones the code already opens for its logs: a request's
//! `http` span (named `METHOD route`, carrying its `request_id`; a socket
//! lives in the span of the request that opened it, so its messages are
//! children of that request), one span per guest or agent socket message
//! (at debug level under [`MESSAGE_TARGET`], so it costs nothing while no
//! exporter listens), and the instrumented token and sign-in steps below
//! them. A request that arrives with a W3C `traceparent` joins that trace.
//!
//! Export never holds up the service: spans queue in a bounded buffer that
//! a background thread drains in batches (dropping spans when the collector
//! falls behind); its HTTP requests run on the node's runtime through the
//! same HTTP stack as the rest of the node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{OtlpProtocol, TraceConfig};

/// The target of the per-message spans: debug level, so the log filter
/// (info by default) never builds them, while the trace filter does.
pub const MESSAGE_TARGET: &str = "switchboard::message";

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the exit waits for the last spans to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether spans are exported: request handling asks before it reads a
/// `traceparent` or names a span for the collector.
static EXPORTING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
#[error("SWITCHBOARD_OTLP_ENDPOINT: cannot set up the trace exporter: {0}")]
pub struct TraceError(String);

/// The exporter of a running node; [`Traces::shutdown`] sends what is
/// still queued.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Sends the spans still queued (at most [`SHUTDOWN_TIMEOUT`]). Runs on
    /// a blocking thread: the exporter's last requests need the runtime's
    /// workers free.
    pub async fn shutdown(self) {
        EXPORTING.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT))
                .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "the last spans may not have reached the collector");
        }
    }
}

/// The layer that turns spans into OTLP spans, and the exporter behind it.
/// Must be called on the runtime that will carry the exports.
pub fn layer<S>(config: &TraceConfig) -> Result<(impl Layer<S> + use<S>, Traces), TraceError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let client = ExportClient::new()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(config.endpoint.as_str())
        .with_protocol(match config.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
            OtlpProtocol::HttpJson => Protocol::HttpJson,
        })
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TraceError(e.to_string()))?;
    let mut resource = Resource::builder();
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, when set, name the node.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("switchboard");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("switchboard");
    let spans = Targets::new()
        .with_default(LevelFilter::OFF)
        .with_target("switchboard", LevelFilter::INFO)
        .with_target(MESSAGE_TARGET, LevelFilter::DEBUG);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(spans);
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, Traces { provider }))
}

/// Whether spans are exported by this process.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Names `span` for the collector (`otel.name`) and, when the request
/// carries a W3C `traceparent`, makes it a child of that remote span.
/// Nothing happens while traces are off.
pub fn adopt_request(span: &tracing::Span, name: impl FnOnce() -> String, headers: &HeaderMap) {
    if !exporting() {
        return;
    }
    span.record("otel.name", name());
    span.record("otel.kind", "server");
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(error = %e, "cannot join the caller's trace");
        }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// The exporter's HTTP client: its requests run on the node's runtime
/// (the batch thread only waits for them), with a bounded answer.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn new() -> Result<Self, TraceError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| TraceError("no runtime to export on".to_owned()))?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TraceError(e.to_string()))?;
        Ok(Self { client, runtime })
    }
}

/// A collector's answer is a small status message; more is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let answer = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let mut answer = axum::http::Response::builder().status(response.status());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            if let Some(headers) = answer.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            Ok::<_, opentelemetry_http::HttpError>(answer.body(Bytes::from(body))?)
        });
        answer.await?
    }
}
