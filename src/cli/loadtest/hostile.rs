//! `loadtest hostile`: the steady scenario's honest visitors and agents,
//! with hostile clients beside them for the whole run: message flooders,
//! session spammers (one socket making session after session),
//! conversation spammers (a new session and conversation each time) and
//! clients sending frames over the size limit.
//!
//! Hostile clients use a deployment of their own that no agent serves, and
//! connect from other loopback addresses (127.0.1.x) than the honest ones,
//! so what they cause stays theirs: the run passes only when the honest
//! sessions lose nothing and get nothing twice, whatever the limits refuse
//! the hostile ones; the report says what the honest sessions lost and got
//! twice. With `--node-pid`, the node's resident memory is sampled from
//! before the hostile clients start until after they stop, every
//! `--rss-interval-seconds`: a node whose limits hold stays flat, however
//! long the run, and the samples show it over time rather than at two
//! points.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::frames::{self, GuestFrame};
use super::net::{self, Incoming, Target, Ws};
use super::stats::rss_kib;
use super::steady::{self, SteadyArgs};
use super::{LoadError, Outcome, Run, setup, stopped};

/// `switchboard loadtest hostile`.
#[derive(Debug, clap::Args)]
pub struct HostileArgs {
    #[command(flatten)]
    pub steady: SteadyArgs,
    /// Sockets sending messages as fast as they are answered.
    #[arg(long, default_value_t = 4)]
    pub flooders: usize,
    /// Sockets configuring one new session after another.
    #[arg(long, default_value_t = 4)]
    pub session_spammers: usize,
    /// Clients opening a new session and conversation, again and again.
    #[arg(long, default_value_t = 4)]
    pub conversation_spammers: usize,
    /// Clients sending a frame over the size limit, reconnecting each time
    /// they are closed.
    #[arg(long, default_value_t = 2)]
    pub oversized: usize,
    /// The size of an oversized frame.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub oversized_bytes: usize,
    /// Loopback source addresses of the hostile clients (127.0.1.1 up).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..))]
    pub hostile_addresses: u8,
    /// The node's process id, to read its resident memory.
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// How often the node's resident memory is sampled (with --node-pid).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub rss_interval_seconds: u64,
}

/// What the hostile clients tried, and what became of it.
#[derive(Debug, Default)]
struct Counters {
    flood_sent: AtomicU64,
    flood_accepted: AtomicU64,
    flood_refused: AtomicU64,
    sessions_tried: AtomicU64,
    sessions_made: AtomicU64,
    sessions_refused: AtomicU64,
    conversations_tried: AtomicU64,
    conversations_opened: AtomicU64,
    conversations_refused: AtomicU64,
    oversized_sent: AtomicU64,
    oversized_closed: AtomicU64,
    /// Connections refused or broken other than by design.
    connect_failures: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Serialize)]
pub(super) struct Hostile {
    flood_sent: u64,
    flood_accepted: u64,
    flood_refused: u64,
    sessions_tried: u64,
    sessions_made: u64,
    sessions_refused: u64,
    conversations_tried: u64,
    conversations_opened: u64,
    conversations_refused: u64,
    oversized_sent: u64,
    oversized_closed: u64,
    connect_failures: u64,
}

impl From<&Counters> for Hostile {
    fn from(c: &Counters) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            flood_sent: get(&c.flood_sent),
            flood_accepted: get(&c.flood_accepted),
            flood_refused: get(&c.flood_refused),
            sessions_tried: get(&c.sessions_tried),
            sessions_made: get(&c.sessions_made),
            sessions_refused: get(&c.sessions_refused),
            conversations_tried: get(&c.conversations_tried),
            conversations_opened: get(&c.conversations_opened),
            conversations_refused: get(&c.conversations_refused),
            oversized_sent: get(&c.oversized_sent),
            oversized_closed: get(&c.oversized_closed),
            connect_failures: get(&c.connect_failures),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Memory {
    /// Before the hostile clients started, and once they had stopped.
    start_kib: Option<u64>,
    end_kib: Option<u64>,
    growth_kib: Option<i64>,
    /// The most the node held at any sample.
    peak_kib: Option<u64>,
    /// The node's resident memory over the run.
    samples: Vec<RssSample>,
}

/// The node's resident memory at one moment of the run.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct RssSample {
    /// Seconds since the hostile clients started.
    at_s: f64,
    kib: u64,
}

