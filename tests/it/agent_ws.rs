//! The agent WebSocket end to end: authentication on the upgrade, presence,
//! offers, accept and decline, messages, typing, transfers, ending with a
//! wrap-up, timeouts and lost agents, who may read what, hostile frames,
//! and the `switchboard agent` terminal client. Visitors are driven through
//! routing directly, so these tests do not depend on the guest socket.

use std::time::Duration;

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::engine::{BusMessage, Channel};
use switchboard::routing::NewEvent;
use switchboard::routing::model::{
    ConversationState, EventBody, Notice, Participant, ParticipantRole, PresenceKind,
    VisitorIdentity, session_id,
};
use switchboard::store::records::{ConfigurationContent, Deployment};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::on_both_engines;
use crate::support::app::{EngineKind, Setup, TestApp};

/// How long a test waits for a frame it expects.
const WAIT: Duration = Duration::from_secs(15);

// ---- fixtures -------------------------------------------------------------

/// An organization's setup: an admin, a queue and a deployment routing to it.
struct Scene {
    app: TestApp,
    admin: String,
    queue: Uuid,
    deployment: Deployment,
}

impl Scene {
    async fn new(kind: EngineKind) -> Scene {
        Self::with(Setup::new(kind), json!({ "name": "Support" })).await
    }

    async fn with(setup: Setup, queue: Value) -> Scene {
        let app = TestApp::spawn_with(setup).await;
        let admin = app.admin().await;
        let queue = create_queue(&app, &admin, queue).await;
        let deployment = create_deployment(&app, &admin, queue).await;
        Scene {
            app,
            admin,
            queue,
            deployment,
        }
    }

    /// An API client with `roles`: its id and an access token.
    async fn client(&self, name: &str, roles: &[&str]) -> (Uuid, String) {
        client_of(&self.app, &self.admin, name, roles).await
    }

    async fn agent(&self, name: &str) -> (Uuid, String) {
        self.client(name, &["agent"]).await
    }

    /// A visitor's first message, which opens a conversation in the
    /// deployment's queue. Answers the conversation's id.
    async fn visitor(&self, text: &str, identity: Option<VisitorIdentity>) -> Uuid {
        visitor_in(&self.app, &self.deployment, text, identity).await
    }
}

async fn create_queue(app: &TestApp, admin: &str, body: Value) -> Uuid {
    let queue = app
        .post("/api/v2/routing/queues", admin, body)
        .await
        .expect(StatusCode::CREATED);
    queue["id"].as_str().unwrap().parse().unwrap()
}

async fn create_deployment(app: &TestApp, admin: &str, queue: Uuid) -> Deployment {
    let configuration = app
        .post(
            "/api/v2/webdeployments/configurations",
            admin,
            crate::admin_api::configuration_body("Chat", None),
        )
        .await
        .expect(StatusCode::CREATED);
    let configuration = configuration["id"].as_str().unwrap();
    app.post(
        &format!("/api/v2/webdeployments/configurations/{configuration}/versions/draft/publish"),
        admin,
        json!({}),
    )
    .await
    .expect(StatusCode::CREATED);
    let deployment = app
        .post(
            "/api/v2/webdeployments/deployments",
            admin,
            crate::admin_api::deployment_body(configuration, "1", &queue.to_string()),
        )
        .await
        .expect(StatusCode::CREATED);
    let id: Uuid = deployment["id"].as_str().unwrap().parse().unwrap();
    app.state()
        .store
        .find::<Deployment>(id)
        .await
        .unwrap()
        .unwrap()
}

