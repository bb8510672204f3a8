//! What the guest and the agent socket share: sending with a deadline,
//! closing with a code, telling an oversized frame from a broken
//! connection, the ping timer, and the accounting of an open socket. The
//! bus subscriptions are in [`super::feeds`].

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::PING_INTERVAL;
use crate::app::{AppState, SocketGuard};
use crate::telemetry::Metrics;

/// A client that does not take a frame within this long is gone: one
/// stalled socket must not pin memory or its task.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close frame may take: a client that does not read must not
/// hold the node's shutdown up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Close codes (RFC 6455, section 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down: reconnect, to another node.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A frame or message over the gateway's limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot serve the socket now; try again.
    pub const INTERNAL: u16 = 1011;
}

/// The client is gone, or too slow to count as there.
#[derive(Debug)]
pub struct Gone;

/// Sends one message, giving up after [`SEND_TIMEOUT`].
pub async fn send(ws: &mut WebSocket, message: Message) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Gone),
    }
}

pub async fn send_text(ws: &mut WebSocket, text: String) -> Result<(), Gone> {
    send(ws, Message::Text(Utf8Bytes::from(text))).await
}

pub async fn ping(ws: &mut WebSocket) -> Result<(), Gone> {
    send(ws, Message::Ping(bytes::Bytes::new())).await
}

/// Sends a close frame, best effort: the socket ends either way.
///
/// After the client's own close, tungstenite has already queued the reply
/// (echoing the client's code) and refuses to send another frame; it only
/// goes out on the next write or flush, so the flush here is what answers
/// a client's close (RFC 6455 5.5.1) before the connection is dropped.
pub async fn close(ws: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = ws.send(frame).await;
        let _ = SinkExt::flush(ws).await;
    })
    .await;
}

/// Why reading from a socket failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// A frame or message over the limit: close with [`close_code::TOO_BIG`].
    TooBig,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// The connection broke: nothing to say to the client.
    Broken,
}

impl ReadError {
    /// tungstenite reports an oversized frame as a capacity error and
    /// invalid text as a UTF-8 error; axum hides the type, so its text is
    /// matched.
    pub fn of(error: &axum::Error) -> Self {
        let text = error.to_string();
        if text.starts_with("Space limit exceeded") || text.contains("too long") {
            Self::TooBig
        } else if text.starts_with("UTF-8 encoding error") {
            Self::InvalidUtf8
        } else {
            Self::Broken
        }
    }
}

/// The server's pings, the first one interval from now.
pub fn ping_timer() -> Interval {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping
}

/// Whether a client last heard from at `last_heard` has been silent for
/// two ping intervals: it no longer answers pings.
pub fn silent(last_heard: Instant) -> bool {
    last_heard.elapsed() > PING_INTERVAL * 2
}

pub use super::feeds::Feeds;

/// Held by a socket's task while its socket is open: the node's shutdown
/// waits for it, the open-sockets gauge counts it, and its close is counted
/// by the code sent, however the task ends.
#[derive(Debug)]
pub struct Open {
    _shutdown: SocketGuard,
    gauge: Gauge,
    metrics: Metrics,
    side: &'static str,
    /// The close code sent; `None` when the connection ended without one.
    code: Option<u16>,
}

impl Open {
    pub fn new(state: &AppState, side: &'static str) -> Self {
        let gauge = state.metrics.sockets(side);
        gauge.inc();
        Self {
            _shutdown: state.shutdown.guard(),
            gauge,
            metrics: state.metrics.clone(),
            side,
            code: None,
        }
    }

    /// Records how the socket ended: the close code sent, if any.
    pub fn ended(&mut self, code: Option<u16>) {
        self.code = code;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
        self.metrics.socket_closed(self.side, self.code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> axum::Error {
        axum::Error::new(std::io::Error::other(text.to_owned()))
    }

    #[test]
    fn read_errors_are_told_apart_by_their_text() {
        let too_big = error("Space limit exceeded: Message too long: 70000 > 65536");
        assert_eq!(ReadError::of(&too_big), ReadError::TooBig);
        let utf8 = error("UTF-8 encoding error");
        assert_eq!(ReadError::of(&utf8), ReadError::InvalidUtf8);
        let broken = error("IO error: broken pipe");
        assert_eq!(ReadError::of(&broken), ReadError::Broken);
    }
}
