//! Shared test harness: nodes on either engine and their HTTP API, the
//! guest and agent socket clients, site setup, throwaway Redis servers and
//! IdPs, and per-test isolation.

pub mod agent;
pub mod app;
pub mod guest;
pub mod hostile_idp;
pub mod idp;
pub mod node;
pub mod redis;
pub mod routing;
pub mod site;
pub mod ws;

pub use self::redis::RedisServer;

/// A key prefix no other test uses (`t<uuid>:`), so tests sharing one Redis
/// never see each other's keys.
pub fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}
