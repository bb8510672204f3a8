//! The guest token endpoints: OIDC code (or ID token) → session JWT, refresh,
//! logout, the backend-owned login transaction, and the session keys' JWKS.
//!
//! Browsers call these from the deployment's allowed origins. A preflight
//! cannot name its deployment (that is in the body), so it is answered for
//! any origin; the request itself is refused with 403 `origin_not_allowed`
//! when its `Origin` is not one the deployment admits, before anything is
//! redeemed, and only allowed web origins get `Access-Control-Allow-Origin`.
//! Genesys's Transport SDK sends no `Origin` on these endpoints (it does on
//! the socket and history); a bare app host it might send is admitted when
//! the deployment lists it.
//!
//! A login's `redirectUri` is checked against the deployment: a web one
//! must be on an allowed origin, an app's private-use scheme
//! (`com.example.app:/callback`) must be listed in
//! `allowedAppRedirectSchemes`.
//!
//! Every failure answers `{code, message}` and is logged for the admin with
//! the deployment and integration ids and the code, never with a code,
//! token, verifier, state or secret: handlers are instrumented with all
//! arguments skipped, and those values are held in `SecretString`s.
//!
//! The endpoints are rate-limited per client address, deployment and
//! endpoint group (`SWITCHBOARD_LIMIT_TOKEN_REQUESTS`); the address is the
//! peer's, or what a trusted proxy says it is.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::options;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::cors;
use super::error::{ApiError, ErrorBody};
use super::extract::{ClientIp, Json};
use crate::app::AppState;
use crate::auth::credential::bearer;
use crate::auth::crypto;
use crate::auth::oidc::{self, OidcError, VerifiedIdentity};
use crate::auth::refresh::NewFamily;
use crate::auth::visitor_token::{
    JwkSet, SessionError, SessionGrant, VisitorIdentity, VisitorTokens,
};
use crate::engine::{Space, StashMode};
use crate::limits::Key;
use crate::store::StoreError;
use crate::store::records::{Deployment, OidcIntegration};

mod refresh;

/// How long a backend-owned login may take between start and complete.
pub(super) const LOGIN_TRANSACTION_TTL: Duration = Duration::from_secs(10 * 60);

const EXCHANGE_PATH: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";
const REFRESH_PATH: &str = "/api/v2/webdeployments/token/refresh";
const REVOKE_PATH: &str = "/api/v2/webdeployments/token/revoke";
const START_PATH: &str = "/api/v2/webdeployments/token/oauth/start";
const COMPLETE_PATH: &str = "/api/v2/webdeployments/token/oauth/complete";

pub(super) fn router() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(exchange))
        .merge(refresh::router())
        .routes(routes!(revoke))
        .routes(routes!(login_start))
        .routes(routes!(login_complete))
        .routes(routes!(jwks));
    for path in [
        EXCHANGE_PATH,
        REFRESH_PATH,
        REVOKE_PATH,
        START_PATH,
        COMPLETE_PATH,
    ] {
        router = router.route(
            path,
            options(|headers: HeaderMap| async move {
                cors::preflight(&headers, "POST, DELETE, OPTIONS")
            }),
        );
    }
    router
}

/// `{"deploymentId", "oauth": {...}}`: a code to redeem, or an ID token.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExchangeRequest {
    deployment_id: String,
    oauth: OAuthInput,
}

