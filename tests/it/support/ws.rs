//! A WebSocket client for the tests: JSON frames out, JSON frames in
//! within [`WAIT`], and the close code at the end. The guest and agent
//! clients ([`super::guest`], [`super::agent`]) are built on it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame (or a close) it expects: generous,
/// since a failing test is the only one that waits this long, and the whole
/// suite shares two cores (an offer behind a busy assigner was once seen to
/// take longer than 15 s there).
pub(crate) const WAIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open WebSocket.
#[derive(Debug)]
pub(crate) struct Socket {
    ws: Ws,
}

impl Socket {
    /// Opens `url` with `headers`; answers the handshake error (which
    /// carries the HTTP status, see [`refused`]) when the upgrade is
    /// refused.
    pub(crate) async fn open(
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<(Socket, Response), tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await?;
        Ok((Socket { ws }, response))
    }

    pub(crate) async fn send(&mut self, frame: &Value) {
        self.send_text(frame.to_string()).await;
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next JSON frame, skipping pings; fails on a close, any other
    /// frame, or after [`WAIT`].
    pub(crate) async fn next(&mut self) -> Value {
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

    /// Expects the server to close the socket next (no data frame before
    /// it), and answers the close code (1005 for a close without one).
    pub(crate) async fn closed(&mut self) -> u16 {
        self.close_code(false).await
    }

    /// Reads on past any data frames until the server closes the socket,
    /// and answers the close code (1005 for a close without one).
    pub(crate) async fn closed_after_frames(&mut self) -> u16 {
        self.close_code(true).await
    }

    async fn close_code(&mut self, skip_frames: bool) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close in time");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(_)) if skip_frames => continue,
                Some(Ok(other)) => panic!("unexpected frame before the close: {other:?}"),
                Some(Err(e)) => panic!("socket error instead of a close: {e}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    }

    /// Closes from this side, ignoring a socket already gone.
    pub(crate) async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The HTTP status of a refused upgrade; fails when it was accepted.
#[track_caller]
pub(crate) fn refused<T>(result: Result<T, tungstenite::Error>) -> StatusCode {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            StatusCode::from_u16(response.status().as_u16()).unwrap()
        }
        Err(e) => panic!("unexpected failure: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}
