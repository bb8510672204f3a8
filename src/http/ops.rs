//! Operational endpoints: liveness, readiness, metrics and the API document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::{AppState, Shutdown};
use crate::config::Config;
use crate::http::error::ApiError;
use crate::limits::Limiter;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::telemetry::exposition::Format;

pub(super) fn router(openapi: Arc<serde_json::Value>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move |State(limits): State<Limiter>| async move {
                axum::Json(super::describe::with_limits(&openapi, &limits.current()))
            }),
        )
}

/// The process is up. Says nothing about its dependencies, so an orchestrator
/// does not restart a node only because Redis is away.
async fn healthz() -> &'static str {
    "ok"
}

/// The node can serve: its engine answers. A load balancer takes a node out
/// while this is 503.
async fn readyz(State(store): State<Store>, State(shutdown): State<Shutdown>) -> Response {
    let engine = store.engine().name();
    if shutdown.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "ready": false, "engine": engine, "reason": "the node is shutting down" }),
            ),
        )
            .into_response();
    }
    let bus = store.engine().bus_healthy();
    match store.ping().await {
        Ok(()) if bus => axum::Json(json!({ "ready": true, "engine": engine })).into_response(),
        Ok(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "engine": engine, "reason": "the bus subscription is reconnecting" })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "engine": engine, "reason": e.to_string() })),
        )
            .into_response(),
    }
}

/// The metrics on the main listener, unless they have a listener of their
/// own (then they are not public here).
async fn metrics(
    State(config): State<Arc<Config>>,
    State(metrics): State<Metrics>,
    headers: HeaderMap,
) -> Response {
    if config.telemetry.metrics_listen.is_some() {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            .into_response();
    }
    exposition(&metrics, &headers)
}

/// The router of the separate metrics listener: `/metrics` alone.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| async move { exposition(&metrics, &headers) }),
    )
}

fn exposition(metrics: &Metrics, headers: &HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    (
        [(header::CONTENT_TYPE, format.content_type())],
        metrics.render(format),
    )
        .into_response()
}
