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

use std::net::{Ipv4Addr, TcpListener};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port nothing listens on now, for a server a test starts (in this
/// process or as a child). Taken below the kernel's range of ephemeral
/// ports, and never the same one twice in a run, so a test that stops a
/// server and starts it again on its port (a restart keeps its public URL)
/// finds the port free. A port the kernel picked could meanwhile become the
/// local end of another test's outgoing connection: a restart failed so,
/// with "Address already in use".
pub(crate) fn free_port() -> u16 {
    // The ports below the ephemeral range, from a random start, so that
    // two test processes at once rarely try the same ones.
    static NEXT: OnceLock<(u32, u32, AtomicU32)> = OnceLock::new();
    let (low, span, next) = NEXT.get_or_init(|| {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32768);
        let low = (ephemeral / 2).max(1024);
        let span = ephemeral.saturating_sub(low).max(1);
        (low, span, AtomicU32::new(rand::random::<u32>() % span))
    });
    for _ in 0..*span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(low + offset) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A key prefix no other test uses (`t<uuid>:`), so tests sharing one Redis
/// never see each other's keys.
pub(crate) fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}
