//! `loadtest idle`: S guest sockets, each with a configured session, held
//! open; what they cost the node in resident memory.
//!
//! The node's memory is read from /proc/<pid>/status (`VmRSS`) of the pid
//! given with `--node-pid`, so the node runs in its own process, started
//! however the operator likes (docs/benchmarks.md shows the commands);
//! without it only the tool's own memory is reported. One warm socket is
//! opened first, so one-time allocations (the deployment's cached
//! configuration, the first connection's buffers) are not counted per
//! socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use super::net::{self, Incoming};
use super::stats::{Latency, round3, rss_kib};
use super::{Common, LoadError, Outcome, Run, wait_until};

/// `switchboard loadtest idle`.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sockets to open and hold.
    #[arg(long, default_value_t = 15_000)]
    pub sockets: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value_t = 10)]
    pub hold_seconds: u64,
    /// The node's process id, to read its resident memory.
    #[arg(long)]
    pub node_pid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(super) struct Parameters {
    sockets: usize,
    hold_seconds: u64,
    node_pid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(super) struct Memory {
    /// Before the sockets (one warm socket open), once all were open and
    /// settled, and at the end of the hold.
    before_kib: Option<u64>,
    open_kib: Option<u64>,
    end_kib: Option<u64>,
    per_socket_kib: Option<f64>,
}

impl Memory {
    fn per_socket(before: Option<u64>, open: Option<u64>, end: Option<u64>, n: usize) -> Self {
        let per_socket_kib = match (before, open) {
            (Some(b), Some(o)) if n > 0 => Some(round3(o.saturating_sub(b) as f64 / n as f64)),
            _ => None,
        };
        Self {
            before_kib: before,
            open_kib: open,
            end_kib: end,
            per_socket_kib,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Figures {
    parameters: Parameters,
    opened: usize,
    /// Could not be opened or configured.
    failed: usize,
    /// Closed by the server during the hold.
    dropped: usize,
    open_seconds: f64,
    opens_per_s: f64,
    /// Connect, upgrade and configureSession, per socket.
    connect: Latency,
    node: Memory,
    tool: Memory,
}

pub(super) async fn run(args: &IdleArgs) -> Result<(Run, Outcome<Figures>), LoadError> {
    let s = args.sockets.max(1);
    let run = Run::prepare(&args.common, "idle", s + 1, s, 0).await?;
    let node_rss = || args.node_pid.and_then(rss_kib);
    let tool_rss = || rss_kib(std::process::id());
    if let Some(pid) = args.node_pid
        && rss_kib(pid).is_none()
    {
        return Err(LoadError::Usage(format!(
            "--node-pid {pid}: cannot read /proc/{pid}/status"
        )));
    }
    let site = run.site(0);
    let warm = site.open().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (node_before, tool_before) = (node_rss(), tool_rss());

    let (stop_tx, stop) = watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(run.concurrency));
    let run = Arc::new(run);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(s);
    for i in 0..s {
        let (run, gate, opened, failed, dropped, mut stop) = (
            run.clone(),
            gate.clone(),
            opened.clone(),
            failed.clone(),
            dropped.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire().await;
            let begun = Instant::now();
            let mut visitor = match run.site(i).open().await {
                Ok(visitor) => visitor,
                Err(e) => {
                    run.error(e);
                    failed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            };
            let took = begun.elapsed().as_nanos() as u64;
            drop(permit);
            opened.fetch_add(1, Ordering::Relaxed);
            // Hold: read (tungstenite answers the server's pings) until
            // the run stops.
            loop {
                tokio::select! {
                    incoming = net::next(&mut visitor.ws) => {
                        if let Incoming::Closed = incoming {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return Some(took);
                        }
                    }
                    () = super::stopped(&mut stop) => break,
                }
            }
            let _ = visitor.ws.close(None).await;
            Some(took)
        }));
    }
    // Opening is bounded too: 10 s per socket, `concurrency` at a time.
    let open_deadline =
        Instant::now() + Duration::from_secs(10 * (s.div_ceil(run.concurrency) as u64).max(6));
    let all_tried = wait_until(open_deadline, || {
        opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= s
    })
    .await;
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (node_open, tool_open) = (node_rss(), tool_rss());
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    let (node_end, tool_end) = (node_rss(), tool_rss());
    let _ = stop_tx.send(true);
    let mut connect = Vec::with_capacity(s);
    for task in tasks {
        if let Ok(Some(took)) = task.await {
            connect.push(took);
        }
    }
    drop(warm);
    let run = Arc::try_unwrap(run)
        .map_err(|_| LoadError::Connect("a socket task outlived the run".to_owned()))?;

    let (opened, failed, dropped) = (
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    let figures = Figures {
        parameters: Parameters {
            sockets: s,
            hold_seconds: args.hold_seconds,
            node_pid: args.node_pid,
        },
        opened,
        failed,
        dropped,
        open_seconds: round3(open_seconds),
        opens_per_s: round3(opened as f64 / open_seconds.max(1e-9)),
        connect: Latency::of(connect),
        node: Memory::per_socket(node_before, node_open, node_end, opened),
        tool: Memory::per_socket(tool_before, tool_open, tool_end, opened),
    };
    let memory = |name: &str, m: &Memory| match (m.before_kib, m.open_kib, m.per_socket_kib) {
        (Some(b), Some(o), Some(p)) => {
            format!("{name} RSS {b} → {o} KiB: {p:.1} KiB per socket")
        }
        _ => format!("{name} RSS not measured (give --node-pid)"),
    };
    let lines = vec![
        format!(
            "{opened} of {s} sockets open in {:.2} s ({:.0}/s), {failed} failed, {dropped} dropped during a {} s hold",
            figures.open_seconds, figures.opens_per_s, args.hold_seconds
        ),
        format!("connect + configure {}", figures.connect.line()),
        memory("node", &figures.node),
        memory("tool", &figures.tool),
    ];
    Ok((
        run,
        Outcome {
            figures,
            lost: (failed + dropped) as u64,
            duplicated: 0,
            complete: all_tried && opened == s,
            lines,
        },
    ))
}
