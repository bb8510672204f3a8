//! A guest (visitor) on the guest WebSocket, `/v1`: the frames a widget
//! sends, and checks of the frames it gets back.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

use super::app::Api;
use super::idp::SHOP_ORIGIN;
use super::ws::{Socket, WAIT};

/// A guest socket bound to one deployment and one session token.
#[derive(Debug)]
pub(crate) struct Guest {
    socket: Socket,
    /// The session token every frame carries.
    pub token: String,
    pub deployment: String,
    /// Every conversation event this socket was sent, with its sequence,
    /// in the order they came.
    pub seen: Vec<(u64, Value)>,
}

/// A fresh session token, as a widget makes one.
pub(crate) fn new_token() -> String {
    Uuid::new_v4().to_string()
}

impl Api {
    /// A guest socket of `deployment` for session `token`, from the shop's
    /// origin.
    pub(crate) async fn guest(&self, deployment: &str, token: &str) -> Guest {
        self.guest_from(deployment, token, Some(SHOP_ORIGIN))
            .await
            .unwrap()
    }

    /// A guest socket of `deployment` for session `token`, configured
    /// (`configureSession` answered with a session).
    pub(crate) async fn configured_guest(&self, deployment: &str, token: &str) -> Guest {
        let mut guest = self.guest(deployment, token).await;
        assert_session(&guest.configure().await);
        guest
    }

    /// A guest socket from the shop's origin whose upgrade carries
    /// `X-Forwarded-For: <forwarded_for>`, as a proxy in front would add.
    pub(crate) async fn guest_forwarded(
        &self,
        deployment: &str,
        token: &str,
        forwarded_for: &str,
    ) -> Guest {
        let url = self.ws_url(&format!("/v1?deploymentId={deployment}&application=test"));
        let headers = [
            ("Origin", SHOP_ORIGIN.to_owned()),
            ("X-Forwarded-For", forwarded_for.to_owned()),
        ];
        let (socket, _) = Socket::open(&url, &headers).await.unwrap();
        Guest {
            socket,
            token: token.to_owned(),
            deployment: deployment.to_owned(),
            seen: Vec::new(),
        }
    }

    /// Opens a guest socket from `origin` (`None`: a native app, which
    /// sends no Origin); answers the refusal when the upgrade is refused.
    pub(crate) async fn guest_from(
        &self,
        deployment: &str,
        token: &str,
        origin: Option<&str>,
    ) -> Result<Guest, tungstenite::Error> {
        let url = self.ws_url(&format!("/v1?deploymentId={deployment}&application=test"));
        let headers: Vec<(&'static str, String)> = origin
            .map(|origin| ("Origin", origin.to_owned()))
            .into_iter()
            .collect();
        let (socket, _) = Socket::open(&url, &headers).await?;
        Ok(Guest {
            socket,
            token: token.to_owned(),
            deployment: deployment.to_owned(),
            seen: Vec::new(),
        })
    }
}

impl Guest {
    pub(crate) async fn send(&mut self, frame: Value) {
        self.socket.send(&frame).await;
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.socket.send_text(text).await;
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send_binary(bytes).await;
    }

    /// The next JSON frame; fails on a close or after [`WAIT`]. Events with
    /// a sequence are recorded in [`Guest::seen`].
    pub(crate) async fn next(&mut self) -> Value {
        let frame = self.socket.next().await;
        if let Some(seq) = frame["body"]["sequence"].as_u64() {
            self.seen.push((seq, frame["body"].clone()));
        }
        frame
    }

    /// Expects the server to close the socket next, and answers the close
    /// code.
    pub(crate) async fn closed(&mut self) -> u16 {
        self.socket.closed().await
    }

    /// Reads on until the server closes the socket, and answers the close
    /// code.
    pub(crate) async fn closed_after_frames(&mut self) -> u16 {
        self.socket.closed_after_frames().await
    }

    /// Sends a frame and answers the next one.
    pub(crate) async fn ask(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.next().await
    }

    /// Sends a frame and answers its answer, skipping the events pushed
    /// meanwhile: the frame that carries its `tracingId` (one is added when
    /// it has none). The echo of one's own message is a `message` frame, as
    /// Genesys sends it, so the type does not tell an answer.
    pub(crate) async fn answer(&mut self, mut frame: Value) -> Value {
        let tracing = match frame["tracingId"].as_str() {
            Some(tracing) => tracing.to_owned(),
            None => {
                let tracing = Uuid::new_v4().to_string();
                frame["tracingId"] = json!(tracing);
                tracing
            }
        };
        self.send(frame).await;
        loop {
            let frame = self.next().await;
            if frame["tracingId"] == tracing.as_str() {
                return frame;
            }
        }
    }

    /// `configureSession` for this socket's token and deployment.
    pub(crate) async fn configure(&mut self) -> Value {
        self.configure_with(json!({})).await
    }

