//! `/api/v2/integrations/oidc`: the IdPs visitors and staff sign in with.
//!
//! The client secret is write-only: it is sealed on the way in and every
//! answer says only whether one is set.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{Resource, crud_routes, in_range, name};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::records::{Meta, OidcIntegration};
use crate::store::types::{Algorithm, OrgId, Role};

pub const DEFAULT_REFRESH_LIFETIME_SECONDS: u32 = 86_400;

/// Authorize parameters switchboard sets itself; an admin cannot override
/// them, or the login's security would be theirs to break.
const RESERVED_PARAMS: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "response_mode",
];

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcIntegrationInput {
    name: String,
    /// The issuer exactly as the IdP's discovery document states it; https
    /// unless the operator allows insecure IdPs for local testing.
    issuer: String,
    client_id: String,
    /// Write-only. Omitted on update: the stored secret is kept.
    #[schema(value_type = Option<String>, format = Password)]
    client_secret: Option<SecretString>,
    /// Must include `openid`. Default: openid profile email.
    scopes: Option<Vec<String>>,
    /// Extra authorize-request parameters (`prompt`, `acr_values`, ...).
    #[serde(default)]
    authorize_params: BTreeMap<String, String>,
    /// Default RS256, ES256, PS256. HMAC algorithms only when listed here.
    allowed_algorithms: Option<Vec<Algorithm>>,
    /// 900 to 7776000 seconds; default 86400.
    max_refresh_token_lifetime_seconds: Option<u32>,
    /// Whether refresh tokens rotate (default true). With rotation every
    /// refresh answers a new refresh token and a token presented twice
    /// revokes its session (a leaked token is caught), but a client must
    /// keep the newest token: Genesys's Transport SDK does not, so apps on
    /// it need `false`, where one refresh token works until its session's
    /// lifetime ends or it is revoked. Omitted on update: the stored
    /// setting is kept.
    refresh_token_rotation: Option<bool>,
    active: Option<bool>,
    /// Required on update: the version read.
    version: Option<u64>,
}

impl std::fmt::Debug for OidcIntegrationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcIntegrationInput")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// An integration as the API shows it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcIntegrationView {
    id: Uuid,
    name: String,
    issuer: String,
    client_id: String,
    client_secret_set: bool,
    scopes: Vec<String>,
    authorize_params: BTreeMap<String, String>,
    allowed_algorithms: Vec<Algorithm>,
    max_refresh_token_lifetime_seconds: u32,
    refresh_token_rotation: bool,
    active: bool,
    version: u64,
    date_created: DateTime<Utc>,
    date_modified: DateTime<Utc>,
    self_uri: String,
}

/// Checks an issuer URL: absolute, no query or fragment, https unless
/// insecure IdPs are allowed.
pub fn parse_issuer(text: &str, allow_insecure: bool) -> Result<String, ApiError> {
    let url =
        url::Url::parse(text).map_err(|_| ApiError::invalid("issuer is not an absolute URL"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ApiError::invalid(
            "issuer must not carry a query, fragment or user info",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        "http" => {
            return Err(ApiError::invalid(
                "issuer must use https (plain http is only accepted when the operator sets SWITCHBOARD_OIDC_ALLOW_INSECURE)",
            ));
        }
        _ => return Err(ApiError::invalid("issuer must be an https URL")),
    }
    if url.host_str().is_none() {
        return Err(ApiError::invalid("issuer must name a host"));
    }
    // Kept exactly as given: a trailing slash is significant in `iss`.
    Ok(text.to_owned())
}

impl Resource for OidcIntegration {
    type Input = OidcIntegrationInput;
    type View = OidcIntegrationView;
    const READ_ROLE: Role = Role::Admin;

    fn input_version(input: &OidcIntegrationInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: OidcIntegrationInput,
        org: OrgId,
        meta: Meta,
        existing: Option<&OidcIntegration>,
        state: &AppState,
    ) -> Result<OidcIntegration, ApiError> {
        let issuer = parse_issuer(input.issuer.trim(), state.config.oidc_allow_insecure)?;
        let client_id = input.client_id.trim();
        if client_id.is_empty() || client_id.len() > 255 {
            return Err(ApiError::invalid("clientId must be 1 to 255 characters"));
        }
        let scopes = input
            .scopes
            .unwrap_or_else(|| ["openid", "profile", "email"].map(str::to_owned).to_vec());
        if !scopes.iter().any(|s| s == "openid") {
            return Err(ApiError::invalid("scopes must include openid"));
        }
        if let Some(bad) = scopes.iter().find(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        }) {
            return Err(ApiError::invalid(format!(
                "scope {bad:?} is not a valid scope token"
            )));
        }
        if let Some(reserved) = input
            .authorize_params
            .keys()
            .find(|k| RESERVED_PARAMS.contains(&k.as_str()))
        {
            return Err(ApiError::invalid(format!(
                "authorizeParams must not set {reserved}: switchboard sets it"
            )));
        }
        let allowed_algorithms = input
            .allowed_algorithms
            .unwrap_or_else(Algorithm::default_allowed);
        if allowed_algorithms.is_empty() {
            return Err(ApiError::invalid(
                "allowedAlgorithms must name at least one algorithm",
            ));
        }
        let max_refresh_token_lifetime_seconds = in_range(
            "maxRefreshTokenLifetimeSeconds",
            input
                .max_refresh_token_lifetime_seconds
                .unwrap_or(DEFAULT_REFRESH_LIFETIME_SECONDS),
            900..=7_776_000,
        )?;
        let sealed_client_secret = match input.client_secret {
            Some(secret) => Some(
                state
                    .auth
                    .sealer()
                    .seal(&secret, &OidcIntegration::secret_context(meta.id))
                    .map_err(|_| ApiError::internal())?,
            ),
            None => existing.and_then(|e| e.sealed_client_secret.clone()),
        };
        Ok(OidcIntegration {
            meta,
            org_id: org,
            name: name("name", &input.name)?,
            issuer,
            client_id: client_id.to_owned(),
            sealed_client_secret,
            scopes,
            authorize_params: input.authorize_params,
            allowed_algorithms,
            max_refresh_token_lifetime_seconds,
            refresh_token_rotation: input
                .refresh_token_rotation
                .or(existing.map(|e| e.refresh_token_rotation))
                .unwrap_or(true),
            active: input.active.unwrap_or(true),
        })
    }

    fn view(self, _: &AppState) -> OidcIntegrationView {
        OidcIntegrationView {
            self_uri: format!("/api/v2/integrations/oidc/{}", self.meta.id),
            id: self.meta.id,
            name: self.name,
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret_set: self.sealed_client_secret.is_some(),
            scopes: self.scopes,
            authorize_params: self.authorize_params,
            allowed_algorithms: self.allowed_algorithms,
            max_refresh_token_lifetime_seconds: self.max_refresh_token_lifetime_seconds,
            refresh_token_rotation: self.refresh_token_rotation,
            active: self.active,
            version: self.meta.version,
            date_created: self.meta.date_created,
            date_modified: self.meta.date_modified,
        }
    }
}

crud_routes! {
    resource = OidcIntegration,
    input = OidcIntegrationInput,
    view = OidcIntegrationView,
    path = "/api/v2/integrations/oidc",
    item = "/api/v2/integrations/oidc/{id}",
    tag = "integrations",
}
