//! The guest WebSocket protocol (`/v1`),
//! wire-compatible with the Genesys Cloud Web Messaging guest API (see
//! docs/guest-protocol.md).
//!
//! - [`frames`]: requests parsed into a typed enum at the edge, and the
//!   server's frames and classes;
//! - [`messages`]: conversation events as `StructuredMessage`s;
//! - [`socket`]: the task behind each socket;
//!
//! The upgrade is refused with 403 before any socket exists for an unknown
//! or inactive deployment, one without a readable published configuration,
//! or an `Origin` the deployment does not allow (no `Origin` at all, as
//! native apps connect, is allowed).

pub mod frames;
pub mod messages;
pub mod socket;

use std::collections::HashMap;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;
use uuid::Uuid;

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ClientIp;
use crate::store::Refused;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1", get(upgrade))
}

/// `GET /v1?deploymentId=&application=`: the guest socket.
async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let deployment = query
        .get("deploymentId")
        .and_then(|id| Uuid::parse_str(id).ok());
    let Some(deployment) = deployment else {
        return ApiError::forbidden("unknown or inactive deployment").into_response();
    };
    let admitted = match state.store.admit_deployment(deployment).await {
        Ok(admitted) => admitted,
        Err(Refused::Store(e)) => return ApiError::from(e).into_response(),
        Err(refused) => return ApiError::forbidden(refused.to_string()).into_response(),
    };
    // A browser's origin, or the bare host a native app sends (the Transport
    // SDK's `webmessaging.<domain>`) when the deployment lists it.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| admitted.deployment.admits_origin(origin));
        if !allowed {
            tracing::info!(deployment = %deployment, "guest socket refused: origin not allowed");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin is not one the deployment allows",
            )
            .into_response();
        }
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // The socket's events carry the request's id: its task runs in the
    // request's span.
    let span = tracing::Span::current();
    let max_frame = state.limits.current().max_frame_bytes;
    let start = Box::new(socket::Start {
        state,
        admitted,
        client,
    });
    crate::gateway::limited(upgrade, max_frame)
        .on_upgrade(move |ws| socket::run(start, ws).instrument(span))
}
