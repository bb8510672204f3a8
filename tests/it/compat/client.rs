//! The Transport SDK on the guest socket: the frames it sends, as its
//! serialization tests write them, and every frame it receives decoded by
//! its rules ([`sdk::check_frame`]) and free of `null`.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;
use crate::support::ws::WAIT;

/// The health check's `tracingId` (base64 of "HealthCheckMessageId").
pub(super) const HEALTH_CHECK_ID: &str = "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ=";

/// One app's socket, for one session token.
pub(super) struct SdkClient {
    ws: Ws,
    pub(super) token: String,
    pub(super) deployment: String,
    /// Frames read while waiting for another, not yet taken.
    pending: VecDeque<Value>,
}

impl SdkClient {
    /// Connects as the SDK does (`Origin: webmessaging.<domain>`), with a
    /// fresh session token.
    pub(super) async fn open(app: &TestApp, deployment: &str) -> SdkClient {
        Self::with_token(app, deployment, &Uuid::new_v4().to_string()).await
    }

    /// Connects for an existing session token (a reconnect, another
    /// device).
    pub(super) async fn with_token(app: &TestApp, deployment: &str, token: &str) -> SdkClient {
        let ws = connect(app, deployment, Some(APP_SOCKET_HOST))
            .await
            .expect("the SDK's upgrade is admitted");
        SdkClient {
            ws,
            token: token.to_owned(),
            deployment: deployment.to_owned(),
            pending: VecDeque::new(),
        }
    }