    /// `configureSession` with `extra` fields (`lastSequence`, `startNew`,
    /// a `tracingId`).
    pub(crate) async fn configure_with(&mut self, extra: Value) -> Value {
        let mut frame = json!({ "action": "configureSession", "token": self.token, "deploymentId": self.deployment });
        if let (Value::Object(frame), Value::Object(extra)) = (&mut frame, extra) {
            frame.extend(extra);
        }
        self.ask(frame).await
    }

    /// `configureAuthenticatedSession` with a session JWT.
    pub(crate) async fn authenticate(&mut self, jwt: &str) -> Value {
        let frame = json!({
            "action": "configureAuthenticatedSession", "token": self.token,
            "deploymentId": self.deployment, "data": { "code": jwt },
        });
        self.ask(frame).await
    }

    /// The frame of a text message from the visitor.
    pub(crate) fn text_frame(&self, text: &str) -> Value {
        json!({ "action": "onMessage", "token": self.token, "message": { "type": "Text", "text": text } })
    }

    /// Sends a text message and answers the next frame.
    pub(crate) async fn say(&mut self, text: &str) -> Value {
        let frame = self.text_frame(text);
        self.ask(frame).await
    }

    /// Sends a text message with client message id `id` until it is
    /// logged, backing off on 429 the way a client does (two messages a
    /// second per session), and answers its sequence.
    pub(crate) async fn deliver(&mut self, text: &str, id: &str) -> u64 {
        let mut frame = self.text_frame(text);
        frame["message"]["id"] = json!(id);
        loop {
            let answer = self.answer(frame.clone()).await;
            if answer["code"] == 429 {
                let wait = answer["body"]["retryAfter"].as_u64().unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            assert_eq!(answer["class"], "StructuredMessage", "{answer}");
            return answer["body"]["sequence"].as_u64().unwrap();
        }
    }

    /// Sends an echo and expects its answer next: everything pushed before
    /// it has been read.
    pub(crate) async fn fence(&mut self) {
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

    /// The session JWT for the history endpoint (`getJwt`).
    pub(crate) async fn jwt(&mut self) -> String {
        let frame = json!({ "action": "getJwt", "token": self.token });
        self.ask(frame).await["body"]["jwt"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Skips frames until one carries `text`.
    pub(crate) async fn until_text(&mut self, text: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "never got {text:?}");
            let frame = self.next().await;
            if frame["body"]["text"] == text {
                return frame;
            }
        }
    }

    /// The highest sequence seen.
    pub(crate) fn last_seq(&self) -> u64 {
        self.seen.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }
}

/// An error answer with `code`.
#[track_caller]
pub(crate) fn assert_error(frame: &Value, code: u64) {
    assert_eq!(frame["type"], "response", "{frame}");
    assert_eq!(frame["class"], "string", "{frame}");
    assert_eq!(frame["code"], code, "{frame}");
    assert!(
        frame["body"].as_str().is_some_and(|b| !b.is_empty()),
        "{frame}"
    );
}

/// A 4029 answer: too many messages for the session.
#[track_caller]
pub(crate) fn assert_too_many(frame: &Value) {
    assert_eq!(frame["type"], "response", "{frame}");
    assert_eq!(frame["code"], 429, "{frame}");
    assert_eq!(frame["class"], "TooManyRequestsErrorMessage", "{frame}");
    assert_eq!(frame["body"]["errorCode"], 4029, "{frame}");
    assert!(
        frame["body"]["retryAfter"].as_u64().unwrap() >= 1,
        "{frame}"
    );
    assert!(frame["body"]["errorMessage"].as_str().is_some(), "{frame}");
}

/// A successful `SessionResponse`: its body.
#[track_caller]
pub(crate) fn assert_session(frame: &Value) -> &Value {
    assert_eq!(frame["type"], "response", "{frame}");
    assert_eq!(frame["class"], "SessionResponse", "{frame}");
    assert_eq!(frame["code"], 200, "{frame}");
    &frame["body"]
}

/// A pushed or answered StructuredMessage's sequence.
#[track_caller]
pub(crate) fn seq(frame: &Value) -> u64 {
    assert_eq!(frame["class"], "StructuredMessage", "{frame}");
    let seq = frame["body"]["sequence"].as_u64().expect("a sequence");
    assert_eq!(frame["body"]["metadata"]["sequence"], seq.to_string());
    seq
}

/// The presence (`Join`, `Disconnect`, ...) an event frame carries.
pub(crate) fn presence(frame: &Value) -> &Value {
    &frame["body"]["events"][0]["presence"]["type"]
}

/// The conversation a message frame belongs to.
#[track_caller]
pub(crate) fn conversation_of(frame: &Value) -> Uuid {
    frame["body"]["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no conversation in {frame}"))
        .parse()
        .unwrap()
}
