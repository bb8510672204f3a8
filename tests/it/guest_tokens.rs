//! The guest token endpoints end to end, against a real OpenID Provider
//! (tests/idp): code exchange with PKCE and nonce, the backend-owned login,
//! refresh rotation and reuse detection, logout, IdP key rotation, the
//! preconditions and their error codes, rate limiting, and session keys
//! shared by nodes on one Redis.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use switchboard::auth::oidc::pkce_pair;
use switchboard::auth::visitor_token::{
    RevokedSession, SESSION_TTL, SessionClaims, SessionError, SessionGrant, VisitorIdentity,
};
use switchboard::store::types::OrgId;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, Reply, Setup, TestApp};
use crate::support::idp::{self, SHOP_ORIGIN, TestIdp};
use crate::support::site::{Site, SiteSpec};

const EXCHANGE: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";
const REFRESH: &str = "/api/v2/webdeployments/token/refresh";
const REVOKE: &str = "/api/v2/webdeployments/token/revoke";
const START: &str = "/api/v2/webdeployments/token/oauth/start";
const COMPLETE: &str = "/api/v2/webdeployments/token/oauth/complete";

/// A node on `kind` with a deployment whose published configuration signs
/// visitors in at the shared IdP.
async fn shop(kind: EngineKind) -> (&'static TestIdp, TestApp, Site) {
    shop_with(kind, |setup| setup).await
}

/// [`shop`] on a node whose setup `change` adjusts.
async fn shop_with(
    kind: EngineKind,
    change: impl FnOnce(Setup) -> Setup,
) -> (&'static TestIdp, TestApp, Site) {
    let idp = idp::shared();
    let app = TestApp::spawn_with(change(Setup::new(kind))).await;
    let site = app.site(&SiteSpec::test_idp(idp)).await;
    (idp, app, site)
}

/// Another deployment next to `site`'s, in its queue: signing in with its
/// integration, or (`sign_in` false) without authentication.
async fn deployment_next_to(app: &TestApp, site: &Site, sign_in: bool) -> String {
    let mut spec = SiteSpec::new().in_queue(&site.queue);
    if sign_in {
        spec = spec.reusing_integration(site.integration_id());
    }
    app.site_as(&site.admin, &spec).await.deployment
}

/// What a widget holds after running the code flow itself.
struct ClientLogin {
    code: String,
    verifier: String,
    nonce: String,
    iss: Option<String>,
}

/// Runs the authorization code flow with PKCE and a nonce the way a widget
/// does, as `login` at `idp`.
async fn client_login(idp: &TestIdp, login: &str) -> ClientLogin {
    let (verifier, challenge) = pkce_pair();
    let state = Uuid::new_v4().to_string();
    let nonce = Uuid::new_v4().to_string();
    let mut url = url::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &idp.client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("redirect_uri", &idp.redirect_uri)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp.login(url.as_str(), login).await;
    assert_eq!(callback.state(), state);
    ClientLogin {
        code: callback.code().to_owned(),
        verifier: verifier.expose_secret().to_owned(),
        nonce,
        iss: callback.iss().map(str::to_owned),
    }
}

fn exchange_body(deployment: &str, login: &ClientLogin, redirect_uri: &str) -> Value {
    json!({
        "deploymentId": deployment,
        "oauth": {
            "code": login.code,
            "redirectUri": redirect_uri,
            "codeVerifier": login.verifier,
            "nonce": login.nonce,
            "iss": login.iss,
        }
    })
}

async fn post(app: &TestApp, path: &str, body: Value) -> Reply {
    app.call(Method::POST, path, None, Some(body)).await
}

/// Exchanges the code of `login` for `deployment`'s session tokens.
async fn exchange(
    app: &TestApp,
    deployment: &str,
    login: &ClientLogin,
    redirect_uri: &str,
) -> Reply {
    post(
        app,
        EXCHANGE,
        exchange_body(deployment, login, redirect_uri),
    )
    .await
}

/// Starts a backend-owned login for `deployment`.
async fn start(app: &TestApp, deployment: &str, redirect_uri: &str) -> Reply {
    post(
        app,
        START,
        json!({ "deploymentId": deployment, "redirectUri": redirect_uri }),
    )
    .await
}

