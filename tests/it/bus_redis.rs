//! The Redis bus when things go wrong: Redis restarts, the subscription
//! connection is killed, or it silently stops delivering. Each test runs its
//! own private Redis and a short liveness-probe interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use switchboard::engine::{BusMessage, Channel, Engine, RedisEngine, Subscription};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use uuid::Uuid;

use crate::support::{self, RedisServer};

/// Short, so a dead subscription is noticed within a fraction of a second.
const PROBE: Duration = Duration::from_millis(200);
/// How long recovery may take at most before the test fails.
const RECOVERY: Duration = Duration::from_secs(20);

async fn engine_on(url: &str, prefix: &str) -> Engine {
    let engine = RedisEngine::connect_with_probe_interval(url, prefix, PROBE)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Engine::Redis(engine)
}

async fn raw_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// How many subscriber-mode connections the server has.
async fn pubsub_clients(url: &str) -> usize {
    let mut conn = raw_connection(url).await;
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    list.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Waits for a `Resync`, skipping payloads, within [`RECOVERY`].
async fn expect_resync(sub: &mut Subscription) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            sub.recv(),
        )
        .await
        {
            Ok(Some(BusMessage::Resync)) => return,
            Ok(Some(BusMessage::Payload(_))) => {}
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no Resync within {RECOVERY:?}"),
        }
    }
}

/// Publishes until `sub` receives what was published, within [`RECOVERY`]:
/// right after a recovery the publishing connection may itself still be
/// reconnecting, and more resyncs may come.
async fn publish_until_received(publisher: &Engine, channel: &Channel, sub: &mut Subscription) {
    let deadline = Instant::now() + RECOVERY;
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        let body = format!("after recovery {round}");
        if publisher.publish(channel, body.as_bytes()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let wait = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(message)) =
            timeout(wait.saturating_duration_since(Instant::now()), sub.recv()).await
        {
            if message == BusMessage::Payload(Bytes::from(body.clone())) {
                return;
            }
        }
    }
    panic!("no publish came through within {RECOVERY:?}");
}

