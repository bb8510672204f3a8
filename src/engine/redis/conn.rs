//! The one connection the engine sends its commands on, whatever form Redis
//! takes, so that records, logs and ephemeral values are written once.
//!
//! - a single server: the redis crate's `ConnectionManager`, which
//!   reconnects by itself;
//! - a cluster: the crate's cluster client, which routes each command to the
//!   master of its key's slot and follows `MOVED`/`ASK` and failovers;
//! - Sentinel: a `ConnectionManager` on the master the Sentinels name, and
//!   when that master stops answering or answers `READONLY` (it was demoted
//!   to a replica), a fresh question to the Sentinels and a manager on the
//!   new master ([`SentinelConn`]).
//!
//! Each is a multiplexed connection: commands from every task pipeline on
//! it, as the budgets in DESIGN.md ask.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// See the module docs. Cheap to clone: every variant is a handle on a
/// shared multiplexed connection.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
            Conn::Sentinel(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    /// `WAIT replicas timeout` on the connection that just wrote `key`:
    /// Redis answers how many replicas acknowledged this connection's
    /// writes so far. On a cluster it goes to the master of `key`'s slot;
    /// elsewhere the multiplexed connection is the one that wrote.
    pub(super) async fn wait_replicas(
        &self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(
            u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        self.on_master_of(key, cmd).await
    }

    /// One `SCAN cursor MATCH pattern COUNT count` step over the keys of
    /// the node that holds `key`'s slot (on a cluster, its master; a scan
    /// elsewhere would walk another shard's keys).
    pub(super) async fn scan_slot_of(
        &self,
        key: &str,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.on_master_of(key, cmd).await
    }

    /// Runs `cmd`, which names no key itself, where `key` lives: on a
    /// cluster the master of its slot, elsewhere the one connection.
    async fn on_master_of<T: redis::FromRedisValue>(&self, key: &str, cmd: Cmd) -> RedisResult<T> {
        match self {
            Conn::Cluster(conn) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key, SlotAddr::Master);
                let value = conn
                    .clone()
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
            other => cmd.query_async(&mut other.clone()).await,
        }
    }
}

/// The master a set of Sentinels names, followed across failovers.
#[derive(Clone)]
pub(super) struct SentinelConn(Arc<SentinelInner>);

struct SentinelInner {
    /// Asks the Sentinels; a lock because the crate's client takes `&mut`,
    /// and so that one task at a time re-resolves.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: ArcSwap<Master>,
    config: ConnectionManagerConfig,
}

/// The master as last resolved, and the connection to it.
struct Master {
    addr: String,
    conn: ConnectionManager,
}

impl SentinelConn {
    /// Asks the Sentinels for the master and connects to it.
    pub(super) async fn connect(
        mut sentinel: SentinelClient,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        let client = sentinel.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = ConnectionManager::new_with_config(client, config.clone()).await?;
        Ok(Self(Arc::new(SentinelInner {
            sentinel: tokio::sync::Mutex::new(sentinel),
            current: ArcSwap::from_pointee(Master { addr, conn }),
            config,
        })))
    }

    /// A client for the current master, for the bus's subscription
    /// connection: asked afresh, so a reconnecting bus follows a failover.
    pub(super) async fn master_client(&self) -> RedisResult<redis::Client> {
        self.0.sentinel.lock().await.async_get_client().await
    }

    /// Asks the Sentinels again after `stale` failed; switches to the master
    /// they name if it is another. Answers whether it switched.
    async fn follow(&self, stale: &str) -> bool {
        let mut sentinel = self.0.sentinel.lock().await;
        // Another task switched while this one waited for the lock.
        if self.0.current.load().addr != stale {
            return true;
        }
        let client = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "the Sentinels name no reachable master");
                return false;
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        if addr == stale {
            return false;
        }
        match ConnectionManager::new_with_config(client, self.0.config.clone()).await {
            Ok(conn) => {
                tracing::info!(from = %stale, to = %addr, "Redis master changed; following it");
                self.0.current.store(Arc::new(Master { addr, conn }));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, master = %addr, "cannot connect to the new Redis master");
                false
            }
        }
    }

    /// Runs `op` on the master; when the master is gone or demoted, follows
    /// the Sentinels, and repeats `op` once only if Redis refused it
    /// unexecuted (`READONLY`), so nothing is applied twice.
    async fn run<T, F>(&self, op: F) -> RedisResult<T>
    where
        F: Fn(ConnectionManager) -> futures::future::BoxFuture<'static, RedisResult<T>>,
    {
        let master = self.0.current.load_full();
        match op(master.conn.clone()).await {
            Err(e) if lost_master(&e) => {
                let switched = self.follow(&master.addr).await;
                if switched && refused_unexecuted(&e) {
                    let master = self.0.current.load_full();
                    op(master.conn.clone()).await
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let cmd = cmd.clone();
        async move {
            self.run(move |mut conn| {
                let cmd = cmd.clone();
                async move { conn.req_packed_command(&cmd).await }.boxed()
            })
            .await
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let pipeline = pipeline.clone();
        async move {
            self.run(move |mut conn| {
                let pipeline = pipeline.clone();
                async move { conn.req_packed_commands(&pipeline, offset, count).await }.boxed()
            })
            .await
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.0.current.load().conn.get_db()
    }
}

/// The master is unreachable, or no longer a master.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || refused_unexecuted(e)
}

/// Redis refused the command without running it: a replica answering a
/// write, or a master that lost its replicas' acknowledgement.
fn refused_unexecuted(e: &RedisError) -> bool {
    matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
}

/// The settings every `ConnectionManager` of the engine gets.
pub(super) fn manager_config(
    connect: Duration,
    response: Duration,
    max_delay: Duration,
) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
        .set_max_delay(max_delay)
}
