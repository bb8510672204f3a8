//! The one error type of the HTTP surface.
//!
//! Every failure answers `{"code", "message", "details"?}` with a status that
//! says whose fault it was. Internal causes never reach the client: an error
//! carries them as a [`Cause`] in its response's extensions, and the layer
//! that observes every request logs them once, inside the request's span.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::store::StoreError;

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `malformed_json`, `invalid`, `unauthorized`,
    /// `forbidden`, `not_found`, `version_conflict`, `in_use`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `unavailable`, `internal`, ...
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
    /// What went wrong inside, for the log only.
    pub cause: Option<Box<Cause>>,
}

/// An internal cause of an error answer, logged once by the HTTP layer and
/// never sent to the client.
#[derive(Clone, Debug)]
pub struct Cause {
    /// `true` when the service is at fault (an error), `false` when a
    /// dependency is (a warning: storage down, an IdP not answering).
    pub ours: bool,
    pub message: String,
}

impl Cause {
    /// Logs the cause of an answer with `status`.
    pub fn log(&self, status: u16) {
        if self.ours {
            tracing::error!(status, cause = %self.message, "request failed");
        } else {
            tracing::warn!(status, cause = %self.message, "request failed");
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            cause: None,
        }
    }

    /// Attaches an internal cause to log; `ours` when the service is at
    /// fault rather than a dependency.
    pub fn caused_by(mut self, ours: bool, message: impl Into<String>) -> Self {
        self.cause = Some(Box::new(Cause {
            ours,
            message: message.into(),
        }));
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected error",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage is unavailable, try again",
        )
        .retry_after(1)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: self.details,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(*cause);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Stale { expected, actual } => ApiError::conflict(
                "version_conflict",
                format!(
                    "version {expected} is stale: the record is at version {actual}; read it again"
                ),
            )
            .with_details(serde_json::json!({ "currentVersion": actual })),
            StoreError::InUse { key, by } => {
                let users: Vec<Value> = by
                    .iter()
                    .map(|k| serde_json::json!({ "type": kind_name(k.kind), "id": k.id }))
                    .collect();
                let names: Vec<String> = by
                    .iter()
                    .map(|k| format!("{} {}", kind_name(k.kind), k.id))
                    .collect();
                ApiError::conflict(
                    "in_use",
                    format!(
                        "{} {} is used by {}",
                        kind_name(key.kind),
                        key.id,
                        names.join(", ")
                    ),
                )
                .with_details(serde_json::json!({ "usedBy": users }))
            }
            StoreError::MissingRef(key) => {
                ApiError::invalid(format!("{} {} does not exist", kind_name(key.kind), key.id))
            }
            StoreError::Duplicate(message) => ApiError::conflict("duplicate", message),
            StoreError::Conflict(message) => ApiError::conflict("conflict", message),
            StoreError::Unavailable(message) => {
                ApiError::unavailable().caused_by(false, format!("storage unavailable: {message}"))
            }
            StoreError::Corrupt { key, message } => {
                ApiError::internal().caused_by(true, format!("corrupt record {key}: {message}"))
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::unauthorized("a bearer token is required"),
            AuthError::Invalid => ApiError::unauthorized("the credential is not valid"),
            AuthError::Csrf => ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a request that changes something with the session cookie needs the session's X-CSRF-Token header (from GET /auth/session)",
            ),
            AuthError::CrossOrigin => ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "a cookie-authenticated socket must come from the console's own origin",
            ),
            AuthError::Store(e) => e.into(),
        }
    }
}

/// The name a record kind has in API messages.
pub fn kind_name(kind: crate::engine::Kind) -> &'static str {
    use crate::engine::Kind;
    match kind {
        Kind::Organization => "organization",
        Kind::OidcIntegration => "OIDC integration",
        Kind::Configuration => "configuration",
        Kind::ConfigurationVersion => "configuration version",
        Kind::Deployment => "deployment",
        Kind::Queue => "queue",
        Kind::Member => "member",
        Kind::ApiClient => "API client",
        Kind::Setting => "setting",
        Kind::GuestSession => "session",
        Kind::Visitor => "visitor",
        Kind::Conversation => "conversation",
        Kind::AgentState => "agent",
        Kind::AuditEntry => "audit entry",
        Kind::DeletedDeployment => "deleted deployment",
    }
}
