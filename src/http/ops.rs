//! Operational endpoints: liveness, readiness, metrics and the API document.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;

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
async fn readyz(State(state): State<AppState>) -> Response {
    let bus = state.store.engine().bus_healthy();
    match state.store.ping().await {
        Ok(()) if bus => axum::Json(json!({ "ready": true, "engine": state.store.engine().name() })).into_response(),
        Ok(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "engine": state.store.engine().name(), "reason": "the bus subscription is reconnecting" })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "engine": state.store.engine().name(), "reason": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