/// What the honest sessions running beside the hostile clients suffered:
/// the run is clean only when all of it is zero.
#[derive(Debug, Serialize)]
pub(super) struct HonestLoss {
    lost: u64,
    duplicated: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Figures {
    honest: steady::Figures,
    honest_loss: HonestLoss,
    hostile: Hostile,
    node: Memory,
}

/// Where the hostile clients go.
struct Arena {
    target: Target,
    deployment: String,
    counters: Counters,
    oversized_bytes: usize,
}

pub(super) async fn run(args: &HostileArgs) -> Result<(Run, Outcome<Figures>), LoadError> {
    let common = &args.steady.common;
    let (Some(url), Some(bootstrap)) = (common.url.first(), common.bootstrap_token.as_deref())
    else {
        return Err(LoadError::Usage(
            "hostile needs --url and --bootstrap-token (its clients get a deployment of their own)"
                .to_owned(),
        ));
    };
    if let Some(pid) = args.node_pid
        && rss_kib(pid).is_none()
    {
        return Err(LoadError::Usage(format!(
            "--node-pid {pid}: cannot read /proc/{pid}/status"
        )));
    }
    let sources = (1..=args.hostile_addresses)
        .map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 1, x)))
        .collect();
    let target = Target::with_sources(url, sources)?;
    let organization = setup::organizations(&target.base, bootstrap, "hostile", 1, 0, 1)
        .await?
        .pop()
        .ok_or_else(|| LoadError::Setup("no organization was set up".to_owned()))?;
    let arena = Arc::new(Arena {
        target,
        deployment: organization.deployment,
        counters: Counters::default(),
        oversized_bytes: args.oversized_bytes,
    });
    let node_rss = || args.node_pid.and_then(rss_kib);
    let start_kib = node_rss();
    let started = tokio::time::Instant::now();
    let (sampling_tx, sampling) = watch::channel(false);
    let sampler = args.node_pid.map(|pid| {
        tokio::spawn(sample_rss(
            pid,
            Duration::from_secs(args.rss_interval_seconds),
            started,
            sampling,
        ))
    });

    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..args.flooders {
        tasks.push(tokio::spawn(flooder(arena.clone(), stop.clone())));
    }
    for _ in 0..args.session_spammers {
        tasks.push(tokio::spawn(session_spammer(arena.clone(), stop.clone())));
    }
    for _ in 0..args.conversation_spammers {
        tasks.push(tokio::spawn(conversation_spammer(
            arena.clone(),
            stop.clone(),
        )));
    }
    for _ in 0..args.oversized {
        tasks.push(tokio::spawn(oversized(arena.clone(), stop.clone())));
    }

    let honest = steady::run(&args.steady).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let end_kib = node_rss();
    let _ = sampling_tx.send(true);
    let mut samples = match sampler {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some(kib) = end_kib {
        samples.push(RssSample {
            at_s: super::stats::round3(started.elapsed().as_secs_f64()),
            kib,
        });
    }
    let peak_kib = samples.iter().map(|s| s.kib).max();
    let (run, outcome) = honest?;
    let hostile = Hostile::from(&arena.counters);
    let mut lines = outcome.lines;
    lines.push(format!(
        "hostile: flood {} sent, {} refused; sessions {} tried, {} made; conversations {} tried, {} opened; oversized {} sent, {} closed",
        hostile.flood_sent,
        hostile.flood_refused,
        hostile.sessions_tried,
        hostile.sessions_made,
        hostile.conversations_tried,
        hostile.conversations_opened,
        hostile.oversized_sent,
        hostile.oversized_closed,
    ));
    let growth_kib = match (start_kib, end_kib) {
        (Some(s), Some(e)) => {
            Some(i64::try_from(e).unwrap_or(i64::MAX) - i64::try_from(s).unwrap_or(0))
        }
        _ => None,
    };
    lines.push(format!(
        "honest sessions beside them: {} lost, {} duplicated",
        outcome.lost, outcome.duplicated
    ));
    if let (Some(s), Some(e)) = (start_kib, end_kib) {
        let peak = peak_kib.unwrap_or(e);
        lines.push(format!(
            "node memory: {s} KiB before, {peak} KiB at most, {e} KiB after ({} samples)",
            samples.len()
        ));
        let over_time: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.0}s {}", s.at_s, s.kib))
            .collect();
        lines.push(format!(
            "node memory over time (KiB): {}",
            over_time.join(", ")
        ));
    }
    let outcome = Outcome {
        figures: Figures {
            honest: outcome.figures,
            honest_loss: HonestLoss {
                lost: outcome.lost,
                duplicated: outcome.duplicated,
            },
            hostile,
            node: Memory {
                start_kib,
                end_kib,
                growth_kib,
                peak_kib,
                samples,
            },
        },
        lost: outcome.lost,
        duplicated: outcome.duplicated,
        complete: outcome.complete,
        lines,
    };
    Ok((run, outcome))
}

/// Samples the node's resident memory every `interval` from `started`
/// (the first at once) until `done`; a sample that cannot be read (the
/// node went) is skipped.
async fn sample_rss(
    pid: u32,
    interval: Duration,
    started: tokio::time::Instant,
    mut done: watch::Receiver<bool>,
) -> Vec<RssSample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(kib) = rss_kib(pid) {
                    samples.push(RssSample {
                        at_s: super::stats::round3(started.elapsed().as_secs_f64()),
                        kib,
                    });
                }
            }
            () = stopped(&mut done) => return samples,
        }
    }
}