async fn client_of(app: &TestApp, admin: &str, name: &str, roles: &[&str]) -> (Uuid, String) {
    let created = app
        .post(
            "/api/v2/oauth/clients",
            admin,
            json!({ "name": name, "roles": roles }),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let token = app
        .access_token(id, created["secret"].as_str().unwrap())
        .await;
    (id.parse().unwrap(), token)
}

async fn visitor_in(
    app: &TestApp,
    deployment: &Deployment,
    text: &str,
    identity: Option<VisitorIdentity>,
) -> Uuid {
    let routing = &app.state().routing;
    let session = session_id(&Uuid::new_v4().to_string());
    routing
        .open_session(session, deployment, Utc::now())
        .await
        .unwrap();
    if let Some(identity) = identity {
        routing
            .update_session(session, |s| {
                s.identity = Some(identity.clone());
                Ok(())
            })
            .await
            .unwrap();
    }
    let content: ConfigurationContent = serde_json::from_value(json!({ "name": "Chat" })).unwrap();
    let (conversation, _, _) = routing
        .visitor_post(session, deployment, &content, text_event(text), Utc::now())
        .await
        .unwrap();
    conversation.meta.id
}

fn text_event(text: &str) -> NewEvent {
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

fn verified_visitor() -> VisitorIdentity {
    VisitorIdentity {
        authenticated: true,
        issuer: Some("https://idp.example.com/".to_owned()),
        subject: Some("user-42".to_owned()),
        email: Some("ada@example.com".to_owned()),
        name: Some("Ada Lovelace".to_owned()),
        given_name: Some("Ada".to_owned()),
        family_name: Some("Lovelace".to_owned()),
    }
}

async fn conversation_state(app: &TestApp, id: Uuid) -> ConversationState {
    app.state()
        .routing
        .conversation(id)
        .await
        .unwrap()
        .unwrap()
        .state
}

/// The conversation's log as the visitor's side would read it.
async fn log_of(app: &TestApp, id: Uuid) -> Vec<EventBody> {
    app.state()
        .routing
        .events_after(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.body)
        .collect()
}

// ---- an agent socket --------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct AgentSocket {
    ws: Ws,
}

fn ws_url(app: &TestApp) -> String {
    format!("ws://{}/api/v2/agent/ws", app.addr)
}

/// Opens the socket with `Authorization: Bearer`; answers the handshake
/// error (with the HTTP status) when refused.
async fn try_connect(app: &TestApp, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = ws_url(app).into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

fn refused_with(result: Result<Ws, tungstenite::Error>) -> StatusCode {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            StatusCode::from_u16(response.status().as_u16()).unwrap()
        }
        Err(e) => panic!("unexpected failure: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

impl AgentSocket {
    /// Connects and reads the first snapshot.
    async fn connect(app: &TestApp, token: &str) -> (AgentSocket, Value) {
        let ws = try_connect(app, Some(token)).await.unwrap();
        let mut socket = AgentSocket { ws };
        let snapshot = socket.expect("snapshot").await;
        (socket, snapshot)
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// The next JSON frame, skipping pings.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame in time")
                .expect("the socket closed")
                .expect("the socket failed");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Skips frames until one matches.
    async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} in time"));
            if matches(&frame) {
                return frame;
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.until(kind, |f| f["type"] == kind).await
    }

    /// Sends a request and waits for its response.
    async fn request(&mut self, mut frame: Value) -> Value {
        let id = Uuid::new_v4().to_string();
        frame["requestId"] = json!(id);
        self.send(frame).await;
        self.until("response", |f| {
            f["type"] == "response" && f["requestId"] == id.as_str()
        })
        .await
    }

    async fn ok(&mut self, frame: Value) -> Value {
        let response = self.request(frame).await;
        assert_eq!(response["ok"], true, "{response}");
        response
    }

    async fn refused(&mut self, frame: Value, code: &str) -> Value {
        let response = self.request(frame).await;
        assert_eq!(response["ok"], false, "{response}");
        assert_eq!(response["error"]["code"], code, "{response}");
        response
    }

    async fn available(&mut self) -> Value {
        self.ok(json!({ "type": "setPresence", "status": "available" }))
            .await
    }

    async fn offer_of(&mut self, conversation: Uuid) -> Value {
        let id = conversation.to_string();
        self.until("offer", |f| {
            f["type"] == "offer" && f["conversation"]["id"] == id.as_str()
        })
        .await
    }

    async fn event_of(&mut self, conversation: Uuid, kind: &str) -> Value {
        let id = conversation.to_string();
        self.until(kind, |f| {
            f["type"] == "event" && f["conversationId"] == id.as_str() && f["kind"] == kind
        })
        .await
    }

    /// Asserts that nothing matching arrives within `quiet`.
    async fn none_within(&mut self, quiet: Duration, matches: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.next()).await {
            assert!(!matches(&frame), "unexpected frame {frame}");
        }
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn conversation_in(snapshot: &Value, id: Uuid) -> Option<&Value> {
    let id = id.to_string();
    snapshot["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
}

// ---- tests ----------------------------------------------------------------

async fn the_upgrade_needs_an_agent(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    assert_eq!(
        refused_with(try_connect(app, None).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refused_with(try_connect(app, Some("not-a-token")).await),
        StatusCode::UNAUTHORIZED
    );
    let (_, supervisor_only) = scene.client("watcher", &["supervisor"]).await;
    assert_eq!(
        refused_with(try_connect(app, Some(&supervisor_only)).await),
        StatusCode::FORBIDDEN
    );
    // The bootstrap token is an admin, but nobody an offer can be held to.
    assert_eq!(
        refused_with(try_connect(app, Some(&app.bootstrap)).await),
        StatusCode::FORBIDDEN
    );
    // The HTTP answer is the API's error format.
    let plain = app
        .call(reqwest::Method::GET, "/api/v2/agent/ws", None, None)
        .await;
    plain.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let (agent_id, agent) = scene.agent("Grace").await;
    let (mut socket, snapshot) = AgentSocket::connect(app, &agent).await;
    assert_eq!(snapshot["agent"]["id"], agent_id.to_string());
    assert_eq!(snapshot["agent"]["name"], "Grace");
    assert_eq!(snapshot["agent"]["status"], "away");
    assert_eq!(snapshot["conversations"], json!([]));
    socket.ok(json!({ "type": "ping" })).await;
    socket.close().await;

    // An admin client counts as an agent.
    let (_, admin_agent) = scene.client("Boss", &["admin"]).await;
    let (socket, snapshot) = AgentSocket::connect(app, &admin_agent).await;
    assert_eq!(snapshot["agent"]["supervisor"], true);
    socket.close().await;

    // Browsers carry the token as a subprotocol and get `bearer` back.
    let mut request = ws_url(app).into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("bearer, {agent}").parse().unwrap(),
    );
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
    let mut socket = AgentSocket { ws };
    socket.expect("snapshot").await;
    socket.close().await;
    let mut request = ws_url(app).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "bearer, forged".parse().unwrap());
    assert_eq!(
        refused_with(
            tokio_tungstenite::connect_async(request)
                .await
                .map(|(ws, _)| ws)
        ),
        StatusCode::UNAUTHORIZED
    );
}
on_both_engines!(the_upgrade_needs_an_agent);

async fn an_accepted_conversation_flows_both_ways(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let conversation = scene
        .visitor("Hello, I need help", Some(verified_visitor()))
        .await;
    let (agent_id, token) = scene.agent("Grace").await;
    let (mut agent, _) = AgentSocket::connect(app, &token).await;

    // Going available routes the waiting conversation here.
    let presence = agent.available().await;
    assert_eq!(presence["result"]["status"], "available");
    assert_eq!(
        presence["result"]["queues"],
        json!([scene.queue.to_string()])
    );
    let offer = agent.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["state"], "offered");
    assert_eq!(offer["conversation"]["queueId"], scene.queue.to_string());
    assert!(offer["conversation"]["offerDeadline"].is_string());
    let snapshot = agent.expect("snapshot").await;
    assert_eq!(snapshot["agent"]["status"], "available");
    let offered = conversation_in(&snapshot, conversation).unwrap();
    assert_eq!(offered["events"][0]["text"], "Hello, I need help");

    // Accepting connects it; the visitor's verified identity comes along.
    let accepted = agent
        .ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    assert_eq!(accepted["result"]["conversation"]["state"], "connected");
    // The agent's join reaches the socket once: as an event, or inside the
    // snapshot when the socket read the log first.
    let mut join = None;
    let snapshot = loop {
        let frame = agent.next().await;
        if frame["type"] == "event" && frame["kind"] == "presence" {
            join = Some(frame);
        } else if frame["type"] == "snapshot"
            && conversation_in(&frame, conversation).is_some_and(|c| c["state"] == "connected")
        {
            break frame;
        }
    };
    let held = conversation_in(&snapshot, conversation).unwrap();
    let visitor = &held["visitor"];
    assert_eq!(visitor["authenticated"], true);
    assert_eq!(visitor["issuer"], "https://idp.example.com/");
    assert_eq!(visitor["subject"], "user-42");
    assert_eq!(visitor["email"], "ada@example.com");
    assert_eq!(visitor["name"], "Ada Lovelace");
    assert_eq!(visitor["displayName"], "Ada Lovelace");
    assert!(held["connectedSince"].is_string());
    let in_snapshot = held["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "presence")
        .cloned();
    let join = match (join, in_snapshot) {
        (Some(join), None) | (None, Some(join)) => join,
        (None, None) => agent.event_of(conversation, "presence").await,
        (Some(_), Some(_)) => panic!("the join was sent twice"),
    };
    assert_eq!(join["presence"], "Join");
    assert_eq!(join["from"]["id"], agent_id.to_string());

    // A message goes to the log with its sequence, and comes back as an event.
    let sent = agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "Hi Ada", "id": "m-1" }))
        .await;
    let sequence = sent["result"]["sequence"].as_u64().unwrap();
    assert_eq!(sent["result"]["duplicate"], false);
    let event = agent.event_of(conversation, "message").await;
    assert_eq!(event["sequence"], sequence);
    assert_eq!(event["text"], "Hi Ada");
    assert_eq!(event["from"]["role"], "agent");
    // A resend with the same id appends nothing.
    let again = agent
        .ok(json!({ "type": "send", "conversationId": conversation, "text": "Hi Ada", "id": "m-1" }))
        .await;
    assert_eq!(again["result"]["sequence"], sequence);
    assert_eq!(again["result"]["duplicate"], true);
    let log = log_of(app, conversation).await;
    let replies = log
        .iter()
        .filter(|e| matches!(e, EventBody::Message { text: Some(t), .. } if t == "Hi Ada"))
        .count();
    assert_eq!(replies, 1);

    // The visitor's next message arrives live.
    let session = app
        .state()
        .routing
        .conversation(conversation)
        .await
        .unwrap()
        .unwrap()
        .session_id;
    let content: ConfigurationContent = serde_json::from_value(json!({ "name": "Chat" })).unwrap();
    let (_, posted, _) = app
        .state()
        .routing
        .visitor_post(
            session,
            &scene.deployment,
            &content,
            text_event("Thanks!"),
            Utc::now(),
        )
        .await
        .unwrap();
    let event = agent.event_of(conversation, "message").await;
    assert_eq!(event["text"], "Thanks!");
    assert_eq!(event["sequence"], posted.seq);
    assert_eq!(event["from"]["role"], "visitor");

    // Typing, both ways.
    let mut watch = app
        .state()
        .store
        .engine()
        .subscribe(Channel::Conversation(conversation))
        .await
        .unwrap();
    app.state()
        .routing
        .notify(
            &Channel::Conversation(conversation),
            &Notice::Typing {
                conversation_id: conversation,
                from: Participant {
                    role: ParticipantRole::Visitor,
                    id: None,
                    name: "Ada Lovelace".to_owned(),
                },
            },
        )
        .await;
    let typing = agent.expect("typing").await;
    assert_eq!(typing["conversationId"], conversation.to_string());
    assert_eq!(typing["from"]["role"], "visitor");
    agent
        .ok(json!({ "type": "typing", "conversationId": conversation }))
        .await;
    let agent_typing = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(BusMessage::Payload(payload)) = watch.recv().await
                && let Ok(Notice::Typing { from, .. }) = serde_json::from_slice::<Notice>(&payload)
                && from.role == ParticipantRole::Agent
            {
                return from;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(agent_typing.id, Some(agent_id));

    // Ending with a wrap-up: the visitor sees the agent disconnect.
    let ended = agent
        .ok(json!({ "type": "end", "conversationId": conversation, "wrapUp": "resolved" }))
        .await;
    assert_eq!(ended["result"]["conversation"]["state"], "ended");
    assert_eq!(ended["result"]["conversation"]["wrapUp"], "resolved");
    let snapshot = agent
        .until("empty snapshot", |f| {
            f["type"] == "snapshot" && f["conversations"] == json!([])
        })
        .await;
    assert_eq!(snapshot["agent"]["status"], "available");
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::Presence {
        presence: PresenceKind::Disconnect
    }));
    assert!(log.contains(&EventBody::Ended {
        wrap_up: Some("resolved".to_owned())
    }));
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Ended { wrap_up: Some(w), .. } if w == "resolved"
    ));
    // Nothing more can be said by the agent once it is over.
    agent
        .refused(
            json!({ "type": "send", "conversationId": conversation, "text": "hello?" }),
            "not_allowed",
        )
        .await;
    // But the agent may still read what it held.
    let history = agent
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    let events = history["result"]["events"].as_array().unwrap();
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["text"], "Hello, I need help");
    assert_eq!(history["result"]["more"], false);
}
on_both_engines!(an_accepted_conversation_flows_both_ways);

