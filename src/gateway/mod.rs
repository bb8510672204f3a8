//! The WebSocket gateway: the guest protocol visitors and apps speak
//! (`/v1`), and the agent protocol of the console and bots
//! (`/api/v2/agent/ws`). One task per socket, running one `select!` loop over
//! the socket, its bus subscriptions, its timers and the node's shutdown.
//!
//! A socket holds no state of its own that matters: sessions, conversations
//! and agents live in the engine, and a socket remembers only the last
//! sequence it delivered per conversation (its [`cursor`]), so a client that
//! reconnects to any node resumes where it was. Sockets decide nothing about
//! sessions or conversations and publish nothing: they ask routing.
//!
//! - [`guest`], [`agent`]: the two protocols;
//! - [`conn`]: what both sockets do alike (sending, closing, subscriptions,
//!   the open-socket guard);
//! - [`cursor`]: delivery in sequence order, without gaps or duplicates.

pub mod agent;
#[cfg(test)]
mod asyncapi;
pub mod conn;
pub mod cursor;
pub mod feeds;
pub mod guest;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;

use crate::app::AppState;

/// Largest frame or message a client may send by default
/// (`SWITCHBOARD_LIMIT_MAX_FRAME_BYTES`). A guest text is at most 4000
/// characters and custom attributes 2 KiB; the JSON around them is small.
/// Larger frames close the socket with 1009.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// How much a socket reads at a time, and so the read buffer every socket
/// keeps for its whole life. tungstenite's default is 128 KiB per socket;
/// a guest's frames are a few hundred bytes (a visitor's configureSession,
/// an onMessage with a short text), so 512 bytes keeps an idle visitor
/// small; a larger frame grows the buffer to fit it (tungstenite reserves
/// what a frame's header announces), at the cost of an extra read or two.
pub const READ_BUFFER_BYTES: usize = 512;

/// How often the server pings, and how long a silent client is tolerated.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);

/// Applies the gateway's memory and size limits to an upgrade: frames and
/// messages of at most `max_frame_bytes`.
pub fn limited(upgrade: WebSocketUpgrade, max_frame_bytes: usize) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write straight through: no per-socket write buffer to keep.
        .write_buffer_size(0)
        .max_write_buffer_size(max_frame_bytes.max(MAX_CLIENT_MESSAGE_BYTES) * 4)
        .max_message_size(max_frame_bytes)
        .max_frame_size(max_frame_bytes)
}

pub fn router() -> Router<AppState> {
    Router::new().merge(guest::router()).merge(agent::router())
}
