//! The relying party against a hostile IdP: every attack of oidc-rp.md that
//! concerns ID tokens, discovery and the IdP connection is refused with its
//! machine code; key rotation needs no restart; a valid login yields the
//! identity; the integration test endpoint reports what is wrong.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm as Jwa, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::auth::oidc::{OidcClients, OidcError, pkce_challenge, pkce_pair, random_state};
use switchboard::engine::{EmbeddedEngine, Engine};
use switchboard::store::records::{Meta, OidcIntegration};
use switchboard::store::types::{Algorithm, OrgId};

use crate::support::app::{EngineKind, TestApp};
use crate::support::hostile_idp::{
    DiscoveryMode, HostileIdp, RSA_A_PUBLIC_PEM, TestKey, TokenAnswer, forge, sign_header,
    sign_with,
};

const CLIENT_ID: &str = "switchboard-web";
const CLIENT_SECRET: &str = "hostile-idp-client-secret-0123456789";

/// A relying party on its own embedded engine (kept alive by the guard).
struct Rp {
    clients: OidcClients,
    _dir: tempfile::TempDir,
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

#[tokio::test]
async fn a_valid_token_yields_the_identity() {
    let (idp, rp, integration) = setup().await;
    let token = idp.sign(&idp.claims(CLIENT_ID));
    let identity = rp
        .clients
        .verify_id_token(&integration, &token, None)
        .await
        .unwrap();
    assert_eq!(identity.issuer, idp.issuer);
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert_eq!(identity.email_verified, Some(true));
    assert_eq!(identity.given_name.as_deref(), Some("Ada"));
    assert_eq!(identity.family_name.as_deref(), Some("Lovelace"));
    assert_eq!(identity.name.as_deref(), Some("Ada Lovelace"));
    assert!(identity.expires_at > Utc::now());

    // Cached: verifying again fetches nothing.
    let (discovery, jwks) = (idp.discovery_fetches(), idp.jwks_fetches());
    let ec = TestKey::ec_a();
    idp.set_keys(&[&idp.signer, &ec]);
    rp.clients
        .verify_id_token(&integration, &token, None)
        .await
        .unwrap();
    assert_eq!(
        (idp.discovery_fetches(), idp.jwks_fetches()),
        (discovery, jwks)
    );
}

#[tokio::test]
async fn es256_tokens_verify() {
    let (idp, rp, integration) = setup().await;
    let ec = TestKey::ec_a();
    idp.set_keys(&[&ec]);
    let token = sign_with(&ec, &idp.claims(CLIENT_ID));
    let identity = rp
        .clients
        .verify_id_token(&integration, &token, None)
        .await
        .unwrap();
    assert_eq!(identity.subject, "user-1");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    for alg in ["none", "None", "NONE"] {
        let token = forge(&json!({"alg": alg, "kid": idp.signer.kid}), &claims, "");
        assert_eq!(
            refusal(&rp, &integration, &token, None).await,
            "algorithm_not_allowed",
            "{alg}"
        );
    }
    // A real signature does not help a none header either.
    let valid = idp.sign(&claims);
    let signature = valid.rsplit('.').next().unwrap();
    let token = forge(&json!({"alg": "none"}), &claims, signature);
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "algorithm_not_allowed"
    );
}