/// Either `code` + `redirectUri` (+ `codeVerifier`, `nonce`, `maxAge`,
/// `iss`), or `idToken` (+ `nonce`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct OAuthInput {
    #[schema(value_type = Option<String>)]
    code: Option<SecretString>,
    redirect_uri: Option<String>,
    #[schema(value_type = Option<String>)]
    code_verifier: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    nonce: Option<SecretString>,
    #[expect(
        dead_code,
        reason = "accepted for compatibility; the IdP enforces it at login"
    )]
    max_age: Option<u64>,
    /// RFC 9207: the `iss` of the authorization response; must be the
    /// integration's issuer.
    iss: Option<String>,
    #[schema(value_type = Option<String>)]
    id_token: Option<SecretString>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoginStartRequest {
    deployment_id: String,
    /// Where the IdP sends the browser back; its origin must be one the
    /// deployment allows.
    redirect_uri: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoginCompleteRequest {
    deployment_id: String,
    #[schema(value_type = String)]
    code: SecretString,
    #[schema(value_type = String)]
    state: SecretString,
    /// RFC 9207: the `iss` of the authorization response.
    iss: Option<String>,
}

/// A session JWT and the refresh token of its session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenPair {
    jwt: String,
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LoginStarted {
    /// Send the browser here.
    authorize_url: String,
    /// Hand it back to `complete` with the code.
    state: String,
}

/// What a login transaction keeps between start and complete. The PKCE
/// verifier is sealed: it never leaves switchboard in the clear.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginTransaction {
    deployment: Uuid,
    integration: Uuid,
    redirect_uri: String,
    /// The web origin of the page that started the login (its `Origin`):
    /// the sign-in popup hands the authorization response to this origin
    /// only. `None` for a start without one (an app, a server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    sealed_nonce: String,
    sealed_verifier: String,
}

/// What a request got to know before it succeeded or failed: the CORS
/// answer and the admin's log line need it either way.
#[derive(Default)]
struct Scope {
    deployment: Option<Deployment>,
    integration: Option<Uuid>,
}

/// A deployment ready for visitor logins, and its integration.
struct Target {
    deployment: Deployment,
    integration: OidcIntegration,
}

/// Exchanges an authorization code (with PKCE) or an ID token for a session
/// JWT of the deployment and a refresh token.
#[utoipa::path(post, path = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange", tag = "guest tokens",
    request_body = ExchangeRequest,
    responses(
        (status = 200, body = TokenPair),
        (status = 400, body = ErrorBody, description = "invalid_grant, redirect_uri_not_allowed, authentication_disabled, issuer_mismatch, bad_request"),
        (status = 401, body = ErrorBody, description = "the ID token failed verification: nonce_mismatch, audience_mismatch, signature_invalid, token_expired, ..."),
        (status = 403, body = ErrorBody, description = "integration_inactive, origin_not_allowed"),
        (status = 404, body = ErrorBody, description = "deployment_not_found"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
        (status = 502, body = ErrorBody, description = "the IdP is unreachable or misconfigured"),
    ))]
#[tracing::instrument(name = "guest_token_exchange", skip_all)]
async fn exchange(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<ExchangeRequest>, ApiError>,
) -> Response {
    let mut scope = Scope::default();
    let result = exchange_inner(&state, ip, &headers, body, &mut scope).await;
    finish(scope, &headers, "exchange", result.map(axum::Json))
}

async fn exchange_inner(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    body: Result<Json<ExchangeRequest>, ApiError>,
    scope: &mut Scope,
) -> Result<TokenPair, ApiError> {
    let Json(body) = body?;
    let target = prepare(state, ip, headers, &body.deployment_id, "login", scope).await?;
    let integration = &target.integration;
    let oauth = body.oauth;
    let identity = match (oauth.id_token, oauth.code) {
        (Some(id_token), None) => state
            .oidc
            .redeem_id_token(
                integration,
                id_token.expose_secret(),
                oauth.nonce.as_ref().map(|n| n.expose_secret()),
            )
            .await
            .map_err(oidc_error)?,
        (None, Some(code)) => {
            let redirect_uri = oauth.redirect_uri.ok_or_else(|| {
                ApiError::bad_request("oauth.redirectUri is required with oauth.code")
            })?;
            check_redirect_uri(&target.deployment, &redirect_uri)?;
            check_response_issuer(integration, oauth.iss.as_deref())?;
            let secret = client_secret(state, integration)?;
            state
                .oidc
                .exchange_code(
                    integration,
                    secret.as_ref(),
                    code.expose_secret(),
                    &redirect_uri,
                    oauth.code_verifier.as_ref().map(|v| v.expose_secret()),
                    oauth.nonce.as_ref().map(|n| n.expose_secret()),
                )
                .await
                .map_err(oidc_error)?
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "oauth carries either code or idToken, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "oauth.code (with redirectUri) or oauth.idToken is required",
            ));
        }
    };
    start_session(state, &target, identity).await
}