async fn a_declined_offer_goes_to_another_agent(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, first) = scene.agent("First").await;
    let (_, second) = scene.agent("Second").await;
    let (mut a, _) = AgentSocket::connect(app, &first).await;
    let (mut b, _) = AgentSocket::connect(app, &second).await;
    a.available().await;
    // Later available: less idle, so the first agent is offered first.
    b.available().await;
    let conversation = scene.visitor("anyone?", None).await;
    let offer = a.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["visitor"]["authenticated"], false);

    a.ok(json!({ "type": "decline", "conversationId": conversation }))
        .await;
    let revoked = a.expect("offerRevoked").await;
    assert_eq!(revoked["conversationId"], conversation.to_string());
    b.offer_of(conversation).await;
    // Declining twice is refused: it is no longer offered to the decliner.
    a.refused(
        json!({ "type": "decline", "conversationId": conversation }),
        "not_allowed",
    )
    .await;
    // The second agent declines too: nobody is left, and it is not offered
    // back to the first.
    b.ok(json!({ "type": "decline", "conversationId": conversation }))
        .await;
    b.expect("offerRevoked").await;
    a.none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Waiting { .. }
    ));
}
on_both_engines!(a_declined_offer_goes_to_another_agent);

async fn the_longest_idle_agent_is_offered_first(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, first) = scene.agent("First").await;
    let (_, second) = scene.agent("Second").await;
    let (mut a, _) = AgentSocket::connect(app, &first).await;
    let (mut b, _) = AgentSocket::connect(app, &second).await;
    // The second agent has been idle longer.
    b.available().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.available().await;
    let one = scene.visitor("one", None).await;
    b.offer_of(one).await;
    // The next goes to the one with nothing to do, though it went available later.
    let two = scene.visitor("two", None).await;
    a.offer_of(two).await;
    b.none_within(Duration::from_millis(300), |f| f["type"] == "offer")
        .await;
}
on_both_engines!(the_longest_idle_agent_is_offered_first);

