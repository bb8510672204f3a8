//! Throwaway `redis-server` processes for the tests.
//!
//! Never the Redis a developer may already run on 6379: every server here is
//! started from `redis-server` on `PATH`, on a free loopback port, without
//! persistence (`--save "" --appendonly no`).
//!
//! Each server is spawned through `sh -c` with a watchdog: a background loop
//! polls the test process's pid and kills Redis once the test process is gone,
//! so even a test binary killed with SIGKILL leaves no server behind. The
//! shell then `exec`s Redis, so the child we hold *is* Redis and stopping it
//! needs no pid bookkeeping. (No `prctl(PR_SET_PDEATHSIG)`: unsafe code is
//! forbidden in this crate.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) mod cluster;
pub(crate) mod sentinel;
pub(crate) mod tls;

/// How long a server may take to answer PING after being spawned.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Attempts at finding a free port when a fresh server is started (another
/// process may grab the port between our probe and Redis binding it).
const START_ATTEMPTS: usize = 5;

/// `$1` is the test process's pid, the rest is the Redis command line. The
/// watchdog runs until the test process or Redis (`$$` after the `exec`) is
/// gone, and kills Redis only in the first case, so a server we stopped
/// ourselves is not signalled again (its pid may have been reused).
pub(crate) const WATCHDOG_SCRIPT: &str = r#"parent="$1"; shift
redis="$$"
(
  while kill -0 "$parent" 2>/dev/null && kill -0 "$redis" 2>/dev/null; do sleep 1; done
  kill -0 "$parent" 2>/dev/null || kill -9 "$redis" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
exec "$@"
"#;

/// The server shared by every test of this process, started on first use and
/// killed by its watchdog when the process exits. Tests on it keep apart by
/// key prefix (see [`super::unique_prefix`]). Never stop or restart it: use
/// [`RedisServer::start`] for a private server instead.
pub(crate) fn shared() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(RedisServer::start)
}

/// A `redis-server` child process on `127.0.0.1:port`. Dropping it kills the
/// server.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    child: Mutex<Option<Child>>,
    /// With persistence (append-only file, fsync on every write) the data
    /// survives a restart, as it does for a production Redis.
    persist: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Starts a private server on a free port and waits until it answers
    /// PING.
    pub(crate) fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// A private server that keeps its data in `dir` across restarts.
    pub(crate) fn start_persistent(dir: &std::path::Path) -> RedisServer {
        Self::start_with(Some(dir.to_owned()))
    }

    fn start_with(persist: Option<std::path::PathBuf>) -> RedisServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_ready(port, persist.as_deref()) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        child: Mutex::new(Some(child)),
                        persist,
                    };
                }
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!("could not start redis-server: {}", failures.join("; "));
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no persistence, nothing to flush) and waits
    /// for it to exit. Every key is lost. Idempotent.
    pub(crate) fn stop(&self) {
        if let Some(child) = self.lock().take() {
            kill(child);
        }
    }

    /// Stops the server if it runs, then starts a fresh, empty one on the same
    /// port and waits until it answers PING.
    pub(crate) fn restart(&self) {
        let mut slot = self.lock();
        if let Some(child) = slot.take() {
            kill(child);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match spawn_ready(self.port, self.persist.as_deref()) {
                Ok(child) => {
                    *slot = Some(child);
                    return;
                }
                // The port may still be held by a client connection's socket
                // for a moment; keep trying until the deadline.
                Err(e) if Instant::now() >= deadline => {
                    panic!("could not restart redis-server on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// Whether the server process is running (stop() not called since the
    /// last start, and it has not died on its own).
    pub(crate) fn is_running(&self) -> bool {
        match self.lock().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn kill(mut child: Child) {
    // Fails only if it already exited; wait() reaps it either way.
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) use super::{free_port, port_is_free};

/// Spawns Redis on `port` under the watchdog and waits for PING. On failure
/// the child is killed and the reason returned.
fn spawn_ready(port: u16, persist: Option<&std::path::Path>) -> Result<Child, String> {
    let (appendonly, dir) = match persist {
        Some(dir) => ("yes", dir.to_owned()),
        None => ("no", std::env::temp_dir()),
    };
    let args = base_args(port, appendonly, &dir);
    spawn_args_ready(port, &args)
}

/// The command line of a plain test server on `port`, keeping its files
/// in `dir`.
pub(crate) fn base_args(
    port: u16,
    appendonly: &str,
    dir: &std::path::Path,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        appendonly,
        "--appendfsync",
        "always",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--loglevel",
        "warning",
        "--dir",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    args
}

/// Runs `redis-cli -p <port> <args>` and answers its output (empty if it
/// could not run).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// Polls `check` until it holds, panicking with `what` after `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(POLL_INTERVAL);
    }
}

/// Spawns `redis-server` with `args` under the watchdog and waits until
/// `port` answers PING. On failure the child is killed and the reason
/// returned.
pub(crate) fn spawn_args_ready(port: u16, args: &[std::ffi::OsString]) -> Result<Child, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("switchboard-test-redis") // $0
        .arg(std::process::id().to_string()) // $1: the pid to watch
        .arg("redis-server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning sh/redis-server: {e}"))?;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!(
                    "redis-server exited before answering PING ({status})"
                ));
            }
            Ok(None) => {}
            Err(e) => {
                kill(child);
                return Err(format!("checking on redis-server: {e}"));
            }
        }
        if answers_ping(addr) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill(child);
            return Err(format!("no PONG within {READY_TIMEOUT:?}"));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// One inline `PING` over a fresh connection.
fn answers_ping(addr: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.set_write_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    probe().unwrap_or(false)
}

/// The harness itself: private servers stop, restart on their port, and
/// die with their handle.
#[tokio::test]
async fn harness_private_server_stops_and_restarts() {
    async fn ping(url: &str) -> Result<String, ::redis::RedisError> {
        let client = ::redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("PING").query_async(&mut conn).await
    }
    async fn set_get(url: &str, value: Option<&str>) -> Option<String> {
        let client = ::redis::Client::open(url).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        if let Some(value) = value {
            let () = ::redis::cmd("SET")
                .arg("k")
                .arg(value)
                .query_async(&mut conn)
                .await
                .expect("SET");
        }
        ::redis::cmd("GET")
            .arg("k")
            .query_async(&mut conn)
            .await
            .expect("GET")
    }

    let server = RedisServer::start();
    let port = server.port();
    assert_ne!(port, 6379, "must not be the developer's Redis");
    assert_ne!(
        port,
        shared().port(),
        "a private server is not the shared one"
    );
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(ping(&server.url()).await.expect("PING"), "PONG");
    assert_eq!(
        set_get(&server.url(), Some("v")).await.as_deref(),
        Some("v")
    );

    server.stop();
    assert!(!server.is_running());
    assert!(
        ping(&server.url()).await.is_err(),
        "stopped server still answers"
    );
    server.stop(); // idempotent

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(
        ping(&server.url()).await.expect("PING after restart"),
        "PONG"
    );
    assert_eq!(
        set_get(&server.url(), None).await,
        None,
        "a restarted server is empty"
    );

    server.restart(); // restart while running
    assert_eq!(
        ping(&server.url())
            .await
            .expect("PING after second restart"),
        "PONG"
    );

    let url = server.url();
    drop(server);
    assert!(ping(&url).await.is_err(), "dropped server still answers");
}
