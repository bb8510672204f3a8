//! The agent socket itself: authentication on the upgrade, hostile frames,
//! a reconnecting agent's snapshot and the deltas after it; a shutting-down
//! node's close.

use serde_json::json;
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::agent::{AgentAuth, conversation_in};
use crate::support::app::EngineKind;
use crate::support::ws::refused;

use super::{Scene, verified_visitor};
use reqwest::StatusCode;

async fn the_upgrade_needs_an_agent(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    assert_eq!(
        refused(app.agent_upgrade(AgentAuth::Nothing).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refused(app.agent_upgrade(AgentAuth::Bearer("not-a-token")).await),
        StatusCode::UNAUTHORIZED
    );
    let (_, supervisor_only) = scene.client("watcher", &["supervisor"]).await;
    assert_eq!(
        refused(app.agent_upgrade(AgentAuth::Bearer(&supervisor_only)).await),
        StatusCode::FORBIDDEN
    );
    // The bootstrap token is an admin, but nobody an offer can be held to.
    assert_eq!(
        refused(app.agent_upgrade(AgentAuth::Bearer(&app.bootstrap)).await),
        StatusCode::FORBIDDEN
    );
    // The HTTP answer is the API's error format.
    let plain = app
        .call(reqwest::Method::GET, "/api/v2/agent/ws", None, None)
        .await;
    plain.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let (agent_id, agent) = scene.agent("Grace").await;
    let (mut socket, snapshot) = app.agent(&agent).await;
    assert_eq!(snapshot["agent"]["id"], agent_id.to_string());
    assert_eq!(snapshot["agent"]["name"], "Grace");
    assert_eq!(snapshot["agent"]["status"], "away");
    assert_eq!(snapshot["conversations"], json!([]));
    socket.ok(json!({ "type": "ping" })).await;
    socket.close().await;

    // An admin client counts as an agent.
    let (_, admin_agent) = scene.client("Boss", &["admin"]).await;
    let (socket, snapshot) = app.agent(&admin_agent).await;
    assert_eq!(snapshot["agent"]["supervisor"], true);
    socket.close().await;

    // Browsers carry the token as a subprotocol and get `bearer` back.
    let (mut socket, response) = app
        .agent_upgrade(AgentAuth::Subprotocol(&agent))
        .await
        .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
    socket.expect("snapshot").await;
    socket.close().await;
    assert_eq!(
        refused(app.agent_upgrade(AgentAuth::Subprotocol("forged")).await),
        StatusCode::UNAUTHORIZED
    );
}
on_both_engines!(the_upgrade_needs_an_agent);

async fn garbage_frames_keep_the_socket_usable(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let mut agent = scene.socket("Robust").await;
    let garbage = [
        "not json".to_owned(),
        "".to_owned(),
        "[1,2,3]".to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        r#"{"type":"nope"}"#.to_owned(),
        r#"{"no":"type"}"#.to_owned(),
        r#"{"type":"send"}"#.to_owned(),
        r#"{"type":"send","conversationId":"not-a-uuid","text":"x"}"#.to_owned(),
        r#"{"type":"setPresence","status":"offline"}"#.to_owned(),
        r#"{"type":"history","conversationId":"00000000-0000-0000-0000-000000000000","afterSequence":-1}"#.to_owned(),
        format!(r#"{{"type":"ping","requestId":"{}"}}"#, "r".repeat(500)),
        r#"{"type":"ping","requestId":{"nested":true}}"#.to_owned(),
        "{\"type\":\"ping\"".to_owned(),
        "\u{0}\u{1}\u{2}".to_owned(),
        format!("{{\"a\":{}}}", "[".repeat(200)),
    ];
    for frame in &garbage {
        agent.send_text(frame).await;
        let answer = agent.expect("response").await;
        assert_eq!(answer["ok"], false, "{frame}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{frame}: {answer}");
    }
    // The request id is echoed even when the rest is wrong.
    agent
        .send(json!({ "type": "teleport", "requestId": "r-1" }))
        .await;
    let answer = agent.expect("response").await;
    assert_eq!(answer["requestId"], "r-1");
    assert_eq!(answer["error"]["code"], "bad_request");
    // Empty and oversized texts and wrap-ups are refused.
    let conversation = Uuid::new_v4();
    agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "  " }),
            "bad_request",
        )
        .await;
    agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "x".repeat(4001) }),
            "bad_request",
        )
        .await;
    agent
        .refused(
            json!({ "type": "end", "conversationId": conversation, "wrapUp": "w".repeat(200) }),
            "bad_request",
        )
        .await;
    agent.send_binary(vec![1u8, 2, 3]).await;
    assert_eq!(
        agent.expect("response").await["error"]["code"],
        "bad_request"
    );
    agent.ok(json!({ "type": "ping" })).await;

    // Another socket is not disturbed by any of it.
    let mut bystander = scene.socket("Bystander").await;
    bystander.ok(json!({ "type": "ping" })).await;

    // A frame over the limit closes with 1009.
    agent.send_text(&"x".repeat(100 * 1024)).await;
    assert_eq!(agent.closed().await, 1009);
    bystander.ok(json!({ "type": "ping" })).await;
}
on_both_engines!(garbage_frames_keep_the_socket_usable);

