//! Authenticated sessions as the Transport SDK runs them, against a real
//! IdP: authorize by code and implicitly, configure signed in, refresh,
//! the refusals it tells apart (G5: 401 to refresh, 403 "Session
//! authentication failed" to sign in again), logout on the socket, and
//! step-up on the same session (G6).

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::auth::visitor_token::{SessionGrant, VisitorIdentity};
use uuid::Uuid;

use super::client::{SdkClient, refusal, session};
use super::sdk::PresenceType;
use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

/// A deployment the app signs in to at the shared IdP (refresh tokens that
/// do not rotate, as the SDK needs); `upgrade` lets a guest sign in on its
/// session. Answers the admin token and the deployment.
async fn signed_in_site(app: &TestApp, upgrade: bool) -> (String, String) {
    let admin = app.admin().await;
    let integration = integration(app, &admin, idp::shared(), false).await;
    let mut body = configuration(Some(&integration), json!({}));
    body["authenticationSettings"]["allowSessionUpgrade"] = json!(upgrade);
    let configuration = published(app, &admin, body).await;
    let id = deployment(
        app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;
    (admin, id)
}

/// `authorize(code, redirectUri, codeVerifier)`: the exchange's answer.
async fn authorize(app: &TestApp, deployment: &str, login: &str) -> sdk::AuthJwt {
    let body = app_login(idp::shared(), deployment, login).await;
    decode(&post(app, EXCHANGE, &body).await.expect(StatusCode::OK))
}

/// `authorizeImplicit(idToken, nonce)`, after the app signed in itself.
async fn authorize_implicit(app: &TestApp, deployment: &str, login: &str) -> sdk::AuthJwt {
    let idp = idp::shared();
    let (verifier, challenge) = pkce_pair();
    let nonce = Uuid::new_v4().to_string();
    let mut url = url::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &idp.client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("redirect_uri", &idp.redirect_uri)
        .append_pair("state", "s")
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp.login(url.as_str(), login).await;
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", callback.code()),
            ("redirect_uri", idp.redirect_uri.as_str()),
            ("code_verifier", verifier.expose_secret()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({ "deploymentId": deployment,
        "oauth": { "idToken": tokens["id_token"], "nonce": nonce } });
    decode(&post(app, EXCHANGE, &body).await.expect(StatusCode::OK))
}

/// A session JWT for `deployment` issued at `at`.
async fn jwt_issued_at(app: &TestApp, deployment: &str, at: chrono::DateTime<Utc>) -> String {
    let grant = SessionGrant {
        deployment: deployment.parse().unwrap(),
        org: app.state().auth.default_org(),
        identity: VisitorIdentity {
            issuer: idp::shared().issuer.clone(),
            subject: "late".to_owned(),
            email: None,
            email_verified: None,
            name: None,
            given_name: None,
            family_name: None,
        },
        sid: Uuid::new_v4(),
        not_after: Utc::now() + chrono::Duration::hours(2),
    };
    let issued = app.state().visitor_tokens.issue(&grant, at).await.unwrap();
    issued.jwt.expose_secret().to_owned()
}

/// The refusal the SDK turns into `AuthorizationRequired` (no refresh).
#[track_caller]
fn sign_in_again(answer: &Value) {
    let (code, text) = refusal(answer);
    assert_eq!(code, 403, "{answer}");
    assert!(
        text.to_lowercase()
            .starts_with("session authentication failed"),
        "{answer}"
    );
}

async fn authenticated_sessions_as_the_sdk_runs_them(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (_, id) = signed_in_site(&app, false).await;
    let pair = authorize(&app, &id, "nora").await;
    let refresh_token = pair.refresh_token.clone().unwrap();

    let mut sdk = SdkClient::open(&app, &id).await;
    // Signed-in deployments take no guest.
    let (code, _) = refusal(&sdk.request(sdk.configure_frame(false)).await);
    assert_eq!(code, 401);
    let signed = session(&sdk.authenticate(&pair.jwt).await);
    assert!(signed.connected && signed.new_session);
    let echo: sdk::Frame<sdk::StructuredMessage> =
        decode(&sdk.request(sdk.text("signed in")).await);
    assert_eq!(echo.body.metadata["authenticated"], "true");

    // Refresh (`{"refreshToken"}` alone), then reconnect with the new JWT:
    // the same session.
    let refreshed: sdk::AuthJwt = decode(
        &post(&app, REFRESH, &json!({ "refreshToken": refresh_token }))
            .await
            .expect(StatusCode::OK),
    );
    let mut phone = SdkClient::with_token(&app, &id, &sdk.token).await;
    let joined = session(&phone.authenticate(&refreshed.jwt).await);
    assert!(joined.connected && !joined.new_session);

    // G5: expired is 401 (the SDK refreshes and configures again); a JWT no
    // refresh can help is 403 "Session authentication failed…".
    let expired = jwt_issued_at(&app, &id, Utc::now() - chrono::Duration::hours(1)).await;
    let mut late = SdkClient::open(&app, &id).await;
    let (code, _) = refusal(&late.authenticate(&expired).await);
    assert_eq!(code, 401);
    let (_, other) = signed_in_site(&app, false).await;
    let foreign = authorize(&app, &other, "nora").await;
    sign_in_again(&late.authenticate(&foreign.jwt).await);
    sign_in_again(&late.authenticate("not.a.jwt").await);
    // Another visitor on this session.
    let mallory = authorize(&app, &id, "mallory").await;
    let mut intruder = SdkClient::with_token(&app, &id, &sdk.token).await;
    sign_in_again(&intruder.authenticate(&mallory.jwt).await);

    // Implicit: the app's own ID token.
    let implicit = authorize_implicit(&app, &id, "olga").await;
    let mut olga = SdkClient::open(&app, &id).await;
    assert!(session(&olga.authenticate(&implicit.jwt).await).connected);

    // Logout: the socket hears LogoutEvent and is closed; the revoked JWT
    // then asks for a new sign-in.
    let response = app
        .http
        .delete(app.url(REVOKE))
        .header("authorization", format!("bearer {}", pair.jwt))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    sdk.next_of("LogoutEvent").await;
    assert_eq!(sdk.closed().await, 1000);
    phone.next_of("LogoutEvent").await;
    let mut again = SdkClient::open(&app, &id).await;
    sign_in_again(&again.authenticate(&pair.jwt).await);
}
on_both_engines!(authenticated_sessions_as_the_sdk_runs_them);

async fn step_up_on_the_same_session(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (_, id) = signed_in_site(&app, true).await;

    // G6: with allowSessionUpgrade a guest starts on its own.
    let mut sdk = SdkClient::open(&app, &id).await;
    let guest = sdk.configure(false).await;
    assert!(guest.connected && guest.new_session);
    let echo = sdk.request(sdk.text("as a guest")).await;
    let conversation = echo["body"]["conversationId"].clone();
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&echo);
    assert!(!echo.body.metadata.contains_key("authenticated"));
    // Another connection of the guest's token.
    let mut tab = SdkClient::with_token(&app, &id, &sdk.token).await;
    tab.configure(false).await;

    // Step-up on the same socket, with the new token `authorize` minted:
    // SignIn first, named as the IdP names the visitor, then the answer:
    // no new session (no second autostart), nothing cleared.
    let pair = authorize(&app, &id, "nora").await;
    sdk.new_token();
    let answer = sdk.authenticate(&pair.jwt).await;
    let sign_in = sdk.message().await;
    assert_eq!(sign_in.body.presence(), Some(PresenceType::SignIn));
    let from = sign_in
        .body
        .channel
        .as_ref()
        .unwrap()
        .from
        .as_ref()
        .unwrap();
    assert_eq!(from.first_name.as_deref(), Some("Nora"));
    assert_eq!(from.last_name.as_deref(), Some("Tester"));
    let stepped = session(&answer);
    assert!(stepped.connected && !stepped.new_session);
    assert!(!stepped.cleared_existing_session);
    // The guest token's other connection is closed as signed in elsewhere.
    let closed: sdk::Frame<sdk::ConnectionClosedEvent> =
        decode(&tab.next_of("ConnectionClosedEvent").await);
    assert_eq!(closed.body.reason.as_deref(), Some("signedIn"));
    assert_eq!(tab.closed().await, 1000);

    // The conversation continues, signed in.
    let raw = sdk.request(sdk.text("signed in now")).await;
    assert_eq!(raw["body"]["conversationId"], conversation);
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&raw);
    assert_eq!(echo.body.metadata["authenticated"], "true");
    let stored = app
        .state()
        .routing
        .conversation(app.org(), conversation.as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let visitor = stored.visitor.expect("signed in");
    assert_eq!(visitor.given_name.as_deref(), Some("Nora"));

    // A guest who steps up before saying anything sees its SignIn too.
    let mut quiet = SdkClient::open(&app, &id).await;
    quiet.configure(false).await;
    let pair = authorize(&app, &id, "quinn").await;
    quiet.new_token();
    let answer = quiet.authenticate(&pair.jwt).await;
    let sign_in = quiet.message().await;
    assert_eq!(sign_in.body.presence(), Some(PresenceType::SignIn));
    assert!(!session(&answer).new_session);
}
on_both_engines!(step_up_on_the_same_session);