/// Signs `login` in at `idp` and exchanges the code: `(jwt, refreshToken)`.
async fn signed_in(
    app: &TestApp,
    idp: &TestIdp,
    deployment: &str,
    login: &str,
) -> (String, String) {
    let login = client_login(idp, login).await;
    let pair = exchange(app, deployment, &login, &idp.redirect_uri)
        .await
        .expect(StatusCode::OK);
    (
        pair["jwt"].as_str().unwrap().to_owned(),
        pair["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(app: &TestApp, deployment: &str, refresh_token: &str) -> Reply {
    post(
        app,
        REFRESH,
        json!({ "deploymentId": deployment, "refreshToken": refresh_token }),
    )
    .await
}

/// Verifies `jwt` with the key its `kid` names in `/.well-known/jwks.json`,
/// as any third party would, and answers its claims.
async fn verify_with_jwks(app: &TestApp, jwt: &str, audience: &str) -> Value {
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(StatusCode::OK);
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("a kid");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"));
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert!(
        key.get("d").is_none(),
        "the private key is published: {key}"
    );
    let decoding =
        DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.base.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(jwt, &decoding, &validation)
        .unwrap()
        .claims
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

async fn code_flow_with_pkce_and_nonce(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let login = client_login(idp, "alice").await;
    assert_eq!(login.iss.as_deref(), Some(idp.issuer.as_str()));

    let reply = exchange(&app, &site.deployment, &login, &idp.redirect_uri).await;
    assert_eq!(reply.headers["cache-control"], "no-store");
    let pair = reply.expect(StatusCode::OK);
    let jwt = pair["jwt"].as_str().unwrap();
    assert!(pair["refreshToken"].as_str().unwrap().starts_with("sbr_"));

    let claims = verify_with_jwks(&app, jwt, &site.deployment).await;
    assert_eq!(claims["iss"], app.base.as_str());
    assert_eq!(claims["aud"], site.deployment.as_str());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(
        lifetime > 0 && lifetime <= 900,
        "lifetime {lifetime}: {claims}"
    );
    uuid(claims["sub"].as_str().unwrap());
    uuid(claims["sid"].as_str().unwrap());
    uuid(claims["jti"].as_str().unwrap());
    uuid(claims["org"].as_str().unwrap());
    let identity = &claims["identity"];
    assert_eq!(identity["iss"], idp.issuer.as_str());
    assert_eq!(identity["sub"], "alice");
    assert_eq!(identity["email"], "alice@example.com");
    assert_eq!(identity["given_name"], "Alice");
    assert_eq!(identity["family_name"], "Tester");
    assert_eq!(identity["name"], "Alice Tester");

    // The service verifies it too, for its own deployment only.
    let sessions = &app.state().visitor_tokens;
    let verified = sessions
        .verify(jwt, uuid(&site.deployment), Utc::now())
        .await
        .unwrap();
    assert_eq!(verified.identity.subject, "alice");
    assert!(matches!(
        sessions.verify(jwt, Uuid::new_v4(), Utc::now()).await,
        Err(SessionError::Audience)
    ));
    // ... and not after it expired.
    let later = Utc::now() + chrono::Duration::minutes(16);
    assert!(matches!(
        sessions.verify(jwt, uuid(&site.deployment), later).await,
        Err(SessionError::Expired)
    ));

    // The same visitor gets the same switchboard subject on the next login,
    // another visitor another one.
    let (again, _) = signed_in(&app, idp, &site.deployment, "alice").await;
    let (bob, _) = signed_in(&app, idp, &site.deployment, "bob").await;
    let again = verify_with_jwks(&app, &again, &site.deployment).await;
    let bob = verify_with_jwks(&app, &bob, &site.deployment).await;
    assert_eq!(again["sub"], claims["sub"]);
    assert_ne!(again["sid"], claims["sid"]);
    assert_ne!(bob["sub"], claims["sub"]);

    // Every endpoint is in the API document.
    let openapi = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK);
    for path in [
        EXCHANGE,
        REFRESH,
        REVOKE,
        START,
        COMPLETE,
        "/.well-known/jwks.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }

    // An authorization code works once.
    exchange(&app, &site.deployment, &login, &idp.redirect_uri)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");
}
on_both_engines!(code_flow_with_pkce_and_nonce);

/// An app that signed the visitor in itself presents the ID token: it is
/// verified for the integration's client and its nonce, and accepted once.
async fn id_token_presented_directly(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let login = client_login(idp, "olga").await;
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", login.code.as_str()),
            ("redirect_uri", idp.redirect_uri.as_str()),
            ("code_verifier", login.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let body = |nonce: &str| json!({ "deploymentId": site.deployment, "oauth": { "idToken": id_token, "nonce": nonce } });

    post(&app, EXCHANGE, body("another-nonce"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "nonce_mismatch");
    let pair = post(&app, EXCHANGE, body(&login.nonce))
        .await
        .expect(StatusCode::OK);
    let claims = verify_with_jwks(&app, pair["jwt"].as_str().unwrap(), &site.deployment).await;
    assert_eq!(claims["identity"]["sub"], "olga");
    let id_claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(claims["exp"].as_i64().unwrap() <= id_claims["exp"].as_i64().unwrap());

    let replayed = post(&app, EXCHANGE, body(&login.nonce)).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.text
    );
}
on_both_engines!(id_token_presented_directly);

/// The IdP's token answer for `login` (as an app that runs the code flow
/// itself gets it).
async fn idp_tokens(idp: &TestIdp, login: &ClientLogin) -> Value {
    reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", login.code.as_str()),
            ("redirect_uri", idp.redirect_uri.as_str()),
            ("code_verifier", login.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A presented ID token is accepted once, with its nonce or without one:
/// leaving the nonce out of a replay does not skip the check, also after
/// the token was first exchanged with its nonce. The replay records expire
/// with the token (inspected on Redis).
async fn presented_id_token_is_accepted_once_nonce_or_not(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let body = |token: &str, nonce: Option<&str>| match nonce {
        Some(nonce) => {
            json!({ "deploymentId": site.deployment, "oauth": { "idToken": token, "nonce": nonce } })
        }
        None => json!({ "deploymentId": site.deployment, "oauth": { "idToken": token } }),
    };

    // Exchanged once with its nonce; replayed without it.
    let login = client_login(idp, "pia").await;
    let tokens = idp_tokens(idp, &login).await;
    let first = tokens["id_token"].as_str().unwrap();
    post(&app, EXCHANGE, body(first, Some(&login.nonce)))
        .await
        .expect(StatusCode::OK);
    post(&app, EXCHANGE, body(first, None))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "token_replayed");
    post(&app, EXCHANGE, body(first, Some(&login.nonce)))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "nonce_replayed");

    // Exchanged once without a nonce; replayed without one, then with it.
    let login = client_login(idp, "quinn").await;
    let tokens = idp_tokens(idp, &login).await;
    let second = tokens["id_token"].as_str().unwrap();
    post(&app, EXCHANGE, body(second, None))
        .await
        .expect(StatusCode::OK);
    post(&app, EXCHANGE, body(second, None))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "token_replayed");
    post(&app, EXCHANGE, body(second, Some(&login.nonce)))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "token_replayed");

    if kind == EngineKind::Redis {
        // Every replay record lives no longer than its token (+ leeway).
        let exp = |token: &str| -> i64 {
            let claims: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            claims["exp"].as_i64().unwrap()
        };
        let latest = exp(first).max(exp(second));
        let bound_ms = (latest - Utc::now().timestamp() + 60 + 1) * 1000;
        let prefix = &app.setup.env[switchboard::config::ENV_REDIS_PREFIX];
        let client = ::redis::Client::open(crate::support::redis::shared().url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}e:nonce:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        // Two nonces and two tokens.
        assert_eq!(keys.len(), 4, "{keys:?}");
        for key in keys {
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0 && ttl <= bound_ms, "{key}: {ttl} ms");
        }
    }
}
on_both_engines!(presented_id_token_is_accepted_once_nonce_or_not);

async fn tampered_and_foreign_session_jwts_are_refused(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let other = deployment_next_to(&app, &site, true).await;
    let (jwt, _) = signed_in(&app, idp, &site.deployment, "carol").await;
    let sessions = &app.state().visitor_tokens;

    // A session JWT of one deployment is not one of another.
    assert!(matches!(
        sessions.verify(&jwt, uuid(&other), Utc::now()).await,
        Err(SessionError::Audience)
    ));

    // Any changed claim breaks the signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    for (field, value) in [
        ("identity", json!({ "iss": idp.issuer, "sub": "mallory" })),
        ("aud", json!(other)),
        ("exp", json!(payload["exp"].as_i64().unwrap() + 3600)),
    ] {
        let mut changed = payload.clone();
        changed[field] = value;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap()),
            parts[2]
        );
        let audience = if field == "aud" {
            uuid(&other)
        } else {
            uuid(&site.deployment)
        };
        assert!(
            matches!(
                sessions.verify(&forged, audience, Utc::now()).await,
                Err(SessionError::Signature)
            ),
            "a session JWT with a changed {field} was accepted"
        );
    }
    // An unsigned token and a token naming an unknown key are refused.
    payload["identity"]["sub"] = json!("mallory");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap())
    );
    assert!(
        sessions
            .verify(&unsigned, uuid(&site.deployment), Utc::now())
            .await
            .is_err()
    );
    let unknown_kid = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"nope"}"#),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        sessions
            .verify(&unknown_kid, uuid(&site.deployment), Utc::now())
            .await,
        Err(SessionError::Signature)
    ));
    assert!(matches!(
        sessions
            .verify("not a jwt", uuid(&site.deployment), Utc::now())
            .await,
        Err(SessionError::Malformed)
    ));
}
on_both_engines!(tampered_and_foreign_session_jwts_are_refused);

