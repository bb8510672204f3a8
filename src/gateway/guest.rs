//! The guest WebSocket protocol (`/v1`) and the guest history endpoint,
//! wire-compatible with the Genesys Cloud Web Messaging guest API (see
//! docs/guest-protocol.md).
//!
//! - [`frames`]: requests parsed into a typed enum at the edge, and the
//!   server's frames and classes;
//! - [`messages`]: conversation events as `StructuredMessage`s;
//! - [`socket`]: the task behind each socket;
//! - [`history`]: `GET /api/v2/webmessaging/messages`.
//!
//! The upgrade is refused with 403 before any socket exists for an unknown
//! or inactive deployment, one without a readable published configuration,
//! or an `Origin` the deployment does not allow (no `Origin` at all, as
//! native apps connect, is allowed).

pub mod frames;
pub mod history;
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
use uuid::Uuid;

use crate::http::AppState;
use crate::http::admin::configurations::published_version;
use crate::http::error::ApiError;
use crate::store::records::{ConfigurationContent, Deployment};
use crate::store::types::DeploymentStatus;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1", get(upgrade))
        .merge(history::router())
}

/// A deployment a socket may serve, with its published configuration.
#[derive(Debug)]
pub struct Admitted {
    pub deployment: Deployment,
    pub content: ConfigurationContent,
    pub version: String,
}

/// Why a deployment takes no guests.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Unknown, inactive, or without a readable published configuration.
    NoDeployment,
    /// Messaging is switched off in the configuration.
    Disabled,
    /// Storage did not answer.
    Unavailable,
}

/// Loads an active deployment and its published configuration.
pub async fn admit_deployment(state: &AppState, id: Uuid) -> Result<Admitted, Refused> {
    let deployment = match state.store.find::<Deployment>(id).await {
        Ok(Some(d)) if d.status == DeploymentStatus::Active => d,
        Ok(_) => return Err(Refused::NoDeployment),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a deployment");
            return Err(Refused::Unavailable);
        }
    };
    let Some(version) = deployment.configuration_version() else {
        return Err(Refused::NoDeployment);
    };
    let configuration = match published_version(
        state,
        deployment.org_id,
        deployment.configuration.id,
        version,
    )
    .await
    {
        Ok(c) => c,
        Err(e) if e.status == StatusCode::NOT_FOUND => return Err(Refused::NoDeployment),
        Err(_) => return Err(Refused::Unavailable),
    };
    let content = configuration.content;
    if !content.messenger.enabled || !content.messenger.apps.conversations.enabled {
        return Err(Refused::Disabled);
    }
    Ok(Admitted {
        deployment,
        content,
        version: configuration.version,
    })
}

/// `GET /v1?deploymentId=&application=`: the guest socket.
async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let deployment = query
        .get("deploymentId")
        .and_then(|id| Uuid::parse_str(id).ok());
    let Some(deployment) = deployment else {
        return ApiError::forbidden("unknown or inactive deployment").into_response();
    };
    let admitted = match admit_deployment(&state, deployment).await {
        Ok(admitted) => admitted,
        Err(Refused::Unavailable) => return ApiError::unavailable().into_response(),
        Err(Refused::Disabled) => {
            return ApiError::forbidden("messaging is disabled for this deployment")
                .into_response();
        }
        Err(Refused::NoDeployment) => {
            return ApiError::forbidden("unknown or inactive deployment").into_response();
        }
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| admitted.deployment.allows_origin(origin));
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
    crate::gateway::limited(upgrade).on_upgrade(move |ws| socket::run(state, ws, admitted))
}
