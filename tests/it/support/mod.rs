//! Shared test harness: nodes on either engine and their HTTP API, the
//! guest and agent socket clients, site setup, throwaway Redis servers and
//! IdPs, and per-test isolation.

pub(crate) mod agent;
pub(crate) mod app;
pub(crate) mod guest;
pub(crate) mod hostile_idp;
pub(crate) mod idp;
pub(crate) mod node;
pub(crate) mod redis;
pub(crate) mod routing;
pub(crate) mod s3;
pub(crate) mod site;
pub(crate) mod ws;

pub(crate) use self::redis::RedisServer;

/// A key prefix no other test uses (`t<uuid>:`), so tests sharing one Redis
/// never see each other's keys.
pub(crate) fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}