/// Logs out: the bearer session JWT and its whole session (refresh tokens
/// included) stop working, and the session's sockets are told.
#[utoipa::path(delete, path = "/api/v2/webdeployments/token/revoke", tag = "guest tokens",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = ErrorBody, description = "no, invalid, expired or already revoked session JWT"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
    ))]
#[tracing::instrument(name = "guest_token_revoke", skip_all)]
async fn revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Response {
    let mut scope = Scope::default();
    let result = revoke_inner(&state, ip, &headers, &mut scope).await;
    finish(
        scope,
        &headers,
        "revoke",
        result.map(|()| StatusCode::NO_CONTENT),
    )
}

async fn revoke_inner(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    scope: &mut Scope,
) -> Result<(), ApiError> {
    // The deployment is known only from the token: count by address alone.
    rate_limit(state, "revoke", ip, None).await?;
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("a bearer session JWT is required"))?;
    let now = Utc::now();
    let claims = state
        .visitor_tokens
        .verify_own_audience(token.expose_secret(), now)
        .await?;
    if let Some(deployment) = state.store.locate::<Deployment>(claims.aud).await? {
        check_origin(&deployment, headers)?;
        scope.deployment = Some(deployment);
    }
    let revoked = state.visitor_tokens.revoke(&claims, now).await?;
    state.routing.session_revoked(revoked).await;
    Ok(())
}

/// Starts a login held by switchboard: it keeps the nonce and PKCE verifier
/// (single use, 10 minutes) and answers the IdP's authorize URL and the
/// `state` to hand back with the code.
#[utoipa::path(post, path = "/api/v2/webdeployments/token/oauth/start", tag = "guest tokens",
    request_body = LoginStartRequest,
    responses(
        (status = 200, body = LoginStarted),
        (status = 400, body = ErrorBody, description = "redirect_uri_not_allowed, authentication_disabled"),
        (status = 403, body = ErrorBody, description = "integration_inactive, origin_not_allowed"),
        (status = 404, body = ErrorBody, description = "deployment_not_found"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
        (status = 502, body = ErrorBody, description = "the IdP is unreachable or misconfigured"),
    ))]
#[tracing::instrument(name = "guest_login_start", skip_all)]
async fn login_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<LoginStartRequest>, ApiError>,
) -> Response {
    let mut scope = Scope::default();
    let result = login_start_inner(&state, ip, &headers, body, &mut scope).await;
    finish(scope, &headers, "login_start", result.map(axum::Json))
}

async fn login_start_inner(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    body: Result<Json<LoginStartRequest>, ApiError>,
    scope: &mut Scope,
) -> Result<LoginStarted, ApiError> {
    let Json(body) = body?;
    let target = prepare(state, ip, headers, &body.deployment_id, "login", scope).await?;
    check_redirect_uri(&target.deployment, &body.redirect_uri)?;
    let login_state = oidc::random_state();
    let nonce = oidc::random_state();
    let (verifier, challenge) = oidc::pkce_pair();
    let url = state
        .oidc
        .authorize_url(
            &target.integration,
            &body.redirect_uri,
            &login_state,
            &nonce,
            &challenge,
        )
        .await
        .map_err(oidc_error)?;
    let id = crypto::digest(&login_state);
    let seal = |value: &SecretString, field: &str| {
        state
            .auth
            .sealer()
            .seal(value, &format!("login/{id}/{field}"))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot seal a login transaction");
                ApiError::internal()
            })
    };
    // `prepare` admitted the origin for the deployment; only a web origin
    // can receive the popup's message.
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| o.contains("://") && target.deployment.allows_origin(o))
        .map(str::to_owned);
    let transaction = LoginTransaction {
        deployment: target.deployment.meta.id,
        integration: target.integration.meta.id,
        redirect_uri: body.redirect_uri,
        origin,
        sealed_nonce: seal(&SecretString::from(nonce), "nonce")?,
        sealed_verifier: seal(&verifier, "verifier")?,
    };
    let value = serde_json::to_vec(&transaction).map_err(|_| ApiError::internal())?;
    let written = state
        .store
        .engine()
        .stash(
            Space::LoginTransaction,
            &id,
            &value,
            LOGIN_TRANSACTION_TTL,
            StashMode::IfAbsent,
        )
        .await
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    if !written {
        return Err(ApiError::internal());
    }
    Ok(LoginStarted {
        authorize_url: url.to_string(),
        state: login_state,
    })
}

