//! `loadtest burst`: V visitors arrive within a window (one second by
//! default), each opens a session and sends its first message; A agents
//! on the agents' node accept every offer as it comes.
//!
//! Measured: the first message's acknowledgement (it is in the log), the
//! time from that message to the offer reaching an agent, to the agent's
//! `Join` reaching the visitor, and until every visitor has an agent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::agents;
use super::frames::{self, GuestFrame};
use super::net::{self, Incoming};
use super::stats::{Clock, Latency, Slot, load, stamp_once};
use super::{Common, LoadError, Outcome, Run, wait_until};

/// `switchboard loadtest burst`.
#[derive(Debug, clap::Args)]
pub struct BurstArgs {
    #[command(flatten)]
    pub common: Common,
    /// Visitors arriving.
    #[arg(long, default_value_t = 1000)]
    pub visitors: usize,
    /// Agents taking the offers (the queue's capacity per agent is set to
    /// visitors / agents, at most 50).
    #[arg(long, default_value_t = 40)]
    pub agents: usize,
    /// The arrivals spread evenly over this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
    /// How long after the window every visitor may take to get an agent.
    #[arg(long, default_value_t = 60)]
    pub deadline_seconds: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Parameters {
    visitors: usize,
    agents: usize,
    window_ms: u64,
    deadline_seconds: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Figures {
    parameters: Parameters,
    /// Visitors whose session was configured, whose first message was
    /// acknowledged, whose conversation was offered, who got an agent.
    configured: usize,
    acknowledged: usize,
    offered: usize,
    assigned: usize,
    /// Acknowledged, but no agent by the deadline.
    unassigned: usize,
    /// Offers of a conversation after its first (no agent declines here).
    reoffers: usize,
    /// Arrival to a configured session (connect, upgrade, configureSession).
    connect: Latency,
    /// First message sent to its acknowledgement.
    first_message_ack: Latency,
    /// First message sent to the offer reaching an agent.
    offer: Latency,
    /// First message sent to the agent's Join reaching the visitor.
    assignment: Latency,
    /// From the first arrival until every visitor had an agent (null when
    /// some never did before the deadline).
    all_assigned_s: Option<f64>,
}

/// What one visitor saw.
#[derive(Debug, Default)]
struct Seen {
    arrived: u64,
    configured: u64,
    conversation: Option<u128>,
    joined: u64,
}

pub(super) async fn run(args: &BurstArgs) -> Result<(Run, Outcome<Figures>), LoadError> {
    let (v, a) = (args.visitors.max(1), args.agents.max(1));
    let run = Run::prepare(&args.common, "burst", v + a, v, a).await?;
    let agent_sockets = run.connect_agents().await?;

    let clock = Clock::new();
    let slots: Arc<[Slot]> = (0..v).map(|_| Slot::default()).collect();
    let (agents, stop) = agents::start(
        agent_sockets,
        clock,
        slots.clone(),
        false,
        run.errors.clone(),
    );

    // The arrivals: visitor i starts at i/V of the window.
    let run = Arc::new(run);
    let assigned = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let first_arrival = clock.now();
    let window = Duration::from_millis(args.window_ms).as_nanos() as f64;
    let mut visitor_tasks = Vec::with_capacity(v);
    for i in 0..v {
        let at = first_arrival + (window * i as f64 / v as f64) as u64;
        let (run, slots, assigned, finished, stop) = (
            run.clone(),
            slots.clone(),
            assigned.clone(),
            finished.clone(),
            stop.clone(),
        );
        visitor_tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(clock.instant(at).into()).await;
            let seen = visitor(&run, clock, &slots, i, &assigned, stop).await;
            finished.fetch_add(1, Ordering::Relaxed);
            seen
        }));
    }
    let deadline = Instant::now()
        + Duration::from_millis(args.window_ms)
        + Duration::from_secs(args.deadline_seconds);
    let complete = wait_until(deadline, || {
        assigned.load(Ordering::Relaxed) >= v || finished.load(Ordering::Relaxed) >= v
    })
    .await
        && assigned.load(Ordering::Relaxed) >= v;
    let _ = agents.stop.send(true);

    let mut seen = Vec::with_capacity(v);
    for task in visitor_tasks {
        seen.push(task.await.unwrap_or_default());
    }
    let mut offers: HashMap<u128, (u64, usize)> = HashMap::new();
    let mut accepted = 0;
    for task in agents.tasks {
        let report = task.await.unwrap_or_default();
        accepted += report.accepted;
        for (conversation, at) in report.offers {
            let entry = offers.entry(conversation).or_insert((at, 0));
            entry.0 = entry.0.min(at);
            entry.1 += 1;
        }
    }
    let run = Arc::try_unwrap(run)
        .map_err(|_| LoadError::Connect("a visitor task outlived the run".to_owned()))?;
    let counts = (run.agent_tokens.len(), accepted);
    let figures = figures(
        args,
        &slots,
        &seen,
        &offers,
        counts,
        first_arrival,
        complete,
    );
    Ok((run, figures))
}

