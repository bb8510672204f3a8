//! The Redis engine: records shared by every node on one Redis.
//!
//! The same parts as the embedded engine, one file each: [`keys`] spells
//! every key name, `records` keeps the versioned records, `ephemeral` the
//! values with a time to live, `log` the conversation logs and `bus` the
//! PUB/SUB fan-out. What must be atomic runs as one Lua script ([`scripts`]).

mod bus;
mod ephemeral;
mod keys;
mod log;
mod records;
mod scripts;

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

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
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// The subscription side of the bus (see [`bus`]).
    bus: bus::RedisBus,
}

/// By hand: the connection's own `Debug` prints the client, URL credentials
/// included.
impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEngine")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    /// Connects to `url` and checks that Redis answers. Every key the engine
    /// uses starts with `prefix`, so several installations can share a Redis.
    pub async fn connect(url: &str, prefix: &str) -> EngineResult<Self> {
        Self::connect_with_probe_interval(url, prefix, bus::DEFAULT_PROBE_INTERVAL).await
    }

    /// [`Self::connect`] with another bus liveness-probe interval, for tests
    /// that cannot wait for the default.
    #[doc(hidden)]
    pub async fn connect_with_probe_interval(
        url: &str,
        prefix: &str,
        probe_interval: Duration,
    ) -> EngineResult<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            EngineError::Unavailable(redact(url, format!("invalid Redis URL: {e}")))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let setup = async {
            let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            for script in scripts::all() {
                script.load_async(&mut conn).await?;
            }
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(CONNECT_DEADLINE, setup).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(EngineError::Unavailable(redact(
                    url,
                    format!("cannot connect to Redis: {e}"),
                )));
            }
            Err(_) => {
                return Err(EngineError::Unavailable(format!(
                    "Redis did not answer within {}s",
                    CONNECT_DEADLINE.as_secs()
                )));
            }
        };
        let bus = bus::RedisBus::start(client, conn.clone(), prefix, probe_interval)
            .await
            .map_err(|e| {
                EngineError::Unavailable(redact(url, format!("cannot open the bus: {e}")))
            })?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
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

/// Redis errors name the failure, never the URL, so they can be passed on.
#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(unavailable)`"
)]
fn unavailable(e: RedisError) -> EngineError {
    EngineError::Unavailable(format!("Redis: {e}"))
}

/// Removes the URL's password from a message, in case a connection error
/// quotes the URL.
fn redact(url: &str, message: String) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) if !password.is_empty() => message.replace(password, "***"),
            _ => message,
        },
        Err(_) => message,
    }
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
