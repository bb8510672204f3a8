//! Staff SSO end to end against the real OpenID Provider (tests/idp): the
//! organization's staff integration, `/auth/login` → IdP → `/auth/callback`
//! with a cookie-keeping browser, the session cookie's attributes, the
//! first sign-in as an agent, role grants read fresh on every request, CSRF
//! on cookie-authenticated changes, logout, replayed and foreign states,
//! open redirects, the agent WebSocket with the cookie, and
//! `switchboard members grant` naming the first admin.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use url::Url;

use crate::on_both_engines;
use crate::support::agent::{Agent, AgentAuth};
use crate::support::app::{EngineKind, Reply, Setup, TestApp};
use crate::support::idp::{Callback, TestIdp};
use crate::support::ws::refused;

const CSRF: &str = "x-csrf-token";

/// A browser: keeps cookies, does not follow redirects (the test does).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn send(request: RequestBuilder) -> Reply {
    Reply::from(request.send().await.unwrap()).await
}

/// An IdP whose client may return to this app's `/auth/callback`.
fn idp_for(app: &TestApp) -> TestIdp {
    TestIdp::start_with_redirect(&app.url("/auth/callback"))
}

/// Records the IdP as an integration and makes it the default
/// organization's staff integration. Answers the integration's id.
async fn configure_staff_sso(app: &TestApp, idp: &TestIdp) -> String {
    let boot = app.bootstrap.clone();
    let integration = app
        .post(
            "/api/v2/integrations/oidc",
            &boot,
            json!({
                "name": "Staff IdP",
                "issuer": idp.issuer,
                "clientId": idp.client_id,
                "clientSecret": idp.client_secret,
                "scopes": ["openid", "email", "profile"],
            }),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = app
        .get("/api/v2/organizations/me", &boot)
        .await
        .expect(StatusCode::OK);
    let updated = app
        .put(
            "/api/v2/organizations/me",
            &boot,
            json!({ "name": org["name"], "staffIntegrationId": integration, "version": org["version"] }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["staffIntegrationId"], integration.as_str());
    integration
}

/// `GET /auth/login` in `browser`: answers the IdP's authorize URL.
async fn begin(app: &TestApp, browser: &reqwest::Client, return_to: &str) -> Reply {
    send(
        browser
            .get(app.url("/auth/login"))
            .query(&[("returnTo", return_to)]),
    )
    .await
}

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location: {reply:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn callback_url(app: &TestApp, callback: &Callback) -> Url {
    let mut url = Url::parse(&app.url("/auth/callback")).unwrap();
    url.query_pairs_mut().extend_pairs(callback.params.iter());
    url
}

/// Signs `login` in through the whole flow in `browser`; answers the
/// IdP's callback parameters and the app's answer to them.
async fn sign_in(
    app: &TestApp,
    idp: &TestIdp,
    browser: &reqwest::Client,
    login: &str,
) -> (Callback, Reply) {
    let started = begin(app, browser, "/console").await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.text);
    let callback = idp.login(&location(&started), login).await;
    let done = send(browser.get(callback_url(app, &callback))).await;
    (callback, done)
}

/// The `Set-Cookie` header for `name`.
fn set_cookie(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set: {:?}", reply.headers))
}

fn cookie_value(set_cookie: &str) -> String {
    let (pair, _) = set_cookie.split_once(';').unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// The agent socket's upgrade with the staff session `cookie`, from
/// `origin`.
async fn agent_socket(
    app: &TestApp,
    cookie: &str,
    origin: Option<&str>,
) -> Result<(Agent, Response), tungstenite::Error> {
    app.agent_upgrade(AgentAuth::Cookie {
        session: cookie,
        origin,
    })
    .await
}

async fn staff_sso_sign_in_and_role_grant(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let boot = app.bootstrap.clone();
    let idp = idp_for(&app);

    // No staff integration yet.
    begin(&app, &browser(), "/console")
        .await
        .expect_error(StatusCode::NOT_FOUND, "staff_sso_not_configured");
    // The staff integration must be an integration of the organization.
    let org = app
        .get("/api/v2/organizations/me", &boot)
        .await
        .expect(StatusCode::OK);
    app.put(
        "/api/v2/organizations/me",
        &boot,
        json!({ "name": "Default", "staffIntegrationId": uuid::Uuid::new_v4(), "version": org["version"] }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let integration = configure_staff_sso(&app, &idp).await;
    // An agent API client may read its organization, not change it.
    let agent_client = app.client_token(&boot, &["agent"]).await;
    let org = app
        .get("/api/v2/organizations/me", &agent_client)
        .await
        .expect(StatusCode::OK);
    app.put(
        "/api/v2/organizations/me",
        &agent_client,
        json!({ "name": "Mine", "staffIntegrationId": null, "version": org["version"] }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    // The integration cannot go while staff sign in with it.
    app.delete(&format!("/api/v2/integrations/oidc/{integration}"), &boot)
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");

    // The redirect to the IdP: code flow with PKCE, nonce and state, back
    // to this app's callback.
    let alice = browser();
    let started = begin(&app, &alice, "/console").await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.text);
    let authorize = Url::parse(&location(&started)).unwrap();
    assert!(authorize.as_str().starts_with(&idp.issuer), "{authorize}");
    let query: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], app.url("/auth/callback"));
    assert!(query["nonce"].len() >= 43 && query["state"].len() >= 43);
    let binding = set_cookie(&started, "sb_login");
    assert!(
        attributes(&binding).contains(&"httponly".to_owned()),
        "{binding}"
    );

    // Through the IdP and back: the session cookie, and a redirect to
    // returnTo.
    let callback = idp.login(authorize.as_str(), "alice").await;
    let done = send(alice.get(callback_url(&app, &callback))).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(location(&done), "/console");
    let session_cookie = set_cookie(&done, "sb_session");
    let attrs = attributes(&session_cookie);
    for wanted in ["httponly", "samesite=lax", "path=/"] {
        assert!(attrs.contains(&wanted.to_owned()), "{session_cookie}");
    }
    // Plain http on 127.0.0.1: a Secure cookie would be dropped.
    assert!(!attrs.contains(&"secure".to_owned()), "{session_cookie}");
    let cookie = cookie_value(&session_cookie);
    assert!(cookie.starts_with("sbc_"));

    // The same state works once.
    send(alice.get(callback_url(&app, &callback)))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_state");

    // The first sign-in made an agent.
    let session = send(alice.get(app.url("/auth/session")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["roles"], json!(["agent"]));
    assert_eq!(session["displayName"], "Alice Tester");
    let member_id = session["memberId"].as_str().unwrap().to_owned();
    let csrf = session["csrfToken"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 43);
    let me = send(alice.get(app.url("/api/v2/members/me")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["id"], member_id.as_str());
    assert_eq!(me["issuer"], idp.issuer.as_str());
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["roles"], json!(["agent"]));
    assert_eq!(me["orgId"], session["orgId"]);
    // Only members have a member record.
    app.get("/api/v2/members/me", &agent_client)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/v2/members/me", &boot)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // An agent has none of the admin API.
    send(alice.get(app.url("/api/v2/routing/queues")))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    send(alice.get(app.url("/api/v2/members")))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // The agent socket takes the cookie, from the console's own origin only.
    let (mut agent, _) = agent_socket(&app, &cookie, Some(&app.base)).await.unwrap();
    let snapshot = agent.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["agent"]["id"], member_id.as_str());
    assert_eq!(snapshot["agent"]["name"], "Alice Tester");
    drop(agent);
    assert_eq!(
        refused(agent_socket(&app, &cookie, Some("https://evil.example")).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        refused(agent_socket(&app, &cookie, None).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        refused(agent_socket(&app, "sbc_forged", Some(&app.base)).await),
        StatusCode::UNAUTHORIZED
    );

    // An admin grants admin by member id; the same cookie has it at once.
    let path = format!("/api/v2/members/{member_id}");
    let mut record = app.get(&path, &boot).await.expect(StatusCode::OK);
    record["roles"] = json!(["admin"]);
    app.put(&path, &boot, record).await.expect(StatusCode::OK);
    send(alice.get(app.url("/api/v2/routing/queues")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        send(alice.get(app.url("/auth/session")))
            .await
            .expect(StatusCode::OK)["roles"],
        json!(["admin"])
    );

    // Changes with the cookie need the session's CSRF token.
    let queue = json!({ "name": "Staff queue" });
    send(alice.post(app.url("/api/v2/routing/queues")).json(&queue))
        .await
        .expect_error(StatusCode::FORBIDDEN, "csrf");
    send(
        alice
            .post(app.url("/api/v2/routing/queues"))
            .header(CSRF, "not-the-token")
            .json(&queue),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "csrf");
    send(
        alice
            .post(app.url("/api/v2/routing/queues"))
            .header(CSRF, &csrf)
            .json(&queue),
    )
    .await
    .expect(StatusCode::CREATED);

    // A second sign-in of the same person is the same member.
    let (_, again) = sign_in(&app, &idp, &browser(), "alice").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    let other = cookie_value(&set_cookie(&again, "sb_session"));
    assert_ne!(other, cookie);
    let again = send(
        reqwest::Client::new()
            .get(app.url("/auth/session"))
            .header(COOKIE, format!("sb_session={other}")),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(again["memberId"], member_id.as_str());

    // A callback reaching another browser than the one that began the
    // login is refused (login CSRF), and burns the state.
    let started = begin(&app, &browser(), "/console").await;
    let stolen = idp.login(&location(&started), "mallory").await;
    let victim = browser();
    send(victim.get(callback_url(&app, &stolen)))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_state");
    send(victim.get(app.url("/auth/session")))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Only local paths to return to.
    for evil in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "console",
    ] {
        begin(&app, &browser(), evil)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_return_to");
    }

    // Logout needs the CSRF token, then the cookie is refused everywhere.
    send(alice.post(app.url("/auth/logout")))
        .await
        .expect_error(StatusCode::FORBIDDEN, "csrf");
    let out = send(alice.post(app.url("/auth/logout")).header(CSRF, &csrf)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let expired = set_cookie(&out, "sb_session");
    assert!(
        attributes(&expired).contains(&"max-age=0".to_owned()),
        "{expired}"
    );
    let replayed = reqwest::Client::new();
    let with_old = |path: &str| {
        replayed
            .get(app.url(path))
            .header(COOKIE, format!("sb_session={cookie}"))
    };
    send(with_old("/auth/session"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    send(with_old("/api/v2/routing/queues"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        refused(agent_socket(&app, &cookie, Some(&app.base)).await),
        StatusCode::UNAUTHORIZED
    );
    // The other session lives on.
    send(
        reqwest::Client::new()
            .get(app.url("/api/v2/routing/queues"))
            .header(COOKIE, format!("sb_session={other}")),
    )
    .await
    .expect(StatusCode::OK);
}
on_both_engines!(staff_sso_sign_in_and_role_grant);

/// Runs `switchboard members grant` on the app's configuration.
fn grant_cli(setup: &Setup, subject: &str, issuer: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "members",
            "grant",
            "--issuer",
            issuer,
            "--subject",
            subject,
            "--role",
            "admin",
            "--name",
            "Carol Admin",
        ])
        .env_clear()
        .envs(&setup.env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_grant_cli_names_the_first_admin() {
    let mut app = TestApp::spawn(EngineKind::Embedded).await;
    let idp = idp_for(&app);
    configure_staff_sso(&app, &idp).await;

    // While the service holds the embedded database, the CLI says to stop
    // it.
    let busy = grant_cli(&app.setup, "carol", &idp.issuer);
    assert!(!busy.status.success());
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("stop it first"), "{stderr}");

    app.stop().await;
    let granted = grant_cli(&app.setup, "carol", &idp.issuer);
    let stderr = String::from_utf8_lossy(&granted.stderr);
    assert!(granted.status.success(), "{stderr}");
    let member_id = String::from_utf8(granted.stdout).unwrap().trim().to_owned();
    uuid::Uuid::parse_str(&member_id).unwrap();
    assert!(stderr.contains("created"), "{stderr}");
    // Again: nothing to add.
    let again = grant_cli(&app.setup, "carol", &idp.issuer);
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), member_id);
    assert!(String::from_utf8_lossy(&again.stderr).contains("unchanged"));

    // Carol signs in as that member, an admin.
    let app = app.restart().await;
    let carol = browser();
    let (_, done) = sign_in(&app, &idp, &carol, "carol").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let session = send(carol.get(app.url("/auth/session")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["memberId"], member_id.as_str());
    assert_eq!(session["roles"], json!(["admin"]));
    assert_eq!(session["displayName"], "Carol Admin");
    send(carol.get(app.url("/api/v2/members")))
        .await
        .expect(StatusCode::OK);
}

/// A whole sign-in, session use and logout against a real `switchboard`
/// process logging at trace level: no cookie, code, state, nonce, CSRF
/// token or secret in its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_logs_no_secrets() {
    use crate::support::node::{Node, free_port};

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let boot = format!("sbb_test_{}", uuid::Uuid::new_v4().simple());
    let env = HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(), boot.clone()),
        (
            "SWITCHBOARD_OIDC_ALLOW_INSECURE".to_owned(),
            "true".to_owned(),
        ),
        (
            "RUST_LOG".to_owned(),
            "trace,h2=info,hyper=info,hyper_util=info,reqwest=info".to_owned(),
        ),
    ]);
    let node = Node::start_on(&env, port).ready().await;
    let idp = TestIdp::start_with_redirect(&format!("{base}/auth/callback"));
    let http = reqwest::Client::new();
    let integration = send(
        http.post(format!("{base}/api/v2/integrations/oidc"))
            .bearer_auth(&boot)
            .json(&json!({
                "name": "Staff IdP", "issuer": idp.issuer, "clientId": idp.client_id,
                "clientSecret": idp.client_secret, "scopes": ["openid", "email", "profile"],
            })),
    )
    .await
    .expect(StatusCode::CREATED);
    let org = send(
        http.get(format!("{base}/api/v2/organizations/me"))
            .bearer_auth(&boot),
    )
    .await
    .expect(StatusCode::OK);
    send(
        http.put(format!("{base}/api/v2/organizations/me"))
            .bearer_auth(&boot)
            .json(&json!({ "name": org["name"], "staffIntegrationId": integration["id"], "version": org["version"] })),
    )
    .await
    .expect(StatusCode::OK);

    let dave = browser();
    let started = send(dave.get(format!("{base}/auth/login?returnTo=/console"))).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.text);
    let authorize = location(&started);
    let nonce = Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "nonce")
        .unwrap()
        .1
        .into_owned();
    let binding = cookie_value(&set_cookie(&started, "sb_login"));
    let callback = idp.login(&authorize, "dave").await;
    let mut url = Url::parse(&format!("{base}/auth/callback")).unwrap();
    url.query_pairs_mut().extend_pairs(callback.params.iter());
    let done = send(dave.get(url.clone())).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let cookie = cookie_value(&set_cookie(&done, "sb_session"));
    // A replay fails, and is logged.
    send(dave.get(url))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_state");
    let session = send(dave.get(format!("{base}/auth/session")))
        .await
        .expect(StatusCode::OK);
    let csrf = session["csrfToken"].as_str().unwrap().to_owned();
    send(
        dave.post(format!("{base}/api/v2/routing/queues"))
            .json(&json!({ "name": "q" })),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "csrf");
    let out = send(dave.post(format!("{base}/auth/logout")).header(CSRF, &csrf)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);

    let lines = node.terminate();
    assert!(
        lines.iter().any(|l| l.contains("staff member signed in")),
        "{lines:?}"
    );
    let secrets = [
        cookie.as_str(),
        binding.as_str(),
        csrf.as_str(),
        nonce.as_str(),
        callback.code(),
        callback.state(),
        idp.client_secret.as_str(),
        boot.as_str(),
    ];
    for line in &lines {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "a secret reached the output: {line}"
            );
        }
    }
}

/// A member pre-provisioned by email, with roles, is claimed by the first
/// staff sign-in whose IdP asserts that email as verified, and never by one
/// whose IdP does not (on an IdP where users register themselves, anyone
/// can type anyone's address).
async fn pre_provisioned_members_are_claimed_by_verified_email_only(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let boot = app.bootstrap.clone();
    let idp = idp_for(&app);
    configure_staff_sso(&app, &idp).await;

    // One pending member per address; issuer and subject go together.
    let pending = app
        .post(
            "/api/v2/members",
            &boot,
            json!({ "displayName": "Dana (supervisor)", "email": "Dana@Example.com", "roles": ["supervisor"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let pending_id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["issuer"], "");
    app.post(
        "/api/v2/members",
        &boot,
        json!({ "displayName": "Dana again", "email": "dana@example.com" }),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "duplicate");
    app.post(
        "/api/v2/members",
        &boot,
        json!({ "displayName": "Half", "issuer": idp.issuer, "email": "half@example.com" }),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // Someone who registered dana's address without verifying it signs in:
    // a member of their own, an agent, without the unverified email.
    let mallory = browser();
    let (_, done) = sign_in(&app, &idp, &mallory, "mallory|dana@example.com|unverified").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let session = send(mallory.get(app.url("/auth/session")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["roles"], json!(["agent"]));
    assert_ne!(session["memberId"], pending_id.as_str());
    let me = send(mallory.get(app.url("/api/v2/members/me")))
        .await
        .expect(StatusCode::OK);
    assert!(me["email"].is_null(), "{me}");
    let still = app
        .get(&format!("/api/v2/members/{pending_id}"), &boot)
        .await
        .expect(StatusCode::OK);
    assert_eq!(still["issuer"], "", "{still}");

    // Dana, with the address verified, claims the pending member and its
    // roles; the next sign-in finds it by identity.
    let dana = browser();
    let (_, done) = sign_in(&app, &idp, &dana, "dana|DANA@example.com").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let session = send(dana.get(app.url("/auth/session")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["memberId"], pending_id.as_str());
    assert_eq!(session["roles"], json!(["supervisor"]));
    assert_eq!(session["displayName"], "Dana (supervisor)");
    let claimed = app
        .get(&format!("/api/v2/members/{pending_id}"), &boot)
        .await
        .expect(StatusCode::OK);
    assert_eq!(claimed["issuer"], idp.issuer.as_str());
    assert_eq!(claimed["subject"], "dana|DANA@example.com");
    let again = browser();
    sign_in(&app, &idp, &again, "dana|DANA@example.com").await;
    let session = send(again.get(app.url("/auth/session")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(session["memberId"], pending_id.as_str());
    // Claimed: the address is free for another pending member, and a
    // signed-in member cannot be turned back into a pending one.
    app.post(
        "/api/v2/members",
        &boot,
        json!({ "displayName": "Dana's twin", "email": "dana@example.com" }),
    )
    .await
    .expect(StatusCode::CREATED);
    let mut record = claimed.clone();
    record.as_object_mut().unwrap().remove("issuer");
    record.as_object_mut().unwrap().remove("subject");
    app.put(&format!("/api/v2/members/{pending_id}"), &boot, record)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    idp.stop();
}
on_both_engines!(pre_provisioned_members_are_claimed_by_verified_email_only);

/// The same with the hostile IdP, which signs whatever claims it likes:
/// `email_verified` false, missing, or `"false"` never claims a
/// pre-provisioned member; `true` does.
async fn pre_provisioned_members_need_email_verified_from_a_hostile_idp(kind: EngineKind) {
    use crate::support::hostile_idp::{HostileIdp, TokenAnswer};
    const CLIENT: &str = "switchboard-web";
    let app = TestApp::spawn(kind).await;
    let boot = app.bootstrap.clone();
    let idp = HostileIdp::start().await;
    let integration = app
        .create(
            "/api/v2/integrations/oidc",
            &boot,
            json!({ "name": "Hostile staff IdP", "issuer": idp.issuer, "clientId": CLIENT,
                    "clientSecret": "hostile-idp-client-secret-0123456789" }),
        )
        .await;
    let org = app
        .get("/api/v2/organizations/me", &boot)
        .await
        .expect(StatusCode::OK);
    app.put(
        "/api/v2/organizations/me",
        &boot,
        json!({ "name": org["name"], "staffIntegrationId": integration, "version": org["version"] }),
    )
    .await
    .expect(StatusCode::OK);
    let pending = app
        .create(
            "/api/v2/members",
            &boot,
            json!({ "displayName": "Erin", "email": "erin@example.com", "roles": ["admin"] }),
        )
        .await;

    // Signs in with the hostile IdP's ID token for `sub`, whose
    // `email_verified` is `verified` (left out when null); answers the
    // session.
    let sign_in_as = |sub: &'static str, verified: serde_json::Value| {
        let app = &app;
        let idp = &idp;
        async move {
            let browser = browser();
            let started = begin(app, &browser, "/console").await;
            let authorize = Url::parse(&location(&started)).unwrap();
            let query: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
            let mut claims = idp.claims(CLIENT);
            claims["sub"] = json!(sub);
            claims["nonce"] = json!(query["nonce"]);
            claims["email"] = json!("erin@example.com");
            if verified.is_null() {
                claims.as_object_mut().unwrap().remove("email_verified");
            } else {
                claims["email_verified"] = verified;
            }
            idp.set_token_answer(TokenAnswer::IdToken(idp.sign(&claims)));
            let mut callback = Url::parse(&app.url("/auth/callback")).unwrap();
            callback
                .query_pairs_mut()
                .append_pair("code", "hostile-code")
                .append_pair("state", &query["state"]);
            let done = send(browser.get(callback)).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
            send(browser.get(app.url("/auth/session")))
                .await
                .expect(StatusCode::OK)
        }
    };

    for (sub, verified) in [
        ("impostor-1", json!(false)),
        ("impostor-2", serde_json::Value::Null),
        ("impostor-3", json!("false")),
        ("impostor-4", json!(1)),
    ] {
        let session = sign_in_as(sub, verified.clone()).await;
        assert_ne!(session["memberId"], pending.as_str(), "{verified}");
        assert_eq!(session["roles"], json!(["agent"]), "{verified}");
    }
    let session = sign_in_as("erin", json!(true)).await;
    assert_eq!(session["memberId"], pending.as_str());
    assert_eq!(session["roles"], json!(["admin"]));
}
on_both_engines!(pre_provisioned_members_need_email_verified_from_a_hostile_idp);