/// Completes a login started with `oauth/start`: redeems the code with the
/// transaction's PKCE verifier and nonce. A `state` works once.
#[utoipa::path(post, path = "/api/v2/webdeployments/token/oauth/complete", tag = "guest tokens",
    request_body = LoginCompleteRequest,
    responses(
        (status = 200, body = TokenPair),
        (status = 400, body = ErrorBody, description = "invalid_state (unknown, used or expired), invalid_grant, issuer_mismatch"),
        (status = 401, body = ErrorBody, description = "the ID token failed verification"),
        (status = 403, body = ErrorBody, description = "integration_inactive, origin_not_allowed"),
        (status = 404, body = ErrorBody, description = "deployment_not_found"),
        (status = 429, body = ErrorBody, description = "rate_limited, with Retry-After"),
        (status = 502, body = ErrorBody, description = "the IdP is unreachable or misconfigured"),
    ))]
#[tracing::instrument(name = "guest_login_complete", skip_all)]
async fn login_complete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Json<LoginCompleteRequest>, ApiError>,
) -> Response {
    let mut scope = Scope::default();
    let result = login_complete_inner(&state, ip, &headers, body, &mut scope).await;
    finish(scope, &headers, "login_complete", result.map(axum::Json))
}

async fn login_complete_inner(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    body: Result<Json<LoginCompleteRequest>, ApiError>,
    scope: &mut Scope,
) -> Result<TokenPair, ApiError> {
    let Json(body) = body?;
    let target = prepare(state, ip, headers, &body.deployment_id, "login", scope).await?;
    let id = crypto::digest(body.state.expose_secret());
    let invalid_state = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "unknown, used or expired login state; start the login again",
        )
    };
    let taken = state
        .store
        .engine()
        .take(Space::LoginTransaction, &id)
        .await
        .map_err(|e| ApiError::from(StoreError::from(e)))?
        .ok_or_else(invalid_state)?;
    let transaction: LoginTransaction =
        serde_json::from_slice(&taken).map_err(|_| invalid_state())?;
    if transaction.deployment != target.deployment.meta.id
        || transaction.integration != target.integration.meta.id
    {
        return Err(invalid_state());
    }
    check_response_issuer(&target.integration, body.iss.as_deref())?;
    let open = |sealed: &str, field: &str| {
        state
            .auth
            .sealer()
            .open(sealed, &format!("login/{id}/{field}"))
            .map_err(|_| invalid_state())
    };
    let nonce = open(&transaction.sealed_nonce, "nonce")?;
    let verifier = open(&transaction.sealed_verifier, "verifier")?;
    let secret = client_secret(state, &target.integration)?;
    let identity = state
        .oidc
        .exchange_code(
            &target.integration,
            secret.as_ref(),
            body.code.expose_secret(),
            &transaction.redirect_uri,
            Some(verifier.expose_secret()),
            Some(nonce.expose_secret()),
        )
        .await
        .map_err(oidc_error)?;
    start_session(state, &target, identity).await
}

/// The deployment a pending backend-owned login (named by its `state`) is
/// for, and the origin that started it, without using the login up: the
/// widget's callback page hands the authorization response only to that
/// origin.
pub(super) async fn login_origin(
    state: &AppState,
    login_state: &str,
) -> Option<(Uuid, Option<String>)> {
    let id = crypto::digest(login_state);
    let value = state
        .store
        .engine()
        .peek(Space::LoginTransaction, &id)
        .await
        .ok()??;
    serde_json::from_slice::<LoginTransaction>(&value)
        .ok()
        .map(|t| (t.deployment, t.origin))
}