async fn backend_owned_login(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;

    let started = start(&app, &site.deployment, &idp.redirect_uri)
        .await
        .expect(StatusCode::OK);
    let authorize_url = url::Url::parse(started["authorizeUrl"].as_str().unwrap()).unwrap();
    let state = started["state"].as_str().unwrap().to_owned();
    let query: HashMap<String, String> = authorize_url.query_pairs().into_owned().collect();
    assert_eq!(query["state"], state);
    assert_eq!(query["client_id"], idp.client_id);
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query.contains_key("nonce") && query.contains_key("code_challenge"));
    assert!(
        !started.to_string().contains("verifier"),
        "the PKCE verifier must stay on the server: {started}"
    );

    let callback = idp.login(authorize_url.as_str(), "dave").await;
    assert_eq!(callback.state(), state);
    let complete = json!({
        "deploymentId": site.deployment,
        "code": callback.code(),
        "state": callback.state(),
        "iss": callback.iss(),
    });
    let pair = post(&app, COMPLETE, complete.clone())
        .await
        .expect(StatusCode::OK);
    let claims = verify_with_jwks(&app, pair["jwt"].as_str().unwrap(), &site.deployment).await;
    assert_eq!(claims["identity"]["sub"], "dave");
    assert_eq!(claims["identity"]["email"], "dave@example.com");

    // A state works once.
    post(&app, COMPLETE, complete)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_state");
    // An unknown one never.
    post(
        &app,
        COMPLETE,
        json!({ "deploymentId": site.deployment, "code": "x", "state": "made-up" }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_state");

    // RFC 9207: a response from another issuer is refused (and its
    // transaction is spent).
    let started = start(&app, &site.deployment, &idp.redirect_uri)
        .await
        .expect(StatusCode::OK);
    let callback = idp
        .login(started["authorizeUrl"].as_str().unwrap(), "dave")
        .await;
    post(
        &app,
        COMPLETE,
        json!({
            "deploymentId": site.deployment,
            "code": callback.code(),
            "state": callback.state(),
            "iss": "https://attacker.example.com",
        }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "issuer_mismatch");

    // A redirect URI off the deployment's origins is refused at the start.
    start(&app, &site.deployment, "https://evil.example.com/callback")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "redirect_uri_not_allowed");
}
on_both_engines!(backend_owned_login);

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let mut revocations = app.state().visitor_tokens.subscribe();
    let (jwt1, r1) = signed_in(&app, idp, &site.deployment, "erin").await;
    let first = verify_with_jwks(&app, &jwt1, &site.deployment).await;

    let second = refresh(&app, &site.deployment, &r1)
        .await
        .expect(StatusCode::OK);
    let r2 = second["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    let jwt2 = second["jwt"].as_str().unwrap().to_owned();
    let claims2 = verify_with_jwks(&app, &jwt2, &site.deployment).await;
    assert_eq!(claims2["sid"], first["sid"], "one session across refreshes");
    assert_eq!(claims2["sub"], first["sub"]);
    assert_eq!(claims2["identity"], first["identity"]);
    assert_ne!(claims2["jti"], first["jti"]);

    // A refresh token of this deployment means nothing to another.
    let other = deployment_next_to(&app, &site, true).await;
    refresh(&app, &other, &r2)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_grant");

    let third = refresh(&app, &site.deployment, &r2)
        .await
        .expect(StatusCode::OK);
    let r3 = third["refreshToken"].as_str().unwrap().to_owned();
    let jwt3 = third["jwt"].as_str().unwrap().to_owned();

    // r1 again: reuse. The family is revoked, the newest token with it, and
    // this node's sockets of the session hear about it.
    refresh(&app, &site.deployment, &r1)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    let revoked = tokio::time::timeout(Duration::from_secs(5), revocations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked,
        RevokedSession {
            deployment: uuid(&site.deployment),
            sid: uuid(first["sid"].as_str().unwrap()),
        }
    );
    refresh(&app, &site.deployment, &r3)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_revoked");
    assert!(matches!(
        app.state()
            .visitor_tokens
            .verify(&jwt3, uuid(&site.deployment), Utc::now())
            .await,
        Err(SessionError::Revoked)
    ));

    refresh(&app, &site.deployment, "sbr_made_up")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_grant");
}
on_both_engines!(refresh_tokens_rotate_and_reuse_revokes_the_family);

async fn revoke_ends_the_session(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;
    let (jwt, r1) = signed_in(&app, idp, &site.deployment, "frank").await;
    let claims = verify_with_jwks(&app, &jwt, &site.deployment).await;
    let mut revocations = app.state().visitor_tokens.subscribe();

    app.call(Method::DELETE, REVOKE, None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let reply = app.call(Method::DELETE, REVOKE, Some(&jwt), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);

    let revoked = tokio::time::timeout(Duration::from_secs(5), revocations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.sid, uuid(claims["sid"].as_str().unwrap()));
    assert_eq!(revoked.deployment, uuid(&site.deployment));
    assert!(matches!(
        app.state()
            .visitor_tokens
            .verify(&jwt, uuid(&site.deployment), Utc::now())
            .await,
        Err(SessionError::Revoked)
    ));
    app.call(Method::DELETE, REVOKE, Some(&jwt), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_revoked");
    refresh(&app, &site.deployment, &r1)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_revoked");

    // Another session of the same visitor is not affected.
    let (other, _) = signed_in(&app, idp, &site.deployment, "frank").await;
    app.state()
        .visitor_tokens
        .verify(&other, uuid(&site.deployment), Utc::now())
        .await
        .unwrap();
}
on_both_engines!(revoke_ends_the_session);

/// The IdP rotates its keys while switchboard runs: the next login works
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_key_rotation_needs_no_restart() {
    let idp = TestIdp::start();
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let site = app.site(&SiteSpec::test_idp(&idp)).await;
    signed_in(&app, &idp, &site.deployment, "gina").await;

    let kid = idp.rotate_keys().await;
    let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());

    let (jwt, _) = signed_in(&app, &idp, &site.deployment, "gina").await;
    let claims = verify_with_jwks(&app, &jwt, &site.deployment).await;
    assert_eq!(claims["identity"]["sub"], "gina");
}

async fn preconditions_have_their_codes(kind: EngineKind) {
    let (idp, app, site) = shop(kind).await;

    // A redirect URI off the deployment's origins.
    let login = client_login(idp, "hank").await;
    exchange(
        &app,
        &site.deployment,
        &login,
        "https://evil.example.com/callback",
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "redirect_uri_not_allowed");

    // Unknown deployments, and ids that are no ids.
    for deployment in [Uuid::new_v4().to_string(), "../etc".to_owned()] {
        exchange(&app, &deployment, &login, &idp.redirect_uri)
            .await
            .expect_error(StatusCode::NOT_FOUND, "deployment_not_found");
    }

    // Neither a code nor an ID token.
    post(
        &app,
        EXCHANGE,
        json!({ "deploymentId": site.deployment, "oauth": {} }),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "bad_request");

    // A browser on a foreign origin is refused before anything happens;
    // the shop's origin gets CORS on success and failure alike.
    let foreign = app
        .http
        .post(app.url(EXCHANGE))
        .header("origin", "https://evil.example.com")
        .json(&exchange_body(&site.deployment, &login, &idp.redirect_uri))
        .send()
        .await
        .unwrap();
    let foreign = Reply::from(foreign).await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
    foreign.expect_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    let shop = app
        .http
        .post(app.url(EXCHANGE))
        .header("origin", SHOP_ORIGIN)
        .json(&json!({ "deploymentId": site.deployment, "oauth": { "code": "bogus", "redirectUri": idp.redirect_uri } }))
        .send()
        .await
        .unwrap();
    let shop = Reply::from(shop).await;
    assert_eq!(shop.headers["access-control-allow-origin"], SHOP_ORIGIN);
    shop.expect_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let preflight = app
        .http
        .request(Method::OPTIONS, app.url(EXCHANGE))
        .header("origin", SHOP_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{preflight:?}");
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        SHOP_ORIGIN
    );
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");

    // Authentication switched off in the published configuration.
    let plain = deployment_next_to(&app, &site, false).await;
    exchange(&app, &plain, &login, &idp.redirect_uri)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "authentication_disabled");

    // The integration switched off.
    let path = format!("/api/v2/integrations/oidc/{}", site.integration_id());
    let current = app.get(&path, &site.admin).await.expect(StatusCode::OK);
    app.put(
        &path,
        &site.admin,
        json!({
            "name": current["name"],
            "issuer": current["issuer"],
            "clientId": current["clientId"],
            "scopes": current["scopes"],
            "maxRefreshTokenLifetimeSeconds": current["maxRefreshTokenLifetimeSeconds"],
            "active": false,
            "version": current["version"],
        }),
    )
    .await
    .expect(StatusCode::OK);
    exchange(&app, &site.deployment, &login, &idp.redirect_uri)
        .await
        .expect_error(StatusCode::FORBIDDEN, "integration_inactive");
    start(&app, &site.deployment, &idp.redirect_uri)
        .await
        .expect_error(StatusCode::FORBIDDEN, "integration_inactive");

    // The deployment switched off.
    let path = format!("/api/v2/webdeployments/deployments/{plain}");
    let mut current = app.get(&path, &site.admin).await.expect(StatusCode::OK);
    current["status"] = json!("Inactive");
    app.put(&path, &site.admin, current)
        .await
        .expect(StatusCode::OK);
    exchange(&app, &plain, &login, &idp.redirect_uri)
        .await
        .expect_error(StatusCode::NOT_FOUND, "deployment_not_found");
}
on_both_engines!(preconditions_have_their_codes);

async fn token_endpoints_are_rate_limited(kind: EngineKind) {
    let (idp, app, site) = shop_with(kind, |setup| {
        // Refills once every two minutes: the 31st request is refused
        // however slowly this machine sends the first 30.
        setup.set(switchboard::limits::ENV_TOKEN_REQUESTS, "30/h burst 30")
    })
    .await;
    for _ in 0..30 {
        refresh(&app, &site.deployment, "sbr_guess")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_grant");
    }
    let limited = refresh(&app, &site.deployment, "sbr_guess").await;
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&retry_after), "{retry_after}");
    limited.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");

    // Per deployment and endpoint group: logins on it still go through.
    start(&app, &site.deployment, &idp.redirect_uri)
        .await
        .expect(StatusCode::OK);
}
on_both_engines!(token_endpoints_are_rate_limited);

