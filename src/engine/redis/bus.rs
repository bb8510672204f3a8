//! The bus on Redis: PUB/SUB on one dedicated connection per engine, watched
//! by a liveness probe.
//!
//! Publishing is an ordinary command on the engine's multiplexed connection.
//! Receiving needs a connection in subscriber mode, which can do nothing
//! else, so each engine opens one and hands it to a background task
//! ([`Actor`]) that owns it and:
//!
//! - subscribes and unsubscribes as the [`LocalHub`] gains and loses
//!   channels, answering a `subscribe` only once Redis has confirmed it, so a
//!   publish made after `subscribe` returns is received;
//! - forwards messages into the hub;
//! - probes liveness: every interval it publishes a token on a channel only
//!   this engine subscribes to, and expects it back before the next tick. A
//!   subscription can die without its socket noticing (a half-open TCP
//!   connection, a proxy or failover that dropped it); the probe notices;
//! - when the probe fails or the connection errors, drops the connection,
//!   reconnects with backoff for as long as it takes, subscribes whatever
//!   the hub still holds, and tells every local subscriber to resync,
//!   because anything published meanwhile is lost. The logs still hold it.
//!
//! Delivery is asynchronous, so a subscriber that joins a channel the node
//! is subscribed to already (or was until a moment ago) may get a message
//! published just before it joined. The bus is a hint; that is harmless.
//!
//! The task holds the hub weakly and ends when the engine's last clone is
//! dropped (its request channel closes), closing its connection.
//!
//! On a Redis Cluster the same task runs sharded PUB/SUB (Redis 7):
//! notices go out by `SPUBLISH` on a channel carrying their conversation's
//! hash tag, so they travel through the shard that owns the conversation
//! instead of being broadcast to every shard, and the subscription
//! connection is the cluster client's, which `SSUBSCRIBE`s each channel on
//! its shard's master. The probe then runs per shard: one probe channel
//! hashed into each master's slots, each expected back. A shard that fails
//! over, a slot that moves (Redis answers with an `sunsubscribe` the node
//! did not ask for), or a lost node connection is handled like a lost
//! connection: everything is subscribed afresh and every subscriber resyncs.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisError, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::conn::{Conn, SentinelConn};
use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, RedisEngine, RedisTarget, keys, unavailable};
use crate::engine::bus::{LocalHub, WeakHub};
use crate::engine::{BusMessage, Channel, EngineError, EngineResult, Subscription};

/// How often the subscription is probed unless the engine was built with
/// another interval. A dead subscription is noticed within two intervals.
pub(super) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest probe interval accepted: a timer cannot tick at zero.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How long Redis may take to confirm a SUBSCRIBE or UNSUBSCRIBE before the
/// connection is given up as dead.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);
/// The most subscription requests one SUBSCRIBE carries.
const MAX_SUBSCRIBE_BATCH: usize = 512;
/// First pause between reconnection attempts, doubled after each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Cap on that pause, so a Redis that comes back is used again quickly.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub(super) enum BusError {
    #[error("Redis: {0}")]
    Redis(#[from] RedisError),
    #[error("Redis did not answer {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("the subscription connection closed")]
    Closed,
    #[error("the liveness probe did not come back within {0:?}")]
    ProbeLost(Duration),
    #[error("Redis knows no subscriber of the probe channel")]
    ProbeUnheard,
    #[error("a shard dropped a subscription (slot moved or failover)")]
    Moved,
    #[error("the cluster has no master for some slots")]
    Uncovered,
    #[error("the subscription is being re-established")]
    Reconnecting,
    #[error("the bus task has stopped")]
    Stopped,
}

impl From<BusError> for EngineError {
    fn from(err: BusError) -> Self {
        EngineError::Unavailable(format!("bus: {err}"))
    }
}

/// The engine's handle on its bus. Cheap to clone; the task ends when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub(super) struct RedisBus {
    hub: LocalHub,
    requests: mpsc::UnboundedSender<Request>,
    /// Set by the task: connected, subscribed and passing the probe.
    healthy: Arc<AtomicBool>,
}

/// Asks the task to make sure Redis delivers `channel` to this node.
#[derive(Debug)]
struct Request {
    channel: Channel,
    reply: oneshot::Sender<EngineResult<()>>,
}

