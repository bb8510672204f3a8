//! Traces on the `switchboard` binary: with `SWITCHBOARD_OTLP_ENDPOINT`
//! set, a node exports a span per request (joining a caller's
//! `traceparent`, carrying the request id) and per guest and agent socket
//! message, over OTLP/HTTP protobuf, to a collector; the last spans arrive
//! on SIGTERM. The collector here decodes what it receives with the OTLP
//! protocol's own message types, as a real one would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

use crate::support::guest::new_token;
use crate::support::node::Node;
use crate::support::site::SiteSpec;

/// One exported span, flattened.
#[derive(Clone, Debug)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP traces endpoint on a free port, keeping every span.
struct Collector {
    base: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

impl Collector {
    async fn start() -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    // The default protocol is http/protobuf.
                    if headers.get("content-type").and_then(|v| v.to_str().ok())
                        != Some("application/x-protobuf")
                    {
                        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
                    }
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return StatusCode::BAD_REQUEST;
                    };
                    let mut kept = kept.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .map(|r| text(&r.attributes))
                            .and_then(|mut a| a.remove("service.name"))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                kept.push(Span {
                                    name: span.name,
                                    trace_id: hex::encode(span.trace_id),
                                    span_id: hex::encode(span.span_id),
                                    parent_span_id: hex::encode(span.parent_span_id),
                                    attributes: text(&span.attributes),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { base, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) for a span that satisfies `matches`.
    async fn span(&self, what: &str, matches: impl Fn(&Span) -> bool) -> Span {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(span) = self.spans().into_iter().find(|s| matches(s)) {
                return span;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} span among {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The request span `span` happened in: its nearest ancestor named
    /// `METHOD route`.
    fn request_of(&self, span: &Span) -> Option<Span> {
        let spans = self.spans();
        let mut current = span.clone();
        for _ in 0..8 {
            let parent = spans
                .iter()
                .find(|s| s.span_id == current.parent_span_id && s.trace_id == current.trace_id)?
                .clone();
            if parent.name.starts_with("GET ") {
                return Some(parent);
            }
            current = parent;
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_socket_messages_reach_an_otlp_collector() {
    let collector = Collector::start().await;
    let data = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(),
            format!("sbb_test_{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "SWITCHBOARD_OTLP_ENDPOINT".to_owned(),
            collector.base.clone(),
        ),
        // Batches leave every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ]);
    let node = Node::start(&env).ready().await;

    // A request that carries a caller's trace joins it, named by its route
    // and carrying its request id and status.
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let answer = reqwest::Client::new()
        .get(format!("{}/healthz", node.base))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("x-request-id", "trace-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let request = collector
        .span("GET /healthz", |s| s.name == "GET /healthz")
        .await;
    assert_eq!(request.trace_id, caller_trace);
    assert_eq!(request.parent_span_id, caller_span);
    assert_eq!(request.attributes["request_id"], "trace-check-1");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.service, "switchboard");

    // A conversation: every socket message is a span of its own, inside the
    // span of the request that opened its socket.
    let api = node.api();
    let site = api.site_as(node.bootstrap(), &SiteSpec::new()).await;
    let (_, agent_token) = api.client(node.bootstrap(), "Grace", &["agent"]).await;
    let (mut agent, _) = api.agent(&agent_token).await;
    agent.available().await;
    let mut visitor = api.configured_guest(&site.deployment, &new_token()).await;
    visitor.deliver("hello", "m1").await;
    let conversation = agent.accept_first_offer().await;
    agent.say(&conversation, "hi there").await;
    visitor.until_text("hi there").await;

    // Spans of messages are sent while their sockets are still open.
    let sent = collector
        .span("guest onMessage", |s| s.name == "guest onMessage")
        .await;
    assert_eq!(sent.attributes["action"], "onMessage");
    let answered = collector
        .span("agent send", |s| s.name == "agent send")
        .await;
    assert_eq!(answered.attributes["kind"], "send");
    drop(visitor);
    drop(agent);

    // The request spans of the sockets end when the sockets do; SIGTERM
    // sends whatever is still queued.
    let lines = node.terminate();
    for name in [
        "guest configureSession",
        "guest onMessage",
        "agent setPresence",
        "agent accept",
        "agent send",
    ] {
        let span = collector.span(name, |s| s.name == name).await;
        let request = collector
            .request_of(&span)
            .unwrap_or_else(|| panic!("{name} has no request span: {:#?}", collector.spans()));
        let request_id = &request.attributes["request_id"];
        assert!(!request_id.is_empty(), "{request:?}");
        assert_ne!(request.trace_id, caller_trace);
    }

    // Naming spans for the collector leaves the log lines as they were.
    for line in lines.iter().filter(|l| l.starts_with('{')) {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            panic!("not a JSON object: {line}");
        };
        assert!(fields.keys().all(|k| !k.starts_with("otel.")), "{line}");
    }
}
