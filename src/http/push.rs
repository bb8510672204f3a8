//! `/api/v2/webmessaging/deployments/{deploymentId}/pushdevices/{token}`:
//! an app registers (POST), updates (PATCH) and removes (DELETE) the device
//! its guest session's notifications go to, exactly as Genesys's Transport
//! SDK calls it.
//!
//! The SDK sends no `Authorization` and no `Origin` here: the session token
//! in the path (lowercased by the SDK) is the credential, as it is on the
//! socket. It is a random secret only the app holds; the device is stored
//! for the session it names (one per deployment and session, see
//! [`crate::store::push_devices`]), which must already exist on that
//! deployment. The token never reaches a log: the request span shows the
//! path with it cut off.
//!
//! Failures answer the SDK's `PushErrorResponse`
//! (`{"message","code","status","contextId"}`) with the codes it maps:
//! `device.already.registered` on a second POST (it then PATCHes),
//! `device.not.found` on a PATCH or DELETE of nothing (it then POSTs, or
//! takes the DELETE as done), `required.fields.missing` /
//! `update.fields.missing`, `feature.toggle.disabled` when the published
//! configuration has notifications off, `too.many.requests.retry.after`,
//! and `invalid.path.parameter` with the SDK's exact message when the
//! session belongs to another deployment.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::ClientIp;
use crate::app::AppState;
use crate::limits::Key;
use crate::routing::model::{GuestSession, session_id};
use crate::store::StoreError;
use crate::store::push_devices::{DeviceToken, DeviceType, Language, PushDevice, PushProvider};
use crate::store::records::{ConfigurationContent, Deployment};
use crate::store::types::OrgId;

/// As on the socket: a session token is at most 2048 characters.
const MAX_SESSION_TOKEN_CHARS: usize = 2048;
/// The message the SDK matches exactly to report `DeploymentIdMismatch`.
const DEPLOYMENT_MISMATCH: &str =
    "Deployment Id in the request does not match the expected deployment Id for the given TokenId";

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register, update, unregister))
}

/// Registers a device: all four fields are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterDevice {
    device_token: DeviceToken,
    language: Language,
    device_type: DeviceType,
    notification_provider: PushProvider,
}

/// Updates a device: the SDK sends the token and language; the platform
/// and provider may be sent too.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct UpdateDevice {
    device_token: DeviceToken,
    language: Language,
    device_type: Option<DeviceType>,
    notification_provider: Option<PushProvider>,
}

/// The error body the SDK decodes (`PushErrorResponse`): `message`, `code`
/// and `status` are required, `contextId` is this request's id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PushErrorResponse {
    message: String,
    code: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_id: Option<String>,
}

/// A refusal, answered as a [`PushErrorResponse`].
#[derive(Debug)]
struct PushError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl PushError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Storage did not answer: try again in a second.
    fn unavailable() -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service.unavailable",
            "storage is unavailable; try again",
        );
        error.retry_after = Some(1);
        error
    }

    fn bad_path(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid.path.parameter", message)
    }

    fn device_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "device.not.found",
            "no device is registered for this session",
        )
    }

    fn mismatch() -> Self {
        Self::bad_path(DEPLOYMENT_MISMATCH)
    }

    fn respond(self, headers: &HeaderMap) -> Response {
        let body = PushErrorResponse {
            message: self.message,
            code: self.code,
            status: self.status.as_u16(),
            context_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Storage trouble: logged here (without the token), answered as a retry.
impl From<StoreError> for PushError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "push devices: stored state is corrupt");
                PushError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal.server.error",
                    "unexpected error",
                )
            }
            e => {
                tracing::warn!(error = %e, "push devices: storage unavailable");
                PushError::unavailable()
            }
        }
    }
}

/// The path, parsed: the deployment and the guest session the token names.
#[derive(Debug, Clone, Copy)]
struct Addressed {
    deployment: Uuid,
    session: Uuid,
}

impl Addressed {
    /// Where the deployment turned out to live.
    fn at(self, org: OrgId) -> Target {
        Target {
            org,
            deployment: self.deployment,
            session: self.session,
        }
    }
}

/// A device's address once its deployment was found.
#[derive(Debug, Clone, Copy)]
struct Target {
    org: OrgId,
    deployment: Uuid,
    session: Uuid,
}

fn parse_path(path: Result<Path<(String, String)>, PathRejection>) -> Result<Addressed, PushError> {
    let Path((deployment, token)) =
        path.map_err(|_| PushError::bad_path("the path does not parse"))?;
    let deployment = Uuid::parse_str(&deployment)
        .map_err(|_| PushError::bad_path("deploymentId is not a deployment id"))?;
    if token.is_empty() || token.chars().count() > MAX_SESSION_TOKEN_CHARS {
        return Err(PushError::bad_path(format!(
            "the session token must be 1 to {MAX_SESSION_TOKEN_CHARS} characters"
        )));
    }
    Ok(Addressed {
        deployment,
        session: session_id(&token),
    })
}