#[tokio::test]
async fn hs256_signed_with_the_idps_public_key_is_refused() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    let mut header = Header::new(Jwa::HS256);
    header.kid = Some(idp.signer.kid.clone());
    let token = sign_header(
        &header,
        &claims,
        &EncodingKey::from_secret(RSA_A_PUBLIC_PEM),
    );
    // HMAC is not allowed by default.
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "algorithm_not_allowed"
    );

    // Allowed by an admin, HMAC is keyed with the client secret, never with
    // a key of the key set: the public key signs nothing.
    let mut hmac = integration.clone();
    hmac.meta.id = uuid::Uuid::new_v4();
    hmac.allowed_algorithms = vec![Algorithm::RS256, Algorithm::HS256];
    let secret = SecretString::from(CLIENT_SECRET);
    idp.set_token_answer(TokenAnswer::IdToken(token.clone()));
    let error = rp
        .clients
        .exchange_code(
            &hmac,
            Some(&secret),
            "code-1",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "signature_invalid");
    assert_clean(&error, &token);
    // The JWK itself as the HMAC key fails the same way.
    let jwk_key = idp.signer.jwk.to_string();
    let token = sign_header(
        &header,
        &claims,
        &EncodingKey::from_secret(jwk_key.as_bytes()),
    );
    idp.set_token_answer(TokenAnswer::IdToken(token));
    let error = rp
        .clients
        .exchange_code(
            &hmac,
            Some(&secret),
            "code-2",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "signature_invalid");

    // Control: signed with the client secret, it verifies.
    let token = sign_header(
        &header,
        &claims,
        &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
    );
    idp.set_token_answer(TokenAnswer::IdToken(token));
    let identity = rp
        .clients
        .exchange_code(
            &hmac,
            Some(&secret),
            "code-3",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(identity.subject, "user-1");
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    // Signed by a key the IdP never published, under the IdP's kid.
    let attacker = TestKey::rsa_attacker().with_kid(&idp.signer.kid);
    let token = sign_with(&attacker, &claims);
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "signature_invalid"
    );

    // A valid token with one claim changed.
    let valid = idp.sign(&claims);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("admin");
    let token = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "signature_invalid"
    );

    // An RS256 header over an EC key.
    let ec = TestKey::ec_a();
    idp.set_keys(&[&ec]);
    let fresh = {
        let mut i = integration.clone();
        i.meta.id = uuid::Uuid::new_v4();
        i
    };
    let token = forge(&json!({"alg": "RS256", "kid": "ec-a"}), &claims, parts[2]);
    assert_eq!(
        refusal(&rp, &fresh, &token, None).await,
        "signature_invalid"
    );

    // Garbage.
    for token in ["", "abc", "a.b", "a.b.c", "a.b.c.d.e"] {
        let error = rp
            .clients
            .verify_id_token(&integration, token, None)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "malformed_token", "{token:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_key_set_once() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    rp.clients
        .verify_id_token(&integration, &idp.sign(&claims), None)
        .await
        .unwrap();
    assert_eq!(idp.jwks_fetches(), 1);

    let stranger = TestKey::rsa_attacker().with_kid("not-published");
    let token = sign_with(&stranger, &claims);
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "unknown_kid"
    );
    assert_eq!(idp.jwks_fetches(), 2, "exactly one refetch");

    // Within the rate limit, another unknown kid fetches nothing.
    let token = sign_with(&stranger.with_kid("another"), &claims);
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "unknown_kid"
    );
    assert_eq!(idp.jwks_fetches(), 2, "refetches are rate-limited");
    assert_eq!(idp.discovery_fetches(), 1);
}

#[tokio::test]
async fn kids_with_path_or_sql_content_are_just_unknown() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    for kid in [
        "../../../../etc/passwd",
        "/jwks?kid=1",
        "' OR '1'='1' --",
        "1; DROP TABLE keys",
        "%2e%2e%2fjwks",
    ] {
        let token = sign_with(&idp.signer.clone().with_kid(kid), &claims);
        assert_eq!(
            refusal(&rp, &integration, &token, None).await,
            "unknown_kid",
            "{kid}"
        );
    }
    for path in idp.paths() {
        assert!(
            path == "/.well-known/openid-configuration" || path == "/jwks",
            "the kid reached a request: {path}"
        );
    }
}

