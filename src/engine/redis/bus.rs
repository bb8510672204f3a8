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

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{Msg, RedisError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::{CONNECT_TIMEOUT, RedisEngine, keys, unavailable};
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
        client: redis::Client,
        conn: ConnectionManager,
        prefix: &str,
        probe_interval: Duration,
    ) -> Result<Self, BusError> {
        let prefix: Arc<str> = prefix.into();
        // Unique per engine, so every engine probes its own subscription
        // even when several share a process and a prefix.
        let probe_channel = keys::bus_probe(&prefix, uuid::Uuid::new_v4());
        let link = open_link(client.clone(), &prefix, &probe_channel, Vec::new()).await?;
        let (hub, forgotten) = LocalHub::with_forget_hook();
        let (requests, request_rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let actor = Actor {
            client,
            conn,
            prefix,
            probe_channel,
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
        let _receivers: u64 = redis::cmd("PUBLISH")
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

/// One subscription connection and what it is subscribed to.
struct Link {
    sink: PubSubSink,
    stream: PubSubStream,
    /// Redis channel name → bus channel, for the channels subscribed on this
    /// connection (the probe channel aside).
    channels: HashMap<String, Channel>,
}

/// Why [`Actor::serve`] stopped.
enum Ended {
    EngineGone,
    Lost(BusError),
}

/// The task owning the subscription connection; see the module docs.
struct Actor {
    client: redis::Client,
    /// For the probe's PUBLISH: the probe then follows the same path as
    /// every other node's publishes.
    conn: ConnectionManager,
    prefix: Arc<str>,
    probe_channel: String,
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
        // The token of the probe on its way, if any.
        let mut awaiting: Option<String> = None;
        loop {
            tokio::select! {
                message = link.stream.next() => match message {
                    Some(message) => self.on_message(link, &mut awaiting, &message),
                    None => return Ended::Lost(BusError::Closed),
                },
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return Ended::EngineGone;
                    };
                    if let Err(err) = self.ensure_subscribed(link, request.channel).await {
                        let _ = request.reply.send(Err(EngineError::Unavailable(format!(
                            "bus: cannot subscribe: {err}"
                        ))));
                        return Ended::Lost(err);
                    }
                    let _ = request.reply.send(Ok(()));
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
                        match link.stream.next().now_or_never() {
                            Some(Some(message)) => self.on_message(link, &mut awaiting, &message),
                            Some(None) => return Ended::Lost(BusError::Closed),
                            None => break,
                        }
                    }
                    if awaiting.is_some() {
                        return Ended::Lost(BusError::ProbeLost(self.interval));
                    }
                    sent = sent.wrapping_add(1);
                    let token = sent.to_string();
                    if let Err(err) = self.send_probe(&token).await {
                        return Ended::Lost(err);
                    }
                    awaiting = Some(token);
                }
            }
        }
    }

    fn on_message(&self, link: &Link, awaiting: &mut Option<String>, message: &Msg) {
        let name = message.get_channel_name();
        let payload = message.get_payload_bytes();
        if name == self.probe_channel {
            if awaiting.as_deref().map(str::as_bytes) == Some(payload) {
                *awaiting = None;
            }
            return;
        }
        if let Some(channel) = link.channels.get(name)
            && let Some(hub) = self.hub.upgrade()
        {
            hub.deliver(
                channel,
                BusMessage::Payload(Bytes::copy_from_slice(payload)),
            );
        }
    }

    async fn send_probe(&self, token: &str) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.probe_channel).arg(token);
        let publish = publish.query_async::<u64>(&mut conn);
        let receivers = tokio::time::timeout(self.interval, publish)
            .await
            .map_err(|_| BusError::Timeout("the probe's PUBLISH", self.interval))??;
        // Nobody subscribed: Redis forgot this connection's subscriptions.
        if receivers == 0 {
            return Err(BusError::ProbeUnheard);
        }
        Ok(())
    }

    fn wanted(&self, channel: &Channel) -> bool {
        self.hub.upgrade().is_some_and(|hub| hub.contains(channel))
    }

    async fn ensure_subscribed(&self, link: &mut Link, channel: Channel) -> Result<(), BusError> {
        let name = keys::bus_channel(&self.prefix, &channel);
        // Already subscribed, or the requester gave up (and its release
        // follows): nothing to do.
        if link.channels.contains_key(&name) || !self.wanted(&channel) {
            return Ok(());
        }
        confirm("SUBSCRIBE", link.sink.subscribe(&name)).await?;
        link.channels.insert(name, channel);
        Ok(())
    }

    async fn release(&self, link: &mut Link, channel: &Channel) -> Result<(), BusError> {
        // A new local subscriber may have come since the last one left.
        if self.wanted(channel) {
            return Ok(());
        }
        let name = keys::bus_channel(&self.prefix, channel);
        if link.channels.remove(&name).is_some() {
            confirm("UNSUBSCRIBE", link.sink.unsubscribe(&name)).await?;
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
            let (prefix, probe_channel) = (Arc::clone(&self.prefix), self.probe_channel.clone());
            let attempt = open_link(self.client.clone(), &prefix, &probe_channel, wanted);
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

/// Connects and subscribes the probe channel and `channels` in one command.
async fn open_link(
    client: redis::Client,
    prefix: &str,
    probe_channel: &str,
    channels: Vec<Channel>,
) -> Result<Link, BusError> {
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| BusError::Timeout("the connection", CONNECT_TIMEOUT))??;
    let (mut sink, stream) = pubsub.split();
    let channels: HashMap<String, Channel> = channels
        .into_iter()
        .map(|channel| (keys::bus_channel(prefix, &channel), channel))
        .collect();
    let names: Vec<&str> = std::iter::once(probe_channel)
        .chain(channels.keys().map(String::as_str))
        .collect();
    confirm("SUBSCRIBE", sink.subscribe(names)).await?;
    Ok(Link {
        sink,
        stream,
        channels,
    })
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
