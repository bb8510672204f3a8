//! An agent on the agent WebSocket, `/api/v2/agent/ws`: requests with
//! their responses, and waits for pushed frames (snapshots, offers,
//! events).

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use uuid::Uuid;

use super::app::Api;
use super::ws::{Socket, WAIT};

/// How an agent socket proves who it is on the upgrade.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AgentAuth<'a> {
    /// No credential at all.
    Nothing,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// The browser way: `Sec-WebSocket-Protocol: bearer, <token>`.
    Subprotocol(&'a str),
    /// A staff session cookie (`sb_session`), sent from `origin`.
    Cookie {
        session: &'a str,
        origin: Option<&'a str>,
    },
}

/// An agent socket. Every frame received is kept: [`Agent::next`] and the
/// waits built on it read them in order, [`Agent::find`] searches all of
/// them, read or not.
#[derive(Debug)]
pub(crate) struct Agent {
    socket: Socket,
    frames: Vec<Value>,
    /// Frames before this index have been read by [`Agent::next`].
    read: usize,
}

impl Api {
    /// Opens the agent socket with `auth`; answers the refusal when the
    /// upgrade is refused.
    pub(crate) async fn agent_upgrade(
        &self,
        auth: AgentAuth<'_>,
    ) -> Result<(Agent, Response), tungstenite::Error> {
        let headers = match auth {
            AgentAuth::Nothing => Vec::new(),
            AgentAuth::Bearer(token) => vec![("authorization", format!("Bearer {token}"))],
            AgentAuth::Subprotocol(token) => {
                vec![("sec-websocket-protocol", format!("bearer, {token}"))]
            }
            AgentAuth::Cookie { session, origin } => {
                let mut headers = vec![("cookie", format!("sb_session={session}"))];
                headers.extend(origin.map(|origin| ("origin", origin.to_owned())));
                headers
            }
        };
        let (socket, response) = Socket::open(&self.ws_url("/api/v2/agent/ws"), &headers).await?;
        let agent = Agent {
            socket,
            frames: Vec::new(),
            read: 0,
        };
        Ok((agent, response))
    }

    /// Connects with a bearer token and reads the first snapshot.
    pub(crate) async fn agent(&self, token: &str) -> (Agent, Value) {
        let (mut agent, _) = self.agent_upgrade(AgentAuth::Bearer(token)).await.unwrap();
        let snapshot = agent.expect("snapshot").await;
        (agent, snapshot)
    }
}

impl Agent {
    pub(crate) async fn send(&mut self, frame: Value) {
        self.socket.send(&frame).await;
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.socket.send_text(text).await;
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send_binary(bytes).await;
    }

    /// The next frame not read yet, skipping pings.
    pub(crate) async fn next(&mut self) -> Value {
        if self.read == self.frames.len() {
            let frame = self.socket.next().await;
            self.frames.push(frame);
        }
        self.read += 1;
        self.frames[self.read - 1].clone()
    }

    /// Reads frames until one matches, and answers it.
    pub(crate) async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
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

    /// The first frame ever received that matches, read or not: a wait
    /// that cannot miss a frame another wait has read past.
    pub(crate) async fn find(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(frame) = self.frames.iter().find(|f| matches(f)) {
            return frame.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("never got {what}: {:#?}", self.frames));
            self.frames.push(frame.clone());
            if matches(&frame) {
                return frame;
            }
        }
    }

    /// Reads frames until one of type `kind`.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        self.until(kind, |f| f["type"] == kind).await
    }

    /// Sends a request and waits for its response.
    pub(crate) async fn request(&mut self, mut frame: Value) -> Value {
        let id = Uuid::new_v4().to_string();
        frame["requestId"] = json!(id);
        self.send(frame).await;
        self.until("response", |f| {
            f["type"] == "response" && f["requestId"] == id.as_str()
        })
        .await
    }

    /// A request that must succeed.
    pub(crate) async fn ok(&mut self, frame: Value) -> Value {
        let response = self.request(frame).await;
        assert_eq!(response["ok"], true, "{response}");
        response
    }

    /// A request that must be refused with `code`.
    pub(crate) async fn refused(&mut self, frame: Value, code: &str) -> Value {
        let response = self.request(frame).await;
        assert_eq!(response["ok"], false, "{response}");
        assert_eq!(response["error"]["code"], code, "{response}");
        response
    }

    pub(crate) async fn available(&mut self) -> Value {
        self.ok(json!({ "type": "setPresence", "status": "available" }))
            .await
    }

    /// Reads frames until the offer of `conversation`.
    pub(crate) async fn offer_of(&mut self, conversation: Uuid) -> Value {
        let id = conversation.to_string();
        self.until("offer", |f| {
            f["type"] == "offer" && f["conversation"]["id"] == id.as_str()
        })
        .await
    }

    /// Reads frames until an event of `kind` in `conversation`.
    pub(crate) async fn event_of(&mut self, conversation: Uuid, kind: &str) -> Value {
        let id = conversation.to_string();
        self.until(kind, |f| {
            f["type"] == "event" && f["conversationId"] == id.as_str() && f["kind"] == kind
        })
        .await
    }

    /// Asserts that nothing matching arrives within `quiet`.
    pub(crate) async fn none_within(&mut self, quiet: Duration, matches: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.next()).await {
            assert!(!matches(&frame), "unexpected frame {frame}");
        }
    }

    /// Accepts the first offer ever received; answers its conversation.
    pub(crate) async fn accept_first_offer(&mut self) -> String {
        let offer = self.find("an offer", |f| f["type"] == "offer").await;
        let conversation = offer["conversation"]["id"].as_str().unwrap().to_owned();
        self.ok(json!({ "type": "accept", "conversationId": conversation }))
            .await;
        conversation
    }

    /// Sends `text` into `conversation`, with the text as its message id.
    pub(crate) async fn say(&mut self, conversation: &str, text: &str) {
        self.ok(
            json!({ "type": "send", "conversationId": conversation, "text": text, "id": text }),
        )
        .await;
    }

    /// Finds a message, live or inside a snapshot or a `conversation`
    /// frame (events logged before the agent held the conversation come
    /// that way).
    pub(crate) async fn find_text(&mut self, text: &str) -> Value {
        self.find(text, |f| {
            (f["type"] == "event" && f["text"] == text)
                || held_in(f).iter().any(|c| {
                    c["events"]
                        .as_array()
                        .is_some_and(|es| es.iter().any(|e| e["text"] == text))
                })
        })
        .await
    }

    /// Reads on until the server closes the socket; answers the close code.
    pub(crate) async fn closed(&mut self) -> u16 {
        self.socket.closed_after_frames().await
    }

    pub(crate) async fn close(mut self) {
        self.socket.close().await;
    }
}

/// The conversation `id` in a snapshot or a `conversation` frame, if it
/// holds it.
pub(crate) fn conversation_in(frame: &Value, id: Uuid) -> Option<&Value> {
    let id = id.to_string();
    held_in(frame).into_iter().find(|c| c["id"] == id.as_str())
}

/// The conversations a frame shows with their events: all of a snapshot's,
/// the one of a `conversation` frame, none of any other.
pub(crate) fn held_in(frame: &Value) -> Vec<&Value> {
    match frame["type"].as_str() {
        Some("snapshot") => frame["conversations"]
            .as_array()
            .map(|cs| cs.iter().collect())
            .unwrap_or_default(),
        Some("conversation") => vec![&frame["conversation"]],
        _ => Vec::new(),
    }
}
