//! The report behind "Test connection" on an OIDC integration: each step
//! switchboard takes before it can verify a token, and the first that fails
//! with the machine code and a message that says what to change.

use openidconnect::core::CoreErrorResponseType;
use openidconnect::{AuthorizationCode, ClientId, ClientSecret, RedirectUrl, RequestTokenError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::discovery::{self, Discovered, algorithm_name};
use super::error::OidcError;
use super::http::{IdpHttp, display_url};
use super::rp::RpClient;
use crate::store::records::OidcIntegration;

/// What testing an integration found. `ok` is true when every step passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub ok: bool,
    pub steps: Vec<DiagnosisStep>,
    /// The configured issuer.
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// `id_token_signing_alg_values_supported` of the discovery document.
    pub algorithms_offered: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// One step: `discovery`, `issuer`, `jwks`, `algorithms` or `client` (the
/// token endpoint accepts the client id and secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiagnosisStep {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The first failure, as an error answer would state it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    pub code: String,
    pub message: String,
}

impl Diagnosis {
    fn step(&mut self, name: &str, detail: String) {
        self.steps.push(DiagnosisStep {
            name: name.to_owned(),
            ok: true,
            detail,
        });
    }

    fn fail(mut self, name: &str, error: &OidcError) -> Self {
        self.steps.push(DiagnosisStep {
            name: name.to_owned(),
            ok: false,
            detail: error.to_string(),
        });
        self.ok = false;
        self.problem = Some(Problem {
            code: error.code().to_owned(),
            message: error.to_string(),
        });
        self
    }
}

/// Runs every step against the IdP as it is now: nothing comes from, or
/// goes into, the cache verification uses.
pub(super) async fn run(
    http: &IdpHttp,
    integration: &OidcIntegration,
    secret: Option<&SecretString>,
) -> Diagnosis {
    let mut report = Diagnosis {
        ok: true,
        steps: Vec::new(),
        issuer: integration.issuer.clone(),
        authorization_endpoint: None,
        token_endpoint: None,
        algorithms_offered: Vec::new(),
        problem: None,
    };

    let discovered = match discovery::fetch_discovery(http, &integration.issuer).await {
        Ok(d) => d,
        Err(e) => return report.fail("discovery", &e),
    };
    report.authorization_endpoint = Some(discovered.authorization_endpoint.to_string());
    report.token_endpoint = discovered.token_endpoint.as_ref().map(ToString::to_string);
    report.algorithms_offered = discovered.algorithms_offered.clone();
    let shown = discovery::discovery_url(&integration.issuer)
        .map(|u| display_url(&u))
        .unwrap_or_default();
    report.step("discovery", format!("read {shown}"));

    if let Err(e) = discovery::check_issuer(&integration.issuer, &discovered.issuer) {
        return report.fail("issuer", &e);
    }
    report.step(
        "issuer",
        format!("the document's issuer is exactly {}", discovered.issuer),
    );

    let keys = match discovery::fetch_keys(http, &discovered.jwks_uri).await {
        Ok(keys) => keys,
        Err(e) => return report.fail("jwks", &e),
    };
    let only_hmac = integration.allowed_algorithms.iter().all(|a| a.is_hmac());
    if keys.keys.is_empty() && !only_hmac {
        let error = OidcError::NoSigningKeys(format!(
            "the key set at {} has no key switchboard can verify signatures with ({} left out: symmetric, encryption-only, too short or unsupported)",
            display_url(&discovered.jwks_uri),
            keys.skipped
        ));
        return report.fail("jwks", &error);
    }
    let kids: Vec<&str> = keys.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    report.step(
        "jwks",
        format!(
            "{} signing key(s){}",
            keys.keys.len(),
            if kids.is_empty() {
                String::new()
            } else {
                format!(" (kid {})", kids.join(", "))
            }
        ),
    );

    let secret_set = integration.sealed_client_secret.is_some();
    let usable: Vec<&str> = integration
        .allowed_algorithms
        .iter()
        .filter(|alg| {
            discovered
                .algorithms_offered
                .iter()
                .any(|offered| offered == algorithm_name(**alg))
        })
        .filter(|alg| {
            if alg.is_hmac() {
                secret_set
            } else {
                keys.supports(**alg)
            }
        })
        .map(|alg| algorithm_name(*alg))
        .collect();
    if usable.is_empty() {
        let allowed: Vec<&str> = integration
            .allowed_algorithms
            .iter()
            .map(|a| algorithm_name(*a))
            .collect();
        let error = OidcError::AlgorithmNotAllowed(format!(
            "none of the integration's allowed algorithms ({}) is offered by the IdP with a key to verify it (offered: {})",
            allowed.join(", "),
            discovered.algorithms_offered.join(", ")
        ));
        return report.fail("algorithms", &error);
    }
    report.step(
        "algorithms",
        format!("ID tokens can be verified with {}", usable.join(", ")),
    );

    match client_check(http, integration, &discovered, secret).await {
        Ok(detail) => report.step("client", detail),
        Err(e) => return report.fail("client", &e),
    }
    report
}