/// A JSON body of `T`. A missing required field answers `missing_code`
/// (which the SDK reports as a missing parameter); anything else that does
/// not parse is a bad request naming what is wrong.
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    missing_code: &'static str,
) -> Result<T, PushError> {
    let body = body.map_err(|e| PushError::new(e.status(), "bad.request", e.body_text()))?;
    crate::http::body::parse(&body).map_err(|e| {
        if e.missing_field {
            PushError::new(StatusCode::BAD_REQUEST, missing_code, e.message)
        } else {
            PushError::new(StatusCode::BAD_REQUEST, "bad.request", e.message)
        }
    })
}

/// Registers the session's device.
#[utoipa::path(post, path = "/api/v2/webmessaging/deployments/{deploymentId}/pushdevices/{token}",
    tag = "push devices",
    params(("deploymentId" = Uuid, Path), ("token" = String, Path, description = "the guest session token, as on the socket")),
    request_body = RegisterDevice,
    responses(
        (status = 204, description = "registered"),
        (status = 400, body = PushErrorResponse, description = "required.fields.missing, bad.request, invalid.path.parameter (a session of another deployment: the SDK's exact message)"),
        (status = 403, body = PushErrorResponse, description = "feature.toggle.disabled: the configuration has notifications off"),
        (status = 404, body = PushErrorResponse, description = "deployment.not.found, session.not.found"),
        (status = 409, body = PushErrorResponse, description = "device.already.registered: PATCH instead"),
        (status = 429, body = PushErrorResponse, description = "too.many.requests.retry.after, with Retry-After"),
    ))]
#[tracing::instrument(name = "push_device_register", skip_all)]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(register_inner(&state, ip, path, body).await, &headers)
}

async fn register_inner(
    state: &AppState,
    ip: IpAddr,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), PushError> {
    let addressed = parse_path(path)?;
    let input: RegisterDevice = parse_body(body, "required.fields.missing")?;
    rate_limit(state, ip, addressed.deployment).await?;
    let deployment = enabled_deployment(state, addressed.deployment).await?;
    let target = addressed.at(deployment.org_id);
    session_of(state, target).await?.ok_or_else(|| {
        PushError::new(
            StatusCode::NOT_FOUND,
            "session.not.found",
            "no guest session has this token: configure the session first",
        )
    })?;
    let now = Utc::now();
    let existing = state
        .store
        .push_device(target.org, target.deployment, target.session)
        .await?;
    let read = match existing {
        Some(device) if device.live_at(now) => {
            return Err(already_registered());
        }
        // An expired registration is replaced as if it were gone.
        Some(device) => Some(device.version),
        None => None,
    };
    let device = PushDevice {
        org_id: deployment.org_id,
        deployment_id: target.deployment,
        session_id: target.session,
        provider: input.notification_provider,
        device_type: input.device_type,
        device_token: input.device_token,
        language: input.language,
        registered_at: now,
        updated_at: now,
        expires_at: PushDevice::expiry_from(now),
        version: 0,
    };
    match state.store.put_push_device(&device, read).await {
        Ok(()) => Ok(()),
        // Another request registered first.
        Err(StoreError::Conflict(_) | StoreError::Stale { .. }) => Err(already_registered()),
        Err(e) => Err(e.into()),
    }
}

/// The SDK's answer to a second registration: update instead.
fn already_registered() -> PushError {
    PushError::new(
        StatusCode::CONFLICT,
        "device.already.registered",
        "a device is already registered for this session; update it",
    )
}

/// Updates the session's device (a new device token or language).
#[utoipa::path(patch, path = "/api/v2/webmessaging/deployments/{deploymentId}/pushdevices/{token}",
    tag = "push devices",
    params(("deploymentId" = Uuid, Path), ("token" = String, Path, description = "the guest session token, as on the socket")),
    request_body = UpdateDevice,
    responses(
        (status = 204, description = "updated"),
        (status = 400, body = PushErrorResponse, description = "update.fields.missing, bad.request, invalid.path.parameter"),
        (status = 403, body = PushErrorResponse, description = "feature.toggle.disabled"),
        (status = 404, body = PushErrorResponse, description = "device.not.found: POST instead; deployment.not.found"),
        (status = 429, body = PushErrorResponse, description = "too.many.requests.retry.after, with Retry-After"),
    ))]
#[tracing::instrument(name = "push_device_update", skip_all)]
async fn update(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(update_inner(&state, ip, path, body).await, &headers)
}

