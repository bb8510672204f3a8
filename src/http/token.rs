//! `POST /oauth/token`: the client-credentials grant for API clients, and
//! the JWT-bearer grant (RFC 7523) for staff members' tools.
//!
//! Error codes are those of RFC 6749 section 5.2 (`invalid_client`,
//! `unsupported_grant_type`, `invalid_request`) in the project's
//! `{code, message}` body.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use crate::app::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

/// The JWT-bearer grant type of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Deserialize, ToSchema)]
pub(super) struct TokenRequest {
    /// `client_credentials`, or `urn:ietf:params:oauth:grant-type:jwt-bearer`.
    grant_type: Option<String>,
    /// The jwt-bearer grant's assertion: an ID token from the
    /// organization's staff IdP, issued to its staff integration's client.
    #[schema(value_type = Option<String>)]
    assertion: Option<SecretString>,
    /// The jwt-bearer grant's organization (its id); the default
    /// organization when absent.
    organization: Option<String>,
    /// Alternative to HTTP Basic (RFC 6749 2.3.1).
    client_id: Option<String>,
    #[schema(value_type = Option<String>)]
    client_secret: Option<SecretString>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse")
    }
}

/// Exchanges an API client's id and secret for a bearer access token.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "credentials",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, body = ErrorBody, description = "unsupported_grant_type, invalid_request, or invalid_grant (the jwt-bearer assertion is not a valid staff ID token of a member)"),
        (status = 401, body = ErrorBody, description = "invalid_client"),
    )
)]
#[tracing::instrument(name = "oauth_token", skip_all)]
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let Form(form) =
        form.map_err(|e| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text()))?;
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(JWT_BEARER) => return jwt_bearer(&state, form).await,
        _ => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer",
            ));
        }
    }
    let (client_id, secret) = match basic_credentials(&headers) {
        Some(pair) => pair,
        None => match (form.client_id, form.client_secret) {
            (Some(id), Some(secret)) => (id, secret),
            _ => {
                return Err(oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client credentials are required (HTTP Basic)",
                ));
            }
        },
    };
    let issued = state
        .auth
        .client_credentials(&client_id, &secret, chrono::Utc::now())
        .await
        .map_err(|e| match e {
            crate::auth::AuthError::Store(e) => ApiError::from(e),
            _ => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret",
            ),
        })?;
    Ok(axum::Json(TokenResponse {
        access_token: issued.token.expose_secret().to_owned(),
        token_type: "bearer",
        expires_in: issued.expires_in.as_secs(),
    }))
}

/// RFC 7523: a staff member trades an ID token from the organization's
/// staff IdP for an access token carrying the member's roles. The token
/// must verify against the staff integration (issuer, signature, audience
/// its client id, expiry), and its (issuer, subject) must be a member of
/// the organization already: unlike the console's sign-in, this grant
/// creates nobody.
async fn jwt_bearer(
    state: &AppState,
    form: TokenRequest,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let invalid_grant =
        |message: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", message);
    let Some(assertion) = form.assertion else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "assertion is required: an ID token from the organization's staff IdP",
        ));
    };
    let org = match form.organization.as_deref().map(str::trim) {
        None | Some("") => state.auth.default_org(),
        Some(text) => uuid::Uuid::parse_str(text)
            .map(crate::store::types::OrgId)
            .map_err(|_| {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "organization must be an organization's id",
                )
            })?,
    };
    let integration = match super::staff::staff_integration(state, org).await {
        Ok(integration) => integration,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(invalid_grant(
                "the organization has no staff sign-in integration",
            ));
        }
        Err(e) => return Err(e),
    };
    let identity = match state
        .oidc
        .verify_id_token(&integration, assertion.expose_secret(), None)
        .await
    {
        Ok(identity) => identity,
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
            return Err(ApiError::new(e.status(), e.code(), e.to_string()).retry_after(1));
        }
        Err(e) => {
            tracing::warn!(code = e.code(), %org, integration = %integration.meta.id, "jwt-bearer grant refused");
            return Err(invalid_grant(&format!(
                "the assertion is not a valid ID token of the organization's staff IdP ({})",
                e.code()
            )));
        }
    };
    let claim =
        crate::store::records::Member::identity_claim(org, &identity.issuer, &identity.subject);
    let Some(member) = state
        .store
        .lookup::<crate::store::records::Member>(&claim)
        .await?
    else {
        tracing::warn!(code = "not_a_member", %org, "jwt-bearer grant refused");
        return Err(invalid_grant(
            "the assertion's subject is not a member of the organization",
        ));
    };
    let issued = state
        .auth
        .member_access_token(&member, chrono::Utc::now())
        .map_err(|_| ApiError::internal())?;
    tracing::info!(%org, member = %member.meta.id, "member access token issued");
    Ok(axum::Json(TokenResponse {
        access_token: issued.token.expose_secret().to_owned(),
        token_type: "bearer",
        expires_in: issued.expires_in.as_secs(),
    }))
}

fn oauth_error(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message)
}

/// `Authorization: Basic base64(id:secret)`, form-urlencoded parts decoded as
/// RFC 6749 2.3.1 asks.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, SecretString)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = url_decode(id)?;
    let secret = url_decode(secret)?;
    Some((id, SecretString::from(secret)))
}

fn url_decode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}
