//! The guest WebSocket (`/v1`) and the guest history endpoint end to end, on
//! both engines: admission on the upgrade, every action, every error code,
//! sequenced delivery with resume and idempotent resends, multi-tab
//! sessions, authenticated sessions (JWTs issued through the node's
//! `VisitorTokens`), logout, and isolation between sessions and sockets.
//! Agents are driven through routing directly.

use std::time::Duration;

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use switchboard::auth::visitor_token::{SessionClaims, SessionGrant, VisitorIdentity};
use switchboard::engine::Channel;
use switchboard::routing::model::AgentStatus;
use switchboard::routing::model::{EventBody, Notice, Participant, ParticipantRole, session_id};
use switchboard::routing::{AgentIdentity, NewEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::admin_api::integration_body;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

const ORIGIN: &str = "https://shop.example.com";
/// How long a test waits for a frame it expects.
const WAIT: Duration = Duration::from_secs(15);
/// Waits out the rate window (two messages a second per session), where a
/// test sends more than that on purpose.
const RATE_WINDOW: Duration = Duration::from_millis(1100);

// ---- fixtures -------------------------------------------------------------

struct Site {
    admin: String,
    queue: Uuid,
    deployment: String,
}

/// A published configuration with `conversations` and `auth` settings, a
/// queue, and an active deployment on the shop's origin.
async fn site_with(app: &TestApp, conversations: Value, auth: Value) -> Site {
    let admin = app.admin().await;
    let configuration = app
        .post(
            "/api/v2/webdeployments/configurations",
            &admin,
            json!({
                "name": "Guest messenger",
                "authenticationSettings": auth,
                "messenger": { "apps": { "conversations": conversations } },
            }),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/api/v2/webdeployments/configurations/{configuration}/versions/draft/publish"),
        &admin,
        json!({}),
    )
    .await
    .expect(StatusCode::CREATED);
    let queue = app
        .post(
            "/api/v2/routing/queues",
            &admin,
            json!({ "name": "Support" }),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deployment = app
        .post(
            "/api/v2/webdeployments/deployments",
            &admin,
            json!({
                "name": "shop",
                "configuration": { "id": configuration, "version": "1" },
                "allowedDomains": [ORIGIN],
                "status": "Active",
                "queueId": queue,
            }),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Site {
        admin,
        queue: queue.parse().unwrap(),
        deployment,
    }
}

/// A guest deployment: no authentication.
async fn guest_site(app: &TestApp) -> Site {
    site_with(app, json!({}), json!({ "enabled": false })).await
}

/// A deployment with an OIDC integration: `enabled` requires sign-in,
/// `upgrade` lets a guest session sign in in place.
async fn auth_site(app: &TestApp, enabled: bool, upgrade: bool) -> Site {
    let admin = app.admin().await;
    let integration = app
        .post(
            "/api/v2/integrations/oidc",
            &admin,
            integration_body("Shop IdP"),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    site_with(
        app,
        json!({}),
        json!({ "enabled": enabled, "integrationId": integration, "allowSessionUpgrade": upgrade }),
    )
    .await
}

/// A session JWT for `deployment` as the exchange would issue it.
async fn session_jwt(app: &TestApp, deployment: &str, subject: &str) -> (String, SessionClaims) {
    let grant = SessionGrant {
        deployment: deployment.parse().unwrap(),
        org: app.state().auth.default_org(),
        identity: VisitorIdentity {
            iss: "https://idp.example.com/".to_owned(),
            sub: subject.to_owned(),
            email: Some(format!("{subject}@example.com")),
            email_verified: Some(true),
            name: None,
            given_name: Some("Grace".to_owned()),
            family_name: Some("Hopper".to_owned()),
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
    (issued.jwt.expose_secret().to_owned(), issued.claims)
}

fn agent(app: &TestApp, name: &str) -> AgentIdentity {
    AgentIdentity {
        id: Uuid::new_v4(),
        org: app.state().auth.default_org(),
        name: name.to_owned(),
        is_member: false,
    }
}

/// An agent available on `queue` who accepts `conversation` (waiting there).
async fn agent_accepts(app: &TestApp, queue: Uuid, conversation: Uuid) -> AgentIdentity {
    let routing = &app.state().routing;
    let ada = agent(app, "Ada");
    routing.heartbeat(&ada, Utc::now()).await.unwrap();
    routing
        .set_status(&ada, AgentStatus::Available, vec![queue], Utc::now())
        .await
        .unwrap();
    routing
        .accept(&ada, conversation, Utc::now())
        .await
        .unwrap();
    ada
}

fn agent_text(text: &str) -> NewEvent {
    NewEvent {
        body: EventBody::Message {
            message_type: "Text".to_owned(),
            text: Some(text.to_owned()),
            content: Vec::new(),
            metadata: Value::Null,
            client_message_id: None,
        },
        dedup: None,
    }
}

// ---- a guest client -------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Guest {
    ws: Ws,
    token: String,
    deployment: String,
}

fn ws_url(app: &TestApp, deployment: &str) -> String {
    format!(
        "ws://{}/v1?deploymentId={deployment}&application=test",
        app.addr
    )
}

async fn connect_raw(
    app: &TestApp,
    deployment: &str,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = ws_url(app, deployment).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

fn refused_status(result: Result<Ws, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

impl Guest {
    async fn connect(app: &TestApp, deployment: &str, token: &str) -> Guest {
        let ws = connect_raw(app, deployment, Some(ORIGIN)).await.unwrap();
        Guest {
            ws,
            token: token.to_owned(),
            deployment: deployment.to_owned(),
        }
    }

    async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON frame; fails on a close or after [`WAIT`].
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame in time")
                .expect("the socket ended")
                .expect("socket error");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame: {other:?}"),
            }
        }
    }

    /// Expects the server to close the socket, and answers the close code.
    async fn closed(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame before the close: {other:?}"),
                Some(Err(e)) => panic!("socket error instead of a close: {e}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    }

    /// Sends a frame and answers the next one.
    async fn ask(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.next().await
    }

    async fn configure(&mut self) -> Value {
        let frame = json!({ "action": "configureSession", "token": self.token, "deploymentId": self.deployment });
        self.ask(frame).await
    }

    async fn configure_with(&mut self, extra: Value) -> Value {
        let mut frame = json!({ "action": "configureSession", "token": self.token, "deploymentId": self.deployment });
        merge(&mut frame, extra);
        self.ask(frame).await
    }

    async fn authenticate(&mut self, jwt: &str) -> Value {
        let frame = json!({
            "action": "configureAuthenticatedSession", "token": self.token,
            "deploymentId": self.deployment, "data": { "code": jwt },
        });
        self.ask(frame).await
    }

    async fn say(&mut self, text: &str) -> Value {
        let frame = json!({ "action": "onMessage", "token": self.token, "message": { "type": "Text", "text": text } });
        self.ask(frame).await
    }

    /// Sends an echo and expects its answer next: everything pushed before
    /// it has been read.
    async fn fence(&mut self) {
        let tracing = Uuid::new_v4().to_string();
        let answer = self
            .ask(
                json!({ "action": "echo", "token": self.token, "tracingId": tracing,
                "message": { "type": "Text", "text": "fence" } }),
            )
            .await;
        assert_eq!(
            answer["tracingId"], tracing,
            "a frame came before the fence: {answer}"
        );
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

#[track_caller]
fn assert_error(frame: &Value, code: u64) {
    assert_eq!(frame["type"], "response", "{frame}");
    assert_eq!(frame["class"], "string", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    assert!(
        frame["body"].as_str().is_some_and(|b| !b.is_empty()),
        "{frame}"
    );
}

#[track_caller]
fn assert_session(frame: &Value) -> &Value {
    assert_eq!(frame["type"], "response", "{frame}");
    assert_eq!(frame["class"], "SessionResponse", "{frame}");
    assert_eq!(frame["code"], 200, "{frame}");
    &frame["body"]
}

/// A pushed StructuredMessage's sequence.
#[track_caller]
fn seq(frame: &Value) -> u64 {
    assert_eq!(frame["class"], "StructuredMessage", "{frame}");
    let seq = frame["body"]["sequence"].as_u64().expect("a sequence");
    assert_eq!(frame["body"]["metadata"]["sequence"], seq.to_string());
    seq
}

fn token() -> String {
    Uuid::new_v4().to_string()
}

// ---- admission --------------------------------------------------------------

async fn upgrade_is_refused_for_bad_origins_and_deployments(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let status =
        refused_status(connect_raw(&app, &site.deployment, Some("https://evil.example.com")).await);
    assert_eq!(status, 403);
    let status = refused_status(connect_raw(&app, &Uuid::new_v4().to_string(), Some(ORIGIN)).await);
    assert_eq!(status, 403);
    let status = refused_status(connect_raw(&app, "not-a-uuid", Some(ORIGIN)).await);
    assert_eq!(status, 403);

    // An inactive deployment takes no guests.
    let inactive = app
        .get(
            &format!("/api/v2/webdeployments/deployments/{}", site.deployment),
            &site.admin,
        )
        .await
        .expect(StatusCode::OK);
    let mut body = inactive.clone();
    body["status"] = json!("Inactive");
    app.put(
        &format!("/api/v2/webdeployments/deployments/{}", site.deployment),
        &site.admin,
        body,
    )
    .await
    .expect(StatusCode::OK);
    let status = refused_status(connect_raw(&app, &site.deployment, Some(ORIGIN)).await);
    assert_eq!(status, 403);

    // A plain GET (no upgrade) on an active deployment is not a socket.
    let other = guest_site(&app).await;
    let reply = app
        .call(
            Method::GET,
            &format!("/v1?deploymentId={}", other.deployment),
            None,
            None,
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.text);

    // Native apps send no Origin.
    let mut ws = connect_raw(&app, &other.deployment, None).await.unwrap();
    ws.send(Message::text(
        json!({"action":"echo","token":"t","message":{"type":"Text","text":"hi"}}).to_string(),
    ))
    .await
    .unwrap();
    let Some(Ok(Message::Text(text))) = ws.next().await else {
        panic!()
    };
    assert_eq!(
        serde_json::from_str::<Value>(text.as_str()).unwrap()["class"],
        "StructuredMessage"
    );
}
on_both_engines!(upgrade_is_refused_for_bad_origins_and_deployments);

// ---- actions and errors -----------------------------------------------------

async fn every_action_and_error_code(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let mut guest = Guest::connect(&app, &site.deployment, &token()).await;
    let t = guest.token.clone();

    // Before configureSession, a message has no session.
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"hi"}}))
        .await;
    assert_error(&answer, 4007);

    // configureSession.
    let answer = guest.configure_with(json!({ "tracingId": "cfg-1" })).await;
    assert_eq!(answer["tracingId"], "cfg-1");
    let body = assert_session(&answer);
    assert_eq!(body["connected"], true);
    assert_eq!(body["newSession"], true);
    assert_eq!(body["readOnly"], false);
    assert_eq!(body["clearedExistingSession"], false);
    assert_eq!(body["maxCustomDataBytes"], 2048);
    assert!(body["allowedMedia"]["inbound"]["fileTypes"].is_array());
    assert!(
        body["blockedExtensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == ".exe")
    );
    assert_eq!(body["durationSeconds"], 1800);
    assert!(body["expirationDate"].as_i64().unwrap() > Utc::now().timestamp());
    // Configuring again finds the same session.
    let body = assert_session(&guest.configure().await).clone();
    assert_eq!(body["newSession"], false);

    // echo answers the text with the same tracing id.
    let answer = guest
        .ask(json!({"action":"echo","token":t,"tracingId":"e-1","message":{"type":"Text","text":"ping"}}))
        .await;
    assert_eq!(answer["type"], "response");
    assert_eq!(answer["class"], "StructuredMessage");
    assert_eq!(answer["body"]["text"], "ping");
    assert_eq!(answer["tracingId"], "e-1");

    // 400: malformed JSON, not an object, an unknown action, a wrong type.
    guest.send_text("{not json".to_owned()).await;
    assert_error(&guest.next().await, 400);
    guest.send_text("[1,2]".to_owned()).await;
    assert_error(&guest.next().await, 400);
    let answer = guest
        .ask(json!({"action":"dance","token":t,"tracingId":"u-1"}))
        .await;
    assert_error(&answer, 400);
    assert_eq!(answer["tracingId"], "u-1");
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":"hi"}))
            .await,
        400,
    );
    guest
        .ws
        .send(Message::binary(vec![0xff, 0x00, 0x13]))
        .await
        .unwrap();
    assert_error(&guest.next().await, 400);

    // 4020: missing fields.
    assert_error(&guest.ask(json!({"token":t})).await, 4020);
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","message":{"type":"Text","text":"x"}}))
            .await,
        4020,
    );
    assert_error(
        &guest.ask(json!({"action":"onMessage","token":t})).await,
        4020,
    );
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text"}}))
            .await,
        4020,
    );
    assert_error(
        &guest
            .ask(json!({"action":"configureSession","token":t}))
            .await,
        4020,
    );
    assert_error(
        &guest.ask(json!({"action":"configureAuthenticatedSession","token":t,"deploymentId":site.deployment})).await,
        4020,
    );

    // 4011: text over 4000 characters.
    let long = "x".repeat(4001);
    assert_error(
        &guest
            .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":long}}))
            .await,
        4011,
    );
    // 4013: custom attributes over 2048 bytes.
    let attributes: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("attribute{i}"), json!("v".repeat(32))))
        .collect();
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"hi",
            "channel":{"metadata":{"customAttributes":attributes}}}}),
        )
        .await;
    assert_error(&answer, 4013);
    // 4000: attachments.
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Structured",
            "content":[{"contentType":"Attachment","attachment":{"url":"https://x/y.png"}}]}}),
        )
        .await;
    assert_error(&answer, 4000);
    // A token over 2048 characters.
    assert_error(
        &guest
            .ask(json!({"action":"getJwt","token":"t".repeat(2049)}))
            .await,
        400,
    );
    // Another session's token on this socket.
    let answer = guest
        .ask(json!({"action":"onMessage","token":token(),"message":{"type":"Text","text":"hi"}}))
        .await;
    assert_error(&answer, 403);
    // Another deployment's id on this socket.
    let answer = guest
        .ask(json!({"action":"configureSession","token":t,"deploymentId":Uuid::new_v4()}))
        .await;
    assert_error(&answer, 403);

    // The socket is still usable: a message with custom attributes in the
    // limit is answered with its sequence.
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"tracingId":"m-1","message":{"type":"Text","text":"hello",
            "channel":{"metadata":{"customAttributes":{"orderId":"42"}}}}}))
        .await;
    assert_eq!(answer["type"], "response");
    assert_eq!(answer["tracingId"], "m-1");
    assert_eq!(answer["body"]["direction"], "Inbound");
    assert_eq!(answer["body"]["text"], "hello");
    assert_eq!(
        answer["body"]["channel"]["metadata"]["customAttributes"]["orderId"],
        "42"
    );
    assert_eq!(seq(&answer), 1);
    assert!(answer["body"]["conversationId"].as_str().is_some());
    assert_eq!(
        answer["body"]["metadata"]["conversationId"],
        answer["body"]["conversationId"]
    );

    // Structured content.
    let answer = guest
        .ask(
            json!({"action":"onMessage","token":t,"message":{"type":"Structured","text":"pick",
            "content":[{"contentType":"QuickReply","quickReply":{"text":"Yes","payload":"yes"}}]}}),
        )
        .await;
    assert_eq!(answer["body"]["type"], "Structured");
    assert_eq!(answer["body"]["content"][0]["quickReply"]["payload"], "yes");
    assert_eq!(seq(&answer), 2);

    // getConfiguration.
    let answer = guest
        .ask(json!({"action":"getConfiguration","token":t,"deploymentId":site.deployment,"tracingId":"c-1"}))
        .await;
    assert_eq!(answer["class"], "ConfigurationResponse");
    assert_eq!(answer["tracingId"], "c-1");
    assert_eq!(answer["body"]["maxCustomDataBytes"], 2048);
    assert_eq!(answer["body"]["maxTextLength"], 4000);
    assert_eq!(answer["body"]["messagesPerSecond"], 2);
    assert_eq!(answer["body"]["sessionDurationSeconds"], 1800);
    assert_eq!(answer["body"]["authenticationRequired"], false);

    // getJwt.
    let answer = guest
        .ask(json!({"action":"getJwt","token":t,"tracingId":"j-1"}))
        .await;
    assert_eq!(answer["class"], "JwtResponse");
    assert_eq!(answer["tracingId"], "j-1");
    assert!(
        answer["body"]["jwt"]
            .as_str()
            .is_some_and(|j| j.split('.').count() == 3)
    );
    assert!(answer["body"]["exp"].as_i64().unwrap() > Utc::now().timestamp());

    // Typing is answered but not logged (after the rate window, which the
    // two messages above filled).
    tokio::time::sleep(RATE_WINDOW).await;
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}}))
        .await;
    assert_eq!(answer["body"]["type"], "Event");
    assert_eq!(answer["body"]["events"][0]["eventType"], "Typing");
    assert!(answer["body"].get("sequence").is_none());
    let conversation: Uuid = app
        .state()
        .routing
        .session(session_id(&t))
        .await
        .unwrap()
        .unwrap()
        .conversation_id
        .unwrap();
    assert_eq!(app.state().routing.last_seq(conversation).await.unwrap(), 2);
}
on_both_engines!(every_action_and_error_code);

