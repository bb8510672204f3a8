//! Many nodes on one Redis, as separate processes: a visitor on one node
//! chats with an agent on another; a node killed with SIGKILL loses nothing;
//! Redis restarting under running nodes; a node shutting down sends its
//! sockets away with 1001.

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::MasterKey;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::app::Reply;
use crate::support::node::Node;
use crate::support::redis::RedisServer;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) const ORIGIN: &str = "https://shop.example.com";
const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn cluster_env(redis: &RedisServer) -> HashMap<String, String> {
    HashMap::from([
        ("REDIS_URL".to_owned(), redis.url()),
        (
            "SWITCHBOARD_REDIS_PREFIX".to_owned(),
            crate::support::unique_prefix(),
        ),
        (
            "SWITCHBOARD_MASTER_KEY".to_owned(),
            MasterKey::generate().to_base64(),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(),
            format!("sbb_test_{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "SWITCHBOARD_AGENT_GRACE_SECONDS".to_owned(),
            "30".to_owned(),
        ),
        // Nodes behind one load balancer share one public URL: the issuer
        // of the tokens any of them accepts.
        (
            "SWITCHBOARD_PUBLIC_URL".to_owned(),
            "http://switchboard.test".to_owned(),
        ),
    ])
}

async fn api(
    node: &Node,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let http = reqwest::Client::new();
    let mut request = http
        .request(method, format!("{}{path}", node.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = Reply::from(request.send().await.unwrap()).await;
    assert!(
        reply.status.is_success(),
        "{path}: {} {}",
        reply.status,
        reply.text
    );
    reply.json
}

/// A guest deployment (no sign-in) and an agent's access token.
pub(crate) async fn set_up(node: &Node) -> (String, String) {
    let boot = node.env()["SWITCHBOARD_BOOTSTRAP_TOKEN"].clone();
    let post = reqwest::Method::POST;
    let configuration = api(
        node,
        post.clone(),
        "/api/v2/webdeployments/configurations",
        &boot,
        Some(json!({ "name": "web", "languages": ["en-us"], "defaultLanguage": "en-us" })),
    )
    .await;
    let configuration = configuration["id"].as_str().unwrap().to_owned();
    api(
        node,
        post.clone(),
        &format!("/api/v2/webdeployments/configurations/{configuration}/versions/draft/publish"),
        &boot,
        Some(json!({})),
    )
    .await;
    let queue = api(
        node,
        post.clone(),
        "/api/v2/routing/queues",
        &boot,
        Some(json!({ "name": "Support" })),
    )
    .await;
    let deployment = api(
        node,
        post.clone(),
        "/api/v2/webdeployments/deployments",
        &boot,
        Some(json!({
            "name": "shop", "configuration": { "id": configuration, "version": "1" },
            "allowedDomains": [ORIGIN], "status": "Active", "queueId": queue["id"],
        })),
    )
    .await;
    let client = api(
        node,
        post,
        "/api/v2/oauth/clients",
        &boot,
        Some(json!({ "name": "Grace", "roles": ["agent"] })),
    )
    .await;
    let token = Reply::from(
        reqwest::Client::new()
            .post(format!("{}/oauth/token", node.base))
            .basic_auth(client["id"].as_str().unwrap(), client["secret"].as_str())
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(StatusCode::OK);
    (
        deployment["id"].as_str().unwrap().to_owned(),
        token["access_token"].as_str().unwrap().to_owned(),
    )
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time")
            .expect("socket ended")
            .expect("socket error");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

struct Visitor {
    ws: Ws,
    token: String,
    /// Every conversation event seen, by sequence.
    seen: Vec<(u64, Value)>,
}

impl Visitor {
    async fn connect(
        node: &Node,
        deployment: &str,
        token: &str,
        last_sequence: Option<u64>,
    ) -> Visitor {
        let mut request = format!(
            "{}/v1?deploymentId={deployment}&application=test",
            node.ws_base()
        )
        .into_client_request()
        .unwrap();
        request
            .headers_mut()
            .insert("origin", ORIGIN.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut visitor = Visitor {
            ws,
            token: token.to_owned(),
            seen: Vec::new(),
        };
        let mut configure =
            json!({ "action": "configureSession", "deploymentId": deployment, "token": token });
        if let Some(last) = last_sequence {
            configure["lastSequence"] = json!(last);
        }
        visitor.send(configure).await;
        let session = visitor.next().await;
        assert_eq!(session["class"], "SessionResponse", "{session}");
        visitor
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// The next frame; conversation events are recorded.
    async fn next(&mut self) -> Value {
        let frame = next_json(&mut self.ws).await;
        if let Some(seq) = frame["body"]["sequence"].as_u64() {
            self.seen.push((seq, frame["body"].clone()));
        }
        frame
    }

    async fn say(&mut self, text: &str, id: &str) -> u64 {
        let frame = json!({
            "action": "onMessage", "token": self.token,
            "message": { "type": "Text", "text": text, "id": id },
        });
        loop {
            self.send(frame.clone()).await;
            let answer = loop {
                let answer = self.next().await;
                if answer["type"] == "response" {
                    break answer;
                }
            };
            // Two messages a second per session: back off as a client does.
            if answer["code"] == 429 {
                let wait = answer["body"]["retryAfter"].as_u64().unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            assert_eq!(answer["class"], "StructuredMessage", "{answer}");
            return answer["body"]["sequence"].as_u64().unwrap();
        }
    }

    async fn until_text(&mut self, text: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "never got {text:?}");
            let frame = self.next().await;
            if frame["body"]["text"] == text {
                return frame;
            }
        }
    }

    fn last_seq(&self) -> u64 {
        self.seen.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }
}

struct Agent {
    ws: Ws,
    /// Every frame received, so that waiting for one never misses a frame
    /// read while waiting for another.
    frames: Vec<Value>,
    checked: usize,
}

impl Agent {
    async fn connect(node: &Node, token: &str) -> Agent {
        let mut request = format!("{}/api/v2/agent/ws", node.ws_base())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut agent = Agent {
            ws,
            frames: Vec::new(),
            checked: 0,
        };
        agent.until("a snapshot", |f| f["type"] == "snapshot").await;
        agent
    }

    /// The first frame not yet matched by an earlier wait that matches.
    async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut index = self.checked;
        loop {
            while index < self.frames.len() {
                if matches(&self.frames[index]) {
                    return self.frames[index].clone();
                }
                index += 1;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never got {what}: {:#?}",
                self.frames
            );
            let frame = next_json(&mut self.ws).await;
            self.frames.push(frame);
        }
    }

    async fn request(&mut self, mut frame: Value) -> Value {
        let id = uuid::Uuid::new_v4().to_string();
        frame["requestId"] = json!(id);
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        let answer = self
            .until("an answer", |f| {
                f["type"] == "response" && f["requestId"] == id
            })
            .await;
        assert_eq!(answer["ok"], true, "{answer}");
        answer
    }

    async fn accept_next_offer(&mut self) -> String {
        let offer = self.until("an offer", |f| f["type"] == "offer").await;
        let conversation = offer["conversation"]["id"].as_str().unwrap().to_owned();
        self.request(json!({ "type": "accept", "conversationId": conversation }))
            .await;
        conversation
    }

    async fn say(&mut self, conversation: &str, text: &str) {
        self.request(
            json!({ "type": "send", "conversationId": conversation, "text": text, "id": text }),
        )
        .await;
    }

    /// Waits for a message, live or inside a snapshot (events that were
    /// logged before the agent held the conversation come that way).
    async fn until_text(&mut self, text: &str) -> Value {
        self.until(text, |f| {
            (f["type"] == "event" && f["text"] == text)
                || (f["type"] == "snapshot"
                    && f["conversations"].as_array().is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c["events"]
                                .as_array()
                                .is_some_and(|es| es.iter().any(|e| e["text"] == text))
                        })
                    }))
        })
        .await
    }
}

/// Sequences a visitor saw: each once, in order, without a gap.
fn assert_gapless(visitor: &Visitor) {
    let seqs: Vec<u64> = visitor.seen.iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (1..=visitor.last_seq()).collect();
    assert_eq!(seqs, expected, "sequences seen by the visitor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_and_agent_on_two_nodes_survive_a_sigkill() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let mut a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (deployment, agent_token) = set_up(&a).await;
    let token = uuid::Uuid::new_v4().to_string();

    // The agent is on node B, the visitor on node A.
    let mut agent = Agent::connect(&b, &agent_token).await;
    agent
        .request(json!({ "type": "setPresence", "status": "available" }))
        .await;
    let mut visitor = Visitor::connect(&a, &deployment, &token, None).await;
    visitor.say("hello from node A", "v1").await;
    let conversation = agent.accept_next_offer().await;
    agent.until_text("hello from node A").await;
    agent.say(&conversation, "hi from node B").await;
    let reply = visitor.until_text("hi from node B").await;
    assert_eq!(reply["body"]["direction"], "Outbound");
    visitor.say("second from A", "v2").await;
    agent.until_text("second from A").await;

    // Node A dies at once. The agent keeps talking meanwhile.
    a.kill9();
    agent.say(&conversation, "while you were away 1").await;
    agent.say(&conversation, "while you were away 2").await;

    // The visitor reconnects to node B and resumes from its last sequence.
    let last = visitor.last_seq();
    let seen_before = std::mem::take(&mut visitor.seen);
    let mut resumed = Visitor::connect(&b, &deployment, &token, Some(last)).await;
    resumed.until_text("while you were away 2").await;
    let texts: Vec<&str> = resumed
        .seen
        .iter()
        .filter_map(|(_, e)| e["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["while you were away 1", "while you were away 2"],
        "missed messages, once each, in order"
    );
    // A resend of a message the dead node had already logged is not logged twice.
    let again = resumed.say("second from A", "v2").await;
    assert!(again <= last, "a resend answers its first sequence");
    resumed.say("third, via node B", "v3").await;
    agent.until_text("third, via node B").await;

    // Across both sockets: every sequence once, no gap.
    resumed.seen = [seen_before, std::mem::take(&mut resumed.seen)].concat();
    resumed.seen.sort_by_key(|(s, _)| *s);
    resumed.seen.dedup_by_key(|(s, _)| *s);
    assert_gapless(&resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_interrupts_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_persistent(dir.path());
    let env = cluster_env(&redis);
    let a = Node::start(&env).ready().await;
    let b = Node::start(&env).ready().await;
    let (deployment, agent_token) = set_up(&a).await;
    let token = uuid::Uuid::new_v4().to_string();
    let mut agent = Agent::connect(&b, &agent_token).await;
    agent
        .request(json!({ "type": "setPresence", "status": "available" }))
        .await;
    let mut visitor = Visitor::connect(&a, &deployment, &token, None).await;
    visitor.say("before the restart", "r1").await;
    let conversation = agent.accept_next_offer().await;
    agent.until_text("before the restart").await;

    redis.stop();
    let http = reqwest::Client::new();
    for node in [&a, &b] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = http
                .get(format!("{}/readyz", node.base))
                .send()
                .await
                .unwrap();
            if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still ready without Redis"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    redis.restart();
    for node in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{}/readyz", node.base))
                .send()
                .await
                .unwrap();
            if ready.status() == StatusCode::OK {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The conversation goes on, both ways, across the two nodes: the bus
    // subscriptions came back by themselves.
    agent.say(&conversation, "after the restart").await;
    visitor.until_text("after the restart").await;
    visitor.say("still here", "r2").await;
    agent.until_text("still here").await;
    assert_gapless(&visitor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_sends_sockets_away_with_1001() {
    let redis = RedisServer::start();
    let env = cluster_env(&redis);
    let a = Node::start(&env).ready().await;
    let (deployment, _) = set_up(&a).await;
    let mut visitor =
        Visitor::connect(&a, &deployment, &uuid::Uuid::new_v4().to_string(), None).await;
    let stopping = tokio::task::spawn_blocking(move || a.terminate());
    let code = loop {
        match tokio::time::timeout(WAIT, visitor.ws.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(tungstenite::Error::ConnectionClosed)) => {
                panic!("closed without a close frame")
            }
            Some(Err(e)) => panic!("{e}"),
        }
    };
    assert_eq!(code, CloseCode::Away);
    let output = stopping.await.unwrap();
    assert!(
        output.iter().any(|l| l.contains("shutting down")),
        "{output:?}"
    );
}
