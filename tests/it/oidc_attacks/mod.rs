//! The relying party against a hostile IdP: every attack of oidc-rp.md that
//! concerns ID tokens ([`id_tokens`]), discovery and the IdP connection
//! ([`connection`]) is refused with its machine code; key rotation needs no
//! restart; a valid login yields the identity; the integration test
//! endpoint reports what is wrong ([`test_endpoint`]).

mod connection;
mod id_tokens;
mod test_endpoint;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm as Jwa, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::auth::oidc::{
    OidcClients, OidcError, VerifiedIdentity, pkce_challenge, pkce_pair, random_state,
};
use switchboard::engine::{EmbeddedEngine, Engine};
use switchboard::store::records::{Meta, OidcIntegration};
use switchboard::store::types::{Algorithm, OrgId};

use crate::support::app::{EngineKind, TestApp};
use crate::support::hostile_idp::{
    DiscoveryMode, HostileIdp, RSA_A_PUBLIC_PEM, TestKey, TokenAnswer, forge, sign_header,
    sign_with,
};
use crate::support::site::{SiteSpec, integration_body};

const CLIENT_ID: &str = "switchboard-web";
const CLIENT_SECRET: &str = "hostile-idp-client-secret-0123456789";

/// A relying party on its own embedded engine (kept alive by the guard).
struct Rp {
    clients: OidcClients,
    _dir: tempfile::TempDir,
}

impl Rp {
    /// Discovery of `integration`'s IdP, which must fail: the error.
    async fn discovery_error(&self, integration: &OidcIntegration) -> OidcError {
        self.clients
            .authorization_endpoint(integration)
            .await
            .expect_err("discovery must fail")
    }

    /// Verifies an ID token without a nonce.
    async fn verify(
        &self,
        integration: &OidcIntegration,
        token: &str,
    ) -> Result<VerifiedIdentity, OidcError> {
        self.clients.verify_id_token(integration, token, None).await
    }

    /// Redeems `code` with the client secret for a plain callback, without
    /// PKCE or a nonce.
    async fn redeem(
        &self,
        integration: &OidcIntegration,
        code: &str,
    ) -> Result<VerifiedIdentity, OidcError> {
        let secret = SecretString::from(CLIENT_SECRET);
        self.clients
            .exchange_code(
                integration,
                Some(&secret),
                code,
                "https://shop.example.com/cb",
                None,
                None,
            )
            .await
    }
}

async fn rp(allow_insecure: bool) -> Rp {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::Embedded(EmbeddedEngine::open(dir.path()).await.unwrap());
    Rp {
        clients: OidcClients::new(engine, allow_insecure),
        _dir: dir,
    }
}

fn integration(issuer: &str) -> OidcIntegration {
    let mut meta = Meta::new(Utc::now());
    meta.version = 1;
    OidcIntegration {
        meta,
        org_id: OrgId(uuid::Uuid::new_v4()),
        name: "hostile".to_owned(),
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        sealed_client_secret: None,
        scopes: vec![
            "openid".to_owned(),
            "email".to_owned(),
            "profile".to_owned(),
        ],
        authorize_params: BTreeMap::from([("prompt".to_owned(), "login".to_owned())]),
        allowed_algorithms: Algorithm::default_allowed(),
        max_refresh_token_lifetime_seconds: 86_400,
        refresh_token_rotation: true,
        active: true,
    }
}

/// The code a refused token gets; asserts the message does not repeat it.
async fn refusal(
    rp: &Rp,
    integration: &OidcIntegration,
    token: &str,
    nonce: Option<&str>,
) -> String {
    let error = rp
        .clients
        .verify_id_token(integration, token, nonce)
        .await
        .expect_err("the token must be refused");
    assert_clean(&error, token);
    error.code().to_owned()
}

fn assert_clean(error: &OidcError, token: &str) {
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(
            !shown.contains(token),
            "the error repeats the token: {shown}"
        );
        assert!(
            !shown.contains(CLIENT_SECRET),
            "the error repeats the secret: {shown}"
        );
    }
}

/// A good IdP, a relying party and its integration.
async fn setup() -> (HostileIdp, Rp, OidcIntegration) {
    let idp = HostileIdp::start().await;
    let rp = rp(true).await;
    let integration = integration(&idp.issuer);
    (idp, rp, integration)
}