async fn capacity_is_respected(kind: EngineKind) {
    let scene = Scene::with(
        Setup::new(kind),
        json!({ "name": "One at a time", "agentCapacity": 1 }),
    )
    .await;
    let app = &scene.app;
    let (_, token) = scene.agent("Solo").await;
    let (mut agent, _) = AgentSocket::connect(app, &token).await;
    agent.available().await;
    let one = scene.visitor("one", None).await;
    agent.offer_of(one).await;
    let two = scene.visitor("two", None).await;
    agent
        .ok(json!({ "type": "accept", "conversationId": one }))
        .await;
    agent
        .none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, two).await,
        ConversationState::Waiting { .. }
    ));
    // Ending the first frees the capacity for the second.
    agent
        .ok(json!({ "type": "end", "conversationId": one }))
        .await;
    agent.offer_of(two).await;
}
on_both_engines!(capacity_is_respected);

async fn an_unanswered_offer_times_out(kind: EngineKind) {
    let scene = Scene::with(
        Setup::new(kind),
        json!({ "name": "Fast", "offerTimeoutSeconds": 5 }),
    )
    .await;
    let app = &scene.app;
    let (_, sleepy) = scene.agent("Sleepy").await;
    let (_, awake) = scene.agent("Awake").await;
    let (mut a, _) = AgentSocket::connect(app, &sleepy).await;
    a.available().await;
    let conversation = scene.visitor("hello?", None).await;
    a.offer_of(conversation).await;
    let (mut b, _) = AgentSocket::connect(app, &awake).await;
    b.available().await;

    // Nobody answers: after the timeout the offer is taken back, the agent
    // who let it lapse is set away, and the conversation goes to the other.
    let revoked = a.expect("offerRevoked").await;
    assert_eq!(revoked["conversationId"], conversation.to_string());
    let presence = a.expect("presence").await;
    assert_eq!(presence["status"], "away");
    b.offer_of(conversation).await;
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
}
on_both_engines!(an_unanswered_offer_times_out);

