//! The guest socket as the Transport SDK drives it, every frame decoded by
//! its rules: a conversation with an agent, the health check and history
//! (G8, G11, G13); a new chat after a read-only end with the autostart
//! `Join` and its custom attributes (G7, G12); custom attributes measured
//! as the SDK does and from every placement (G12); clearing (G14); and
//! close frames answered on both sockets (G15).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::client::{HEALTH_CHECK_ID, SdkClient, refusal, server_close, session};
use super::sdk::PresenceType;
use super::*;
use crate::on_both_engines;
use crate::support::agent::Agent;
use crate::support::app::{EngineKind, TestApp};

/// A deployment the SDK's app is admitted to, on a configuration of
/// `conversations` settings: the admin token and the deployment.
async fn app_site(app: &TestApp, conversations: Value) -> (String, String) {
    let admin = app.admin().await;
    let configuration = published(
        app,
        &admin,
        configuration(None, json!({ "apps": { "conversations": conversations } })),
    )
    .await;
    let id = deployment(
        app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;
    (admin, id)
}

/// An available agent `name`.
async fn agent(app: &TestApp, admin: &str, name: &str) -> Agent {
    let (_, token) = app.client(admin, name, &["agent"]).await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    agent
}

fn conversation_of(frame: &Value) -> Uuid {
    frame["body"]["conversationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn a_conversation_as_the_sdk_sees_it(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (admin, id) = app_site(&app, json!({ "showUserTypingIndicator": true })).await;
    let mut ada = agent(&app, &admin, "Ada").await;
    let mut sdk = SdkClient::open(&app, &id).await;

    let session = sdk.configure(false).await;
    assert!(session.connected && session.new_session && !session.read_only);
    assert_eq!(session.max_custom_data_bytes, 2048);
    assert_eq!(session.duration_seconds, Some(1800));
    let now = chrono::Utc::now().timestamp();
    assert!(session.expiration_date.unwrap() > now);

    // G11: the echo of its own message is a `message` with its tracingId,
    // which is how the SDK replaces its pending copy.
    let frame = sdk.text("Hello world");
    let tracing = frame["tracingId"].as_str().unwrap().to_owned();
    let raw = sdk.request(frame).await;
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&raw);
    assert_eq!(echo.kind, "message");
    assert_eq!(echo.message_id(), tracing);
    assert_eq!(echo.body.direction, "Inbound");
    assert_eq!(echo.body.kind, sdk::MessageType::Text);
    assert_eq!(echo.body.text.as_deref(), Some("Hello world"));
    assert!(echo.body.timestamp().is_some());
    let conversation = conversation_of(&raw);

    // The agent answers: Join, a message and typing, all Outbound.
    ada.offer_of(conversation).await;
    ada.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let join = sdk.message().await;
    assert_eq!(join.body.direction, "Outbound");
    assert_eq!(join.body.presence(), Some(PresenceType::Join));
    ada.say(&conversation.to_string(), "Hi, I am Ada").await;
    let message = sdk.message().await;
    assert_eq!(message.kind, "message");
    assert_eq!(message.body.direction, "Outbound");
    assert_eq!(message.body.text.as_deref(), Some("Hi, I am Ada"));
    assert_eq!(message.body.originating_entity.as_deref(), Some("Human"));
    let from = message
        .body
        .channel
        .as_ref()
        .unwrap()
        .from
        .as_ref()
        .unwrap();
    assert_eq!(from.nickname.as_deref(), Some("Ada"));
    ada.send(json!({ "type": "typing", "conversationId": conversation }))
        .await;
    let typing = sdk.message().await;
    assert_eq!(
        typing.body.events,
        [sdk::Event::Typing {
            kind: "On".to_owned(),
            duration: Some(5000)
        }]
    );
    // The visitor's typing is answered (and ignored by the SDK).
    let frame = sdk.typing();
    let answer: sdk::Frame<sdk::StructuredMessage> = decode(&sdk.request(frame).await);
    assert_eq!(answer.body.direction, "Inbound");

    // G13: the health check's answer carries the session's duration and
    // expiry, as strings.
    let answer: sdk::Frame<sdk::StructuredMessage> = decode(&sdk.request(sdk.health_check()).await);
    assert_eq!(answer.tracing_id.as_deref(), Some(HEALTH_CHECK_ID));
    assert_eq!(answer.body.kind, sdk::MessageType::Text);
    assert_eq!(answer.body.metadata["durationSeconds"], "1800");
    let expiry: i64 = answer.body.metadata["expirationDate"].parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 1790..=now + 1801).contains(&expiry), "{expiry}");

    // G8: a transfer logs the agent's Leave, which no guest sees: the next
    // event is the next agent's Join.
    let billing: String = app
        .post(
            "/api/v2/routing/queues",
            &admin,
            json!({ "name": "Billing" }),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, grace_token) = app.client(&admin, "Grace", &["agent"]).await;
    let (mut grace, _) = app.agent(&grace_token).await;
    grace
        .ok(json!({ "type": "setPresence", "status": "available", "queueIds": [billing] }))
        .await;
    ada.ok(json!({ "type": "transfer", "conversationId": conversation, "queueId": billing }))
        .await;
    grace.offer_of(conversation).await;
    grace
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let next = sdk.message().await;
    assert_eq!(next.body.presence(), Some(PresenceType::Join));
    let from = next.body.channel.as_ref().unwrap().from.as_ref().unwrap();
    assert_eq!(from.nickname.as_deref(), Some("Grace"));
    grace
        .ok(json!({ "type": "end", "conversationId": conversation }))
        .await;
    assert_eq!(
        sdk.message().await.body.presence(),
        Some(PresenceType::Disconnect)
    );

    // History: every entity decodes, no Leave among them.
    let jwt: sdk::Frame<sdk::JwtResponse> = decode(&sdk.request(sdk.get_jwt()).await);
    let response = app
        .http
        .get(app.url(HISTORY))
        .header("authorization", format!("bearer {}", jwt.body.jwt))
        .header("origin", APP_DOMAIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_no_nulls(&page, "page");
    let page: sdk::MessageEntityList = decode(&page);
    let presences: Vec<PresenceType> = page
        .entities
        .iter()
        .filter_map(sdk::StructuredMessage::presence)
        .collect();
    // Newest first.
    assert_eq!(
        presences,
        [
            PresenceType::Disconnect,
            PresenceType::Join,
            PresenceType::Join
        ]
    );
    let texts: Vec<&str> = page
        .entities
        .iter()
        .filter_map(|e| e.text.as_deref())
        .collect();
    assert_eq!(texts, ["Hi, I am Ada", "Hello world"]);
}
on_both_engines!(a_conversation_as_the_sdk_sees_it);

