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

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port nothing listens on now, for a server a test starts (in this
/// process or as a child). Taken below the kernel's range of ephemeral
/// ports, and never the same one twice in a run, so a test that stops a
/// server and starts it again on its port (a restart keeps its public URL)
/// finds the port free. A port the kernel picked could meanwhile become the
/// local end of another test's outgoing connection: a restart failed so,
/// with "Address already in use".
///
/// Every server the tests start binds with `SO_REUSEADDR` (tokio, Redis,
/// Node, Python, nginx and Caddy all do), so the probe does too and never
/// listens (see [`port_is_free`]).
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
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Whether a server could bind `port` now. The probe binds a socket it
/// never listens on: while it is open, a thread of this process may fork a
/// child (another test starting a server), and the child holds a copy of
/// every descriptor until it execs. A listening probe held so made the
/// server's own bind, a moment later, fail with "Address already in use";
/// a bound socket that does not listen keeps no `SO_REUSEADDR` server out.
pub(crate) fn port_is_free(port: u16) -> bool {
    probe(port).is_some()
}

/// A socket bound to `port` that does not listen, if it can be bound.
fn probe(port: u16) -> Option<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .ok()?;
    Some(socket)
}

/// The probe's copy, still open in a forked child, keeps no server out;
/// a listening one would (the harness's reason for probing so).
#[tokio::test]
async fn a_probe_held_open_keeps_no_server_out() {
    let port = free_port();
    let held = probe(port).expect("a free port");
    let server = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await;
    assert!(server.is_ok(), "{server:?}");
    drop((server, held));

    let port = free_port();
    let listening = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let server = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await;
    assert!(server.is_err(), "a listening probe let a server bind");
    drop(listening);
}

/// A key prefix no other test uses (`t<uuid>:`), so tests sharing one Redis
/// never see each other's keys.
pub(crate) fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}
