//! The size limits are settings: a changed setting changes what the guest
//! and agent sockets, the guest history endpoint and the HTTP layer accept
//! (on both engines where storage is involved), with the wire codes Genesys
//! clients expect (4011, 4013). And a signed-in session counts toward the
//! new-session limits like a guest one.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use switchboard::auth::visitor_token::{SessionGrant, VisitorIdentity};
use switchboard::limits;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, Setup, TestApp};
use crate::support::guest::{assert_error, assert_session, assert_too_many, new_token};
use crate::support::site::{SiteSpec, integration_body};

async fn message_sizes_follow_their_settings(kind: EngineKind) {
    let setup = Setup::new(kind)
        .set(limits::ENV_TEXT_CHARS, "10")
        .set(limits::ENV_CUSTOM_DATA_BYTES, "16")
        .set(limits::ENV_QUICK_REPLIES, "1");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guest = app.guest(&site.deployment, &new_token()).await;
    // Clients are told the limits they are held to.
    let session = guest.configure().await;
    assert_eq!(assert_session(&session)["maxCustomDataBytes"], 16);
    let configuration = guest
        .ask(json!({ "action": "getConfiguration", "deploymentId": site.deployment }))
        .await;
    assert_eq!(
        configuration["body"]["maxTextLength"], 10,
        "{configuration}"
    );
    assert_eq!(
        configuration["body"]["maxCustomDataBytes"], 16,
        "{configuration}"
    );

    // Text: ten characters pass, eleven are 4011.
    let fits = guest.say("0123456789").await;
    assert_eq!(fits["class"], "StructuredMessage", "{fits}");
    assert_error(&guest.say("0123456789a").await, 4011);
    // Custom attributes: sixteen bytes pass, seventeen are 4013.
    let text = guest.text_frame("hi");
    let with_attributes = |value: &str| {
        let mut frame = text.clone();
        frame["message"]["channel"] = json!({ "metadata": { "customAttributes": { "k": value } } });
        frame
    };
    let fits = guest.ask(with_attributes(&"v".repeat(15))).await;
    assert_eq!(fits["class"], "StructuredMessage", "{fits}");
    assert_error(&guest.ask(with_attributes(&"v".repeat(16))).await, 4013);

    // The agent is held to the same text length, and to the node's count
    // of quick replies.
    let (_, token) = app.client(&site.admin, "Agent", &["agent"]).await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    let conversation = agent.accept_first_offer().await;
    agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "0123456789" }))
        .await;
    let refused = agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "0123456789a" }),
            "bad_request",
        )
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10 characters"),
        "{refused}"
    );
    let quick = |n: usize| {
        (0..n)
            .map(|i| json!({ "contentType": "QuickReply", "quickReply": { "text": format!("{i}"), "payload": "p" } }))
            .collect::<Vec<_>>()
    };
    agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "pick", "content": quick(1) }))
        .await;
    agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "pick", "content": quick(2) }),
            "invalid_content",
        )
        .await;
}
on_both_engines!(message_sizes_follow_their_settings);

async fn guest_history_bounds_follow_their_settings(kind: EngineKind) {
    let setup = Setup::new(kind)
        .set(limits::ENV_HISTORY_PAGE, "5")
        .set(limits::ENV_HISTORY_DEPTH, "3");
    let app = TestApp::spawn_with(setup).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    for i in 0..4 {
        guest
            .deliver(&format!("message {i}"), &format!("m{i}"))
            .await;
    }
    let jwt = guest.jwt().await;
    let history = |size: &str| format!("/api/v2/webmessaging/messages?pageNumber=1{size}");
    app.get(&history("&pageSize=6"), &jwt)
        .await
        .expect(StatusCode::BAD_REQUEST);
    // Without a size, the default page (25) is cut to the limit; and no
    // page reaches deeper than three messages.
    for size in ["", "&pageSize=5"] {
        let page = app.get(&history(size), &jwt).await.expect(StatusCode::OK);
        assert_eq!(page["pageSize"], 5, "{page}");
        let texts: Vec<&str> = page["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["message 3", "message 2", "message 1"]);
    }
    // The API description states the page limit in force.
    let openapi = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK);
    let parameters = &openapi["paths"]["/api/v2/webmessaging/messages"]["get"]["parameters"];
    let page_size = parameters
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pageSize")
        .unwrap();
    assert_eq!(page_size["schema"]["maximum"], 5, "{page_size}");
}
on_both_engines!(guest_history_bounds_follow_their_settings);

#[tokio::test]
async fn http_bodies_past_the_setting_are_refused() {
    let setup =
        Setup::new(EngineKind::Embedded).set(limits::ENV_MAX_BODY_BYTES, &(8 * 1024).to_string());
    let app = TestApp::spawn_with(setup).await;
    let admin = app.admin().await;
    let body = |bytes: usize| {
        serde_json::to_vec(&json!({ "name": "q", "padding": "x".repeat(bytes) })).unwrap()
    };
    let refused = app
        .call_raw(
            Method::POST,
            "/api/v2/routing/queues",
            &admin,
            body(9 * 1024),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.text
    );
    // Under the setting, the body is read (and its unknown field named).
    let read = app
        .call_raw(
            Method::POST,
            "/api/v2/routing/queues",
            &admin,
            body(6 * 1024),
        )
        .await;
    assert_ne!(read.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", read.text);
}

/// A session JWT for `deployment` as the exchange would issue it.
async fn session_jwt(app: &TestApp, deployment: &str, subject: &str) -> String {
    let grant = SessionGrant {
        deployment: deployment.parse().unwrap(),
        org: app.state().auth.default_org(),
        identity: VisitorIdentity {
            issuer: "https://idp.example.com/".to_owned(),
            subject: subject.to_owned(),
            email: None,
            email_verified: None,
            name: None,
            given_name: None,
            family_name: None,
        },
        sid: Uuid::new_v4(),
        not_after: Utc::now() + chrono::Duration::hours(1),
    };
    let issued = app
        .state()
        .visitor_tokens
        .issue(&grant, Utc::now())
        .await
        .unwrap();
    issued.jwt.expose_secret().to_owned()
}

async fn signed_in_sessions_count_toward_the_new_session_limits(kind: EngineKind) {
    let setup = Setup::new(kind)
        .address_limits()
        .set(limits::ENV_SESSIONS_PER_ADDRESS, "2/h burst 2");
    let app = TestApp::spawn_with(setup).await;
    let spec = SiteSpec::new()
        .integration(integration_body("Shop IdP"))
        .sign_in(true)
        .session_upgrade(false);
    let site = app.site(&spec).await;
    let first = new_token();
    let mut signed_in = Vec::new();
    for token in [first.clone(), new_token()] {
        let jwt = session_jwt(&app, &site.deployment, &format!("visitor-{token}")).await;
        let mut guest = app.guest(&site.deployment, &token).await;
        assert_session(&guest.authenticate(&jwt).await);
        signed_in.push((guest, jwt));
    }
    // A third new session from the same address, signed in or not, is one
    // too many.
    let jwt = session_jwt(&app, &site.deployment, "visitor-three").await;
    let mut third = app.guest(&site.deployment, &new_token()).await;
    assert_too_many(&third.authenticate(&jwt).await);
    // Signing in again to a session that exists costs nothing.
    let (_, jwt) = &signed_in[0];
    let mut again = app.guest(&site.deployment, &first).await;
    assert_session(&again.authenticate(jwt).await);
}
on_both_engines!(signed_in_sessions_count_toward_the_new_session_limits);