/// One visitor: arrive, configure, send the first message, wait for an
/// agent, then hold the socket until the run stops.
async fn visitor(
    run: &Run,
    clock: Clock,
    slots: &[Slot],
    i: usize,
    assigned: &AtomicUsize,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen {
        arrived: clock.now(),
        ..Seen::default()
    };
    let Some(slot) = slots.get(i) else {
        return seen;
    };
    let mut visitor = match run.site(i).open().await {
        Ok(visitor) => visitor,
        Err(e) => {
            run.error(e);
            return seen;
        }
    };
    seen.configured = clock.now();
    stamp_once(&slot.visitor_sent, clock.now());
    if let Err(e) = net::send(&mut visitor.ws, frames::on_message(&visitor.token, i)).await {
        run.error(e);
        return seen;
    }
    loop {
        tokio::select! {
            incoming = net::next(&mut visitor.ws) => match incoming {
                Incoming::Text(text) => {
                    let now = clock.now();
                    let Ok(frame) = serde_json::from_str::<GuestFrame<'_>>(text.as_str()) else {
                        continue;
                    };
                    let body = frame.body.object();
                    // The answer to the first message carries its tracingId
                    // (an echo is a "message", as Genesys sends it).
                    if frame.kind == "response" || frame.tracing_id.is_some() {
                        if frame.code == 200 {
                            stamp_once(&slot.visitor_acked, now);
                            seen.conversation = body
                                .and_then(|b| b.conversation_id.as_deref())
                                .and_then(|c| Uuid::parse_str(c).ok())
                                .map(|id| id.as_u128());
                        } else {
                            run.error(format!("first message: {} {}", frame.code, frame.body.describe()));
                        }
                    } else if seen.joined == 0 && body.is_some_and(|b| b.agent_joined()) {
                        seen.joined = now;
                        assigned.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Incoming::Closed => {
                    run.error("a visitor socket closed during the burst");
                    return seen;
                }
                Incoming::Other => {}
            },
            () = super::stopped(&mut stop) => break,
        }
    }
    let _ = visitor.ws.close(None).await;
    seen
}

fn figures(
    args: &BurstArgs,
    slots: &[Slot],
    seen: &[Seen],
    offers: &HashMap<u128, (u64, usize)>,
    (agents, accepted): (usize, usize),
    first_arrival: u64,
    complete: bool,
) -> Outcome<Figures> {
    let sent = |s: &Slot| load(&s.visitor_sent);
    let offer_latencies: Vec<u64> = seen
        .iter()
        .zip(slots)
        .filter_map(|(seen, slot)| {
            let (offered, _) = offers.get(&seen.conversation?)?;
            Some(offered.saturating_sub(sent(slot)))
        })
        .collect();
    let assignment: Vec<u64> = seen
        .iter()
        .zip(slots)
        .filter(|(seen, slot)| seen.joined != 0 && sent(slot) != 0)
        .map(|(seen, slot)| seen.joined.saturating_sub(sent(slot)))
        .collect();
    let assigned = assignment.len();
    let all_assigned_s = (assigned == seen.len()).then(|| {
        let last = seen.iter().map(|s| s.joined).max().unwrap_or(first_arrival);
        super::stats::round3(last.saturating_sub(first_arrival) as f64 / 1e9)
    });
    // Lost: a first message never acknowledged, or never given to the
    // agent who took its conversation. One still waiting for an agent at
    // the deadline is not lost but unassigned (and the run not complete).
    let lost = seen
        .iter()
        .zip(slots)
        .filter(|(seen, s)| {
            (sent(s) != 0 && load(&s.visitor_acked) == 0)
                || (seen.joined != 0 && s.agent_got_count.load(Ordering::Relaxed) == 0)
        })
        .count() as u64;
    let unassigned = seen
        .iter()
        .zip(slots)
        .filter(|(seen, s)| load(&s.visitor_acked) != 0 && seen.joined == 0)
        .count();
    let duplicated = slots
        .iter()
        .map(|s| u64::from(s.agent_got_count.load(Ordering::Relaxed).saturating_sub(1)))
        .sum();
    let figures = Figures {
        parameters: Parameters {
            visitors: seen.len(),
            agents,
            window_ms: args.window_ms,
            deadline_seconds: args.deadline_seconds,
        },
        configured: seen.iter().filter(|s| s.configured != 0).count(),
        acknowledged: slots.iter().filter(|s| load(&s.visitor_acked) != 0).count(),
        offered: offer_latencies.len(),
        assigned,
        unassigned,
        reoffers: offers.values().map(|(_, n)| n.saturating_sub(1)).sum(),
        connect: Latency::of(
            seen.iter()
                .filter(|s| s.configured != 0)
                .map(|s| s.configured - s.arrived)
                .collect(),
        ),
        first_message_ack: Latency::between(
            slots.iter(),
            |s| &s.visitor_sent,
            |s| &s.visitor_acked,
        ),
        offer: Latency::of(offer_latencies),
        assignment: Latency::of(assignment),
        all_assigned_s,
    };
    let lines = vec![
        format!(
            "{} visitors in {} ms, {} agents: {} configured, {} acknowledged, {} offered, {} accepted, {} with an agent",
            seen.len(),
            args.window_ms,
            agents,
            figures.configured,
            figures.acknowledged,
            figures.offered,
            accepted,
            figures.assigned
        ),
        format!("connect + configure   {}", figures.connect.line()),
        format!("first message ack     {}", figures.first_message_ack.line()),
        format!("message → offer       {}", figures.offer.line()),
        format!("message → agent joins {}", figures.assignment.line()),
        match all_assigned_s {
            Some(s) => format!("every visitor had an agent {s:.3} s after the first arrival"),
            None => format!(
                "{} visitors had no agent by the deadline ({} of them acknowledged)",
                seen.len() - assigned,
                unassigned
            ),
        },
    ];
    Outcome {
        figures,
        lost,
        duplicated,
        complete,
        lines,
    }
}