impl RedisBus {
    /// Opens the subscription connection (so a Redis that refuses it fails
    /// start-up) and starts the task that owns it.
    pub(super) async fn start(
        source: Source,
        conn: Conn,
        prefix: &str,
        probe_interval: Duration,
    ) -> Result<Self, BusError> {
        let prefix: Arc<str> = prefix.into();
        // Unique per engine, so every engine probes its own subscription
        // even when several share a process and a prefix.
        let node = uuid::Uuid::new_v4();
        let link = open_link(&source, &conn, &prefix, node, Vec::new()).await?;
        let (hub, forgotten) = LocalHub::with_forget_hook();
        let (requests, request_rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let actor = Actor {
            source,
            conn,
            prefix,
            node,
            interval: probe_interval.max(MIN_PROBE_INTERVAL),
            hub: hub.downgrade(),
            healthy: Arc::clone(&healthy),
            requests: request_rx,
            forgotten,
        };
        tokio::spawn(actor.run(link));
        Ok(Self {
            hub,
            requests,
            healthy,
        })
    }

    async fn subscribe(&self, channel: Channel) -> EngineResult<Subscription> {
        // Joined to the hub first, so nothing delivered after the
        // confirmation can slip past it. Dropped (and so released) if the
        // confirmation fails.
        let subscription = self.hub.subscribe(channel.clone());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { channel, reply })
            .map_err(|_| BusError::Stopped)?;
        answer.await.map_err(|_| BusError::Stopped)??;
        Ok(subscription)
    }
}

impl RedisEngine {
    pub async fn publish(&self, channel: &Channel, payload: &[u8]) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        // The answer is how many nodes listen; none is fine, the log holds
        // the event for whoever comes later.
        let verb = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        let _receivers: u64 = redis::cmd(verb)
            .arg(keys::bus_channel(&self.prefix, channel))
            .arg(payload)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn subscribe(&self, channel: Channel) -> EngineResult<Subscription> {
        self.bus.subscribe(channel).await
    }

    /// Whether the subscription connection is up and passed its last probe.
    pub fn bus_healthy(&self) -> bool {
        self.bus.healthy.load(Ordering::Relaxed)
    }
}

/// Where the bus opens its subscription connections.
#[derive(Clone)]
pub(super) enum Source {
    /// One server: a dedicated PUB/SUB connection.
    Plain(Box<redis::Client>),
    /// The master the Sentinels name, asked afresh at every (re)connection.
    Sentinel(SentinelConn),
    /// A cluster: a RESP3 cluster connection whose push messages carry the
    /// sharded notices.
    Sharded(Box<RedisTarget>),
}

/// One subscription connection and what it is subscribed to.
struct Link {
    wire: Wire,
    /// Redis channel name → bus channel, for the channels subscribed on this
    /// connection (the probe channels aside).
    channels: HashMap<String, Channel>,
    /// The probe channels: one on a single server, one per shard on a
    /// cluster (each hashed into a slot of its shard's master).
    probes: Vec<String>,
}