async fn a_lost_agent_loses_its_conversations(kind: EngineKind) {
    let setup = Setup::new(kind).set("SWITCHBOARD_AGENT_GRACE_SECONDS", "1");
    let scene = Scene::with(setup, json!({ "name": "Support" })).await;
    let app = &scene.app;
    let (_, flaky) = scene.agent("Flaky").await;
    let (_, steady) = scene.agent("Steady").await;
    let (mut a, _) = AgentSocket::connect(app, &flaky).await;
    a.available().await;
    let conversation = scene.visitor("help", None).await;
    a.offer_of(conversation).await;
    a.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    a.ok(json!({ "type": "send", "conversationId": conversation, "text": "on it" }))
        .await;

    // A live socket keeps its agent however short the grace period.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Connected { .. }
    ));

    let (mut b, _) = AgentSocket::connect(app, &steady).await;
    b.available().await;
    a.close().await;
    // After the grace period the conversation is re-queued to the other
    // agent, history and all.
    b.offer_of(conversation).await;
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let history = b
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    let texts: Vec<&Value> = history["result"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("text"))
        .collect();
    assert_eq!(texts, [&json!("help"), &json!("on it")]);
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::Presence {
        presence: PresenceKind::Leave
    }));
}
on_both_engines!(a_lost_agent_loses_its_conversations);