/// The public keys of session JWTs (RFC 7517), for anyone who verifies them.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "guest tokens",
    responses((status = 200, body = JwkSet), (status = 503, body = ErrorBody)))]
async fn jwks(State(tokens): State<VisitorTokens>) -> Result<Response, ApiError> {
    let keys = tokens.jwks().await?;
    let mut response = axum::Json(keys).into_response();
    let headers = response.headers_mut();
    // Short: verifiers refetch on an unknown kid anyway, and keys rotate.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(response)
}

/// The checks every login, refresh and start shares: a deployment id that
/// names an active deployment, the caller's rate, its origin, and an
/// active integration of the published configuration.
async fn prepare(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    deployment_id: &str,
    group: &'static str,
    scope: &mut Scope,
) -> Result<Target, ApiError> {
    let id = Uuid::parse_str(deployment_id).map_err(|_| deployment_not_found())?;
    rate_limit(state, group, ip, Some(id)).await?;
    let (deployment, published) = state
        .store
        .active_deployment(id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => deployment_not_found(),
            e => e.into(),
        })?;
    scope.deployment = Some(deployment.clone());
    check_origin(&deployment, headers)?;
    let settings = published.content.authentication_settings;
    let integration_id = settings
        .integration_id
        .filter(|_| settings.enabled)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "authentication_disabled",
                "the deployment's configuration does not enable authentication",
            )
        })?;
    scope.integration = Some(integration_id);
    let integration = match state
        .store
        .get::<OidcIntegration>(deployment.org_id, integration_id)
        .await
    {
        Ok(integration) if integration.active => integration,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(oidc_error(OidcError::IntegrationInactive));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Target {
        deployment,
        integration,
    })
}

/// Counts a request of `group` from `ip` for `deployment`; refuses it when
/// the bucket is empty.
async fn rate_limit(
    state: &AppState,
    group: &'static str,
    ip: IpAddr,
    deployment: Option<Uuid>,
) -> Result<(), ApiError> {
    let rate = state.limits.current().token_requests;
    let key = Key::TokenRequests {
        group,
        address: ip,
        deployment,
    };
    state.limits.admit(key, rate).await.map_err(|refused| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {rate} requests from this address; try again later"),
        )
        .retry_after(refused.retry_after_seconds())
    })
}

/// A browser request from an origin the deployment does not allow is
/// refused before anything happens; requests without `Origin` (apps) pass,
/// and so do listed app hosts.
fn check_origin(deployment: &Deployment, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) => match origin.to_str() {
            Ok(origin) if deployment.admits_origin(origin) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin is not one the deployment allows",
            )),
        },
    }
}

/// A web redirect URI's origin must be one the deployment allows (any,
/// with `allowAllDomains`), so a code cannot be sent to someone else's
/// page. Any other scheme is an app's (RFC 8252 7.1) and must be listed in
/// `allowedAppRedirectSchemes`: "allow all" never covers it, and it carries
/// no fragment. PKCE, which the IdP enforces, binds the code to the app that
/// started the login.
fn check_redirect_uri(deployment: &Deployment, redirect_uri: &str) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "redirect_uri_not_allowed",
            "the redirect URI is not on an origin or app scheme the deployment allows",
        )
    };
    let url = url::Url::parse(redirect_uri).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") {
        return if url.fragment().is_none() && deployment.allows_redirect_scheme(url.scheme()) {
            Ok(())
        } else {
            Err(refused())
        };
    }
    if deployment.allow_all_domains {
        return Ok(());
    }
    if url.fragment().is_some() {
        return Err(refused());
    }
    if deployment.allows_origin(&url.origin().ascii_serialization()) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// RFC 9207: an authorization response's `iss`, when the client passes it
/// on, must be the integration's issuer (mix-up defence).
fn check_response_issuer(integration: &OidcIntegration, iss: Option<&str>) -> Result<(), ApiError> {
    match iss {
        Some(iss) if iss != integration.issuer => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "issuer_mismatch",
            "the authorization response came from another issuer than the integration's",
        )),
        _ => Ok(()),
    }
}

