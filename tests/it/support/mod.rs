//! Shared test harness: throwaway Redis servers and per-test isolation.

pub mod app;
pub mod hostile_idp;
pub mod idp;
pub mod node;
pub mod redis;

pub use self::redis::RedisServer;

/// A key prefix no other test uses (`t<uuid>:`), so tests sharing one Redis
/// never see each other's keys.
pub fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}