fn grant(deployment: Uuid, sub: &str) -> SessionGrant {
    SessionGrant {
        deployment,
        org: OrgId(Uuid::new_v4()),
        identity: VisitorIdentity {
            issuer: "https://idp.example.com/".to_owned(),
            subject: sub.to_owned(),
            email: None,
            email_verified: None,
            name: None,
            given_name: None,
            family_name: None,
        },
        sid: Uuid::new_v4(),
        not_after: Utc::now() + chrono::Duration::hours(1),
    }
}

/// Session JWTs never outlive the IdP token, and never live past 15 min.
async fn session_lifetime_is_bounded(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let sessions = &app.state().visitor_tokens;
    let now = Utc::now();
    let deployment = Uuid::new_v4();

    let long = sessions.issue(&grant(deployment, "a"), now).await.unwrap();
    assert_eq!(
        long.claims.exp - long.claims.iat,
        SESSION_TTL.as_secs() as i64
    );
    let mut short = grant(deployment, "a");
    short.not_after = now + chrono::Duration::minutes(5);
    let short = sessions.issue(&short, now).await.unwrap();
    assert_eq!(
        short.claims.exp,
        (now + chrono::Duration::minutes(5)).timestamp()
    );
    let mut expired = grant(deployment, "a");
    expired.not_after = now - chrono::Duration::seconds(1);
    assert!(matches!(
        sessions.issue(&expired, now).await,
        Err(SessionError::IdpTokenExpired)
    ));
}
on_both_engines!(session_lifetime_is_bounded);