async fn a_reconnecting_agent_gets_its_conversations_back(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Returning").await;
    let (mut agent, _) = app.agent(&token).await;
    agent.available().await;
    let conversation = scene.visitor("first", Some(verified_visitor())).await;
    agent.offer_of(conversation).await;
    agent
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    for text in ["one", "two", "three"] {
        agent
            .ok(json!({ "type": "send", "conversationId": conversation, "text": text }))
            .await;
    }
    agent.close().await;

    // A second socket (another tab, or after a reconnect) starts from a
    // snapshot with the whole history, in sequence order.
    let (mut again, snapshot) = app.agent(&token).await;
    assert_eq!(snapshot["agent"]["status"], "available");
    let held = conversation_in(&snapshot, conversation).unwrap();
    assert_eq!(held["state"], "connected");
    assert_eq!(held["visitor"]["email"], "ada@example.com");
    let events = held["events"].as_array().unwrap();
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
    let texts: Vec<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, ["first", "one", "two", "three"]);
    assert_eq!(held["lastSequence"], sequences.len() as u64);
    // And carries on live from there, without duplicates.
    let sent = again
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "back" }))
        .await;
    let event = again.event_of(conversation, "message").await;
    assert_eq!(event["sequence"], sent["result"]["sequence"]);
    assert_eq!(event["sequence"], sequences.len() as u64 + 1);
    // Paging the history.
    let page = again
        .ok(json!({ "type": "history", "conversationId": conversation, "afterSequence": 1, "limit": 2 }))
        .await;
    let paged: Vec<u64> = page["result"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(paged, [2, 3]);
    assert_eq!(page["result"]["more"], true);

    // A node shutting down closes its sockets with 1001: go elsewhere.
    app.state().shutdown.begin();
    assert_eq!(again.closed().await, 1001);
}
on_both_engines!(a_reconnecting_agent_gets_its_conversations_back);

/// The conversation a `conversation` frame shows, by id and state.
fn shown(frame: &serde_json::Value) -> Option<(String, String)> {
    (frame["type"] == "conversation").then(|| {
        let c = &frame["conversation"];
        (
            c["id"].as_str().unwrap_or_default().to_owned(),
            c["state"].as_str().unwrap_or_default().to_owned(),
        )
    })
}

/// After the snapshot a socket opens with, a change says only what changed:
/// the conversation accepted is sent again, the other one the agent holds
/// is not, and the end removes it; no snapshot is sent again.
async fn changes_after_the_snapshot_are_deltas(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let first = scene.visitor("first", None).await.to_string();
    let second = scene.visitor("second", None).await.to_string();
    let mut agent = scene.socket("Grace").await;
    agent.available().await;
    // Both offered (a queue's agents take three at once by default), each
    // shown once with its events.
    let mut offered = std::collections::HashSet::new();
    while offered.len() < 2 {
        let frame = agent.next().await;
        assert_ne!(frame["type"], "snapshot", "{frame}");
        if let Some((id, state)) = shown(&frame) {
            assert_eq!(state, "offered", "{frame}");
            assert_eq!(frame["conversation"]["events"][0]["kind"], "message");
            assert!(offered.insert(id), "shown twice: {frame}");
        }
    }
    assert!(offered.contains(&first) && offered.contains(&second));

    // Read until the accept's answer and the accepted conversation's
    // update, then the end's answer and its removal: no snapshot on the
    // way, nothing about the other conversation.
    let steps = [
        (json!({ "type": "accept", "requestId": "accept", "conversationId": first })),
        (json!({ "type": "end", "requestId": "end", "conversationId": first })),
    ];
    for step in steps {
        let request = step["requestId"].as_str().unwrap().to_owned();
        agent.send(step).await;
        let (mut answered, mut changed) = (false, false);
        while !(answered && changed) {
            let frame = agent.next().await;
            assert_ne!(frame["type"], "snapshot", "{frame}");
            assert_ne!(frame["conversationId"], second.as_str(), "{frame}");
            assert_ne!(frame["conversation"]["id"], second.as_str(), "{frame}");
            if frame["type"] == "response" && frame["requestId"] == request.as_str() {
                assert_eq!(frame["ok"], true, "{frame}");
                answered = true;
            }
            changed |= match request.as_str() {
                "accept" => shown(&frame) == Some((first.clone(), "connected".to_owned())),
                _ => frame["type"] == "removed" && frame["conversationId"] == first.as_str(),
            };
        }
    }
}
on_both_engines!(changes_after_the_snapshot_are_deltas);

/// A visitor who signs in while an agent holds their conversation: the
/// `SignIn` event is followed by the conversation, now naming them.
async fn a_sign_in_updates_the_held_conversation(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let conversation = scene.visitor("hello", None).await;
    let mut agent = scene.socket("Grace").await;
    agent.available().await;
    agent.offer_of(conversation).await;
    agent
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let id = conversation.to_string();
    agent
        .until("the accepted conversation", |f| {
            f["type"] == "conversation" && f["conversation"]["state"] == "connected"
        })
        .await;

    let routing = &scene.app.state().routing;
    let identity = verified_visitor();
    let now = chrono::Utc::now();
    routing
        .sign_in_conversation(
            scene.app.org(),
            conversation,
            &identity,
            Uuid::new_v4(),
            now,
        )
        .await
        .unwrap();
    let sign_in = switchboard::routing::NewEvent {
        body: switchboard::routing::model::EventBody::presence(
            switchboard::routing::model::PresenceKind::SignIn,
        ),
        dedup: None,
    };
    let visitor = switchboard::routing::model::Participant::visitor(Some(&identity));
    routing
        .append(conversation, visitor, sign_in, now)
        .await
        .unwrap();
    agent
        .until("the SignIn", |f| {
            f["type"] == "event" && f["conversationId"] == id.as_str() && f["presence"] == "SignIn"
        })
        .await;
    let updated = agent
        .until("the conversation naming the visitor", |f| {
            f["type"] == "conversation" && f["conversation"]["id"] == id.as_str()
        })
        .await;
    assert_eq!(updated["conversation"]["visitor"]["authenticated"], true);
    assert_eq!(updated["conversation"]["visitor"]["subject"], "user-42");
}
on_both_engines!(a_sign_in_updates_the_held_conversation);
