//! Sessions: isolation between them, the history endpoint, closing a
//! session, auto-start and clear, read-only conversations, authenticated
//! sessions with downgrade, upgrade and logout, and shutdown.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::{
    Guest, assert_error, assert_session, conversation_of, new_token, presence, seq,
};
use crate::support::idp::SHOP_ORIGIN;
use crate::support::site::SiteSpec;
use crate::support::ws::WAIT;

use super::{auth_site, session_jwt};

async fn sessions_cannot_reach_each_other(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let (ta, tb) = (new_token(), new_token());
    let mut a = app.configured_guest(&site.deployment, &ta).await;
    let mut b = app.configured_guest(&site.deployment, &tb).await;

    let answer = a.say("secret of a").await;
    let conversation_a = conversation_of(&answer).to_string();
    // B cannot write with A's token on its socket, and sees nothing of A.
    let answer = b
        .ask(json!({"action":"onMessage","token":ta,"message":{"type":"Text","text":"intrusion"}}))
        .await;
    assert_error(&answer, 403);
    let answer = b.say("b's own").await;
    assert_ne!(answer["body"]["conversationId"], conversation_a);
    assert_eq!(seq(&answer), 1);
    b.fence().await;
    a.fence().await;

    // B's history holds only B's conversation.
    let jwt = b.jwt().await;
    let history = app
        .get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    assert_eq!(history["total"], 1);
    assert_eq!(history["entities"][0]["text"], "b's own");

    // A session is bound to its deployment.
    let other = app.guest_site().await;
    let mut c = app.guest(&other.deployment, &ta).await;
    assert_error(&c.configure().await, 403);
}
on_both_engines!(sessions_cannot_reach_each_other);