enum Wire {
    Plain {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Sharded {
        conn: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

/// What a link delivered.
enum Incoming {
    Message(String, Vec<u8>),
    Lost(BusError),
    /// A confirmation or other push that needs no action.
    Nothing,
}

impl Link {
    fn sharded(&self) -> bool {
        matches!(self.wire, Wire::Sharded { .. })
    }

    async fn next(&mut self) -> Incoming {
        match &mut self.wire {
            Wire::Plain { stream, .. } => match stream.next().await {
                Some(message) => Incoming::Message(
                    message.get_channel_name().to_owned(),
                    message.get_payload_bytes().to_vec(),
                ),
                None => Incoming::Lost(BusError::Closed),
            },
            Wire::Sharded { pushes, .. } => match pushes.recv().await {
                Some(push) => self.on_push(push),
                None => Incoming::Lost(BusError::Closed),
            },
        }
    }

    /// What is buffered already, without waiting.
    fn next_now(&mut self) -> Option<Incoming> {
        match &mut self.wire {
            Wire::Plain { stream, .. } => stream.next().now_or_never().map(|m| match m {
                Some(message) => Incoming::Message(
                    message.get_channel_name().to_owned(),
                    message.get_payload_bytes().to_vec(),
                ),
                None => Incoming::Lost(BusError::Closed),
            }),
            Wire::Sharded { pushes, .. } => match pushes.try_recv() {
                Ok(push) => Some(self.on_push(push)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    Some(Incoming::Lost(BusError::Closed))
                }
            },
        }
    }

    fn on_push(&self, push: PushInfo) -> Incoming {
        let mut data = push.data.into_iter();
        let name = match data.next() {
            Some(Value::BulkString(bytes)) => String::from_utf8(bytes).ok(),
            _ => None,
        };
        match push.kind {
            PushKind::SMessage | PushKind::Message => match (name, data.next()) {
                (Some(name), Some(Value::BulkString(payload))) => Incoming::Message(name, payload),
                _ => Incoming::Nothing,
            },
            PushKind::Disconnection => Incoming::Lost(BusError::Closed),
            // Redis drops a shard channel's subscribers when its slot moves
            // away; one still wanted means notices may have been missed.
            PushKind::SUnsubscribe
                if name.as_ref().is_some_and(|name| {
                    self.channels.contains_key(name) || self.probes.contains(name)
                }) =>
            {
                Incoming::Lost(BusError::Moved)
            }
            _ => Incoming::Nothing,
        }
    }

    async fn subscribe(&mut self, names: Vec<String>) -> Result<(), BusError> {
        match &mut self.wire {
            Wire::Plain { sink, .. } => confirm("SUBSCRIBE", sink.subscribe(names)).await,
            // One command per channel: a command's channels must share a slot.
            Wire::Sharded { conn, .. } => {
                let each = names.into_iter().map(|name| {
                    let mut conn = conn.clone();
                    async move { confirm("SSUBSCRIBE", conn.ssubscribe(name)).await }
                });
                futures::future::try_join_all(each).await.map(|_| ())
            }
        }
    }

    async fn unsubscribe(&mut self, name: &str) -> Result<(), BusError> {
        match &mut self.wire {
            Wire::Plain { sink, .. } => confirm("UNSUBSCRIBE", sink.unsubscribe(name)).await,
            Wire::Sharded { conn, .. } => confirm("SUNSUBSCRIBE", conn.sunsubscribe(name)).await,
        }
    }
}

/// Why [`Actor::serve`] stopped.
enum Ended {
    EngineGone,
    Lost(BusError),
}

/// The task owning the subscription connection; see the module docs.
struct Actor {
    source: Source,
    /// For the probe's PUBLISH: the probe then follows the same path as
    /// every other node's publishes.
    conn: Conn,
    prefix: Arc<str>,
    /// This engine's id, in its probe channels' names.
    node: uuid::Uuid,
    interval: Duration,
    hub: WeakHub,
    healthy: Arc<AtomicBool>,
    requests: mpsc::UnboundedReceiver<Request>,
    forgotten: mpsc::UnboundedReceiver<Channel>,
}

impl Actor {
    async fn run(mut self, first: Link) {
        let mut next = Some(first);
        while let Some(mut link) = next.take() {
            self.healthy.store(true, Ordering::Relaxed);
            let ended = self.serve(&mut link).await;
            self.healthy.store(false, Ordering::Relaxed);
            // Closed before reconnecting: Redis must not keep delivering to
            // a connection nobody reads.
            drop(link);
            match ended {
                Ended::EngineGone => break,
                Ended::Lost(reason) => {
                    tracing::warn!(error = %reason, "bus subscription lost; reconnecting");
                    next = self.reconnect().await;
                    if next.is_some() {
                        tracing::info!("bus subscription re-established");
                    }
                }
            }
        }
        tracing::debug!("bus task ends with its engine");
    }

    /// Runs one connection until it fails or the engine is dropped.
    async fn serve(&mut self, link: &mut Link) -> Ended {
        let mut ticker = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sent: u64 = 0;
        // The token of the probe on its way, and the probe channels it has
        // not come back on yet.
        let mut awaiting: Option<(String, HashSet<String>)> = None;
        loop {
            tokio::select! {
                incoming = link.next() => match incoming {
                    Incoming::Message(name, payload) => {
                        self.on_message(link, &mut awaiting, &name, payload);
                    }
                    Incoming::Lost(err) => return Ended::Lost(err),
                    Incoming::Nothing => {}
                },
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return Ended::EngineGone;
                    };
                    // Every request already waiting goes in the same
                    // SUBSCRIBE: a burst of arrivals asks for thousands of
                    // channels, and one confirmed round trip each queued
                    // them for most of a second (docs/benchmarks.md).
                    let mut batch = vec![request];
                    while batch.len() < MAX_SUBSCRIBE_BATCH
                        && let Ok(more) = self.requests.try_recv()
                    {
                        batch.push(more);
                    }
                    let channels = batch.iter().map(|r| r.channel.clone()).collect();
                    let subscribed = self.ensure_subscribed(link, channels).await;
                    for request in batch {
                        let answer = match &subscribed {
                            Ok(()) => Ok(()),
                            Err(err) => Err(EngineError::Unavailable(format!(
                                "bus: cannot subscribe: {err}"
                            ))),
                        };
                        let _ = request.reply.send(answer);
                    }
                    if let Err(err) = subscribed {
                        return Ended::Lost(err);
                    }
                }
                forgotten = self.forgotten.recv() => {
                    let Some(channel) = forgotten else {
                        return Ended::EngineGone;
                    };
                    if let Err(err) = self.release(link, &channel).await {
                        return Ended::Lost(err);
                    }
                }
                _ = ticker.tick() => {
                    // The probe may be waiting in the buffer behind the tick.
                    while awaiting.is_some() {
                        match link.next_now() {
                            Some(Incoming::Message(name, payload)) => {
                                self.on_message(link, &mut awaiting, &name, payload);
                            }
                            Some(Incoming::Lost(err)) => return Ended::Lost(err),
                            Some(Incoming::Nothing) => {}
                            None => break,
                        }
                    }
                    if awaiting.is_some() {
                        return Ended::Lost(BusError::ProbeLost(self.interval));
                    }
                    sent = sent.wrapping_add(1);
                    let token = sent.to_string();
                    if let Err(err) = self.send_probe(link, &token).await {
                        return Ended::Lost(err);
                    }
                    awaiting = Some((token, link.probes.iter().cloned().collect()));
                }
            }
        }
    }

    fn on_message(
        &self,
        link: &Link,
        awaiting: &mut Option<(String, HashSet<String>)>,
        name: &str,
        payload: Vec<u8>,
    ) {
        if link.probes.iter().any(|probe| probe == name) {
            if let Some((token, pending)) = awaiting
                && token.as_bytes() == payload.as_slice()
            {
                pending.remove(name);
                if pending.is_empty() {
                    *awaiting = None;
                }
            }
            return;
        }
        if let Some(channel) = link.channels.get(name)
            && let Some(hub) = self.hub.upgrade()
        {
            hub.deliver(channel, BusMessage::Payload(Bytes::from(payload)));
        }
    }

    /// Publishes `token` on every probe channel, through the engine's own
    /// connection (on a cluster, each to its shard).
    async fn send_probe(&self, link: &Link, token: &str) -> Result<(), BusError> {
        let verb = if link.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        for probe in &link.probes {
            let mut conn = self.conn.clone();
            let mut publish = redis::cmd(verb);
            publish.arg(probe).arg(token);
            let publish = publish.query_async::<u64>(&mut conn);
            let receivers = tokio::time::timeout(self.interval, publish)
                .await
                .map_err(|_| BusError::Timeout("the probe's PUBLISH", self.interval))??;
            // Nobody subscribed: Redis forgot this connection's subscriptions.
            if receivers == 0 {
                return Err(BusError::ProbeUnheard);
            }
        }
        Ok(())
    }

    fn wanted(&self, channel: &Channel) -> bool {
        self.hub.upgrade().is_some_and(|hub| hub.contains(channel))
    }

    /// Subscribes `channels` in one command, answered once Redis has
    /// confirmed them all.
    async fn ensure_subscribed(
        &self,
        link: &mut Link,
        channels: Vec<Channel>,
    ) -> Result<(), BusError> {
        let mut named: HashMap<String, Channel> = HashMap::new();
        for channel in channels {
            let name = keys::bus_channel(&self.prefix, &channel);
            // Already subscribed, or the requester gave up (and its release
            // follows): nothing to do.
            if !link.channels.contains_key(&name) && self.wanted(&channel) {
                named.insert(name, channel);
            }
        }
        if named.is_empty() {
            return Ok(());
        }
        link.subscribe(named.keys().cloned().collect()).await?;
        link.channels.extend(named);
        Ok(())
    }

    async fn release(&self, link: &mut Link, channel: &Channel) -> Result<(), BusError> {
        // A new local subscriber may have come since the last one left.
        if self.wanted(channel) {
            return Ok(());
        }
        let name = keys::bus_channel(&self.prefix, channel);
        if link.channels.remove(&name).is_some() {
            link.unsubscribe(&name).await?;
        }
        Ok(())
    }

    /// Unsubscribes what the hub dropped while the link was being opened
    /// (releases are not acted on then).
    async fn prune(&self, link: &mut Link) -> Result<(), BusError> {
        let stale: Vec<Channel> = link
            .channels
            .values()
            .filter(|channel| !self.wanted(channel))
            .cloned()
            .collect();
        for channel in stale {
            self.release(link, &channel).await?;
        }
        Ok(())
    }

    /// Opens a new link subscribed to everything the hub holds, then tells
    /// every local subscriber to resync. `None` once the engine is gone.
    async fn reconnect(&mut self) -> Option<Link> {
        let mut delay = MIN_BACKOFF;
        loop {
            self.refusing(tokio::time::sleep(delay)).await?;
            let wanted = self.hub.upgrade()?.channels();
            let prefix = Arc::clone(&self.prefix);
            let (source, conn) = (self.source.clone(), self.conn.clone());
            let attempt = open_link(&source, &conn, &prefix, self.node, wanted);
            let result = match self.refusing(attempt).await? {
                Ok(mut link) => self.prune(&mut link).await.map(|()| link),
                Err(err) => Err(err),
            };
            match result {
                Ok(link) => {
                    self.hub.upgrade()?.resync_all();
                    return Some(link);
                }
                Err(err) => {
                    tracing::debug!(error = %err, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "bus reconnection failed");
                    delay = delay.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Waits for `work` while there is no link: subscribe requests are
    /// refused (nothing can be subscribed now), releases are left to
    /// [`Self::prune`]. `None` once the engine is gone.
    async fn refusing<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                request = self.requests.recv() => {
                    let request = request?;
                    let _ = request.reply.send(Err(BusError::Reconnecting.into()));
                }
                forgotten = self.forgotten.recv() => {
                    forgotten?;
                }
            }
        }
    }
}

/// Connects and subscribes the probe channels and `channels`.
async fn open_link(
    source: &Source,
    conn: &Conn,
    prefix: &str,
    node: uuid::Uuid,
    channels: Vec<Channel>,
) -> Result<Link, BusError> {
    let connect = async {
        match source {
            Source::Plain(client) => {
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok(Wire::Plain { sink, stream })
            }
            Source::Sentinel(sentinel) => {
                let client = sentinel.master_client().await?;
                let (sink, stream) = client.get_async_pubsub().await?.split();
                Ok(Wire::Plain { sink, stream })
            }
            Source::Sharded(target) => {
                let super::target::Topology::Cluster(nodes) = &target.topology else {
                    return Err(BusError::Uncovered);
                };
                let (sender, pushes) = mpsc::unbounded_channel();
                let client = target.cluster_client(
                    nodes,
                    Some(sender),
                    (CONNECT_TIMEOUT, RESPONSE_TIMEOUT),
                )?;
                let conn = client.get_async_connection().await?;
                Ok(Wire::Sharded { conn, pushes })
            }
        }
    };
    let wire = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| BusError::Timeout("the connection", CONNECT_TIMEOUT))??;
    let probes = match wire {
        Wire::Plain { .. } => vec![keys::bus_probe(prefix, node)],
        Wire::Sharded { .. } => shard_probes(conn, prefix, node).await?,
    };
    let channels: HashMap<String, Channel> = channels
        .into_iter()
        .map(|channel| (keys::bus_channel(prefix, &channel), channel))
        .collect();
    let mut link = Link {
        wire,
        channels,
        probes,
    };
    let names: Vec<String> = link
        .probes
        .iter()
        .chain(link.channels.keys())
        .cloned()
        .collect();
    link.subscribe(names).await?;
    Ok(link)
}

/// One probe channel per master of the cluster, each hashed into a slot
/// that master serves, so that every shard's subscription is probed.
async fn shard_probes(
    conn: &Conn,
    prefix: &str,
    node: uuid::Uuid,
) -> Result<Vec<String>, BusError> {
    let mut conn = conn.clone();
    let slots: Vec<Vec<Value>> = tokio::time::timeout(
        CONFIRM_TIMEOUT,
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn),
    )
    .await
    .map_err(|_| BusError::Timeout("CLUSTER SLOTS", CONFIRM_TIMEOUT))??;
    // Master address → the slot ranges it serves.
    let mut masters: HashMap<String, Vec<(u16, u16)>> = HashMap::new();
    let mut covered: u32 = 0;
    for range in &slots {
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (range.first(), range.get(1), range.get(2))
        else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
            continue;
        };
        let addr = format!("{:?}:{:?}", master.first(), master.get(1));
        covered += u32::from(end.saturating_sub(start)) + 1;
        masters.entry(addr).or_default().push((start, end));
    }
    if covered < u32::from(keys::SLOTS) || masters.is_empty() {
        return Err(BusError::Uncovered);
    }
    let mut probes = Vec::new();
    for ranges in masters.values() {
        let tag = keys::tag_in_slots(ranges).ok_or(BusError::Uncovered)?;
        probes.push(keys::bus_shard_probe(prefix, node, &tag));
    }
    probes.sort();
    Ok(probes)
}

/// Awaits a subscription command's confirmation, for at most
/// [`CONFIRM_TIMEOUT`]: on a dead connection it would never come.
async fn confirm(
    what: &'static str,
    command: impl Future<Output = Result<(), RedisError>>,
) -> Result<(), BusError> {
    tokio::time::timeout(CONFIRM_TIMEOUT, command)
        .await
        .map_err(|_| BusError::Timeout(what, CONFIRM_TIMEOUT))??;
    Ok(())
}
