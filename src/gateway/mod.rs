//! The WebSocket gateway: the guest protocol visitors and apps speak
//! (`/v1`), and the agent protocol of the console and bots
//! (`/api/v2/agent/ws`). One task per socket, running one `select!` loop over
//! the socket, its bus subscriptions, its timers and the node's shutdown.
//!
//! A socket holds no state of its own that matters: sessions, conversations
//! and agents live in the engine, and a socket remembers only the last
//! sequence it delivered per conversation, so a client that reconnects to
//! any node resumes where it was.

pub mod agent;
pub mod guest;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use tokio::sync::{Notify, watch};

use crate::http::AppState;

/// Largest frame or message a client may send. A guest text is at most
/// 4000 characters and custom attributes 2 KiB; the JSON around them is
/// small. Larger frames close the socket with 1009.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// Read buffer of a socket. tungstenite's default is 128 KiB per socket;
/// an idle visitor needs a few KiB.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How often the server pings, and how long a silent client is tolerated.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);

/// Applies the gateway's memory and size limits to an upgrade.
pub fn limited(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write straight through: no per-socket write buffer to keep.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_CLIENT_MESSAGE_BYTES * 4)
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
}

pub fn router() -> Router<AppState> {
    Router::new().merge(guest::router()).merge(agent::router())
}

/// The node's shutdown as sockets see it: a signal to close (with 1001, so
/// clients reconnect elsewhere) and a count of sockets still open.
#[derive(Clone, Debug)]
pub struct Shutdown {
    signal: Arc<watch::Sender<bool>>,
    open: Arc<(AtomicUsize, Notify)>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            signal: Arc::new(watch::channel(false).0),
            open: Arc::new((AtomicUsize::new(0), Notify::new())),
        }
    }

    /// Tells every socket to close.
    pub fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn signalled(self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Registers an open socket until the guard is dropped.
    pub fn guard(&self) -> SocketGuard {
        self.open.0.fetch_add(1, Ordering::SeqCst);
        SocketGuard {
            open: self.open.clone(),
        }
    }

    /// Waits until every socket has closed, or ten seconds at most: a client
    /// that never answers the close must not hold the node up.
    pub async fn drained(&self) {
        let wait = async {
            loop {
                let notified = self.open.1.notified();
                if self.open.0.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }

    pub fn open_sockets(&self) -> usize {
        self.open.0.load(Ordering::SeqCst)
    }
}

/// Held by a socket task for as long as its socket is open.
#[derive(Debug)]
pub struct SocketGuard {
    open: Arc<(AtomicUsize, Notify)>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.open.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.open.1.notify_waiters();
        }
    }
}