async fn history_is_paged_newest_first_with_cors(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    for text in ["m1", "m2", "m3"] {
        guest.say(text).await;
    }
    let jwt = guest.jwt().await;

    let page = app
        .get(
            "/api/v2/webmessaging/messages?pageNumber=1&pageSize=2",
            &jwt,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["total"], 3);
    assert_eq!(page["pageSize"], 2);
    assert_eq!(page["pageNumber"], 1);
    assert_eq!(page["pageCount"], 2);
    assert_eq!(page["entities"][0]["text"], "m3");
    assert_eq!(page["entities"][0]["sequence"], 3);
    assert_eq!(page["entities"][0]["metadata"]["sequence"], "3");
    assert_eq!(page["entities"][0]["direction"], "Inbound");
    assert_eq!(page["entities"][1]["text"], "m2");
    let page = app
        .get(
            "/api/v2/webmessaging/messages?pageNumber=2&pageSize=2",
            &jwt,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["entities"].as_array().unwrap().len(), 1);
    assert_eq!(page["entities"][0]["text"], "m1");

    // Bad tokens and paging.
    app.get("/api/v2/webmessaging/messages", "not-a-token")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.call(Method::GET, "/api/v2/webmessaging/messages", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.get("/api/v2/webmessaging/messages?pageSize=0", &jwt)
        .await
        .expect(StatusCode::BAD_REQUEST);
    // An admin access token is not a history token.
    app.get("/api/v2/webmessaging/messages", &site.admin)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // CORS: the deployment's origin is allowed, another is refused.
    let response = app
        .http
        .get(app.url("/api/v2/webmessaging/messages"))
        .bearer_auth(&jwt)
        .header("Origin", SHOP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        SHOP_ORIGIN
    );
    let response = app
        .http
        .get(app.url("/api/v2/webmessaging/messages"))
        .bearer_auth(&jwt)
        .header("Origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = app
        .http
        .request(Method::OPTIONS, app.url("/api/v2/webmessaging/messages"))
        .header("Origin", SHOP_ORIGIN)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
}
on_both_engines!(history_is_paged_newest_first_with_cors);

async fn close_session_closes_the_other_sockets(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let t = new_token();
    let mut a = app.configured_guest(&site.deployment, &t).await;
    let mut b = app.configured_guest(&site.deployment, &t).await;
    let mut stranger = app.configured_guest(&site.deployment, &new_token()).await;

    let answer = a
        .ask(json!({"action":"closeSession","token":t,"closeAllConnections":true,"tracingId":"close-1"}))
        .await;
    let body = assert_session(&answer);
    assert_eq!(body["connected"], false);
    assert_eq!(answer["tracingId"], "close-1");
    let closed = b.next().await;
    assert_eq!(closed["type"], "message");
    assert_eq!(closed["class"], "ConnectionClosedEvent");
    assert_eq!(b.closed().await, 1000);
    // The closing socket is unbound but usable; the stranger is untouched.
    assert_error(&a.say("after").await, 4007);
    stranger.fence().await;
}
on_both_engines!(close_session_closes_the_other_sockets);

async fn autostart_join_and_clear(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let spec = SiteSpec::new().conversations(
        json!({ "autoStart": { "enabled": true }, "conversationClear": { "enabled": true } }),
    );
    let site = app.site(&spec).await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    let mut tab = app.configured_guest(&site.deployment, &t).await;

    let join = json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Join"}}]}});
    let answer = guest.ask(join.clone()).await;
    assert_eq!(presence(&answer), "Join");
    assert_eq!(seq(&answer), 1);
    let first = conversation_of(&answer);
    // The tab follows the conversation the other opened.
    assert_eq!(seq(&tab.next().await), 1);

    // Clear: both sockets hear SessionClearedEvent, then (as Genesys clears
    // the whole session) ConnectionClosedEvent and a close.
    let clear = json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Clear"}}]}});
    let answer = guest.ask(clear).await;
    assert_eq!(answer["type"], "message");
    assert_eq!(presence(&answer), "Clear");
    assert_eq!(guest.next().await["class"], "SessionClearedEvent");
    assert_eq!(guest.next().await["class"], "ConnectionClosedEvent");
    assert_eq!(guest.closed().await, 1000);
    let mut seen = tab.next().await;
    if seen["class"] == "StructuredMessage" {
        // The Clear presence logged in the old conversation.
        assert_eq!(presence(&seen), "Clear");
        seen = tab.next().await;
    }
    assert_eq!(seen["class"], "SessionClearedEvent");
    assert_eq!(tab.next().await["class"], "ConnectionClosedEvent");
    assert_eq!(tab.closed().await, 1000);
    // The next configure is a new session; the next message starts a new
    // conversation.
    let mut guest = app.guest(&site.deployment, &t).await;
    assert_eq!(assert_session(&guest.configure().await)["newSession"], true);
    let answer = guest.say("fresh start").await;
    assert_eq!(seq(&answer), 1);
    assert_ne!(answer["body"]["conversationId"], first.to_string());
    // Joining a live conversation logs nothing more.
    let answer = guest.ask(join).await;
    assert!(answer["body"].get("sequence").is_none(), "{answer}");
}
on_both_engines!(autostart_join_and_clear);

async fn read_only_after_the_agent_ends(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let spec = SiteSpec::new().conversations(
        json!({ "conversationDisconnect": { "enabled": true, "type": "ReadOnly" } }),
    );
    let site = app.site(&spec).await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    let answer = guest.say("help").await;
    let conversation = conversation_of(&answer);
    let ada = app.agent_accepts(site.queue_id(), conversation).await;
    assert_eq!(presence(&guest.next().await), "Join");
    app.state()
        .routing
        .end(&ada, conversation, None, Utc::now())
        .await
        .unwrap();
    let disconnect = guest.next().await;
    assert_eq!(presence(&disconnect), "Disconnect");
    assert_eq!(disconnect["body"]["metadata"]["readOnly"], "true");
    let answer = guest.say("anyone?").await;
    assert_error(&answer, 403);
    assert_eq!(answer["body"], "conversation is read only");
    drop(guest);
    let mut guest = app.guest(&site.deployment, &t).await;
    assert_eq!(assert_session(&guest.configure().await)["readOnly"], true);
    // startNew leaves the read-only conversation behind: a new session to
    // the client (the Transport SDK autostarts on it), nothing cleared.
    let body = assert_session(&guest.configure_with(json!({ "startNew": true })).await).clone();
    assert_eq!(body["newSession"], true);
    assert_eq!(body["clearedExistingSession"], false);
    assert_eq!(body["readOnly"], false);
    let answer = guest.say("new one").await;
    assert_eq!(seq(&answer), 1);
    assert_ne!(answer["body"]["conversationId"], conversation.to_string());
}
on_both_engines!(read_only_after_the_agent_ends);

// ---- authenticated sessions ---------------------------------------------------

async fn authentication_required_downgrade_and_logout(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = auth_site(&app, true, false).await;
    let t = new_token();
    let mut guest = app.guest(&site.deployment, &t).await;
    let answer = guest.configure().await;
    assert_error(&answer, 401);
    assert_eq!(answer["body"], "authentication required");
    assert_error(&guest.say("hi").await, 401);

    // A JWT of another deployment fails; a garbage one too.
    let other = auth_site(&app, true, false).await;
    let (foreign, _) = session_jwt(&app, &other.deployment, "grace").await;
    // 403 "Session authentication failed…": no refresh can help, sign in
    // again (401 is for an expired token, which a refresh renews).
    let answer = guest.authenticate(&foreign).await;
    assert_error(&answer, 403);
    assert!(auth_failed(&answer), "{answer}");
    let answer = guest.authenticate("a.b.c").await;
    assert_error(&answer, 403);
    assert!(auth_failed(&answer), "{answer}");

    let (jwt, claims) = session_jwt(&app, &site.deployment, "grace").await;
    let body = assert_session(&guest.authenticate(&jwt).await).clone();
    assert_eq!(body["connected"], true);
    assert_eq!(body["newSession"], true);
    let answer = guest.say("signed in").await;
    assert_eq!(seq(&answer), 1);
    let conversation = conversation_of(&answer);
    let stored = app
        .state()
        .routing
        .conversation(app.org(), conversation)
        .await
        .unwrap()
        .unwrap();
    let visitor = stored.visitor.as_ref().unwrap();
    assert_eq!(visitor.email.as_deref(), Some("grace@example.com"));

    // No downgrade to a guest session.
    let answer = guest.configure().await;
    assert_error(&answer, 4017);
    // Another identity cannot take the session over.
    let (mallory, _) = session_jwt(&app, &site.deployment, "mallory").await;
    let mut intruder = app.guest(&site.deployment, &t).await;
    let answer = intruder.authenticate(&mallory).await;
    assert_error(&answer, 403);
    assert!(auth_failed(&answer), "{answer}");

    // A second device of the same visitor sees the conversation.
    let (jwt2, _) = session_jwt(&app, &site.deployment, "grace").await;
    let mut phone = app.guest(&site.deployment, &t).await;
    let body = assert_session(&phone.authenticate(&jwt2).await).clone();
    assert_eq!(body["newSession"], false);
    assert_eq!(body["conversationId"], conversation.to_string());

    // A new conversation (startNew on the authenticated socket): the phone
    // follows it from its start.
    let answer = guest
        .ask(json!({
            "action": "configureAuthenticatedSession", "token": t, "deploymentId": site.deployment,
            "startNew": true, "data": { "code": jwt },
        }))
        .await;
    let body = assert_session(&answer);
    assert_eq!(body["newSession"], true);
    assert_eq!(body["clearedExistingSession"], false);
    let answer = guest.say("second conversation").await;
    assert_eq!(seq(&answer), 1);
    assert_ne!(answer["body"]["conversationId"], conversation.to_string());
    let followed = phone.next().await;
    assert_eq!(followed["body"]["text"], "second conversation");
    assert_eq!(
        followed["body"]["conversationId"],
        answer["body"]["conversationId"]
    );

    // The history of an authenticated visitor includes earlier
    // conversations, newest first.
    let jwt_history = guest.jwt().await;
    let history = app
        .get("/api/v2/webmessaging/messages", &jwt_history)
        .await
        .expect(StatusCode::OK);
    assert_eq!(history["total"], 2);
    assert_eq!(history["entities"][0]["text"], "second conversation");
    assert_eq!(history["entities"][1]["text"], "signed in");
    assert_eq!(
        history["entities"][1]["conversationId"],
        conversation.to_string()
    );

    let phone_history = phone.jwt().await;

    // Logout: every socket of the session hears LogoutEvent and is closed.
    let revoked = app
        .state()
        .visitor_tokens
        .revoke(&claims, Utc::now())
        .await
        .unwrap();
    app.state().routing.session_revoked(revoked).await;
    assert_eq!(guest.next().await["class"], "LogoutEvent");
    assert_eq!(guest.closed().await, 1000);
    // The phone's JWT is of another family: it stays.
    phone.fence().await;
    // The history token of the signed-out session stops working at once;
    // the phone's still works.
    app.get("/api/v2/webmessaging/messages", &jwt_history)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/v2/webmessaging/messages", &phone_history)
        .await
        .expect(StatusCode::OK);
}
on_both_engines!(authentication_required_downgrade_and_logout);

/// On a site where a guest session may (`upgrade`) or may not sign in in
/// place: a guest with two tabs says one message, then signs in on the
/// first tab. Answers both tabs, the guest conversation, and the body of
/// the answer to signing in.
async fn sign_in_after_a_guest_message(
    app: &TestApp,
    upgrade: bool,
) -> (Guest, Guest, String, Value) {
    let site = auth_site(app, false, upgrade).await;
    let t = new_token();
    let mut guest = app.configured_guest(&site.deployment, &t).await;
    let mut tab = app.configured_guest(&site.deployment, &t).await;
    let answer = guest.say("as a guest").await;
    let conversation = conversation_of(&answer).to_string();
    assert_eq!(seq(&tab.next().await), 1);
    let (jwt, _) = session_jwt(app, &site.deployment, "grace").await;
    let mut answer = guest.authenticate(&jwt).await;
    if upgrade {
        // Step-up: the SignIn first, naming the visitor as the IdP did.
        assert_eq!(presence(&answer), "SignIn", "{answer}");
        assert_eq!(answer["body"]["channel"]["from"]["firstName"], "Grace");
        assert_eq!(answer["body"]["channel"]["from"]["lastName"], "Hopper");
        answer = guest.next().await;
    }
    let body = assert_session(&answer).clone();
    (guest, tab, conversation, body)
}

/// The refusal that makes a Genesys client sign in again.
fn auth_failed(answer: &Value) -> bool {
    answer["body"]
        .as_str()
        .is_some_and(|b| b.starts_with("Session authentication failed"))
}

async fn guest_sessions_upgrade_in_place_or_start_over(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    // With allowSessionUpgrade: the conversation continues, signed in.
    let (mut guest, mut tab, conversation, body) = sign_in_after_a_guest_message(&app, true).await;
    assert_eq!(body["conversationId"], conversation);
    assert_eq!(body["clearedExistingSession"], false);
    let sign_in = tab.next().await;
    assert_eq!(presence(&sign_in), "SignIn");
    assert_eq!(seq(&sign_in), 2);
    let stored = app
        .state()
        .routing
        .conversation(app.org(), conversation.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.visitor.is_some());
    // The next message continues the same conversation.
    let answer = guest.say("signed in now").await;
    assert_eq!(answer["body"]["conversationId"], conversation);
    assert_eq!(seq(&answer), 3);

    // Without it: the guest's other sockets are closed with reason
    // signedIn, and the signed-in session starts over.
    let (mut guest, mut tab, conversation, body) = sign_in_after_a_guest_message(&app, false).await;
    assert_eq!(body["clearedExistingSession"], true);
    assert!(body.get("conversationId").is_none());
    let closed = tab.next().await;
    assert_eq!(closed["class"], "ConnectionClosedEvent");
    assert_eq!(closed["body"]["reason"], "signedIn");
    assert_eq!(tab.closed().await, 1000);
    let answer = guest.say("signed in").await;
    assert_ne!(answer["body"]["conversationId"], conversation);
}
on_both_engines!(guest_sessions_upgrade_in_place_or_start_over);

async fn node_shutdown_closes_with_1001(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app.guest_site().await;
    let mut guest = app.configured_guest(&site.deployment, &new_token()).await;
    assert_eq!(app.state().shutdown.open_sockets(), 1);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert!(
        metrics.text.contains("websockets_open{side=\"guest\"} 1"),
        "{}",
        metrics.text
    );
    app.state().shutdown.begin();
    assert_eq!(guest.closed().await, 1001);
    tokio::time::timeout(WAIT, app.state().shutdown.drained())
        .await
        .unwrap();
    assert_eq!(app.state().shutdown.open_sockets(), 0);
}
on_both_engines!(node_shutdown_closes_with_1001);
