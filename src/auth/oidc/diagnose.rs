//! The report behind "Test connection" on an OIDC integration: each step
//! switchboard takes before it can verify a token, and the first that fails
//! with the machine code and a message that says what to change.

use serde::Serialize;
use utoipa::ToSchema;

use super::discovery::{self, algorithm_name};
use super::error::OidcError;
use super::http::{IdpHttp, display_url};
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

/// One step: `discovery`, `issuer`, `jwks` or `algorithms`.
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
pub(super) async fn run(http: &IdpHttp, integration: &OidcIntegration) -> Diagnosis {
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
    report
}