async fn rate_limit_answers_4029_with_retry_after(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let mut guest = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&guest.configure().await);
    let mut limited = Vec::new();
    for i in 0..6 {
        let answer = guest.say(&format!("message {i}")).await;
        if answer["code"] == 429 {
            limited.push(answer);
        } else {
            assert_eq!(answer["class"], "StructuredMessage", "{answer}");
        }
    }
    assert!(
        !limited.is_empty(),
        "six messages at once were all accepted"
    );
    let answer = &limited[0];
    assert_eq!(answer["type"], "response");
    assert_eq!(answer["class"], "TooManyRequestsErrorMessage");
    assert_eq!(answer["body"]["errorCode"], 4029);
    assert!(answer["body"]["retryAfter"].as_u64().unwrap() >= 1);
    assert!(answer["body"]["errorMessage"].as_str().is_some());
    // The limit is the session's: another tab of it shares it, another
    // session does not.
    let mut tab = Guest::connect(&app, &site.deployment, &guest.token).await;
    assert_session(&tab.configure().await);
    let mut other = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&other.configure().await);
    assert_eq!(seq(&other.say("unaffected").await), 1);
}
on_both_engines!(rate_limit_answers_4029_with_retry_after);

async fn oversized_frames_close_with_1009_and_garbage_harms_no_one(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let mut bystander = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&bystander.configure().await);
    let mut hostile = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&hostile.configure().await);

    for garbage in [
        "".to_owned(),
        "\u{0}".to_owned(),
        "{\"action\":{\"nested\":[[[[[]]]]]}}".to_owned(),
        "{\"action\":\"onMessage\",\"token\":\"x\",\"message\":{\"type\":\"Event\",\"events\":[{\"eventType\":\"Presence\",\"presence\":{\"type\":[]}}]}}".to_owned(),
        "9".repeat(5000),
        "[".repeat(10_000),
    ] {
        hostile.send_text(garbage).await;
        let answer = hostile.next().await;
        assert_eq!(answer["type"], "response", "{answer}");
        assert!(answer["code"] == 400 || answer["code"] == 4020, "{answer}");
    }
    // The bystander is not affected.
    assert_eq!(seq(&bystander.say("still here").await), 1);

    // Over the frame limit: closed with 1009.
    hostile.send_text("x".repeat(70_000)).await;
    assert_eq!(hostile.closed().await, 1009);
    // Still not affected.
    assert_eq!(seq(&bystander.say("and still").await), 2);
    bystander.fence().await;
}
on_both_engines!(oversized_frames_close_with_1009_and_garbage_harms_no_one);