#[tokio::test]
async fn several_keys_need_a_kid() {
    let (idp, rp, integration) = setup().await;
    let other = TestKey::rsa_b();
    idp.set_keys(&[&idp.signer, &other]);
    let token = sign_header(
        &Header::new(Jwa::RS256),
        &idp.claims(CLIENT_ID),
        &idp.signer.encoding,
    );
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "kid_required"
    );

    // With a single key, a token without kid uses it.
    let (idp, rp, integration) = setup().await;
    let token = sign_header(
        &Header::new(Jwa::RS256),
        &idp.claims(CLIENT_ID),
        &idp.signer.encoding,
    );
    assert!(
        rp.clients
            .verify_id_token(&integration, &token, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_header_never_chooses_the_key() {
    let (idp, rp, integration) = setup().await;
    let attacker = TestKey::rsa_attacker();
    let claims = idp.claims(CLIENT_ID);
    // The attacker's own key, offered by every header mechanism.
    let mut header = Header::new(Jwa::RS256);
    header.kid = Some(idp.signer.kid.clone());
    header.jku = Some(format!("{}/attacker-jwks", idp.issuer));
    header.x5u = Some(format!("{}/attacker-cert", idp.issuer));
    header.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
    let token = sign_header(&header, &claims, &attacker.encoding);
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "signature_invalid"
    );
    assert!(idp.paths().iter().all(|p| !p.contains("attacker")));
}

#[tokio::test]
async fn tokens_for_other_clients_and_issuers_are_refused() {
    let (idp, rp, integration) = setup().await;
    let case = |f: &dyn Fn(&mut Value)| {
        let mut claims = idp.claims(CLIENT_ID);
        f(&mut claims);
        idp.sign(&claims)
    };
    let cases: Vec<(String, &str)> = vec![
        (
            case(&|c| c["aud"] = json!("another-client")),
            "audience_mismatch",
        ),
        (
            case(&|c| c["aud"] = json!(["another-client"])),
            "audience_mismatch",
        ),
        (
            case(&|c| c["aud"] = json!([CLIENT_ID, "another-client"])),
            "audience_mismatch",
        ),
        (
            case(&|c| c["azp"] = json!("another-client")),
            "azp_mismatch",
        ),
        (
            case(&|c| c["iss"] = json!("https://evil.example.com")),
            "issuer_mismatch",
        ),
        (
            case(&|c| c["iss"] = json!(format!("{}/", idp.issuer))),
            "issuer_mismatch",
        ),
    ];
    for (token, code) in cases {
        assert_eq!(refusal(&rp, &integration, &token, None).await, code);
    }
    // azp equal to the client id is fine, and so is aud as a one-element list.
    let token = case(&|c| {
        c["azp"] = json!(CLIENT_ID);
        c["aud"] = json!([CLIENT_ID]);
    });
    assert!(
        rp.clients
            .verify_id_token(&integration, &token, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn times_are_checked() {
    let (idp, rp, integration) = setup().await;
    let now = Utc::now().timestamp();
    let case = |f: &dyn Fn(&mut Value)| {
        let mut claims = idp.claims(CLIENT_ID);
        f(&mut claims);
        idp.sign(&claims)
    };
    let expired = case(&|c| {
        c["iat"] = json!(now - 3600);
        c["exp"] = json!(now - 120);
    });
    assert_eq!(
        refusal(&rp, &integration, &expired, None).await,
        "token_expired"
    );
    let future = case(&|c| c["iat"] = json!(now + 3600));
    assert_eq!(
        refusal(&rp, &integration, &future, None).await,
        "token_not_yet_valid"
    );
    let not_before = case(&|c| c["nbf"] = json!(now + 3600));
    assert_eq!(
        refusal(&rp, &integration, &not_before, None).await,
        "token_not_yet_valid"
    );
    // Within the minute of leeway.
    let skewed = case(&|c| {
        c["iat"] = json!(now + 20);
        c["exp"] = json!(now - 20);
    });
    assert!(
        rp.clients
            .verify_id_token(&integration, &skewed, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn missing_claims_are_refused() {
    let (idp, rp, integration) = setup().await;
    for claim in ["sub", "iat", "aud", "exp"] {
        let mut claims = idp.claims(CLIENT_ID);
        claims.as_object_mut().unwrap().remove(claim);
        let token = idp.sign(&claims);
        let error = rp
            .clients
            .verify_id_token(&integration, &token, None)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "claim_missing", "{claim}");
        assert!(error.to_string().contains(claim));
    }
    let mut claims = idp.claims(CLIENT_ID);
    claims["sub"] = json!("");
    assert_eq!(
        refusal(&rp, &integration, &idp.sign(&claims), None).await,
        "claim_missing"
    );
}

#[tokio::test]
async fn nonces_must_match_and_are_accepted_once() {
    let (idp, rp, integration) = setup().await;
    let nonce = random_state();
    let mut claims = idp.claims(CLIENT_ID);
    let without = idp.sign(&claims);
    assert_eq!(
        refusal(&rp, &integration, &without, Some(&nonce)).await,
        "nonce_missing"
    );
    claims["nonce"] = json!("another-nonce");
    let wrong = idp.sign(&claims);
    assert_eq!(
        refusal(&rp, &integration, &wrong, Some(&nonce)).await,
        "nonce_mismatch"
    );

    claims["nonce"] = json!(nonce);
    let good = idp.sign(&claims);
    rp.clients
        .verify_id_token(&integration, &good, Some(&nonce))
        .await
        .unwrap();
    assert_eq!(
        refusal(&rp, &integration, &good, Some(&nonce)).await,
        "nonce_replayed"
    );
    // Another token carrying the same nonce is a replay too.
    claims["iat"] = json!(Utc::now().timestamp() - 1);
    let again = idp.sign(&claims);
    assert_eq!(
        refusal(&rp, &integration, &again, Some(&nonce)).await,
        "nonce_replayed"
    );
}

#[tokio::test]
async fn nonce_replay_is_refused_across_nodes_on_redis() {
    // Two relying parties (two nodes) sharing one Redis.
    let redis = crate::support::redis::shared();
    let prefix = crate::support::unique_prefix();
    let engine = || async {
        Engine::Redis(
            switchboard::engine::RedisEngine::connect(&redis.url(), &prefix)
                .await
                .unwrap(),
        )
    };
    let idp = HostileIdp::start().await;
    let integration = integration(&idp.issuer);
    let a = OidcClients::new(engine().await, true);
    let b = OidcClients::new(engine().await, true);
    let nonce = random_state();
    let mut claims = idp.claims(CLIENT_ID);
    claims["nonce"] = json!(nonce);
    let token = idp.sign(&claims);
    a.verify_id_token(&integration, &token, Some(&nonce))
        .await
        .unwrap();
    let error = b
        .verify_id_token(&integration, &token, Some(&nonce))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "nonce_replayed");
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let (idp, rp, configured) = setup().await;
    idp.set_discovery_issuer("https://evil.example.com");
    let token = idp.sign(&idp.claims(CLIENT_ID));
    let error = rp
        .clients
        .verify_id_token(&configured, &token, None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "issuer_mismatch");
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        idp.jwks_fetches(),
        0,
        "keys of a wrong issuer are never fetched"
    );

    // A trailing slash is a different issuer, and the message says so.
    let slash = integration(&format!("{}/", idp.issuer));
    idp.set_discovery_issuer(&idp.issuer);
    let error = rp.clients.authorization_endpoint(&slash).await.unwrap_err();
    assert_eq!(error.code(), "issuer_mismatch");
    assert!(error.to_string().contains("trailing slash"), "{error}");
}

#[tokio::test]
async fn key_rotation_needs_no_restart() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    rp.clients
        .verify_id_token(&integration, &idp.sign(&claims), None)
        .await
        .unwrap();
    let new_key = TestKey::rsa_b();
    idp.set_keys(&[&new_key]);
    let rotated = sign_with(&new_key, &claims);
    let identity = rp
        .clients
        .verify_id_token(&integration, &rotated, None)
        .await
        .unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(idp.jwks_fetches(), 2);
    // The new key is cached now.
    rp.clients
        .verify_id_token(&integration, &rotated, None)
        .await
        .unwrap();
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn idp_addresses_inward_are_refused_without_allow_insecure() {
    let rp = rp(false).await;
    for issuer in [
        "https://127.0.0.1/",
        "https://127.0.0.1:8443/realms/x",
        "https://10.0.0.1/",
        "https://192.168.1.10/",
        "https://169.254.169.254/",
        "https://100.64.0.1/",
        "https://[::1]/",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost/",
        "https://localhost:9/",
    ] {
        let error = rp
            .clients
            .authorization_endpoint(&integration(issuer))
            .await
            .unwrap_err();
        assert_eq!(error.code(), "idp_address_refused", "{issuer}: {error}");
    }
    let error = rp
        .clients
        .authorization_endpoint(&integration("http://idp.example.com/"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_insecure");

    // The same IdP that works with allow_insecure is refused without it.
    let idp = HostileIdp::start().await;
    let error = rp
        .clients
        .authorization_endpoint(&integration(&idp.issuer))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_insecure");
    assert_eq!(idp.discovery_fetches(), 0);
}

#[tokio::test]
async fn redirects_and_huge_documents_are_refused() {
    let (idp, rp, integration) = setup().await;
    idp.set_discovery_mode(DiscoveryMode::Redirect);
    let error = rp
        .clients
        .authorization_endpoint(&integration)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_error");
    assert!(idp.paths().iter().all(|p| !p.starts_with("/elsewhere")));

    let (idp, rp, integration) = setup().await;
    idp.set_discovery_mode(DiscoveryMode::Huge);
    let error = rp
        .clients
        .authorization_endpoint(&integration)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_error");
    assert!(error.to_string().contains("KiB"), "{error}");
}

#[tokio::test]
async fn an_unreachable_idp_is_reported() {
    let rp = rp(true).await;
    let error = rp
        .clients
        .authorization_endpoint(&integration("http://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_unreachable");
}

#[tokio::test]
async fn inactive_integrations_refuse_logins() {
    let (idp, rp, mut integration) = setup().await;
    integration.active = false;
    let token = idp.sign(&idp.claims(CLIENT_ID));
    assert_eq!(
        refusal(&rp, &integration, &token, None).await,
        "integration_inactive"
    );
}

#[tokio::test]
async fn codes_are_redeemed_with_basic_auth_and_pkce() {
    let (idp, rp, integration) = setup().await;
    let nonce = random_state();
    let (verifier, _) = pkce_pair();
    let verifier = secrecy::ExposeSecret::expose_secret(&verifier).to_owned();
    let mut claims = idp.claims(CLIENT_ID);
    claims["nonce"] = json!(nonce);
    idp.set_token_answer(TokenAnswer::IdToken(idp.sign(&claims)));
    let secret = SecretString::from(CLIENT_SECRET);
    let identity = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "the-code",
            "https://shop.example.com/callback",
            Some(&verifier),
            Some(&nonce),
        )
        .await
        .unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(idp.userinfo_calls(), 0, "the ID token was complete");

    let requests = idp.token_requests();
    let request = requests.last().unwrap();
    assert_eq!(request.param("grant_type"), Some("authorization_code"));
    assert_eq!(request.param("code"), Some("the-code"));
    assert_eq!(
        request.param("redirect_uri"),
        Some("https://shop.example.com/callback")
    );
    assert_eq!(request.param("code_verifier"), Some(verifier.as_str()));
    assert_eq!(
        request.param("client_secret"),
        None,
        "client_secret_basic, not post"
    );
    let basic = request
        .authorization
        .as_deref()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(basic)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, format!("{CLIENT_ID}:{CLIENT_SECRET}"));

    // The same nonce again (a replayed login) is refused.
    let error = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "another-code",
            "https://shop.example.com/callback",
            Some(&verifier),
            Some(&nonce),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "nonce_replayed");
}

#[tokio::test]
async fn a_refused_code_is_invalid_grant() {
    let (idp, rp, integration) = setup().await;
    let secret = SecretString::from(CLIENT_SECRET);
    idp.set_token_answer(TokenAnswer::Raw(
        400,
        json!({"error": "invalid_grant", "error_description": "code already used: the-code"}),
    ));
    let error = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "the-code",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_grant");
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(!error.to_string().contains("the-code"));

    idp.set_token_answer(TokenAnswer::Raw(401, json!({"error": "invalid_client"})));
    let error = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "c",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_error");
    assert!(!error.to_string().contains(CLIENT_SECRET));

    idp.set_token_answer(TokenAnswer::Raw(
        200,
        json!({"access_token": "x", "token_type": "Bearer"}),
    ));
    let error = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "c",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_error");
}

#[tokio::test]
async fn userinfo_completes_the_identity_for_the_same_subject_only() {
    let (idp, rp, integration) = setup().await;
    let secret = SecretString::from(CLIENT_SECRET);
    let mut claims = idp.claims(CLIENT_ID);
    for claim in [
        "email",
        "email_verified",
        "name",
        "given_name",
        "family_name",
    ] {
        claims.as_object_mut().unwrap().remove(claim);
    }
    idp.set_token_answer(TokenAnswer::IdToken(idp.sign(&claims)));
    idp.set_userinfo(json!({
        "sub": "user-1",
        "email": "ada@userinfo.example.com",
        "email_verified": true,
        "given_name": "Ada",
        "family_name": "Byron",
        "name": "Ada Byron",
    }));
    let identity = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "c1",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(idp.userinfo_calls(), 1);
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.email.as_deref(), Some("ada@userinfo.example.com"));
    assert_eq!(identity.email_verified, Some(true));
    assert_eq!(identity.given_name.as_deref(), Some("Ada"));
    assert_eq!(identity.family_name.as_deref(), Some("Byron"));
    assert_eq!(identity.name.as_deref(), Some("Ada Byron"));

    idp.set_userinfo(json!({"sub": "someone-else", "email": "eve@example.com"}));
    let error = rp
        .clients
        .exchange_code(
            &integration,
            Some(&secret),
            "c2",
            "https://shop.example.com/cb",
            None,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "userinfo_subject_mismatch");
}

#[tokio::test]
async fn authorize_urls_carry_the_login() {
    let (idp, rp, integration) = setup().await;
    let (_, challenge) = pkce_pair();
    let url = rp
        .clients
        .authorize_url(
            &integration,
            "https://shop.example.com/callback",
            "the-state",
            "the-nonce",
            &challenge,
        )
        .await
        .unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{}/authorize", idp.issuer)
    );
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], "https://shop.example.com/callback");
    assert_eq!(query["state"], "the-state");
    assert_eq!(query["nonce"], "the-nonce");
    assert_eq!(query["code_challenge"], challenge);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["prompt"], "login");
    let scopes: Vec<&str> = query["scope"].split(' ').collect();
    assert_eq!(scopes.iter().filter(|s| **s == "openid").count(), 1);
    assert!(scopes.contains(&"email") && scopes.contains(&"profile"));

    let error = rp
        .clients
        .authorize_url(
            &integration,
            "https://shop.example.com/cb",
            "s",
            "n",
            "not-a-challenge",
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid_request");
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[tokio::test]
async fn an_edited_integration_is_discovered_afresh() {
    let (idp, rp, mut integration) = setup().await;
    rp.clients
        .authorization_endpoint(&integration)
        .await
        .unwrap();
    rp.clients
        .authorization_endpoint(&integration)
        .await
        .unwrap();
    assert_eq!(idp.discovery_fetches(), 1);
    integration.meta.version += 1;
    rp.clients
        .authorization_endpoint(&integration)
        .await
        .unwrap();
    assert_eq!(idp.discovery_fetches(), 2);
    rp.clients.forget(integration.meta.id);
    rp.clients
        .authorization_endpoint(&integration)
        .await
        .unwrap();
    assert_eq!(idp.discovery_fetches(), 3);
}

// ---- POST /api/v2/integrations/oidc/{id}/test ---------------------------

async fn create_integration(app: &TestApp, token: &str, issuer: &str) -> String {
    let created = app
        .post(
            "/api/v2/integrations/oidc",
            token,
            json!({
                "name": "Hostile",
                "issuer": issuer,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    created["id"].as_str().unwrap().to_owned()
}

async fn diagnose(app: &TestApp, token: &str, id: &str) -> Value {
    app.post(
        &format!("/api/v2/integrations/oidc/{id}/test"),
        token,
        json!({}),
    )
    .await
    .expect(StatusCode::OK)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_reports_a_good_idp() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let idp = HostileIdp::start().await;
    let id = create_integration(&app, &token, &idp.issuer).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], true, "{report}");
    for name in ["discovery", "issuer", "jwks", "algorithms"] {
        assert_eq!(step(&report, name)["ok"], true, "{report}");
    }
    assert_eq!(report["issuer"], idp.issuer);
    assert_eq!(
        report["authorizationEndpoint"],
        format!("{}/authorize", idp.issuer)
    );
    assert_eq!(report["tokenEndpoint"], format!("{}/token", idp.issuer));
    assert!(
        report["algorithmsOffered"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    assert!(report.get("problem").is_none());
    assert!(!report.to_string().contains(CLIENT_SECRET));

    // Only admins may test.
    let viewer = app.client_token(&app.bootstrap, &["supervisor"]).await;
    let reply = app
        .post(
            &format!("/api/v2/integrations/oidc/{id}/test"),
            &viewer,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v2/integrations/oidc/{id}/test"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    app.post(
        &format!("/api/v2/integrations/oidc/{}/test", uuid::Uuid::new_v4()),
        &token,
        json!({}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_explains_what_is_wrong() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let idp = HostileIdp::start().await;

    // Trailing slash.
    let id = create_integration(&app, &token, &format!("{}/", idp.issuer)).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(step(&report, "discovery")["ok"], true);
    assert_eq!(step(&report, "issuer")["ok"], false);
    assert_eq!(report["problem"]["code"], "issuer_mismatch");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("trailing slash")
    );

    // Entra's multi-tenant endpoint.
    idp.set_discovery_issuer("https://login.microsoftonline.com/{tenantid}/v2.0");
    let id = create_integration(&app, &token, &format!("{}/common/v2.0", idp.issuer)).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["problem"]["code"], "issuer_mismatch");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant"),
        "{report}"
    );
    idp.set_discovery_issuer(&idp.issuer);

    // No usable keys.
    idp.set_keys(&[]);
    let id = create_integration(&app, &token, &idp.issuer).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(step(&report, "jwks")["ok"], false, "{report}");
    assert_eq!(report["problem"]["code"], "no_signing_keys");

    // Keys, but none for the allowed algorithms.
    let ec = TestKey::ec_a();
    idp.set_keys(&[&ec]);
    let created = app
        .post(
            "/api/v2/integrations/oidc",
            &token,
            json!({
                "name": "RSA only",
                "issuer": idp.issuer,
                "clientId": CLIENT_ID,
                "allowedAlgorithms": ["RS256", "PS256"],
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    let report = diagnose(&app, &token, created["id"].as_str().unwrap()).await;
    assert_eq!(step(&report, "algorithms")["ok"], false, "{report}");
    assert_eq!(report["problem"]["code"], "algorithm_not_allowed");

    // Unreachable.
    let id = create_integration(&app, &token, "http://127.0.0.1:1").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(step(&report, "discovery")["ok"], false);
    assert_eq!(report["problem"]["code"], "idp_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_refuses_inward_addresses_without_allow_insecure() {
    let setup = crate::support::app::Setup::new(EngineKind::Embedded)
        .unset(switchboard::config::ENV_OIDC_ALLOW_INSECURE);
    let app = TestApp::spawn_with(setup).await;
    let token = app.admin().await;
    let id = create_integration(&app, &token, "https://169.254.169.254/").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"]["code"], "idp_address_refused");
    let id = create_integration(&app, &token, "https://localhost/").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["problem"]["code"], "idp_address_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_json_names_the_authorization_endpoint_when_discovery_works() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let fixture = crate::admin_api::walkthrough(&app, &token).await;
    let path = format!(
        "/webdeployments/v1/deployments/{}/config.json",
        fixture.deployment
    );
    // idp.example.com does not resolve here: config.json is served without it.
    let config = app
        .call(reqwest::Method::GET, &path, None, None)
        .await
        .expect(StatusCode::OK);
    assert!(config["auth"]["oidc"].is_object(), "{config}");
    assert!(
        config["auth"]["oidc"]
            .get("authorizationEndpoint")
            .is_none()
    );

    // Pointed at a reachable IdP, the endpoint appears.
    let idp = HostileIdp::start().await;
    let item = format!("/api/v2/integrations/oidc/{}", fixture.integration);
    let current = app.get(&item, &token).await.expect(StatusCode::OK);
    let mut body = crate::admin_api::integration_body("Shop IdP");
    body["issuer"] = json!(idp.issuer);
    body["version"] = current["version"].clone();
    app.put(&item, &token, body).await.expect(StatusCode::OK);
    let config = app
        .call(reqwest::Method::GET, &path, None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        config["auth"]["oidc"]["authorizationEndpoint"],
        format!("{}/authorize", idp.issuer),
        "{config}"
    );
}

#[tokio::test]
async fn cached_documents_are_refreshed_in_the_background() {
    let idp = HostileIdp::start().await;
    let rp = rp(true).await;
    let clients = rp
        .clients
        .clone()
        .with_refresh_after(std::time::Duration::ZERO);
    let integration = integration(&idp.issuer);
    let token = idp.sign(&idp.claims(CLIENT_ID));
    clients
        .verify_id_token(&integration, &token, None)
        .await
        .unwrap();
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
    // The next use answers from the cache and refreshes behind it.
    clients
        .verify_id_token(&integration, &token, None)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while idp.discovery_fetches() < 2 || idp.jwks_fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a background refresh");
}