async fn conversations_transfer_to_queues_and_agents(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let billing = create_queue(app, &scene.admin, json!({ "name": "Billing" })).await;
    let (_, first) = scene.agent("First").await;
    let (second_id, second) = scene.agent("Second").await;
    let (third_agent, third) = scene.agent("Third").await;
    let (mut a, _) = AgentSocket::connect(app, &first).await;
    a.ok(json!({ "type": "setPresence", "status": "available", "queueIds": [scene.queue] }))
        .await;
    let conversation = scene.visitor("my invoice is wrong", None).await;
    a.offer_of(conversation).await;
    a.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;

    // To a queue: an agent of that queue is offered it.
    let (mut b, _) = AgentSocket::connect(app, &second).await;
    let presence = b
        .ok(json!({ "type": "setPresence", "status": "available", "queueIds": [billing] }))
        .await;
    assert_eq!(presence["result"]["queues"], json!([billing.to_string()]));
    a.refused(
        json!({ "type": "transfer", "conversationId": conversation }),
        "bad_request",
    )
    .await;
    a.refused(
        json!({ "type": "transfer", "conversationId": conversation, "queueId": Uuid::new_v4() }),
        "not_found",
    )
    .await;
    let moved = a
        .ok(json!({ "type": "transfer", "conversationId": conversation, "queueId": billing }))
        .await;
    assert_eq!(
        moved["result"]["conversation"]["queueId"],
        billing.to_string()
    );
    a.until("snapshot without it", |f| {
        f["type"] == "snapshot" && conversation_in(f, conversation).is_none()
    })
    .await;
    let offer = b.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["queueId"], billing.to_string());
    b.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    let log = log_of(app, conversation).await;
    assert!(log.contains(&EventBody::Transfer {
        queue_id: Some(billing),
        agent_id: None
    }));

    // To an agent: offered to that agent directly, even one who is away.
    let (mut c, _) = AgentSocket::connect(app, &third).await;
    b.refused(
        json!({ "type": "transfer", "conversationId": conversation, "agentId": second_id }),
        "bad_request",
    )
    .await;
    b.ok(json!({ "type": "transfer", "conversationId": conversation, "agentId": third_agent }))
        .await;
    let offer = c.offer_of(conversation).await;
    assert_eq!(offer["conversation"]["state"], "offered");
    c.ok(json!({ "type": "accept", "conversationId": conversation }))
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Connected { agent_id, .. } if agent_id == third_agent
    ));
}
on_both_engines!(conversations_transfer_to_queues_and_agents);