/// Polls a flag the engine does not signal otherwise.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + RECOVERY;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes once and expects it back. Resyncs are skipped: with a probe
/// this short, a loaded test machine may miss one now and then.
async fn round_trip(
    engine: &Engine,
    channel: &Channel,
    sub: &mut Subscription,
    body: &'static [u8],
) {
    engine.publish(channel, body).await.expect("publish");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let message = timeout(
            deadline.saturating_duration_since(Instant::now()),
            sub.recv(),
        )
        .await
        .expect("message within 5s")
        .expect("subscription open");
        if message != BusMessage::Resync {
            assert_eq!(message, BusMessage::Payload(Bytes::from_static(body)));
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_resyncs_and_recovers() {
    let server = RedisServer::start();
    let engine = engine_on(&server.url(), &support::unique_prefix()).await;
    let channel = Channel::Conversation(Uuid::new_v4());
    let mut sub = engine.subscribe(channel.clone()).await.expect("subscribe");
    assert!(engine.bus_healthy());
    round_trip(&engine, &channel, &mut sub, b"before").await;

    server.stop();
    wait_for("the bus reports unhealthy", || !engine.bus_healthy()).await;
    // Nothing can be subscribed while Redis is away: refused, not hung.
    let refused = timeout(
        Duration::from_secs(10),
        engine.subscribe(Channel::Queue(Uuid::new_v4())),
    )
    .await
    .expect("subscribe answers while Redis is down");
    assert!(refused.is_err(), "subscribed without Redis");

    server.restart();
    expect_resync(&mut sub).await;
    publish_until_received(&engine, &channel, &mut sub).await;
    wait_for("the bus reports healthy", || engine.bus_healthy()).await;
    // New subscriptions work again too.
    let other = Channel::Agent(Uuid::new_v4());
    let mut fresh = engine
        .subscribe(other.clone())
        .await
        .expect("subscribe after restart");
    round_trip(&engine, &other, &mut fresh, b"fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscription_connection_resyncs_and_recovers() {
    let server = RedisServer::start();
    let engine = engine_on(&server.url(), &support::unique_prefix()).await;
    let channel = Channel::Conversation(Uuid::new_v4());
    let mut sub = engine.subscribe(channel.clone()).await.expect("subscribe");
    round_trip(&engine, &channel, &mut sub, b"before").await;

    let mut admin = raw_connection(&server.url()).await;
    let killed: u64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "the engine holds one subscription connection");

    expect_resync(&mut sub).await;
    publish_until_received(&engine, &channel, &mut sub).await;
    // The killed connection is gone and only the new one remains.
    let deadline = Instant::now() + RECOVERY;
    while pubsub_clients(&server.url()).await != 1 {
        assert!(
            Instant::now() < deadline,
            "not exactly one subscription connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subscription connection stays open but nothing comes through it any
/// more (a half-open TCP connection, a proxy that lost it): only the probe
/// can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silently_dead_subscription_is_detected_by_the_probe() {
    let server = RedisServer::start();
    let proxy = FreezingProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).await;
    let prefix = support::unique_prefix();
    let engine = engine_on(&proxy.url(), &prefix).await;
    let channel = Channel::Conversation(Uuid::new_v4());
    let mut sub = engine.subscribe(channel.clone()).await.expect("subscribe");
    round_trip(&engine, &channel, &mut sub, b"before").await;

    proxy.freeze_subscribers();
    // Another node publishes, straight to Redis.
    let other_node = engine_on(&server.url(), &prefix).await;
    other_node
        .publish(&channel, b"lost in the frozen connection")
        .await
        .expect("publish");

    expect_resync(&mut sub).await;
    publish_until_received(&other_node, &channel, &mut sub).await;
    wait_for("the bus reports healthy", || engine.bus_healthy()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_engine_ends_its_bus() {
    let server = RedisServer::start();
    let engine = engine_on(&server.url(), &support::unique_prefix()).await;
    let mut sub = engine
        .subscribe(Channel::Queue(Uuid::new_v4()))
        .await
        .expect("subscribe");
    assert_eq!(pubsub_clients(&server.url()).await, 1);

    drop(engine);
    let ended = timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("the subscription ends with the engine");
    assert_eq!(ended, None);
    let deadline = Instant::now() + RECOVERY;
    while pubsub_clients(&server.url()).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription connection outlived its engine"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of Redis that can make every subscriber connection
/// open right now go silent: bytes stop flowing both ways while both sockets
/// stay open. Connections opened later (and the command connections) are
/// forwarded normally.
struct FreezingProxy {
    addr: SocketAddr,
    /// Bumped by [`Self::freeze_subscribers`]; a subscriber connection from
    /// an earlier epoch forwards nothing more.
    epoch: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let epoch = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let epoch = Arc::clone(&epoch);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let born = epoch.load(Ordering::SeqCst);
                    let subscriber = Arc::new(AtomicBool::new(false));
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let pump = |read, write, sniff| Pump {
                        born,
                        epoch: Arc::clone(&epoch),
                        subscriber: Arc::clone(&subscriber),
                        sniff,
                        read,
                        write,
                    };
                    tokio::spawn(pump(client_read, server_write, true).run());
                    tokio::spawn(pump(server_read, client_write, false).run());
                }
            }
        });
        Self {
            addr,
            epoch,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn freeze_subscribers(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One direction of one proxied connection.
struct Pump {
    born: u64,
    epoch: Arc<AtomicU64>,
    /// Set once the client sent a SUBSCRIBE: only such connections freeze.
    subscriber: Arc<AtomicBool>,
    /// Whether this is the client-to-server direction, the one to watch for
    /// SUBSCRIBE.
    sniff: bool,
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Pump {
    async fn run(mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match self.read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.sniff
                && buf[..n]
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                self.subscriber.store(true, Ordering::SeqCst);
            }
            if self.subscriber.load(Ordering::SeqCst)
                && self.epoch.load(Ordering::SeqCst) != self.born
            {
                // Frozen: hold both sockets open, forward nothing, forever.
                std::future::pending::<()>().await;
            }
            if self.write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = self.write.shutdown().await;
    }
}