/// The integration's client secret, opened from its sealed form.
fn client_secret(
    state: &AppState,
    integration: &OidcIntegration,
) -> Result<Option<SecretString>, ApiError> {
    integration
        .sealed_client_secret
        .as_deref()
        .map(|sealed| {
            state
                .auth
                .sealer()
                .open(sealed, &OidcIntegration::secret_context(integration.meta.id))
        })
        .transpose()
        .map_err(|e| {
            tracing::error!(integration = %integration.meta.id, error = %e, "the integration's client secret does not open");
            ApiError::internal()
        })
}

/// A verified visitor becomes a session: a refresh-token family living the
/// integration's maximum refresh-token lifetime, and a session JWT that does
/// not outlive the IdP's token.
async fn start_session(
    state: &AppState,
    target: &Target,
    identity: VerifiedIdentity,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let not_after = identity.expires_at;
    let visitor = VisitorIdentity {
        issuer: identity.issuer,
        subject: identity.subject,
        email: identity.email,
        email_verified: identity.email_verified,
        name: identity.name,
        given_name: identity.given_name,
        family_name: identity.family_name,
    };
    let (sid, refresh_token) = state
        .visitor_tokens
        .start_family(
            NewFamily {
                deployment: target.deployment.meta.id,
                org: target.deployment.org_id,
                integration: target.integration.meta.id,
                identity: visitor.clone(),
                lifetime: Duration::from_secs(u64::from(
                    target.integration.max_refresh_token_lifetime_seconds,
                )),
            },
            now,
        )
        .await?;
    let issued = state
        .visitor_tokens
        .issue(
            &SessionGrant {
                deployment: target.deployment.meta.id,
                org: target.deployment.org_id,
                identity: visitor,
                sid,
                not_after,
            },
            now,
        )
        .await?;
    Ok(TokenPair {
        jwt: issued.jwt.expose_secret().to_owned(),
        refresh_token: refresh_token.expose_secret().to_owned(),
    })
}

/// Turns a handler's result into the answer: CORS for the deployment's
/// allowed origins on success and failure alike (a widget must read why it
/// failed), and the admin's log line on failure.
fn finish<T: IntoResponse>(
    scope: Scope,
    headers: &HeaderMap,
    endpoint: &'static str,
    result: Result<T, ApiError>,
) -> Response {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.code,
    };
    let mut response = match result {
        Ok(value) => value.into_response(),
        Err(error) => {
            let deployment = scope
                .deployment
                .as_ref()
                .map(|d| tracing::field::display(d.meta.id));
            let integration = scope.integration.map(tracing::field::display);
            if error.status == StatusCode::TOO_MANY_REQUESTS {
                tracing::info!(
                    endpoint,
                    deployment,
                    code = error.code,
                    "guest token request refused"
                );
            } else {
                tracing::warn!(
                    endpoint,
                    deployment,
                    integration,
                    code = error.code,
                    reason = %error.message,
                    "guest token request refused"
                );
            }
            error.into_response()
        }
    };
    response
        .extensions_mut()
        .insert(super::TokenOutcome { endpoint, outcome });
    let out = response.headers_mut();
    match &scope.deployment {
        Some(deployment) => {
            cors::allow_deployment_origin(deployment, headers, out);
            if out.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                out.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("retry-after"),
                );
            }
        }
        None => {
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    // Tokens must not be kept by caches along the way.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn deployment_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "deployment_not_found",
        "no active deployment has this id",
    )
}

/// An OIDC failure in the `{code, message}` form, with the status the OIDC
/// module chose.
fn oidc_error(e: OidcError) -> ApiError {
    let error = ApiError::new(e.status(), e.code(), e.to_string());
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        error.retry_after(1)
    } else {
        error
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let code = e.code();
        match e {
            SessionError::Unavailable(message) => {
                ApiError::unavailable().caused_by(false, format!("storage unavailable: {message}"))
            }
            SessionError::Corrupt(message) => {
                ApiError::internal().caused_by(true, format!("session state is corrupt: {message}"))
            }
            other => ApiError::new(StatusCode::UNAUTHORIZED, code, other.to_string()),
        }
    }
}
