//! `POST /api/v2/webdeployments/token/refresh`: a new session JWT for a
//! refresh token.
//!
//! Genesys's Transport SDK sends exactly `{"refreshToken"}`, so the
//! deployment may be left out: the token's family names it, and it must
//! still be active with the integration the family was started at.
//! Whether the token rotates is the integration's `refreshTokenRotation`
//! (see [`crate::auth::refresh`] for both behaviours).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Scope, TokenPair, finish, prepare, rate_limit};
use crate::app::AppState;
use crate::auth::refresh::Mode;
use crate::auth::visitor_token::{Rotation, SessionError, SessionGrant};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::ClientIp;
use crate::http::extract::Json;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(refresh))
}

/// `{"refreshToken", "deploymentId"?}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefreshRequest {
    #[schema(value_type = String)]
    refresh_token: SecretString,
    /// Optional: the refresh token's session names its deployment. When
    /// given, it must be that deployment.
    deployment_id: Option<String>,
}

/// Answers a new session JWT of the refresh token's session. When the
/// integration rotates refresh tokens, the token is spent, `refreshToken`
/// is its successor, and a token presented twice revokes its session;
/// otherwise `refreshToken` is the same token, valid until the session's
/// lifetime ends or it is revoked.
#[utoipa::path(post, path = "/api/v2/webdeployments/token/refresh", tag = "guest tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenPair),
        (status = 401, body = ErrorBody, description = "invalid_grant, refresh_token_reused, refresh_token_revoked"),
        (status = 403, body = ErrorBody, description = "integration_inactive, origin_not_allowed"),
        (status = 404, body = ErrorBody, description = "deployment_not_found"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
    ))]
#[tracing::instrument(name = "guest_token_refresh", skip_all)]
async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<RefreshRequest>, ApiError>,
) -> Response {
    let mut scope = Scope::default();
    let result = refresh_inner(&state, ip, &headers, body, &mut scope).await;
    finish(scope, &headers, "refresh", result.map(axum::Json))
}

async fn refresh_inner(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    body: Result<Json<RefreshRequest>, ApiError>,
    scope: &mut Scope,
) -> Result<TokenPair, ApiError> {
    let Json(body) = body?;
    let deployment_id = match body.deployment_id {
        Some(id) => id,
        None => {
            // Counted before the lookup, by address alone: the deployment is
            // not known until the token is.
            rate_limit(state, "refresh", ip, None).await?;
            let family = state
                .visitor_tokens
                .refresh_family(&body.refresh_token)
                .await?;
            family.deployment.to_string()
        }
    };
    let target = prepare(state, ip, headers, &deployment_id, "refresh", scope).await?;
    let mode = if target.integration.refresh_token_rotation {
        Mode::Rotate
    } else {
        Mode::Keep
    };
    let now = Utc::now();
    let rotation = state
        .visitor_tokens
        .rotate_refresh(&body.refresh_token, target.deployment.meta.id, mode, now)
        .await?;
    let (family, next) = match rotation {
        Rotation::Rotated(family, next) => (*family, next),
        Rotation::Reused(revoked) => {
            state.routing.session_revoked(revoked).await;
            return Err(SessionError::RefreshReused.into());
        }
    };
    if family.integration != target.integration.meta.id {
        // The deployment now signs visitors in elsewhere: sessions proven at
        // the previous IdP end here.
        let revoked = state.visitor_tokens.revoke_family(&family, now).await?;
        state.routing.session_revoked(revoked).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "the deployment's OIDC integration changed since this session started; sign in again",
        ));
    }
    let issued = state
        .visitor_tokens
        .issue(
            &SessionGrant {
                deployment: family.deployment,
                org: family.org,
                identity: family.identity,
                sid: family.family,
                not_after: family.family_expires_at,
            },
            now,
        )
        .await?;
    Ok(TokenPair {
        jwt: issued.jwt.expose_secret().to_owned(),
        refresh_token: next.expose_secret().to_owned(),
    })
}