// ---- delivery ---------------------------------------------------------------

async fn agent_messages_presence_and_typing_reach_the_guest(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    let mut tab = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&tab.configure().await);

    let answer = guest.say("hello").await;
    assert_eq!(seq(&answer), 1);
    let conversation: Uuid = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The other tab sees the visitor's message as Inbound.
    let pushed = tab.next().await;
    assert_eq!(pushed["type"], "message");
    assert_eq!(pushed["body"]["direction"], "Inbound");
    assert_eq!(pushed["body"]["text"], "hello");
    assert_eq!(seq(&pushed), 1);

    let ada = agent_accepts(&app, site.queue, conversation).await;
    for socket in [&mut guest, &mut tab] {
        let join = socket.next().await;
        assert_eq!(join["type"], "message");
        assert_eq!(join["body"]["type"], "Event");
        assert_eq!(join["body"]["direction"], "Outbound");
        assert_eq!(join["body"]["events"][0]["eventType"], "Presence");
        assert_eq!(join["body"]["events"][0]["presence"]["type"], "Join");
        assert_eq!(seq(&join), 2);
    }

    let routing = &app.state().routing;
    routing
        .agent_post(&ada, conversation, agent_text("Hi, I am Ada"), Utc::now())
        .await
        .unwrap();
    let message = guest.next().await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["class"], "StructuredMessage");
    assert_eq!(message["body"]["direction"], "Outbound");
    assert_eq!(message["body"]["originatingEntity"], "Human");
    assert_eq!(message["body"]["channel"]["from"]["nickname"], "Ada");
    assert_eq!(message["body"]["text"], "Hi, I am Ada");
    assert_eq!(message["body"]["conversationId"], conversation.to_string());
    assert_eq!(seq(&message), 3);

    // Agent typing: an Event with a duration, not logged.
    routing
        .notify(
            &Channel::Conversation(conversation),
            &Notice::Typing {
                conversation_id: conversation,
                from: Participant {
                    role: ParticipantRole::Agent,
                    id: Some(ada.id),
                    name: "Ada".to_owned(),
                },
            },
        )
        .await;
    let typing = guest.next().await;
    assert_eq!(typing["body"]["type"], "Event");
    assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
    assert_eq!(typing["body"]["events"][0]["typing"]["type"], "On");
    assert_eq!(typing["body"]["events"][0]["typing"]["duration"], 5000);

    // The guest's typing reaches the conversation channel, not other tabs.
    let mut sub = app
        .state()
        .store
        .engine()
        .subscribe(Channel::Conversation(conversation))
        .await
        .unwrap();
    let answer = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}}))
        .await;
    assert_eq!(answer["type"], "response");
    let notice = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    let switchboard::engine::BusMessage::Payload(payload) = notice else {
        panic!()
    };
    let notice: Notice = serde_json::from_slice(&payload).unwrap();
    assert!(matches!(notice, Notice::Typing { from, .. } if from.role == ParticipantRole::Visitor));

    // The end: a Disconnect presence; the end marker itself is not shown.
    routing
        .end(&ada, conversation, None, Utc::now())
        .await
        .unwrap();
    let disconnect = guest.next().await;
    assert_eq!(
        disconnect["body"]["events"][0]["presence"]["type"],
        "Disconnect"
    );
    // 1 hello, 2 join, 3 text, 4 disconnect (5, the end marker, is hidden).
    assert_eq!(seq(&disconnect), 4);
    guest.fence().await;
    // tab: message 3, then the disconnect; no typing of the visitor.
    assert_eq!(seq(&tab.next().await), 3);
    let typing = tab.next().await;
    assert_eq!(typing["body"]["events"][0]["eventType"], "Typing");
    assert_eq!(
        tab.next().await["body"]["events"][0]["presence"]["type"],
        "Disconnect"
    );
    tab.fence().await;
}
on_both_engines!(agent_messages_presence_and_typing_reach_the_guest);