/// Two nodes on one Redis (same prefix, same master key) share session keys:
/// a JWT one issues the other verifies, across a key rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_are_shared_across_nodes() {
    let setup = Setup::new(EngineKind::Redis).set(
        switchboard::config::ENV_PUBLIC_URL,
        "https://chat.example.com/",
    );
    let one = TestApp::spawn_with(setup.clone()).await;
    let two = TestApp::spawn_with(setup).await;
    let (a, b) = (&one.state().visitor_tokens, &two.state().visitor_tokens);
    // Both create the keys on first use at once; one set wins.
    let (ka, kb) = tokio::join!(a.jwks(), b.jwks());
    let (ka, kb) = (ka.unwrap(), kb.unwrap());
    assert_eq!(ka.keys.len(), 1);
    assert_eq!(ka.keys[0].kid, kb.keys[0].kid);

    let deployment = Uuid::new_v4();
    let now = Utc::now();
    let issued = a.issue(&grant(deployment, "ivy"), now).await.unwrap();
    let verified: SessionClaims = b
        .verify(issued.jwt.expose_secret(), deployment, now)
        .await
        .unwrap();
    assert_eq!(verified, issued.claims);
    assert_eq!(verified.iss, "https://chat.example.com");
    // The visitor id is the same on every node.
    assert_eq!(
        a.visitor_subject(verified.org, "https://idp.example.com/", "ivy"),
        b.visitor_subject(verified.org, "https://idp.example.com/", "ivy")
    );

    // A day later node one rotates; node two learns the new kid on sight,
    // and tokens of the old key stay valid for their lifetime.
    let later = now + chrono::Duration::hours(24) + chrono::Duration::seconds(1);
    let mut next_day = grant(deployment, "ivy");
    next_day.not_after = later + chrono::Duration::hours(1);
    let rotated = a.issue(&next_day, later).await.unwrap();
    let old_kid = jsonwebtoken::decode_header(issued.jwt.expose_secret())
        .unwrap()
        .kid;
    let new_kid = jsonwebtoken::decode_header(rotated.jwt.expose_secret())
        .unwrap()
        .kid;
    assert_ne!(old_kid, new_kid);
    b.verify(rotated.jwt.expose_secret(), deployment, later)
        .await
        .unwrap();
    b.verify(
        issued.jwt.expose_secret(),
        deployment,
        now + chrono::Duration::minutes(1),
    )
    .await
    .unwrap();
    let published = one
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(published["keys"].as_array().unwrap().len(), 2);
    assert_eq!(published["keys"][0]["kid"], new_kid.unwrap().as_str());

    // Revocation on one node holds on the other.
    let _revoked = a.revoke(&rotated.claims, later).await.unwrap();
    assert!(matches!(
        b.verify(rotated.jwt.expose_secret(), deployment, later)
            .await,
        Err(SessionError::Revoked)
    ));
}
