//! The Redis engine: records shared by every node on one Redis, which may
//! be one server, a Redis Cluster or the master a set of Sentinels names
//! ([`target`] parses the form, [`conn`] is the one connection type the
//! rest sends commands on, whatever the form).
//!
//! The same parts as the embedded engine, one file each: [`keys`] spells
//! every key name, `records` keeps the versioned records, `ephemeral` the
//! values with a time to live, `log` the conversation logs and `bus` the
//! PUB/SUB fan-out (sharded on a cluster). What must be atomic runs as one
//! Lua script ([`scripts`]) whose keys share one hash tag, so it runs on
//! one cluster slot.

mod bus;
mod conn;
mod ephemeral;
mod homes;
mod keys;
mod log;
mod records;
mod scripts;
mod target;

pub use target::{RedisTarget, TargetError};

use std::{fmt, sync::Arc, time::Duration};

use redis::RedisError;

use self::conn::{Conn, SentinelConn};
use self::target::Topology;
use super::{EngineError, EngineResult};

/// How long one attempt to open a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `connect` waits in total (connection, handshake, script load),
/// so a silent Redis fails start-up instead of hanging it.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How long a command may take. Generous: the commit script does several
/// lookups per write, and a timed-out commit is reported as unavailable even
/// though Redis may still apply it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Cap on the pause between reconnection attempts, so a Redis that comes
/// back is used again quickly.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct RedisEngine {
    conn: Conn,
    prefix: Arc<str>,
    /// On a cluster, notices go by sharded PUB/SUB (`SPUBLISH`), through
    /// the shard that owns their conversation; elsewhere by `PUBLISH`.
    sharded: bool,
    /// `SWITCHBOARD_REDIS_WAIT_REPLICAS`: replicas to wait for after an
    /// append, and for how long.
    wait: Option<(u32, Duration)>,
    /// The subscription side of the bus (see [`bus`]).
    bus: bus::RedisBus,
}

/// By hand: the connection's own `Debug` prints the client, URL credentials
/// included.
impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEngine")
            .field("prefix", &self.prefix)
            .field("sharded", &self.sharded)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    /// Connects to the single server at `url` and checks that Redis
    /// answers. Every key the engine uses starts with `prefix`, so several
    /// installations can share a Redis.
    pub async fn connect(url: &str, prefix: &str) -> EngineResult<Self> {
        let target = RedisTarget::single(url)
            .map_err(|e| EngineError::Unavailable(format!("invalid Redis URL: {e}")))?;
        Self::open(&target, prefix).await
    }

    /// Connects to `target` (one server, a cluster, or Sentinel's master).
    pub async fn open(target: &RedisTarget, prefix: &str) -> EngineResult<Self> {
        Self::open_with_probe_interval(target, prefix, bus::DEFAULT_PROBE_INTERVAL).await
    }

    /// [`Self::connect`] with another bus liveness-probe interval, for tests
    /// that cannot wait for the default.
    #[doc(hidden)]
    pub async fn connect_with_probe_interval(
        url: &str,
        prefix: &str,
        probe_interval: Duration,
    ) -> EngineResult<Self> {
        let target = RedisTarget::single(url)
            .map_err(|e| EngineError::Unavailable(format!("invalid Redis URL: {e}")))?;
        Self::open_with_probe_interval(&target, prefix, probe_interval).await
    }

    /// [`Self::open`] with another bus liveness-probe interval.
    #[doc(hidden)]
    pub async fn open_with_probe_interval(
        target: &RedisTarget,
        prefix: &str,
        probe_interval: Duration,
    ) -> EngineResult<Self> {
        let redact = |message: String| redact_target(target, message);
        let setup = async {
            let (conn, source) = open_conn(target).await?;
            let mut probe = conn.clone();
            redis::cmd("PING").query_async::<String>(&mut probe).await?;
            for script in scripts::all() {
                script.load_async(&mut probe).await?;
            }
            Ok::<_, RedisError>((conn, source))
        };
        let (conn, source) = match tokio::time::timeout(CONNECT_DEADLINE, setup).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                return Err(EngineError::Unavailable(redact(format!(
                    "cannot connect to Redis: {e}"
                ))));
            }
            Err(_) => {
                return Err(EngineError::Unavailable(format!(
                    "Redis did not answer within {}s",
                    CONNECT_DEADLINE.as_secs()
                )));
            }
        };
        let bus = bus::RedisBus::start(source, conn.clone(), prefix, probe_interval)
            .await
            .map_err(|e| EngineError::Unavailable(redact(format!("cannot open the bus: {e}"))))?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            sharded: target.sharded(),
            wait: target.wait,
            bus,
        })
    }

    pub async fn ping(&self) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// The data connection for `target`, and where the bus opens its
/// subscription connections.
async fn open_conn(target: &RedisTarget) -> Result<(Conn, bus::Source), RedisError> {
    let config = conn::manager_config(CONNECT_TIMEOUT, RESPONSE_TIMEOUT, MAX_RECONNECT_DELAY);
    match &target.topology {
        Topology::Single(url) => {
            let client = target.single_client(url)?;
            let conn =
                redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
            Ok((Conn::Single(conn), bus::Source::Plain(Box::new(client))))
        }
        Topology::Cluster(nodes) => {
            let client = target.cluster_client(nodes, None, (CONNECT_TIMEOUT, RESPONSE_TIMEOUT))?;
            let conn = client.get_async_connection().await?;
            Ok((
                Conn::Cluster(conn),
                bus::Source::Sharded(Box::new(target.clone())),
            ))
        }
        Topology::Sentinel { sentinels, master } => {
            let sentinel = target.sentinel_client(sentinels, master)?;
            let conn = SentinelConn::connect(sentinel, config).await?;
            Ok((Conn::Sentinel(conn.clone()), bus::Source::Sentinel(conn)))
        }
    }
}

/// Redis errors name the failure, never the URL, so they can be passed on.
#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(unavailable)`"
)]
fn unavailable(e: RedisError) -> EngineError {
    EngineError::Unavailable(format!("Redis: {e}"))
}

/// Removes the target's password from a message, in case a connection
/// error quotes a URL.
fn redact_target(target: &RedisTarget, message: String) -> String {
    use secrecy::ExposeSecret;
    let mut message = message;
    if let Some(password) = &target.password
        && !password.expose_secret().is_empty()
    {
        message = message.replace(password.expose_secret(), "***");
    }
    if let Topology::Single(url) = &target.topology
        && let Ok(parsed) = url::Url::parse(url.expose_secret())
        && let Some(password) = parsed.password()
        && !password.is_empty()
    {
        message = message.replace(password, "***");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs no Redis: the point is that nothing listens. The port is one
    /// the system just handed out and took back, so nothing else holds it.
    #[tokio::test]
    async fn unreachable_redis_is_unavailable_without_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let url = format!("redis://user:s3cr3t@127.0.0.1:{port}");
        let err = RedisEngine::connect(&url, "sb:").await.unwrap_err();
        match err {
            EngineError::Unavailable(message) => assert!(!message.contains("s3cr3t"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