/// `directory` names where a conversation can go: every queue of the
/// organization, and its other connected agents; nothing of another
/// organization, nobody offline, not the asker.
async fn the_directory_names_transfer_targets(kind: EngineKind) {
    let setup = Setup::new(kind).set("SWITCHBOARD_AGENT_GRACE_SECONDS", "1");
    let scene = Scene::with(setup, json!({ "name": "Support" })).await;
    let app = &scene.app;
    let billing = create_queue(app, &scene.admin, json!({ "name": "Billing" })).await;
    let (_, first) = scene.agent("First").await;
    let (second_id, second) = scene.agent("Second").await;
    // An agent that never connects is never listed.
    scene.agent("Never connected").await;
    let other_admin = app.other_organization("Other Corp").await;
    create_queue(app, &other_admin, json!({ "name": "Elsewhere" })).await;
    let (_, stranger) = client_of(app, &other_admin, "Stranger", &["agent"]).await;

    let (mut a, _) = AgentSocket::connect(app, &first).await;
    let (mut b, _) = AgentSocket::connect(app, &second).await;
    let (mut s, _) = AgentSocket::connect(app, &stranger).await;
    s.available().await;
    b.available().await;

    let directory = a.ok(json!({ "type": "directory" })).await;
    assert_eq!(
        directory["result"]["queues"],
        json!([
            { "id": billing, "name": "Billing" },
            { "id": scene.queue, "name": "Support" },
        ])
    );
    assert_eq!(
        directory["result"]["agents"],
        json!([{ "id": second_id, "name": "Second", "status": "available" }])
    );

    // Away is still a target (an agent may hand a conversation to a
    // colleague on a break) and says so.
    b.ok(json!({ "type": "setPresence", "status": "away" }))
        .await;
    let directory = a.ok(json!({ "type": "directory" })).await;
    assert_eq!(
        directory["result"]["agents"],
        json!([{ "id": second_id, "name": "Second", "status": "away" }])
    );

    // Once Second's only socket is gone and its grace period (1 s here)
    // has passed, the sweeper takes it offline: no longer a target.
    b.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let directory = a.ok(json!({ "type": "directory" })).await;
        if directory["result"]["agents"] == json!([]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Second is still listed: {directory}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
on_both_engines!(the_directory_names_transfer_targets);

async fn agents_read_only_what_they_hold(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, holder) = scene.agent("Holder").await;
    let (_, bystander) = scene.agent("Bystander").await;
    let (_, supervisor) = scene.client("Supervisor", &["agent", "supervisor"]).await;
    let conversation = scene
        .visitor("private matter", Some(verified_visitor()))
        .await;

    let (mut by, _) = AgentSocket::connect(app, &bystander).await;
    // Never offered it: no history, no accept, no messages; the answers are
    // those for a conversation that does not exist.
    by.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;
    by.refused(
        json!({ "type": "history", "conversationId": Uuid::new_v4() }),
        "not_found",
    )
    .await;
    by.refused(
        json!({ "type": "accept", "conversationId": conversation }),
        "not_allowed",
    )
    .await;
    by.refused(
        json!({ "type": "send", "conversationId": conversation, "text": "peek" }),
        "not_allowed",
    )
    .await;
    by.refused(
        json!({ "type": "typing", "conversationId": conversation }),
        "not_allowed",
    )
    .await;

    let (mut holder, _) = AgentSocket::connect(app, &holder).await;
    holder.available().await;
    holder.offer_of(conversation).await;
    // Offered: readable by its holder.
    holder
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    by.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;

    // A supervisor reads the conversations of its queues.
    let (mut sup, snapshot) = AgentSocket::connect(app, &supervisor).await;
    assert_eq!(snapshot["agent"]["supervisor"], true);
    let history = sup
        .ok(json!({ "type": "history", "conversationId": conversation }))
        .await;
    assert_eq!(history["result"]["events"][0]["text"], "private matter");
    // The bystander never saw any of it.
    by.none_within(Duration::from_millis(300), |f| {
        f.to_string().contains(&conversation.to_string())
    })
    .await;
}
on_both_engines!(agents_read_only_what_they_hold);

async fn other_organizations_see_nothing(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let other_admin = app.other_organization("Other Corp").await;
    let other_queue = create_queue(app, &other_admin, json!({ "name": "Their support" })).await;
    let (_, outsider) = client_of(app, &other_admin, "Outsider", &["admin"]).await;
    let conversation = scene.visitor("ours", Some(verified_visitor())).await;

    let (mut out, _) = AgentSocket::connect(app, &outsider).await;
    let presence = out.available().await;
    assert_eq!(
        presence["result"]["queues"],
        json!([other_queue.to_string()])
    );
    // Another organization's queue cannot be named.
    out.refused(
        json!({ "type": "setPresence", "status": "available", "queueIds": [scene.queue] }),
        "not_found",
    )
    .await;
    for frame in [
        json!({ "type": "history", "conversationId": conversation }),
        json!({ "type": "accept", "conversationId": conversation }),
        json!({ "type": "decline", "conversationId": conversation }),
        json!({ "type": "end", "conversationId": conversation }),
        json!({ "type": "transfer", "conversationId": conversation, "queueId": other_queue }),
    ] {
        out.refused(frame, "not_found").await;
    }
    out.refused(
        json!({ "type": "send", "conversationId": conversation, "text": "hi" }),
        "not_found",
    )
    .await;
    out.none_within(Duration::from_millis(500), |f| f["type"] == "offer")
        .await;
    assert!(matches!(
        conversation_state(app, conversation).await,
        ConversationState::Waiting { .. }
    ));
    // The outsider's admin role makes it a supervisor, of its own queues only.
    out.refused(
        json!({ "type": "history", "conversationId": conversation }),
        "not_found",
    )
    .await;
}
on_both_engines!(other_organizations_see_nothing);

async fn garbage_frames_keep_the_socket_usable(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Robust").await;
    let (mut agent, _) = AgentSocket::connect(app, &token).await;
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
    agent
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        agent.expect("response").await["error"]["code"],
        "bad_request"
    );
    agent.ok(json!({ "type": "ping" })).await;

    // Another socket is not disturbed by any of it.
    let (_, other) = scene.agent("Bystander").await;
    let (mut bystander, _) = AgentSocket::connect(app, &other).await;
    bystander.ok(json!({ "type": "ping" })).await;

    // A frame over the limit closes with 1009.
    agent.send_text(&"x".repeat(100 * 1024)).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match agent.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::Size));
    bystander.ok(json!({ "type": "ping" })).await;
}
on_both_engines!(garbage_frames_keep_the_socket_usable);

async fn a_reconnecting_agent_gets_its_conversations_back(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Returning").await;
    let (mut agent, _) = AgentSocket::connect(app, &token).await;
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
    let (mut again, snapshot) = AgentSocket::connect(app, &token).await;
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
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match again.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::Away));
}
on_both_engines!(a_reconnecting_agent_gets_its_conversations_back);

