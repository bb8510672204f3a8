//! First run: `GET /setup`, a one-time page an operator opens on a fresh
//! install with the bootstrap token. It names the organization's staff
//! sign-in integration (`POST /api/v2/setup`) and arms the first sign-in:
//! the next person who signs in to the console through that integration
//! becomes the organization's first admin (see
//! [`crate::auth::staff::FIRST_ADMIN_SETTING`]). After that the console is
//! the way in, and the page answers that setup is done.
//!
//! The page is static and holds nothing secret; the bootstrap token is
//! typed into it and sent as a bearer credential, never stored.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::admin::integrations::OidcIntegrationInput;
use super::admin::resource::Resource;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Json, JsonOut};
use crate::app::AppState;
use crate::store::StoreError;
use crate::store::records::{Meta, OidcIntegration, Organization};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("setup.js");
/// Only the page's own script and style: nothing inline, nothing foreign.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = include_str!("setup.css");

/// The page and its assets (not in the API document).
pub(super) fn pages() -> Router<AppState> {
    Router::new()
        .route("/setup", get(page))
        .route(
            "/setup.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/setup.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(setup))
}

async fn page() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What setup did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetupDone {
    /// The staff sign-in integration.
    integration_id: Uuid,
    /// Where the first admin signs in next.
    sign_in: String,
}

/// Names the default organization's staff sign-in integration and makes
/// the next person who signs in with it the first admin. Once only: an
/// organization with a staff integration answers 409 `already_set_up`.
#[utoipa::path(post, path = "/api/v2/setup", tag = "operations", operation_id = "setUp",
    security(("bearer" = [])),
    request_body = OidcIntegrationInput,
    responses((status = 201, body = SetupDone),
        (status = 403, body = ErrorBody, description = "not the bootstrap token"),
        (status = 409, body = ErrorBody, description = "already_set_up")))]
async fn setup(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<OidcIntegrationInput>,
) -> Result<(StatusCode, JsonOut<SetupDone>), ApiError> {
    let principal = caller.require_operator()?;
    let org_id = principal.org;
    let org = state.store.get::<Organization>(org_id, org_id.0).await?;
    let already = || {
        ApiError::conflict(
            "already_set_up",
            "staff sign-in is already set up: sign in to the console (or change it in Settings)",
        )
    };
    if org.staff_integration_id.is_some() {
        return Err(already());
    }
    let mut integration =
        OidcIntegration::build(input, org_id, Meta::new(Utc::now()), None, &state)?;
    state.store.create(&mut integration).await?;
    let mut updated = org.clone();
    updated.staff_integration_id = Some(integration.meta.id);
    updated.meta.date_modified = Utc::now();
    if let Err(e) = state.store.update(&mut updated, org.meta.version).await {
        // Another setup won meanwhile: leave no stray integration.
        let _ = state.store.delete(&integration).await;
        return Err(match e {
            StoreError::Stale { .. } | StoreError::Conflict(_) => already(),
            other => other.into(),
        });
    }
    state
        .auth
        .arm_first_admin(org_id, integration.meta.id)
        .await?;
    tracing::info!(org = %org_id, integration = %integration.meta.id, "staff sign-in set up; the next sign-in becomes the first admin");
    Ok((
        StatusCode::CREATED,
        axum::Json(SetupDone {
            integration_id: integration.meta.id,
            sign_in: format!("{}?returnTo=/console", super::staff::LOGIN_PATH),
        }),
    ))
}
