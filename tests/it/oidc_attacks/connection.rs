//! The IdP connection: discovery, key rotation, addresses, the token
//! endpoint and UserInfo, authorize URLs, and the document cache.

use super::*;

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let (idp, rp, configured) = setup().await;
    idp.set_discovery_issuer("https://evil.example.com");
    let token = idp.sign(&idp.claims(CLIENT_ID));
    let error = rp.verify(&configured, &token).await.unwrap_err();
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
    let error = rp.discovery_error(&slash).await;
    assert_eq!(error.code(), "issuer_mismatch");
    assert!(error.to_string().contains("trailing slash"), "{error}");
}

#[tokio::test]
async fn key_rotation_needs_no_restart() {
    let (idp, rp, integration) = setup().await;
    let claims = idp.claims(CLIENT_ID);
    rp.verify(&integration, &idp.sign(&claims)).await.unwrap();
    let new_key = TestKey::rsa_b();
    idp.set_keys(&[&new_key]);
    let rotated = sign_with(&new_key, &claims);
    let identity = rp.verify(&integration, &rotated).await.unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(idp.jwks_fetches(), 2);
    // The new key is cached now.
    rp.verify(&integration, &rotated).await.unwrap();
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
        "https://[::ffff:a9fe:a9fe]/",
        "https://[::ffff:0:7f00:1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[64:ff9b:1::7f00:1]/",
        "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "https://[2002:7f00:1::1]/",
        "https://[2002:a9fe:a9fe::1]/",
        "https://localhost/",
        "https://localhost:9/",
    ] {
        let error = rp.discovery_error(&integration(issuer)).await;
        assert_eq!(error.code(), "idp_address_refused", "{issuer}: {error}");
    }
    let error = rp
        .discovery_error(&integration("http://idp.example.com/"))
        .await;
    assert_eq!(error.code(), "idp_insecure");

    // The same IdP that works with allow_insecure is refused without it.
    let idp = HostileIdp::start().await;
    let error = rp.discovery_error(&integration(&idp.issuer)).await;
    assert_eq!(error.code(), "idp_insecure");
    assert_eq!(idp.discovery_fetches(), 0);
}

#[tokio::test]
async fn redirects_and_huge_documents_are_refused() {
    let (idp, rp, integration) = setup().await;
    idp.set_discovery_mode(DiscoveryMode::Redirect);
    let error = rp.discovery_error(&integration).await;
    assert_eq!(error.code(), "idp_error");
    assert!(idp.paths().iter().all(|p| !p.starts_with("/elsewhere")));

    let (idp, rp, integration) = setup().await;
    idp.set_discovery_mode(DiscoveryMode::Huge);
    let error = rp.discovery_error(&integration).await;
    assert_eq!(error.code(), "idp_error");
    assert!(error.to_string().contains("KiB"), "{error}");
}

#[tokio::test]
async fn an_unreachable_idp_is_reported() {
    let rp = rp(true).await;
    let error = rp.discovery_error(&integration("http://127.0.0.1:1")).await;
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
    for (answer, code, status) in [
        (
            TokenAnswer::Raw(
                400,
                json!({"error": "invalid_grant", "error_description": "code already used: the-code"}),
            ),
            "invalid_grant",
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            TokenAnswer::Raw(401, json!({"error": "invalid_client"})),
            "idp_error",
            None,
        ),
        (
            TokenAnswer::Raw(200, json!({"access_token": "x", "token_type": "Bearer"})),
            "idp_error",
            None,
        ),
    ] {
        idp.set_token_answer(answer);
        let error = rp.redeem(&integration, "the-code").await.unwrap_err();
        assert_eq!(error.code(), code);
        if let Some(status) = status {
            assert_eq!(error.status(), status);
        }
        // Neither the code nor the client secret is repeated.
        let shown = error.to_string();
        assert!(
            !shown.contains("the-code") && !shown.contains(CLIENT_SECRET),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn userinfo_completes_the_identity_for_the_same_subject_only() {
    let (idp, rp, integration) = setup().await;
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
    let identity = rp.redeem(&integration, "c1").await.unwrap();
    assert_eq!(idp.userinfo_calls(), 1);
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.email.as_deref(), Some("ada@userinfo.example.com"));
    assert_eq!(identity.email_verified, Some(true));
    assert_eq!(identity.given_name.as_deref(), Some("Ada"));
    assert_eq!(identity.family_name.as_deref(), Some("Byron"));
    assert_eq!(identity.name.as_deref(), Some("Ada Byron"));

    idp.set_userinfo(json!({"sub": "someone-else", "email": "eve@example.com"}));
    let error = rp.redeem(&integration, "c2").await.unwrap_err();
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