/// A terminal client (`switchboard agent` or `switchboard chat`) with its
/// stdin and stdout piped to the test.
struct Terminal {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Terminal {
    fn spawn(name: &'static str, args: &[&str]) -> Terminal {
        use tokio::io::{AsyncBufReadExt, BufReader};

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        // Everything the client prints goes to the test's output too, so a
        // failure shows the session.
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                eprintln!("{name}: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The first line printed from now on that contains `needle`.
    async fn wait_for(&mut self, needle: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self.lines.recv().await.expect("the client exited");
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the client never printed {needle:?}"))
    }

    /// Closes stdin (end of input) and waits for the client to leave.
    async fn quit(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The terminal client: `switchboard agent` takes an offer and replies.
async fn the_terminal_agent_answers(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Terminal").await;
    let mut agent = Terminal::spawn(
        "switchboard agent",
        &["agent", "--url", &app.base, "--token", &token],
    );
    agent.wait_for("you are available").await;
    let conversation = scene
        .visitor("is anyone there?", Some(verified_visitor()))
        .await;
    let offer = agent.wait_for("offer").await;
    assert!(offer.contains(&conversation.to_string()), "{offer}");
    assert!(offer.contains("verified, ada@example.com"), "{offer}");
    agent.type_line(&format!("/accept {conversation}")).await;
    // Typed straight after the accept, as a person in a hurry would.
    agent.type_line("Yes, how can I help?").await;
    eventually("the reply reaching the visitor", async || {
        log_of(app, conversation)
            .await
            .iter()
            .any(|e| matches!(e, EventBody::Message { text: Some(t), .. } if t == "Yes, how can I help?"))
    })
    .await;
    agent
        .type_line(&format!("/end {} resolved", &conversation.to_string()[..8]))
        .await;
    eventually("the end", async || {
        matches!(
            conversation_state(app, conversation).await,
            ConversationState::Ended { wrap_up: Some(w), .. } if w == "resolved"
        )
    })
    .await;
    agent.quit().await;
}
on_both_engines!(the_terminal_agent_answers);

/// Two terminals chat: `switchboard chat` over the guest socket,
/// `switchboard agent` over the agent socket.
async fn two_terminals_chat(kind: EngineKind) {
    let scene = Scene::new(kind).await;
    let app = &scene.app;
    let (_, token) = scene.agent("Grace").await;
    let mut agent = Terminal::spawn(
        "switchboard agent",
        &["agent", "--url", &app.base, "--token", &token],
    );
    agent.wait_for("you are available").await;
    let deployment = scene.deployment.meta.id.to_string();
    let mut visitor = Terminal::spawn(
        "switchboard chat",
        &[
            "chat",
            "--url",
            &app.base,
            "--deployment",
            &deployment,
            "--origin",
            "https://shop.example.com",
        ],
    );
    visitor.wait_for("connected").await;
    visitor.type_line("Hello from the terminal").await;

    let offer = agent.wait_for("offer").await;
    let conversation = offer.split_whitespace().nth(1).unwrap().to_owned();
    assert!(offer.contains("guest, not verified"), "{offer}");
    agent.type_line(&format!("/accept {conversation}")).await;
    agent.wait_for("Hello from the terminal").await;
    agent.type_line("Hi! Grace here.").await;
    visitor.wait_for("Hi! Grace here.").await;
    visitor.type_line("Thanks, Grace").await;
    agent.wait_for("Thanks, Grace").await;
    agent
        .type_line(&format!("/end {conversation} resolved"))
        .await;
    visitor.wait_for("ended the conversation").await;
    visitor.quit().await;
    agent.quit().await;
}
on_both_engines!(two_terminals_chat);

/// The README's demonstration: a visitor on node A, an agent on node B,
/// and node A dies with SIGKILL mid-conversation. The visitor's terminal
/// resumes on node B: nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_terminals_on_two_nodes_survive_a_sigkill() {
    use crate::multi_node::{ORIGIN, cluster_env, set_up};
    use crate::support::node::Node;

    let redis = crate::support::redis::shared();
    let env = cluster_env(redis);
    let mut a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (deployment, token) = set_up(&a).await;

    let mut agent = Terminal::spawn(
        "switchboard agent",
        &["agent", "--url", &b.base, "--token", &token],
    );
    agent.wait_for("you are available").await;
    let mut visitor = Terminal::spawn(
        "switchboard chat",
        &[
            "chat",
            "--url",
            &a.base,
            "--url",
            &b.base,
            "--deployment",
            &deployment,
            "--origin",
            ORIGIN,
        ],
    );
    visitor.wait_for("connected").await;
    visitor.type_line("Hello from node A").await;
    let offer = agent.wait_for("offer").await;
    let conversation = offer.split_whitespace().nth(1).unwrap().to_owned();
    agent.type_line(&format!("/accept {conversation}")).await;
    agent.wait_for("Hello from node A").await;
    agent.type_line("one").await;
    visitor.wait_for("Grace: one").await;

    a.kill9();
    visitor.wait_for("connection lost").await;
    // Said while the visitor is away from any node: replayed on resume.
    agent.type_line("two").await;
    visitor.wait_for("connected").await;
    visitor.wait_for("Grace: two").await;
    visitor.type_line("Back, via node B").await;
    agent.wait_for("Back, via node B").await;
    agent.type_line("three").await;
    visitor.wait_for("Grace: three").await;
    for said in ["Grace: one", "Grace: two", "Grace: three"] {
        let times = visitor.seen.iter().filter(|l| l.contains(said)).count();
        assert_eq!(
            times, 1,
            "{said:?} printed {times} times: {:?}",
            visitor.seen
        );
    }
    visitor.quit().await;
    agent.quit().await;
    drop(b);
}