async fn a_new_chat_after_a_read_only_end(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (admin, id) = app_site(
        &app,
        json!({ "autoStart": { "enabled": true },
                "conversationDisconnect": { "enabled": true, "type": "ReadOnly" } }),
    )
    .await;
    let mut ada = agent(&app, &admin, "Ada").await;
    let mut sdk = SdkClient::open(&app, &id).await;
    assert!(sdk.configure(false).await.new_session);

    // G12: the autostart Join carries the pending custom attributes; its
    // echo (an Inbound Join) is what marks them sent in the SDK.
    let join = sdk.autostart(Some(json!({ "plan": "gold", "locale": "fr" })));
    let raw = sdk.request(join).await;
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&raw);
    assert_eq!(echo.body.direction, "Inbound");
    assert_eq!(echo.body.presence(), Some(PresenceType::Join));
    let first = conversation_of(&raw);
    ada.offer_of(first).await;
    ada.ok(json!({ "type": "accept", "conversationId": first }))
        .await;
    // The agent reads them on the visitor's Join.
    let visitor_join = ada
        .find("the visitor's Join", |f| {
            let events = match f["type"].as_str() {
                Some("event") => vec![f.clone()],
                Some("snapshot") => f["conversations"][0]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Some("conversation") => f["conversation"]["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            events
                .iter()
                .any(|e| e["presence"] == "Join" && e["from"]["role"] == "visitor")
        })
        .await;
    assert!(
        visitor_join
            .to_string()
            .contains(r#""customAttributes":{"locale":"fr","plan":"gold"}"#),
        "{visitor_join}"
    );

    // The agent ends: Disconnect, read-only.
    assert_eq!(
        sdk.message().await.body.presence(),
        Some(PresenceType::Join)
    );
    ada.ok(json!({ "type": "end", "conversationId": first }))
        .await;
    let disconnect = sdk.message().await;
    assert_eq!(disconnect.body.presence(), Some(PresenceType::Disconnect));
    assert_eq!(disconnect.body.metadata["readOnly"], "true");
    let (code, _) = refusal(&sdk.request(sdk.text("anyone?")).await);
    assert_eq!(code, 403);

    // G7: startNewChat closes the session, which must answer connected
    // false and read-only, so the SDK configures again with startNew.
    let closed = session(&sdk.request(sdk.close_session()).await);
    assert!(!closed.connected && closed.read_only);
    let fresh = sdk.configure(true).await;
    assert!(fresh.connected && fresh.new_session && !fresh.read_only);
    assert!(!fresh.cleared_existing_session);
    // newSession: the SDK autostarts, which opens a new conversation.
    let raw = sdk.request(sdk.autostart(None)).await;
    assert_ne!(conversation_of(&raw), first);

    // A reconnect without startNew finds the session as it is.
    let mut again = SdkClient::with_token(&app, &id, &sdk.token).await;
    let resumed = again.configure(false).await;
    assert!(resumed.connected && !resumed.new_session && !resumed.read_only);
}
on_both_engines!(a_new_chat_after_a_read_only_end);

async fn custom_attributes_as_the_sdk_measures_them(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (admin, id) = app_site(&app, json!({})).await;
    let mut ada = agent(&app, &admin, "Ada").await;
    let mut sdk = SdkClient::open(&app, &id).await;
    sdk.configure(false).await;

    // 100 pairs of 5 + 10 bytes: 1500 bytes to the SDK, 2101 as JSON.
    let attributes: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("k{i:03}x"), json!("v".repeat(10))))
        .collect();
    let mut frame = sdk.text("with attributes");
    frame["message"]["channel"] = json!({ "metadata": { "customAttributes": attributes } });
    let raw = sdk.request(frame).await;
    assert_eq!(raw["code"], 200, "{raw}");
    let conversation = conversation_of(&raw);
    ada.offer_of(conversation).await;
    ada.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let message = ada.find_text("with attributes").await;
    assert!(message.to_string().contains(r#""k099x":"vvvvvvvvvv""#));

    // One byte over: 4013, with Genesys's text.
    let mut over = serde_json::Map::new();
    over.insert("k".to_owned(), json!("v".repeat(2048)));
    let mut frame = sdk.text("too much");
    frame["message"]["channel"] = json!({ "metadata": { "customAttributes": over } });
    assert_eq!(
        refusal(&sdk.request(frame).await),
        (
            4013,
            "Custom Attributes in channel metadata is larger than 2048 bytes".to_owned()
        )
    );

    // Beside `message` rather than in it: accepted, not dropped.
    let mut frame = sdk.text("placed at the top");
    frame["channel"] = json!({ "metadata": { "customAttributes": { "beside": "1" } } });
    frame["customAttributes"] = json!({ "flat": "2" });
    assert_eq!(sdk.request(frame).await["code"], 200);
    // As an event, or in a snapshot or `conversation` frame when the
    // agent's socket caught up by re-reading.
    let frame = ada.find_text("placed at the top").await;
    let event = if frame["type"] == "event" {
        frame
    } else {
        crate::support::agent::held_in(&frame)
            .into_iter()
            .flat_map(|c| c["events"].as_array().into_iter().flatten())
            .find(|e| e["text"] == "placed at the top")
            .cloned()
            .unwrap()
    };
    assert_eq!(
        event["metadata"]["customAttributes"],
        json!({ "beside": "1", "flat": "2" })
    );
}
on_both_engines!(custom_attributes_as_the_sdk_measures_them);

async fn clearing_and_closing(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    // G14: clearing where it is off is refused as Genesys refuses it.
    let (_, off) = app_site(&app, json!({ "conversationClear": { "enabled": false } })).await;
    let mut sdk = SdkClient::open(&app, &off).await;
    sdk.configure(false).await;
    let (code, text) = refusal(&sdk.request(sdk.clear()).await);
    assert_eq!(code, 403);
    assert!(text.to_lowercase().contains("conversation clear"), "{text}");

    // Where it is on: the answer, SessionClearedEvent, then
    // ConnectionClosedEvent and a close on every socket of the session.
    let (admin, on) = app_site(&app, json!({ "conversationClear": { "enabled": true } })).await;
    let mut sdk = SdkClient::open(&app, &on).await;
    sdk.configure(false).await;
    let mut other = SdkClient::with_token(&app, &on, &sdk.token).await;
    other.configure(false).await;
    let first = conversation_of(&sdk.request(sdk.text("forget me")).await);
    let answer: sdk::Frame<sdk::StructuredMessage> = decode(&sdk.request(sdk.clear()).await);
    assert_eq!(answer.body.presence(), Some(PresenceType::Clear));
    for socket in [&mut sdk, &mut other] {
        socket.next_of("SessionClearedEvent").await;
        let closed: sdk::Frame<sdk::ConnectionClosedEvent> =
            decode(&socket.next_of("ConnectionClosedEvent").await);
        assert_eq!(closed.body.reason, None);
        assert_eq!(socket.closed().await, 1000);
    }
    // The app reconnects: a new session, and a new conversation.
    let mut sdk = SdkClient::with_token(&app, &on, &sdk.token).await;
    assert!(sdk.configure(false).await.new_session);
    assert_ne!(
        conversation_of(&sdk.request(sdk.text("fresh")).await),
        first
    );

    // G15: the SDK's disconnect (close 1000) is answered with a close.
    assert_eq!(sdk.disconnect().await, Some(1000));
    // The agent socket answers a client's close too.
    let (_, token) = app.client(&admin, "Ada", &["agent"]).await;
    let mut request = app
        .ws_url("/api/v2/agent/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let snapshot = ws.next().await.unwrap().unwrap();
    assert!(snapshot.to_text().unwrap().contains("snapshot"));
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.close(Some(frame)).await.unwrap();
    assert_eq!(server_close(&mut ws).await, Some(1000));
}
on_both_engines!(clearing_and_closing);