async fn resends_with_the_same_id_are_idempotent(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let mut guest = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&guest.configure().await);
    let t = guest.token.clone();
    let first = guest
        .ask(json!({"action":"onMessage","token":t,"message":{"type":"Text","text":"once","id":"client-1"}}))
        .await;
    assert_eq!(seq(&first), 1);
    let again = guest
        .ask(json!({"action":"onMessage","token":t,"messageId":"client-1","message":{"type":"Text","text":"once"}}))
        .await;
    assert_eq!(seq(&again), 1);
    assert_eq!(again["body"]["id"], first["body"]["id"]);
    assert_eq!(again["body"]["clientMessageId"], "client-1");
    let conversation: Uuid = first["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let log = app
        .state()
        .routing
        .events_after(conversation, 0, 100)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    guest.fence().await;
}
on_both_engines!(resends_with_the_same_id_are_idempotent);

async fn resume_after_reconnect_has_no_gap_and_no_duplicate(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    assert_eq!(seq(&guest.say("one").await), 1);
    let answer = guest.say("two").await;
    assert_eq!(seq(&answer), 2);
    let conversation: Uuid = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    drop(guest);

    // While the guest is away, the agent writes twice.
    let routing = &app.state().routing;
    let ada = Participant {
        role: ParticipantRole::Agent,
        id: Some(Uuid::new_v4()),
        name: "Ada".to_owned(),
    };
    for text in ["three", "four"] {
        routing
            .append(conversation, ada.clone(), agent_text(text), Utc::now())
            .await
            .unwrap();
    }

    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    let answer = guest.configure_with(json!({ "lastSequence": 2 })).await;
    let body = assert_session(&answer);
    assert_eq!(body["newSession"], false);
    assert_eq!(body["conversationId"], conversation.to_string());
    assert_eq!(body["lastSequence"], 4);
    let three = guest.next().await;
    assert_eq!(
        (seq(&three), three["body"]["text"].as_str()),
        (3, Some("three"))
    );
    let four = guest.next().await;
    assert_eq!(
        (seq(&four), four["body"]["text"].as_str()),
        (4, Some("four"))
    );
    // Live delivery continues after the replay.
    routing
        .append(conversation, ada.clone(), agent_text("five"), Utc::now())
        .await
        .unwrap();
    assert_eq!(seq(&guest.next().await), 5);
    guest.fence().await;

    // Another reconnect from the middle, then a message of its own: the
    // events it had not seen come first, its own is the answer.
    drop(guest);
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure_with(json!({ "lastSequence": 4 })).await);
    assert_eq!(seq(&guest.next().await), 5);
    tokio::time::sleep(RATE_WINDOW).await;
    let own = guest.say("six").await;
    assert_eq!(own["type"], "response");
    assert_eq!(seq(&own), 6);
    guest.fence().await;

    // Without lastSequence nothing is replayed.
    drop(guest);
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    guest.fence().await;
    routing
        .append(conversation, ada, agent_text("seven"), Utc::now())
        .await
        .unwrap();
    assert_eq!(seq(&guest.next().await), 7);
}
on_both_engines!(resume_after_reconnect_has_no_gap_and_no_duplicate);

