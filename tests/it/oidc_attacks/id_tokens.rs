//! ID tokens: signatures, algorithms, key ids, audiences, issuers, times,
//! claims and nonces.

use super::*;

#[tokio::test]
async fn a_valid_token_yields_the_identity() {
    let (idp, rp, integration) = setup().await;
    let token = idp.sign(&idp.claims(CLIENT_ID));
    let identity = rp.verify(&integration, &token).await.unwrap();
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
    rp.verify(&integration, &token).await.unwrap();
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
    let identity = rp.verify(&integration, &token).await.unwrap();
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
    idp.set_token_answer(TokenAnswer::IdToken(token.clone()));
    let error = rp.redeem(&hmac, "code-1").await.unwrap_err();
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
    let error = rp.redeem(&hmac, "code-2").await.unwrap_err();
    assert_eq!(error.code(), "signature_invalid");

    // Control: signed with the client secret, it verifies.
    let token = sign_header(
        &header,
        &claims,
        &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
    );
    idp.set_token_answer(TokenAnswer::IdToken(token));
    let identity = rp.redeem(&hmac, "code-3").await.unwrap();
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
        let error = rp.verify(&integration, token).await.unwrap_err();
        assert_eq!(error.code(), "malformed_token", "{token:?}");
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_key_set_once() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    rp.verify(&integration, &idp.sign(&claims)).await.unwrap();
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
    assert!(rp.verify(&integration, &token).await.is_ok());
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
    assert!(rp.verify(&integration, &token).await.is_ok());
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
    assert!(rp.verify(&integration, &skewed).await.is_ok());
}

#[tokio::test]
async fn missing_claims_are_refused() {
    let (idp, rp, integration) = setup().await;
    for claim in ["sub", "iat", "aud", "exp"] {
        let mut claims = idp.claims(CLIENT_ID);
        claims.as_object_mut().unwrap().remove(claim);
        let token = idp.sign(&claims);
        let error = rp.verify(&integration, &token).await.unwrap_err();
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