impl Arena {
    async fn connect(&self) -> Option<Ws> {
        let path = format!(
            "/v1?deploymentId={}&application=switchboard-loadtest-hostile",
            self.deployment
        );
        match self.target.connect(&path, None).await {
            Ok(ws) => Some(ws),
            Err(_) => {
                add(&self.counters.connect_failures);
                // Refused outright: do not spin on it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        }
    }

    /// Configures a new session on `ws`; answers its token when the
    /// server made it, `None` when refused (or the socket went).
    async fn new_session(&self, ws: &mut Ws) -> Option<String> {
        let token = Uuid::new_v4().to_string();
        add(&self.counters.sessions_tried);
        net::send(ws, frames::configure_session(&token, &self.deployment))
            .await
            .ok()?;
        let code = answer(ws, "configure").await?;
        if code == 200 {
            add(&self.counters.sessions_made);
            Some(token)
        } else {
            add(&self.counters.sessions_refused);
            None
        }
    }
}

/// Reads until the answer carrying `tracing_id`; answers its code, `None`
/// when the socket closed first.
async fn answer(ws: &mut Ws, tracing_id: &str) -> Option<u16> {
    let read = async {
        loop {
            match net::next(ws).await {
                Incoming::Text(text) => {
                    let Ok(frame) = serde_json::from_str::<GuestFrame<'_>>(text.as_str()) else {
                        continue;
                    };
                    if frame.tracing_id.as_deref() == Some(tracing_id) {
                        return Some(frame.code);
                    }
                }
                Incoming::Closed => return None,
                Incoming::Other => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

/// One session sending messages as fast as they are answered; a new one
/// when the socket goes.
async fn flooder(arena: Arc<Arena>, mut stop: watch::Receiver<bool>) {
    let counters = &arena.counters;
    let work = async {
        loop {
            let Some(mut ws) = arena.connect().await else {
                continue;
            };
            let Some(token) = arena.new_session(&mut ws).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut k = 0usize;
            loop {
                add(&counters.flood_sent);
                if net::send(&mut ws, frames::on_message(&token, k))
                    .await
                    .is_err()
                {
                    break;
                }
                match answer(&mut ws, &k.to_string()).await {
                    Some(200) => add(&counters.flood_accepted),
                    Some(_) => add(&counters.flood_refused),
                    None => break,
                }
                k += 1;
            }
        }
    };
    tokio::select! {
        _ = work => {}
        () = stopped(&mut stop) => {}
    }
}

/// One socket making one new session after another.
async fn session_spammer(arena: Arc<Arena>, mut stop: watch::Receiver<bool>) {
    let work = async {
        loop {
            let Some(mut ws) = arena.connect().await else {
                continue;
            };
            loop {
                if arena.new_session(&mut ws).await.is_none() && ws_closed(&mut ws).await {
                    break;
                }
            }
        }
    };
    tokio::select! {
        _ = work => {}
        () = stopped(&mut stop) => {}
    }
}

/// Whether a socket is gone: a ping that cannot be sent.
async fn ws_closed(ws: &mut Ws) -> bool {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Ping(
        Vec::new().into(),
    ))
    .await
    .is_err()
}

/// A new session and a conversation, again and again.
async fn conversation_spammer(arena: Arc<Arena>, mut stop: watch::Receiver<bool>) {
    let counters = &arena.counters;
    let work = async {
        loop {
            let Some(mut ws) = arena.connect().await else {
                continue;
            };
            let Some(token) = arena.new_session(&mut ws).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            add(&counters.conversations_tried);
            if net::send(&mut ws, frames::opening_message(&token))
                .await
                .is_err()
            {
                continue;
            }
            match answer(&mut ws, "open").await {
                Some(200) => add(&counters.conversations_opened),
                Some(_) => add(&counters.conversations_refused),
                None => {}
            }
            let _ = ws.close(None).await;
        }
    };
    tokio::select! {
        _ = work => {}
        () = stopped(&mut stop) => {}
    }
}

/// A frame over the limit, on a new socket each time: the node closes it.
async fn oversized(arena: Arc<Arena>, mut stop: watch::Receiver<bool>) {
    let counters = &arena.counters;
    let frame = format!(
        r#"{{"action":"echo","message":{{"type":"Text","text":"{}"}}}}"#,
        "x".repeat(arena.oversized_bytes)
    );
    let work = async {
        loop {
            let Some(mut ws) = arena.connect().await else {
                continue;
            };
            add(&counters.oversized_sent);
            // The node may close before the whole frame is written.
            let _ = net::send(&mut ws, frame.clone()).await;
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Incoming::Closed = net::next(&mut ws).await {
                        return;
                    }
                }
            })
            .await;
            if closed.is_ok() {
                add(&counters.oversized_closed);
            }
        }
    };
    tokio::select! {
        _ = work => {}
        () = stopped(&mut stop) => {}
    }
}