async fn update_inner(
    state: &AppState,
    ip: IpAddr,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), PushError> {
    let addressed = parse_path(path)?;
    let input: UpdateDevice = parse_body(body, "update.fields.missing")?;
    rate_limit(state, ip, addressed.deployment).await?;
    let deployment = enabled_deployment(state, addressed.deployment).await?;
    let target = addressed.at(deployment.org_id);
    // A few rounds of compare-and-set: two updates of one session race only
    // when the app races itself.
    for _ in 0..3 {
        let now = Utc::now();
        let Some(mut device) = live_device(state, target, now).await? else {
            return Err(not_found_or_mismatch(state, target).await);
        };
        let read = device.version;
        device.device_token = input.device_token.clone();
        device.language = input.language.clone();
        if let Some(device_type) = input.device_type {
            device.device_type = device_type;
        }
        if let Some(provider) = input.notification_provider {
            device.provider = provider;
        }
        device.updated_at = now;
        device.expires_at = PushDevice::expiry_from(now);
        match state.store.put_push_device(&device, Some(read)).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Stale { .. }) => continue,
            Err(StoreError::NotFound) => return Err(PushError::device_not_found()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(PushError::new(
        StatusCode::CONFLICT,
        "device.update.failure",
        "the device changed while it was being updated; try again",
    ))
}

/// Removes the session's device. Needs no body (the SDK sends an empty
/// one), and works whether or not notifications are still enabled, so an
/// app can always take its device back.
#[utoipa::path(delete, path = "/api/v2/webmessaging/deployments/{deploymentId}/pushdevices/{token}",
    tag = "push devices",
    params(("deploymentId" = Uuid, Path), ("token" = String, Path, description = "the guest session token, as on the socket")),
    responses(
        (status = 204, description = "removed"),
        (status = 400, body = PushErrorResponse, description = "invalid.path.parameter"),
        (status = 404, body = PushErrorResponse, description = "device.not.found (the SDK takes it as done)"),
        (status = 429, body = PushErrorResponse, description = "too.many.requests.retry.after, with Retry-After"),
    ))]
#[tracing::instrument(name = "push_device_delete", skip_all)]
async fn unregister(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(unregister_inner(&state, ip, path).await, &headers)
}

async fn unregister_inner(
    state: &AppState,
    ip: IpAddr,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(), PushError> {
    let addressed = parse_path(path)?;
    rate_limit(state, ip, addressed.deployment).await?;
    // Unregistering works whatever the deployment's settings now are.
    let Some(deployment) = state
        .store
        .locate::<Deployment>(addressed.deployment)
        .await?
    else {
        return Err(PushError::device_not_found());
    };
    let target = addressed.at(deployment.org_id);
    let Some(device) = state
        .store
        .push_device(target.org, target.deployment, target.session)
        .await?
    else {
        return Err(not_found_or_mismatch(state, target).await);
    };
    match state
        .store
        .delete_push_device(
            target.org,
            target.deployment,
            target.session,
            device.version,
        )
        .await
    {
        // Gone or replaced meanwhile: either way this registration is over.
        Ok(()) | Err(StoreError::NotFound | StoreError::Stale { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn respond(result: Result<(), PushError>, headers: &HeaderMap) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.respond(headers),
    }
}

/// Counts a request from `ip` for `deployment`; refuses it when the bucket
/// is empty.
async fn rate_limit(state: &AppState, ip: IpAddr, deployment: Uuid) -> Result<(), PushError> {
    let rate = state.limits.current().push_requests;
    let key = Key::PushRequests {
        address: ip,
        deployment,
    };
    if let Err(refused) = state.limits.admit(key, rate).await {
        let mut error = PushError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too.many.requests.retry.after",
            format!("more than {rate} requests from this address; try again later"),
        );
        error.retry_after = Some(refused.retry_after_seconds());
        return Err(error);
    }
    Ok(())
}

/// The active deployment, when its published configuration lets apps
/// register for notifications.
async fn enabled_deployment(state: &AppState, id: Uuid) -> Result<Deployment, PushError> {
    let (deployment, published) = state
        .store
        .active_deployment(id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => PushError::new(
                StatusCode::NOT_FOUND,
                "deployment.not.found",
                "no active deployment has this id",
            ),
            e => e.into(),
        })?;
    if !notifications_enabled(&published.content) {
        return Err(PushError::new(
            StatusCode::FORBIDDEN,
            "feature.toggle.disabled",
            "push notifications are not enabled in this deployment's configuration",
        ));
    }
    Ok(deployment)
}

fn notifications_enabled(content: &ConfigurationContent) -> bool {
    content.messenger.apps.conversations.notifications.enabled
}

/// The guest session the token names, which must belong to the deployment
/// of the path.
async fn session_of(state: &AppState, target: Target) -> Result<Option<GuestSession>, PushError> {
    let session = state
        .routing
        .session(target.org, target.session)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "push devices: cannot read the session");
            PushError::unavailable()
        })?;
    match session {
        Some(session) if session.deployment_id != target.deployment => Err(PushError::mismatch()),
        session => Ok(session),
    }
}

/// The registration of `target` while it lives.
async fn live_device(
    state: &AppState,
    target: Target,
    now: DateTime<Utc>,
) -> Result<Option<PushDevice>, PushError> {
    Ok(state
        .store
        .push_device(target.org, target.deployment, target.session)
        .await?
        .filter(|d| d.live_at(now)))
}

/// Nothing is registered for `target`: say so, or that the session is
/// another deployment's when it is.
async fn not_found_or_mismatch(state: &AppState, target: Target) -> PushError {
    match session_of(state, target).await {
        Err(e) => e,
        Ok(_) => PushError::device_not_found(),
    }
}
