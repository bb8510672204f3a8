//! The JWT-bearer grant (RFC 7523) at `/oauth/token`: a staff member's
//! tool signs the person in at the organization's staff IdP (the real
//! oidc-provider) and trades the ID token for an API access token with the
//! member's roles. Attacks: another audience, another organization's IdP,
//! a person who is not a member.

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::support::app::{EngineKind, Reply, TestApp};
use crate::support::idp::TestIdp;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Signs `login` in at `idp` as its client would (code flow with PKCE)
/// and answers the ID token.
async fn id_token(idp: &TestIdp, login: &str) -> String {
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (verifier, challenge) = switchboard::auth::oidc::pkce_pair();
    let mut authorize =
        url::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", &idp.redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp.login(authorize.as_str(), login).await;
    let tokens: Value = http
        .post(discovery["token_endpoint"].as_str().unwrap())
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
    tokens["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {tokens}"))
        .to_owned()
}

async fn grant(app: &TestApp, assertion: &str, organization: Option<&str>) -> Reply {
    let mut form = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    if let Some(org) = organization {
        form.push(("organization", org));
    }
    Reply::from(
        app.http
            .post(app.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Records `idp` as the staff integration (with `client_id`) of the
/// organization `admin` administers; answers the organization's id.
async fn staff_integration(app: &TestApp, admin: &str, idp: &TestIdp, client_id: &str) -> String {
    let integration = app
        .create(
            "/api/v2/integrations/oidc",
            admin,
            json!({ "name": "Staff IdP", "issuer": idp.issuer, "clientId": client_id,
                "clientSecret": idp.client_secret, "scopes": ["openid", "email", "profile"] }),
        )
        .await;
    let org = app
        .get("/api/v2/organizations/me", admin)
        .await
        .expect(StatusCode::OK);
    app.put(
        "/api/v2/organizations/me",
        admin,
        json!({ "name": org["name"], "staffIntegrationId": integration, "version": org["version"] }),
    )
    .await
    .expect(StatusCode::OK);
    org["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_trade_a_staff_id_token_for_an_access_token_with_their_roles() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let boot = app.bootstrap.clone();
    let idp = TestIdp::start();
    let other_idp = TestIdp::start();
    let default_org = staff_integration(&app, &boot, &idp, &idp.client_id).await;

    // Ada is an admin of the default organization; Bob is nobody.
    let ada = app
        .post(
            "/api/v2/members",
            &boot,
            json!({ "issuer": idp.issuer, "subject": "ada", "displayName": "Ada", "roles": ["admin"] }),
        )
        .await
        .expect(StatusCode::CREATED);

    let token = id_token(&idp, "ada").await;
    let issued = grant(&app, &token, None).await.expect(StatusCode::OK);
    assert_eq!(issued["token_type"], "bearer");
    let access = issued["access_token"].as_str().unwrap();
    let me = app
        .get("/api/v2/members/me", access)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["id"], ada["id"]);
    assert_eq!(me["roles"], json!(["admin"]));
    // The roles are the member's: an admin may create an API client.
    app.post(
        "/api/v2/oauth/clients",
        access,
        json!({ "name": "by ada", "roles": ["agent"] }),
    )
    .await
    .expect(StatusCode::CREATED);
    // The organization named explicitly does the same.
    grant(&app, &token, Some(&default_org))
        .await
        .expect(StatusCode::OK);

    // Roles are read at each request: demoted to agent, the same token
    // can no longer administer.
    app.put(
        &format!("/api/v2/members/{}", ada["id"].as_str().unwrap()),
        &boot,
        json!({ "issuer": idp.issuer, "subject": "ada", "displayName": "Ada", "roles": ["agent"], "version": ada["version"] }),
    )
    .await
    .expect(StatusCode::OK);
    app.post(
        "/api/v2/oauth/clients",
        access,
        json!({ "name": "no longer", "roles": ["agent"] }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Not a member: a valid ID token of the right IdP creates nobody.
    let bob = id_token(&idp, "bob").await;
    grant(&app, &bob, None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Another organization, whose staff IdP is another one: Ada's token
    // from the first IdP is refused there, and the second IdP's tokens are
    // refused for the first organization.
    let second_admin = app.other_organization("Second").await;
    let second_org = staff_integration(&app, &second_admin, &other_idp, &other_idp.client_id).await;
    app.post(
        "/api/v2/members",
        &second_admin,
        json!({ "issuer": idp.issuer, "subject": "ada", "displayName": "Ada", "roles": ["admin"] }),
    )
    .await
    .expect(StatusCode::CREATED);
    grant(&app, &token, Some(&second_org))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let foreign = id_token(&other_idp, "ada").await;
    grant(&app, &foreign, Some(&default_org))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Wrong audience: a third organization trusts the same IdP but through
    // another client; a token issued to the first client is not for it.
    let third_admin = app.other_organization("Third").await;
    let third_org = staff_integration(&app, &third_admin, &idp, "another-client").await;
    app.post(
        "/api/v2/members",
        &third_admin,
        json!({ "issuer": idp.issuer, "subject": "ada", "displayName": "Ada", "roles": ["admin"] }),
    )
    .await
    .expect(StatusCode::CREATED);
    grant(&app, &token, Some(&third_org))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // Not a JWT at all, and no assertion.
    grant(&app, "not-a-jwt", None)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let reply = Reply::from(
        app.http
            .post(app.url("/oauth/token"))
            .form(&[("grant_type", JWT_BEARER)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "invalid_request");

    // A removed member's token stops working.
    let again = grant(&app, &token, None).await.expect(StatusCode::OK);
    let again = again["access_token"].as_str().unwrap().to_owned();
    app.delete(
        &format!("/api/v2/members/{}", ada["id"].as_str().unwrap()),
        &boot,
    )
    .await;
    assert_eq!(
        app.get("/api/v2/members/me", &again).await.status,
        StatusCode::UNAUTHORIZED
    );
    idp.stop();
    other_idp.stop();
}
