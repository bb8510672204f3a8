//! Operational endpoints: liveness, readiness, metrics and the API document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::{AppState, Shutdown};
use crate::store::Store;
use crate::telemetry::Metrics;

pub(super) fn router(openapi: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(openapi.as_ref().clone()) }),
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

async fn metrics(State(metrics): State<Metrics>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
