//! Staff SSO routes: `GET /auth/login`, `GET /auth/callback`,
//! `POST /auth/logout`, `GET /auth/session`. The session cookie as a
//! credential is [`crate::auth::credential`]'s business.
//!
//! The login is switchboard's own authorization-code flow with PKCE, nonce
//! and `state` at the organization's staff integration (see
//! [`crate::auth::staff`] for what is kept where). The session cookie is
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` unless the public URL
//! is plain http on a loopback host (local development). Requests that
//! change state with the cookie must carry the session's CSRF token in
//! `X-CSRF-Token` (403 `csrf` otherwise); bearer requests need none.
//!
//! Nothing here logs a cookie, code, state, nonce, verifier or token:
//! handlers are instrumented with their arguments skipped, those values stay
//! in `SecretString`s, and the request trace carries the path only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::ClientIp;
use crate::app::AppState;
use crate::auth::AuthError;
use crate::auth::credential::{check_csrf, cookie_value};
use crate::auth::oidc::OidcError;
use crate::auth::staff::{
    self, LOGIN_COOKIE, NewStaffLogin, SESSION_COOKIE, STAFF_LOGIN_TTL, STAFF_SESSION_TTL,
    StaffError,
};
use crate::engine::Kind;
use crate::limits::Key;
use crate::store::audit::{Actor, ActorKind, AuditAction, AuditEntry, AuditTarget, changes};
use crate::store::records::{OidcIntegration, Organization};
use crate::store::types::{OrgId, Role};

pub const LOGIN_PATH: &str = "/auth/login";
pub const CALLBACK_PATH: &str = "/auth/callback";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(callback))
        .routes(routes!(logout))
        .routes(routes!(session))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginQuery {
    /// The organization whose staff sign in; the default one when absent.
    org: Option<String>,
    /// A local path to return to after sign-in (`/console`); `/` when
    /// absent. Other sites are refused.
    return_to: Option<String>,
}

/// Secrets stay in `SecretString`s, whose `Debug` shows nothing.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<SecretString>,
    state: Option<SecretString>,
    /// RFC 9207: must be the integration's issuer when present.
    iss: Option<String>,
    /// The IdP's OAuth error, when it refused the sign-in.
    error: Option<String>,
}

/// The signed-in member, for the console.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    member_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    org_id: OrgId,
    display_name: String,
    email: Option<String>,
    roles: Vec<Role>,
    /// Send it as `X-CSRF-Token` with every state-changing request that
    /// relies on the session cookie.
    csrf_token: String,
    expires_at: chrono::DateTime<Utc>,
}

/// Starts a staff sign-in: redirects to the IdP of the organization's staff
/// integration.
#[utoipa::path(get, path = "/auth/login", tag = "staff sign-in",
    params(
        ("org" = Option<String>, Query, description = "the organization whose staff sign in; the default one when absent"),
        ("returnTo" = Option<String>, Query, description = "a local path to return to (/console); other sites are refused"),
    ),
    responses(
        (status = 302, description = "to the IdP's authorize URL; sets the sb_login cookie"),
        (status = 303, description = "to /setup: a browser on an organization without staff sign-in"),
        (status = 400, body = ErrorBody, description = "invalid_return_to, bad_request"),
        (status = 403, body = ErrorBody, description = "integration_inactive"),
        (status = 404, body = ErrorBody, description = "not_found (organization), staff_sso_not_configured"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After: too many sign-ins started from this address"),
        (status = 502, body = ErrorBody, description = "the IdP is unreachable or misconfigured"),
    ))]
#[tracing::instrument(name = "staff_login", skip_all)]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    // Each start stores a login transaction: anonymous storage, so it is
    // counted per address before anything else.
    let rate = state.limits.current().staff_logins;
    state
        .limits
        .admit(Key::StaffLogins { address: ip }, rate)
        .await
        .map_err(|refused| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {rate} sign-ins started from this address; try again later"),
            )
            .retry_after(refused.retry_after_seconds())
        })?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let return_to = query.return_to.unwrap_or_else(|| "/".to_owned());
    if !staff::is_local_path(&return_to) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_return_to",
            "returnTo must be a path on this service, such as /console",
        ));
    }
    let org = match query.org.as_deref() {
        None | Some("") => state.auth.default_org(),
        Some(text) => OrgId(
            Uuid::parse_str(text)
                .map_err(|_| ApiError::bad_request("org must be an organization id"))?,
        ),
    };
    let integration = match staff_integration(&state, org).await {
        Ok(integration) => integration,
        // A fresh install, in a browser: the first-run page is the way on.
        Err(e) if e.code == "staff_sso_not_configured" && wants_html(&headers) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/setup"));
            return Ok(response);
        }
        Err(e) => return Err(e),
    };
    let login = NewStaffLogin::generate();
    let url = state
        .oidc
        .authorize_url(
            &integration,
            &callback_url(&state),
            &login.state,
            login.nonce.expose_secret(),
            &login.challenge,
        )
        .await
        .map_err(|e| oidc_error(e, org, integration.meta.id))?;
    state
        .auth
        .save_staff_login(&login, org, integration.meta.id, &return_to)
        .await
        .map_err(staff_error)?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, header_value(url.as_str())?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(
        header::SET_COOKIE,
        cookie(
            &state,
            LOGIN_COOKIE,
            login.browser.expose_secret(),
            CALLBACK_PATH,
            STAFF_LOGIN_TTL.as_secs(),
        )?,
    );
    tracing::info!(%org, integration = %integration.meta.id, "staff sign-in started");
    Ok(response)
}

/// Whether a browser navigated here (it accepts HTML), rather than a
/// script that wants the JSON error.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Where the IdP sends the browser back: redeems the code, signs the member
/// in (creating it with the agent role on first sign-in), sets the session
/// cookie and redirects to `returnTo`.
#[utoipa::path(get, path = "/auth/callback", tag = "staff sign-in",
    params(
        ("code" = Option<String>, Query),
        ("state" = Option<String>, Query),
        ("iss" = Option<String>, Query, description = "RFC 9207: must be the integration's issuer when present"),
        ("error" = Option<String>, Query, description = "the IdP's OAuth error, when it refused"),
    ),
    responses(
        (status = 303, description = "to returnTo, with the sb_session cookie"),
        (status = 400, body = ErrorBody, description = "invalid_state (unknown, used, expired, or another browser's), invalid_grant, issuer_mismatch, idp_refused"),
        (status = 401, body = ErrorBody, description = "the ID token failed verification"),
        (status = 403, body = ErrorBody, description = "integration_inactive"),
        (status = 502, body = ErrorBody, description = "the IdP is unreachable or misconfigured"),
    ))]
#[tracing::instrument(name = "staff_callback", skip_all)]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let invalid_state = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "unknown, used or expired sign-in state; sign in again",
        )
    };
    let Some(login_state) = query.state else {
        return Err(invalid_state());
    };
    let login = state
        .auth
        .take_staff_login(
            login_state.expose_secret(),
            cookie_value(&headers, LOGIN_COOKIE),
        )
        .await
        .map_err(|e| {
            if matches!(e, StaffError::InvalidState) {
                tracing::warn!(code = "invalid_state", "staff sign-in refused");
            }
            staff_error(e)
        })?;
    let org = login.org;
    if let Some(error) = query.error {
        // Only a well-formed OAuth error code is repeated: the query is
        // anyone's to write.
        let shown = if !error.is_empty()
            && error.len() <= 64
            && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            error
        } else {
            "unknown".to_owned()
        };
        tracing::warn!(code = "idp_refused", %org, idp_error = %shown, "staff sign-in refused by the IdP");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "idp_refused",
            format!("the IdP did not sign you in ({shown}); sign in again"),
        ));
    }
    let Some(code) = query.code else {
        return Err(ApiError::bad_request("the callback carries no code"));
    };
    let integration = staff_integration(&state, org).await?;
    if integration.meta.id != login.integration {
        // The organization changed its staff integration meanwhile.
        return Err(invalid_state());
    }
    if let Some(iss) = &query.iss
        && *iss != integration.issuer
    {
        tracing::warn!(code = "issuer_mismatch", %org, integration = %integration.meta.id, "staff sign-in refused");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "issuer_mismatch",
            "the authorization response came from another issuer than the integration's",
        ));
    }
    let identity = state
        .oidc
        .exchange_code(
            &integration,
            None,
            code.expose_secret(),
            &callback_url(&state),
            Some(login.verifier.expose_secret()),
            Some(login.nonce.expose_secret()),
        )
        .await
        .map_err(|e| oidc_error(e, org, integration.meta.id))?;
    let now = Utc::now();
    let (member, created) = state
        .auth
        .member_for_sign_in(org, &identity, now)
        .await
        .map_err(ApiError::from)?;
    let member_id = member.meta.id;
    // A member made by this sign-in is shown whole in its entry.
    let made = if created {
        changes(None, serde_json::to_value(&member).ok().as_ref())
    } else {
        Vec::new()
    };
    state
        .store
        .audit_alone(&AuditEntry::new(
            org,
            Actor {
                kind: ActorKind::Member,
                id: Some(member_id),
            },
            AuditAction::SignIn,
            AuditTarget::new(Kind::Member, member_id),
            made,
            now,
        ))
        .await;
    let new = state
        .auth
        .start_staff_session(member, now)
        .await
        .map_err(staff_error)?;
    tracing::info!(%org, member = %member_id, created, "staff member signed in");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, header_value(&login.return_to)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(
        header::SET_COOKIE,
        cookie(
            &state,
            SESSION_COOKIE,
            new.cookie.expose_secret(),
            "/",
            STAFF_SESSION_TTL.as_secs(),
        )?,
    );
    headers.append(
        header::SET_COOKIE,
        cookie(&state, LOGIN_COOKIE, "", CALLBACK_PATH, 0)?,
    );
    Ok(response)
}

/// Ends the console session: needs the session's `X-CSRF-Token`. Without a
/// live session it only clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "staff sign-in",
    params(("X-CSRF-Token" = String, Header, description = "the session's CSRF token")),
    responses(
        (status = 204, description = "signed out; the cookie is expired"),
        (status = 403, body = ErrorBody, description = "csrf"),
    ))]
#[tracing::instrument(name = "staff_logout", skip_all)]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(cookie_value) = cookie_value(&headers, SESSION_COOKIE) {
        match state.auth.staff_session(cookie_value, Utc::now()).await {
            Ok(session) => {
                check_csrf(&headers, &session)?;
                state.auth.end_staff_session(cookie_value).await?;
                tracing::info!(member = %session.member.meta.id, "staff member signed out");
            }
            Err(AuthError::Invalid | AuthError::Missing) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(&state, SESSION_COOKIE, "", "/", 0)?,
    );
    Ok(response)
}

/// The signed-in member and its CSRF token, from the session cookie.
#[utoipa::path(get, path = "/auth/session", tag = "staff sign-in",
    responses(
        (status = 200, body = SessionView),
        (status = 401, body = ErrorBody, description = "no live session"),
    ))]
#[tracing::instrument(name = "staff_session", skip_all)]
async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<SessionView>, ApiError> {
    let cookie_value = cookie_value(&headers, SESSION_COOKIE)
        .ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    let session = state
        .auth
        .staff_session(cookie_value, Utc::now())
        .await
        .map_err(|e| match e {
            AuthError::Store(e) => ApiError::from(e),
            _ => ApiError::unauthorized("the session is over; sign in again"),
        })?;
    let member = session.member;
    Ok(axum::Json(SessionView {
        member_id: member.meta.id,
        org_id: member.org_id,
        display_name: member.display_name,
        email: member.email,
        roles: member.roles,
        csrf_token: session.csrf_token.expose_secret().to_owned(),
        expires_at: session.expires_at,
    }))
}

/// `<public URL>/auth/callback`: the redirect URI registered at the IdP.
fn callback_url(state: &AppState) -> String {
    format!(
        "{}{CALLBACK_PATH}",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

/// Cookies are `Secure` unless the service is reached over plain http on a
/// loopback host, where browsers would drop them.
fn secure_cookies(public_url: &url::Url) -> bool {
    let loopback = match public_url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    !(public_url.scheme() == "http" && loopback)
}

fn cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
) -> Result<HeaderValue, ApiError> {
    let secure = if secure_cookies(&state.config.public_url) {
        "; Secure"
    } else {
        ""
    };
    let mut value = HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .map_err(|_| ApiError::internal())?;
    value.set_sensitive(true);
    Ok(value)
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text).map_err(|_| ApiError::internal())
}

/// The organization's staff integration, or why there is none.
pub(super) async fn staff_integration(
    state: &AppState,
    org: OrgId,
) -> Result<OidcIntegration, ApiError> {
    let organization = state.store.get::<Organization>(org, org.0).await?;
    let id = organization.staff_integration_id.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "staff_sso_not_configured",
            "this organization has no staff integration: an admin sets staffIntegrationId with PUT /api/v2/organizations/me",
        )
    })?;
    Ok(state.store.get::<OidcIntegration>(org, id).await?)
}

fn oidc_error(e: OidcError, org: OrgId, integration: Uuid) -> ApiError {
    tracing::warn!(code = e.code(), %org, %integration, error = %e, "staff sign-in failed");
    let error = ApiError::new(e.status(), e.code(), e.to_string());
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        error.retry_after(1)
    } else {
        error
    }
}

fn staff_error(e: StaffError) -> ApiError {
    match e {
        StaffError::InvalidState => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "unknown, used or expired sign-in state, or one begun in another browser; sign in again",
        ),
        StaffError::Invalid(message) => ApiError::invalid(message),
        StaffError::UnknownOrg(_) => ApiError::not_found(),
        StaffError::Store(e) => ApiError::from(e),
        StaffError::Internal(message) => {
            ApiError::internal().caused_by(true, format!("staff sign-in failed: {message}"))
        }
    }
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        staff_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_except_on_loopback_http() {
        for (url, secure) in [
            ("http://127.0.0.1:8080", false),
            ("http://localhost:3000", false),
            ("http://[::1]:8080", false),
            ("https://localhost", true),
            ("http://chat.example.com", true),
            ("https://chat.example.com", true),
        ] {
            assert_eq!(
                secure_cookies(&url::Url::parse(url).unwrap()),
                secure,
                "{url}"
            );
        }
    }
}