    /// The next frame off the socket, checked: the SDK decodes it, and it
    /// holds no `null`.
    async fn read(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame in time")
                .expect("the socket ended")
                .expect("socket error");
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    sdk::check_frame(&frame);
                    assert_no_nulls(&frame, "frame");
                    return frame;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame: {other:?}"),
            }
        }
    }

    /// The next frame: one read earlier, or off the socket.
    pub(super) async fn next(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(frame) => frame,
            None => self.read().await,
        }
    }

    /// The next frame of `class`, dropping others.
    pub(super) async fn next_of(&mut self, class: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["class"] == class {
                return frame;
            }
        }
    }

    /// The next `StructuredMessage`, decoded.
    pub(super) async fn message(&mut self) -> sdk::Frame<sdk::StructuredMessage> {
        decode(&self.next_of("StructuredMessage").await)
    }

    pub(super) async fn send(&mut self, frame: &Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// Sends a request and answers the frame with its `tracingId`; pushes
    /// that come first stay for [`SdkClient::next`].
    pub(super) async fn request(&mut self, frame: Value) -> Value {
        let tracing = frame["tracingId"].as_str().unwrap().to_owned();
        self.send(&frame).await;
        loop {
            let answer = self.read().await;
            if answer["tracingId"] == tracing.as_str() {
                return answer;
            }
            self.pending.push_back(answer);
        }
    }

    /// What `authorize()` does before a step-up: the SDK forgets its
    /// session token and mints a new one, which it then configures with on
    /// the same socket.
    pub(super) fn new_token(&mut self) {
        self.token = Uuid::new_v4().to_string();
    }

    /// `configureSession`, answered with a session.
    pub(super) async fn configure(&mut self, start_new: bool) -> sdk::SessionResponse {
        let answer = self.request(self.configure_frame(start_new)).await;
        session(&answer)
    }

    /// `configureAuthenticatedSession` with `jwt`; the answer as it is.
    pub(super) async fn authenticate(&mut self, jwt: &str) -> Value {
        let mut frame = self.configure_frame(false);
        frame["action"] = json!("configureAuthenticatedSession");
        frame["data"] = json!({ "code": jwt });
        self.request(frame).await
    }

    /// The SDK's `disconnect()`: close 1000, then the server's close frame
    /// (its code), or `None` when the connection ended without one.
    pub(super) async fn disconnect(&mut self) -> Option<u16> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "The user has closed the connection.".into(),
        };
        self.ws.close(Some(frame)).await.unwrap();
        server_close(&mut self.ws).await
    }

    /// Reads on until the server closes; answers its close code.
    pub(super) async fn closed(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    sdk::check_frame(&frame);
                }
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    }

    // ---- what the SDK sends (its serialization tests' literals) ----------

    fn envelope(&self, action: &str) -> Value {
        json!({ "token": self.token, "tracingId": Uuid::new_v4().to_string(), "action": action })
    }

    pub(super) fn configure_frame(&self, start_new: bool) -> Value {
        let mut frame = configure(&self.token, &self.deployment);
        frame["startNew"] = json!(start_new);
        frame
    }

    /// `sendMessage(text)`.
    pub(super) fn text(&self, text: &str) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "text": text, "type": "Text" });
        frame
    }

    /// `sendQuickReply(buttonResponse)`: Text, empty text, the answer.
    pub(super) fn quick_reply(&self, text: &str, payload: &str, originating: &str) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "text": "", "content": [{ "contentType": "ButtonResponse",
            "buttonResponse": { "text": text, "payload": payload, "type": "QuickReply",
                "originatingMessageId": originating } }], "type": "Text" });
        frame
    }

    /// `submitTimeSlot`: as a quick reply, of type DatePicker.
    pub(super) fn time_slot(&self, date_time: &str, originating: &str) -> Value {
        let mut frame = self.quick_reply(date_time, date_time, originating);
        frame["message"]["content"][0]["buttonResponse"]["type"] = json!("DatePicker");
        frame
    }

    /// `sendCardReply`: Structured, the button's text.
    pub(super) fn card_reply(&self, text: &str, payload: &str) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "text": text, "content": [{ "contentType": "ButtonResponse",
            "buttonResponse": { "text": text, "payload": payload, "type": "Button" } }],
            "type": "Structured" });
        frame
    }

    /// The autostart `Join`, with the custom attributes still pending.
    pub(super) fn autostart(&self, attributes: Option<Value>) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "events": [{ "eventType": "Presence", "presence": { "type": "Join" } }],
            "type": "Event" });
        if let Some(attributes) = attributes {
            frame["message"]["channel"] = json!({ "metadata": { "customAttributes": attributes } });
        }
        frame
    }

    pub(super) fn typing(&self) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "events": [{ "eventType": "Typing", "typing": { "type": "On" } }],
            "type": "Event" });
        frame
    }

    pub(super) fn clear(&self) -> Value {
        let mut frame = self.envelope("onMessage");
        frame["message"] = json!({ "events": [{ "eventType": "Presence", "presence": { "type": "Clear" } }],
            "type": "Event" });
        frame
    }

    pub(super) fn health_check(&self) -> Value {
        let mut frame = self.envelope("echo");
        frame["tracingId"] = json!(HEALTH_CHECK_ID);
        frame["message"] = json!({ "text": "ping", "type": "Text" });
        frame
    }

    /// `startNewChat()`.
    pub(super) fn close_session(&self) -> Value {
        let mut frame = self.envelope("closeSession");
        frame["closeAllConnections"] = json!(true);
        frame
    }

    pub(super) fn get_jwt(&self) -> Value {
        self.envelope("getJwt")
    }
}

/// A `SessionResponse` answer, decoded.
#[track_caller]
pub(super) fn session(answer: &Value) -> sdk::SessionResponse {
    let frame: sdk::Frame<sdk::SessionResponse> = decode(answer);
    assert_eq!(
        (frame.class.as_str(), frame.code),
        ("SessionResponse", 200),
        "{answer}"
    );
    frame.body
}

/// An error answer, decoded: its code and text.
#[track_caller]
pub(super) fn refusal(answer: &Value) -> (i32, String) {
    let frame: sdk::Frame<String> = decode(answer);
    assert_eq!(frame.class, "string", "{answer}");
    (frame.code, frame.body)
}

/// After a close from this side: the server's close frame's code, or
/// `None` when the connection ended without one.
pub(super) async fn server_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("the server neither answered the close nor hung up"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
        }
    }
}