// ---- sessions ---------------------------------------------------------------

async fn sessions_cannot_reach_each_other(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let (ta, tb) = (token(), token());
    let mut a = Guest::connect(&app, &site.deployment, &ta).await;
    assert_session(&a.configure().await);
    let mut b = Guest::connect(&app, &site.deployment, &tb).await;
    assert_session(&b.configure().await);

    let answer = a.say("secret of a").await;
    let conversation_a = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let jwt = b.ask(json!({"action":"getJwt","token":tb})).await["body"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let history = app
        .get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    assert_eq!(history["total"], 1);
    assert_eq!(history["entities"][0]["text"], "b's own");

    // A session is bound to its deployment.
    let other = guest_site(&app).await;
    let mut c = Guest::connect(&app, &other.deployment, &ta).await;
    assert_error(&c.configure().await, 403);
}
on_both_engines!(sessions_cannot_reach_each_other);

async fn history_is_paged_newest_first_with_cors(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    for text in ["m1", "m2", "m3"] {
        guest.say(text).await;
        // Two a second per session.
        tokio::time::sleep(RATE_WINDOW / 2 + Duration::from_millis(50)).await;
    }
    let jwt = guest.ask(json!({"action":"getJwt","token":t})).await["body"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();

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
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
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
        .header("Origin", ORIGIN)
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
    let site = guest_site(&app).await;
    let t = token();
    let mut a = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&a.configure().await);
    let mut b = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&b.configure().await);
    let mut stranger = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&stranger.configure().await);

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
    let site = site_with(
        &app,
        json!({ "autoStart": { "enabled": true }, "conversationClear": { "enabled": true } }),
        json!({ "enabled": false }),
    )
    .await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    let mut tab = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&tab.configure().await);

    let join = json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Join"}}]}});
    let answer = guest.ask(join.clone()).await;
    assert_eq!(answer["body"]["events"][0]["presence"]["type"], "Join");
    assert_eq!(seq(&answer), 1);
    let first: Uuid = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The tab follows the conversation the other opened.
    assert_eq!(seq(&tab.next().await), 1);

    // Clear: both sockets hear SessionClearedEvent; the next message starts
    // a new conversation.
    let clear = json!({"action":"onMessage","token":t,"message":{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Clear"}}]}});
    let answer = guest.ask(clear).await;
    assert_eq!(answer["type"], "response");
    assert_eq!(guest.next().await["class"], "SessionClearedEvent");
    let mut seen = tab.next().await;
    if seen["class"] == "StructuredMessage" {
        // The Clear presence logged in the old conversation.
        assert_eq!(seen["body"]["events"][0]["presence"]["type"], "Clear");
        seen = tab.next().await;
    }
    assert_eq!(seen["class"], "SessionClearedEvent");
    tokio::time::sleep(RATE_WINDOW).await;
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
    let site = site_with(
        &app,
        json!({ "conversationDisconnect": { "enabled": true, "type": "ReadOnly" } }),
        json!({ "enabled": false }),
    )
    .await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    let answer = guest.say("help").await;
    let conversation: Uuid = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ada = agent_accepts(&app, site.queue, conversation).await;
    assert_eq!(
        guest.next().await["body"]["events"][0]["presence"]["type"],
        "Join"
    );
    app.state()
        .routing
        .end(&ada, conversation, None, Utc::now())
        .await
        .unwrap();
    let disconnect = guest.next().await;
    assert_eq!(
        disconnect["body"]["events"][0]["presence"]["type"],
        "Disconnect"
    );
    assert_eq!(disconnect["body"]["metadata"]["readOnly"], "true");
    let answer = guest.say("anyone?").await;
    assert_error(&answer, 403);
    assert_eq!(answer["body"], "conversation is read only");
    drop(guest);
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_eq!(assert_session(&guest.configure().await)["readOnly"], true);
    // startNew leaves the read-only conversation behind.
    let body = assert_session(&guest.configure_with(json!({ "startNew": true })).await).clone();
    assert_eq!(body["clearedExistingSession"], true);
    assert_eq!(body["readOnly"], false);
    tokio::time::sleep(RATE_WINDOW).await;
    let answer = guest.say("new one").await;
    assert_eq!(seq(&answer), 1);
    assert_ne!(answer["body"]["conversationId"], conversation.to_string());
}
on_both_engines!(read_only_after_the_agent_ends);

// ---- authenticated sessions ---------------------------------------------------

async fn authentication_required_downgrade_and_logout(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = auth_site(&app, true, false).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    let answer = guest.configure().await;
    assert_error(&answer, 401);
    assert_eq!(answer["body"], "authentication required");
    assert_error(&guest.say("hi").await, 401);

    // A JWT of another deployment fails; a garbage one too.
    let other = auth_site(&app, true, false).await;
    let (foreign, _) = session_jwt(&app, &other.deployment, "grace").await;
    let answer = guest.authenticate(&foreign).await;
    assert_error(&answer, 401);
    assert_eq!(answer["body"], "Session authentication failed");
    assert_error(&guest.authenticate("a.b.c").await, 401);

    let (jwt, claims) = session_jwt(&app, &site.deployment, "grace").await;
    let body = assert_session(&guest.authenticate(&jwt).await).clone();
    assert_eq!(body["connected"], true);
    assert_eq!(body["newSession"], true);
    let answer = guest.say("signed in").await;
    assert_eq!(seq(&answer), 1);
    let conversation: Uuid = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = app
        .state()
        .routing
        .conversation(conversation)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.visitor.authenticated);
    assert_eq!(stored.visitor.email.as_deref(), Some("grace@example.com"));

    // No downgrade to a guest session.
    let answer = guest.configure().await;
    assert_error(&answer, 4017);
    // Another identity cannot take the session over.
    let (mallory, _) = session_jwt(&app, &site.deployment, "mallory").await;
    let mut intruder = Guest::connect(&app, &site.deployment, &t).await;
    let answer = intruder.authenticate(&mallory).await;
    assert_error(&answer, 401);
    assert_eq!(answer["body"], "Session authentication failed");

    // A second device of the same visitor sees the conversation.
    let (jwt2, _) = session_jwt(&app, &site.deployment, "grace").await;
    let mut phone = Guest::connect(&app, &site.deployment, &t).await;
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
    assert_eq!(assert_session(&answer)["clearedExistingSession"], true);
    tokio::time::sleep(RATE_WINDOW).await;
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
    let jwt_history = guest.ask(json!({"action":"getJwt","token":t})).await["body"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
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
}
on_both_engines!(authentication_required_downgrade_and_logout);

async fn guest_sessions_upgrade_in_place_or_start_over(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    // With allowSessionUpgrade: the conversation continues, signed in.
    let site = auth_site(&app, false, true).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    let mut tab = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&tab.configure().await);
    let answer = guest.say("as a guest").await;
    let conversation = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(seq(&tab.next().await), 1);
    let (jwt, _) = session_jwt(&app, &site.deployment, "grace").await;
    let body = assert_session(&guest.authenticate(&jwt).await).clone();
    assert_eq!(body["conversationId"], conversation);
    assert_eq!(body["clearedExistingSession"], false);
    let sign_in = tab.next().await;
    assert_eq!(sign_in["body"]["events"][0]["presence"]["type"], "SignIn");
    assert_eq!(seq(&sign_in), 2);
    let stored = app
        .state()
        .routing
        .conversation(conversation.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.visitor.authenticated);
    // The next message continues the same conversation.
    tokio::time::sleep(RATE_WINDOW).await;
    let answer = guest.say("signed in now").await;
    assert_eq!(answer["body"]["conversationId"], conversation);
    assert_eq!(seq(&answer), 3);

    // Without it: the guest's other sockets are closed with reason
    // signedIn, and the signed-in session starts over.
    let site = auth_site(&app, false, false).await;
    let t = token();
    let mut guest = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&guest.configure().await);
    let mut tab = Guest::connect(&app, &site.deployment, &t).await;
    assert_session(&tab.configure().await);
    let answer = guest.say("as a guest").await;
    let conversation = answer["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(seq(&tab.next().await), 1);
    let (jwt, _) = session_jwt(&app, &site.deployment, "grace").await;
    let body = assert_session(&guest.authenticate(&jwt).await).clone();
    assert_eq!(body["clearedExistingSession"], true);
    assert!(body.get("conversationId").is_none());
    let closed = tab.next().await;
    assert_eq!(closed["class"], "ConnectionClosedEvent");
    assert_eq!(closed["body"]["reason"], "signedIn");
    assert_eq!(tab.closed().await, 1000);
    tokio::time::sleep(RATE_WINDOW).await;
    let answer = guest.say("signed in").await;
    assert_ne!(answer["body"]["conversationId"], conversation);
}
on_both_engines!(guest_sessions_upgrade_in_place_or_start_over);

async fn node_shutdown_closes_with_1001(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = guest_site(&app).await;
    let mut guest = Guest::connect(&app, &site.deployment, &token()).await;
    assert_session(&guest.configure().await);
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