/// Whether the token endpoint accepts the client id and secret: a token
/// request with a code that cannot exist. An IdP authenticates the client
/// before it looks at the code (RFC 6749 5.2), so `invalid_grant` means the
/// credentials were accepted and `invalid_client` that they were not; no
/// code is redeemed either way.
async fn client_check(
    http: &IdpHttp,
    integration: &OidcIntegration,
    discovered: &Discovered,
    secret: Option<&SecretString>,
) -> Result<String, OidcError> {
    if discovered.token_endpoint.is_none() {
        return Err(OidcError::DiscoveryInvalid(
            "the discovery document names no token_endpoint".to_owned(),
        ));
    }
    let Some(secret) = secret else {
        return Ok(if integration.sealed_client_secret.is_some() {
            "the client secret cannot be opened on this node: not tested".to_owned()
        } else {
            "no client secret set (a public client): not tested".to_owned()
        });
    };
    let client = RpClient::from_provider_metadata(
        discovered.metadata.clone(),
        ClientId::new(integration.client_id.clone()),
        Some(ClientSecret::new(secret.expose_secret().to_owned())),
    );
    let redirect = RedirectUrl::new(TEST_REDIRECT_URI.to_owned())
        .map_err(|_| OidcError::InvalidRequest("the test redirect URI is not a URL"))?;
    let request = client
        .exchange_code(AuthorizationCode::new(super::random_state()))
        .map_err(|_| {
            OidcError::DiscoveryInvalid("the discovery document names no token_endpoint".to_owned())
        })?
        .set_redirect_uri(std::borrow::Cow::Owned(redirect));
    match request.request_async(http).await {
        Ok(_) => Ok("the token endpoint accepted the client (and, oddly, a made-up code)".to_owned()),
        Err(RequestTokenError::ServerResponse(response)) => match response.error() {
            CoreErrorResponseType::InvalidClient => Err(OidcError::IdpError(
                "the token endpoint refused the client (invalid_client): check the client id and secret".to_owned(),
            )),
            CoreErrorResponseType::InvalidGrant => Ok(
                "the token endpoint accepted the client id and secret (a made-up code was refused as invalid_grant)".to_owned(),
            ),
            other => Ok(format!(
                "the token endpoint answered {} to a made-up code: the client secret could not be confirmed",
                super::rp::printable(other.as_ref())
            )),
        },
        Err(RequestTokenError::Request(error)) => Err(error),
        Err(_) => Err(OidcError::IdpError(
            "the token endpoint's answer is not an OAuth answer".to_owned(),
        )),
    }
}

/// Where the made-up code of [`client_check`] claims to have been sent;
/// never visited.
const TEST_REDIRECT_URI: &str = "https://switchboard.invalid/integration-test";
