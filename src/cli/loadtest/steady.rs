//! `loadtest steady`: visitors on the first node, each with a conversation
//! an agent on the last node has accepted, send numbered messages at a
//! fixed rate; the agents echo each one.
//!
//! Every message is a row of the stamp table (index = its number), so both
//! directions are checked by index: a message sent and never delivered is
//! lost, one delivered twice is duplicated. Latencies: visitor send → ack,
//! visitor → agent, agent send → ack, agent → visitor, and the round trip.
//!
//! `--saturate` runs steps of rising rate (per visitor, up to the guest
//! limit of 2 a second) and stops at the first step that does not pass:
//! every message and echo delivered within `--deadline-ms` of the step's
//! last send, none twice, the round trip's p99 within `--slo-p99-ms`. The
//! best passing step is the throughput. Messages that arrive after their
//! step's deadline count as late there, and as lost only if they never
//! arrive before the run ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use super::agents;
use super::frames::{self, GuestFrame};
use super::net::{self, Incoming};
use super::stats::{
    Clock, Latency, Slot, cpu_ms, deliver, load, round3, stamp_once, written_bytes,
};
use super::visitors::{self, Visitor};
use super::{Common, LoadError, Outcome, Run, wait_until};

/// The guest protocol's limit: messages per second per session.
const GUEST_RATE_LIMIT: f64 = 2.0;

/// `switchboard loadtest steady`.
#[derive(Debug, clap::Args)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Visitors, each with its own conversation.
    #[arg(long, default_value_t = 100)]
    pub visitors: usize,
    /// Agents echoing (the queue's capacity per agent is set to visitors /
    /// agents, at most 50).
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
    /// Messages per visitor (without --saturate).
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
    /// Messages a second per visitor (the guest limit is 2).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// How long after a step's last send its messages may take to arrive.
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Ramp the rate to find the most the nodes carry with nothing lost.
    #[arg(long)]
    pub saturate: bool,
    /// --saturate: the first step's rate per visitor.
    #[arg(long, default_value_t = 0.1)]
    pub start_rate: f64,
    /// --saturate: each step's rate is the last one's times this.
    #[arg(long, default_value_t = 1.5)]
    pub growth: f64,
    /// --saturate: the highest rate per visitor (under the guest limit).
    #[arg(long, default_value_t = 1.9)]
    pub max_rate: f64,
    /// --saturate: seconds per step.
    #[arg(long, default_value_t = 5)]
    pub step_seconds: u64,
    /// --saturate: a step passes only with the round trip's p99 within this.
    #[arg(long, default_value_t = 1000.0)]
    pub slo_p99_ms: f64,
    /// A process whose CPU time each step reports, as NAME=PID (repeat;
    /// one name may be given several pids, e.g. `node=A --cpu-pid node=B
    /// --cpu-pid redis=R`): what a message costs the servers, a figure a
    /// shared machine cannot blur the way it blurs throughput. With any,
    /// the tool's own CPU is reported too, as `loadtest`.
    #[arg(long = "cpu-pid", value_parser = parse_cpu_pid)]
    pub cpu_pids: Vec<(String, u32)>,
}

/// The name the tool's own CPU time is reported under.
const LOADTEST_CPU: &str = "loadtest";

fn parse_cpu_pid(value: &str) -> Result<(String, u32), String> {
    let (name, pid) = value
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {value:?}"))?;
    let pid = pid.parse().map_err(|_| format!("not a pid: {pid:?}"))?;
    if name.is_empty() {
        return Err("the name before = is empty".to_owned());
    }
    Ok((name.to_owned(), pid))
}

/// What a named group of processes has used so far: CPU time in
/// milliseconds, and bytes written to storage (`None` when a process's
/// count cannot be read, as for another user's process).
#[derive(Clone, Copy, Debug, Default)]
struct Used {
    cpu_ms: f64,
    written: Option<u64>,
}

fn used_by_name(pids: &[(String, u32)]) -> BTreeMap<String, Used> {
    let mut used: BTreeMap<String, Used> = BTreeMap::new();
    for (name, pid) in pids {
        let entry = used.entry(name.clone()).or_insert(Used {
            cpu_ms: 0.0,
            written: Some(0),
        });
        entry.cpu_ms += cpu_ms(*pid).unwrap_or(0.0);
        entry.written = entry
            .written
            .zip(written_bytes(*pid))
            .map(|(sum, bytes)| sum.saturating_add(bytes));
    }
    used
}

/// What one named group of processes spent on a step.
#[derive(Debug, Serialize)]
struct CpuUse {
    ms: f64,
    /// Microseconds of CPU per message delivered (both directions).
    us_per_msg: f64,
    /// KiB written to storage during the step: on the embedded engine, the
    /// cost of making messages durable.
    #[serde(skip_serializing_if = "Option::is_none")]
    written_kib: Option<f64>,
    /// Bytes written to storage per message delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    written_per_msg: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Parameters {
    visitors: usize,
    agents: usize,
    messages: usize,
    rate: f64,
    deadline_ms: u64,
    saturate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    slo_p99_ms: Option<f64>,
}

/// One step: every visitor sends `messages` at `rate` a second.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Clock time of the step's first send.
    start: u64,
    rate: f64,
    messages: usize,
    /// The step's first row in the stamp table.
    base: usize,
    visitors: usize,
}

impl Plan {
    /// When visitor `v` sends its message `i`: the step's sends are evenly
    /// spaced over all visitors, so the nodes see a steady stream.
    fn due(&self, v: usize, i: usize) -> u64 {
        let total_rate = self.rate * self.visitors as f64;
        self.start + ((v + i * self.visitors) as f64 / total_rate * 1e9) as u64
    }

    fn row(&self, v: usize, i: usize) -> usize {
        self.base + i * self.visitors + v
    }

    fn rows(&self) -> std::ops::Range<usize> {
        self.base..self.base + self.messages * self.visitors
    }

    fn last_due(&self) -> u64 {
        self.due(
            self.visitors.saturating_sub(1),
            self.messages.saturating_sub(1),
        )
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Step {
    /// Messages a second per visitor; what all visitors and the echoes
    /// together offer (both directions: 2 × visitors × rate).
    rate: f64,
    target_msgs_per_s: f64,
    /// Messages delivered (both directions) per second, from the step's
    /// first send to its last delivery.
    achieved_msgs_per_s: f64,
    /// Messages the plan called for (conversations × messages), and sent.
    planned: usize,
    sent: usize,
    /// Messages delivered, both directions (first deliveries).
    delivered: usize,
    /// Not delivered (both directions) by the step's deadline.
    late: usize,
    duplicated: u64,
    /// How much later than planned the tool sent (its own lag).
    send_lag_max_ms: f64,
    visitor_ack: Latency,
    visitor_to_agent: Latency,
    agent_ack: Latency,
    agent_to_visitor: Latency,
    round_trip: Latency,
    /// With --cpu-pid: CPU time each named group of processes used from the
    /// step's plan to its end.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    cpu: BTreeMap<String, CpuUse>,
    passed: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Figures {
    parameters: Parameters,
    /// Visitors whose conversation had an agent when sending began.
    conversations: usize,
    /// Visitor messages sent, and the agents' echoes sent.
    sent: usize,
    echoed: usize,
    /// Sent and never delivered, by the end of the run, per direction.
    lost_visitor_to_agent: u64,
    lost_agent_to_visitor: u64,
    duplicated_visitor_to_agent: u64,
    duplicated_agent_to_visitor: u64,
    /// Answered 429 and sent again (same message id).
    rate_limited: usize,
    steps: Vec<Step>,
    /// --saturate: the best passing step's achieved rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_msgs_per_s: Option<f64>,
    /// --saturate: every step passed, so the ceiling was the offered load
    /// (visitors × --max-rate), not the nodes: use more visitors.
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling_reached: Option<bool>,
}

/// The rates of the steps.
fn rates(args: &SteadyArgs) -> Result<Vec<(f64, usize)>, LoadError> {
    let check = |name: &str, rate: f64| {
        if !(rate > 0.0 && rate <= GUEST_RATE_LIMIT) {
            return Err(LoadError::Usage(format!(
                "{name} must be above 0 and at most {GUEST_RATE_LIMIT} (the guest limit per session); use more visitors"
            )));
        }
        Ok(())
    };
    if !args.saturate {
        check("--rate", args.rate)?;
        return Ok(vec![(args.rate, args.messages.max(1))]);
    }
    check("--start-rate", args.start_rate)?;
    check("--max-rate", args.max_rate)?;
    if args.growth <= 1.0 {
        return Err(LoadError::Usage("--growth must be above 1".to_owned()));
    }
    let mut steps = Vec::new();
    let mut rate = args.start_rate;
    loop {
        let rate_now = rate.min(args.max_rate);
        let messages = ((rate_now * args.step_seconds as f64).ceil() as usize).max(1);
        steps.push((rate_now, messages));
        if rate_now >= args.max_rate || steps.len() >= 50 {
            return Ok(steps);
        }
        rate *= args.growth;
    }
}

pub(super) async fn run(args: &SteadyArgs) -> Result<(Run, Outcome<Figures>), LoadError> {
    let (v, a) = (args.visitors.max(1), args.agents.max(1));
    let steps = rates(args)?;
    let run = Run::prepare(&args.common, "steady", v + a, v, a).await?;
    let agent_sockets = run.connect_agents().await?;
    let clock = Clock::new();
    let rows: usize = steps.iter().map(|(_, m)| m * v).sum();
    let slots: Arc<[Slot]> = (0..rows).map(|_| Slot::default()).collect();
    let (agents, stop) = agents::start(
        agent_sockets,
        clock,
        slots.clone(),
        true,
        run.errors.clone(),
    );

    // Every visitor opens a conversation and waits for its agent (a few
    // at a time), then keeps reading its socket until the plan comes: a
    // socket left unread while the others open would be dropped.
    let (plan_tx, plan) = watch::channel(None::<Plan>);
    let completed = Arc::new(AtomicUsize::new(0));
    let shared = Shared {
        run: Arc::new(run),
        clock,
        slots: slots.clone(),
        plan,
        stop,
        completed: completed.clone(),
        ready: Arc::default(),
        failed: Arc::default(),
        gate: Arc::new(Semaphore::new(args.common.concurrency.max(1))),
    };
    let visitor_tasks: Vec<_> = (0..v)
        .map(|index| tokio::spawn(visitor(index, shared.clone())))
        .collect();
    let all_tried =
        || shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= v;
    wait_until(Instant::now() + OPEN_WITHIN, all_tried).await;
    let conversations = shared.ready.load(Ordering::Relaxed);

    let mut results = Vec::new();
    let mut base = 0;
    // With servers watched, the tool's own share too: on a shared machine
    // it says how much of the CPU the servers could not have had.
    let watched: Vec<(String, u32)> = args
        .cpu_pids
        .iter()
        .cloned()
        .chain((!args.cpu_pids.is_empty()).then(|| (LOADTEST_CPU.to_owned(), std::process::id())))
        .collect();
    let mut complete = conversations == v;
    for (rate, messages) in steps {
        let step = Plan {
            // A moment for every visitor to see the plan.
            start: clock.now() + 200_000_000,
            rate,
            messages,
            base,
            visitors: v,
        };
        base += messages * v;
        let done_before = completed.load(Ordering::Relaxed);
        let used_before = used_by_name(&watched);
        let _ = plan_tx.send(Some(step));
        let deadline = clock.instant(step.last_due()) + Duration::from_millis(args.deadline_ms);
        let expected = conversations * messages;
        // Done when every echo is back, and every message echoed has both
        // its acks: an agent's ack may come after the visitor has the echo
        // (the echo's notice can overtake the answer to the agent's send).
        let step_slots = slots.get(step.rows()).unwrap_or_default();
        let on_time = wait_until(deadline, || {
            completed.load(Ordering::Relaxed) >= done_before + expected
                && step_slots
                    .iter()
                    .filter(|s| load(&s.visitor_got) != 0)
                    .all(|s| load(&s.visitor_acked) != 0 && load(&s.agent_acked) != 0)
        })
        .await;
        let used_after = used_by_name(&watched);
        let mut result = evaluate(&slots, &step, args, on_time, expected);
        let delivered = result.delivered.max(1) as f64;
        result.cpu = used_after
            .into_iter()
            .map(|(name, after)| {
                let before = used_before.get(&name).copied().unwrap_or_default();
                let ms = after.cpu_ms - before.cpu_ms;
                let written = after
                    .written
                    .zip(before.written)
                    .map(|(after, before)| after.saturating_sub(before) as f64);
                let cost = CpuUse {
                    ms: round3(ms),
                    us_per_msg: round3(ms * 1000.0 / delivered),
                    written_kib: written.map(|bytes| round3(bytes / 1024.0)),
                    written_per_msg: written.map(|bytes| round3(bytes / delivered)),
                };
                (name, cost)
            })
            .collect();
        let passed = result.passed;
        results.push(result);
        if !passed {
            complete = complete && args.saturate;
            break;
        }
    }
    // What is still on its way may yet arrive: lost is what never does.
    let pending = |s: &[Slot]| {
        s.iter()
            .filter(|s| {
                load(&s.visitor_sent) != 0 && s.visitor_got_count.load(Ordering::Relaxed) == 0
            })
            .count()
    };
    wait_until(
        Instant::now() + Duration::from_millis(args.deadline_ms),
        || pending(&slots) == 0,
    )
    .await;
    let _ = agents.stop.send(true);
    let mut rate_limited = 0;
    for task in visitor_tasks {
        rate_limited += task.await.unwrap_or_default();
    }
    for task in agents.tasks {
        let _ = task.await;
    }
    let Shared { run, .. } = shared;
    let run = Arc::try_unwrap(run)
        .map_err(|_| LoadError::Connect("a visitor task outlived the run".to_owned()))?;
    let agent_count = run.agent_tokens.len();
    let counts = (conversations, agent_count, rate_limited);
    Ok((run, totals(args, &slots, results, counts, complete)))
}

/// What every visitor task shares with the run.
#[derive(Clone, Debug)]
struct Shared {
    run: Arc<Run>,
    clock: Clock,
    slots: Arc<[Slot]>,
    plan: watch::Receiver<Option<Plan>>,
    stop: watch::Receiver<bool>,
    /// Echoes delivered (first deliveries).
    completed: Arc<AtomicUsize>,
    /// Visitors whose conversation has an agent, and those that failed.
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    /// Bounds how many visitors open at once.
    gate: Arc<Semaphore>,
}

/// How long all visitors together may take to get their conversations.
const OPEN_WITHIN: Duration = Duration::from_secs(300);

/// One visitor: opens its conversation, then sends (answers how many
/// sends were rate limited).
async fn visitor(v: usize, shared: Shared) -> usize {
    let permit = shared.gate.clone().acquire_owned().await;
    let opened = async {
        let mut visitor = shared.run.site(v).open().await?;
        visitors::open_conversation(&mut visitor, Duration::from_secs(60)).await?;
        Ok::<_, LoadError>(visitor)
    }
    .await;
    drop(permit);
    match opened {
        Ok(visitor) => {
            shared.ready.fetch_add(1, Ordering::Relaxed);
            sender(visitor, v, shared).await
        }
        Err(e) => {
            shared.run.error(e);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            0
        }
    }
}

/// One visitor's sending loop: follows the plan of each step, reads acks
/// and echoes; answers how many sends were rate limited.
async fn sender(mut visitor: Visitor, v: usize, shared: Shared) -> usize {
    let Shared {
        run,
        clock,
        slots,
        mut plan,
        mut stop,
        completed,
        ..
    } = shared;
    let mut step: Option<Plan> = None;
    let mut next = 0;
    let mut rate_limited = 0;
    // Sends answered 429, due again (clock time, row).
    let mut retry: VecDeque<(u64, usize)> = VecDeque::new();
    let far = clock.now() + 3_600_000_000_000;
    let timer = tokio::time::sleep_until(clock.instant(far).into());
    tokio::pin!(timer);
    loop {
        let due_next = step
            .filter(|s| next < s.messages)
            .map(|s| (s.due(v, next), s.row(v, next)));
        let due = match (due_next, retry.front()) {
            (Some((at, row)), Some(&(r_at, r_row))) => {
                Some(if r_at < at { (r_at, r_row) } else { (at, row) })
            }
            (Some(d), None) => Some(d),
            (None, Some(&r)) => Some(r),
            (None, None) => None,
        };
        timer
            .as_mut()
            .reset(clock.instant(due.map_or(far, |(at, _)| at)).into());
        tokio::select! {
            incoming = net::next(&mut visitor.ws) => match incoming {
                Incoming::Text(text) => {
                    let now = clock.now();
                    let Ok(frame) = serde_json::from_str::<GuestFrame<'_>>(text.as_str()) else {
                        continue;
                    };
                    let row = frame.tracing_id.as_deref().and_then(|t| t.parse::<usize>().ok());
                    // Answers to our own requests carry their tracingId (the
                    // echo of a message is a "message", as Genesys sends it).
                    if frame.kind == "response" || row.is_some() {
                        match (row.and_then(|r| slots.get(r).map(|s| (r, s))), frame.code) {
                            (Some((_, slot)), 200) => stamp_once(&slot.visitor_acked, now),
                            (Some((r, _)), 429) => {
                                rate_limited += 1;
                                let after = frame.body.object().and_then(|b| b.retry_after).unwrap_or(1);
                                retry.push_back((now + after * 1_000_000_000, r));
                            }
                            _ => {}
                        }
                    } else if let Some(k) = frame.body.object().and_then(|b| b.text.as_deref()).and_then(frames::agent_tag)
                        && let Some(slot) = slots.get(k)
                        && deliver(&slot.visitor_got, &slot.visitor_got_count, now)
                    {
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Incoming::Closed => {
                    if !*stop.borrow() {
                        run.error("a visitor socket closed during the run");
                    }
                    break;
                }
                Incoming::Other => {}
            },
            () = &mut timer, if due.is_some() => {
                let Some((_, row)) = due else { continue };
                if retry.front().is_some_and(|&(_, r)| r == row) {
                    retry.pop_front();
                } else {
                    next += 1;
                }
                if let Some(slot) = slots.get(row) {
                    stamp_once(&slot.visitor_sent, clock.now());
                }
                if net::send(&mut visitor.ws, frames::on_message(&visitor.token, row)).await.is_err() {
                    break;
                }
            },
            changed = plan.changed() => {
                if changed.is_err() {
                    break;
                }
                step = *plan.borrow_and_update();
                next = 0;
            },
            () = super::stopped(&mut stop) => break,
        }
    }
    let _ = visitor.ws.close(None).await;
    rate_limited
}

fn evaluate(slots: &[Slot], plan: &Plan, args: &SteadyArgs, on_time: bool, planned: usize) -> Step {
    let rows = slots.get(plan.rows()).unwrap_or_default();
    let sent = rows.iter().filter(|s| load(&s.visitor_sent) != 0).count();
    let late = rows
        .iter()
        .filter(|s| load(&s.visitor_sent) != 0)
        .map(|s| {
            usize::from(s.agent_got_count.load(Ordering::Relaxed) == 0)
                + usize::from(s.visitor_got_count.load(Ordering::Relaxed) == 0)
        })
        .sum();
    let duplicated = rows.iter().map(duplicates).sum();
    let delivered = rows
        .iter()
        .map(|s| usize::from(load(&s.agent_got) != 0) + usize::from(load(&s.visitor_got) != 0))
        .sum::<usize>();
    let first = rows
        .iter()
        .map(|s| load(&s.visitor_sent))
        .filter(|&t| t != 0)
        .min()
        .unwrap_or(0);
    let last = rows
        .iter()
        .map(|s| load(&s.visitor_got).max(load(&s.agent_got)))
        .max()
        .unwrap_or(0);
    let span = last.saturating_sub(first) as f64 / 1e9;
    let lag = rows
        .iter()
        .enumerate()
        .filter_map(|(offset, s)| {
            let sent = load(&s.visitor_sent);
            (sent != 0).then(|| {
                let (i, v) = (offset / plan.visitors, offset % plan.visitors);
                sent.saturating_sub(plan.due(v, i))
            })
        })
        .max()
        .unwrap_or(0);
    let round_trip = Latency::between(rows.iter(), |s| &s.visitor_sent, |s| &s.visitor_got);
    // Every visitor with a conversation sent all of its messages.
    let passed = on_time
        && sent >= planned
        && late == 0
        && duplicated == 0
        && (!args.saturate || round_trip.p99_ms <= args.slo_p99_ms);
    Step {
        rate: round3(plan.rate),
        target_msgs_per_s: round3(2.0 * plan.rate * plan.visitors as f64),
        achieved_msgs_per_s: if span > 0.0 {
            round3(delivered as f64 / span)
        } else {
            0.0
        },
        planned,
        sent,
        delivered,
        late,
        duplicated,
        send_lag_max_ms: round3(lag as f64 / 1e6),
        visitor_ack: Latency::between(rows.iter(), |s| &s.visitor_sent, |s| &s.visitor_acked),
        visitor_to_agent: Latency::between(rows.iter(), |s| &s.visitor_sent, |s| &s.agent_got),
        agent_ack: Latency::between(rows.iter(), |s| &s.agent_sent, |s| &s.agent_acked),
        agent_to_visitor: Latency::between(rows.iter(), |s| &s.agent_sent, |s| &s.visitor_got),
        round_trip,
        cpu: BTreeMap::new(),
        passed,
    }
}

fn duplicates(s: &Slot) -> u64 {
    u64::from(s.agent_got_count.load(Ordering::Relaxed).saturating_sub(1))
        + u64::from(
            s.visitor_got_count
                .load(Ordering::Relaxed)
                .saturating_sub(1),
        )
}

fn totals(
    args: &SteadyArgs,
    slots: &[Slot],
    steps: Vec<Step>,
    (conversations, agents, rate_limited): (usize, usize, usize),
    complete: bool,
) -> Outcome<Figures> {
    let count = |f: &dyn Fn(&Slot) -> bool| slots.iter().filter(|s| f(s)).count();
    let sent = count(&|s| load(&s.visitor_sent) != 0);
    let echoed = count(&|s| load(&s.agent_sent) != 0);
    let lost_v2a =
        count(&|s| load(&s.visitor_sent) != 0 && s.agent_got_count.load(Ordering::Relaxed) == 0)
            as u64;
    let lost_a2v =
        count(&|s| load(&s.agent_sent) != 0 && s.visitor_got_count.load(Ordering::Relaxed) == 0)
            as u64;
    let dup_v2a: u64 = slots
        .iter()
        .map(|s| u64::from(s.agent_got_count.load(Ordering::Relaxed).saturating_sub(1)))
        .sum();
    let dup_a2v: u64 = slots
        .iter()
        .map(|s| {
            u64::from(
                s.visitor_got_count
                    .load(Ordering::Relaxed)
                    .saturating_sub(1),
            )
        })
        .sum();
    let max_msgs_per_s = args.saturate.then(|| {
        steps
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.achieved_msgs_per_s)
            .fold(0.0, f64::max)
    });
    let mut lines = vec![format!(
        "{conversations} conversations, {agents} agents; {sent} messages sent, {echoed} echoed; {rate_limited} rate limited"
    )];
    for step in &steps {
        lines.push(format!(
            "rate {}/s per visitor ({} msg/s offered both ways): {} msg/s delivered, {} late, {}, send lag ≤ {:.1} ms",
            step.rate,
            step.target_msgs_per_s,
            step.achieved_msgs_per_s,
            step.late,
            if step.passed { "passed" } else { "FAILED" },
            step.send_lag_max_ms
        ));
        lines.push(format!("  visitor ack      {}", step.visitor_ack.line()));
        lines.push(format!(
            "  visitor → agent  {}",
            step.visitor_to_agent.line()
        ));
        lines.push(format!("  agent ack        {}", step.agent_ack.line()));
        lines.push(format!(
            "  agent → visitor  {}",
            step.agent_to_visitor.line()
        ));
        lines.push(format!("  round trip       {}", step.round_trip.line()));
        for (name, cost) in &step.cpu {
            let written = match (cost.written_kib, cost.written_per_msg) {
                (Some(kib), Some(per_msg)) => {
                    format!("; wrote {kib:.0} KiB, {per_msg:.0} B a message")
                }
                _ => String::new(),
            };
            lines.push(format!(
                "  cpu {name}: {:.0} ms, {:.1} µs a message{written}",
                cost.ms, cost.us_per_msg
            ));
        }
    }
    let ceiling_reached = args.saturate.then(|| steps.iter().all(|s| s.passed));
    if let Some(max) = max_msgs_per_s {
        let note = if ceiling_reached == Some(true) {
            " (every step passed: the offered load was the limit, not the nodes; use more visitors)"
        } else {
            ""
        };
        lines.push(format!(
            "most carried with nothing lost or late: {max} msg/s (both directions){note}"
        ));
    }
    let figures = Figures {
        parameters: Parameters {
            visitors: args.visitors,
            agents,
            messages: args.messages,
            rate: if args.saturate {
                args.start_rate
            } else {
                args.rate
            },
            deadline_ms: args.deadline_ms,
            saturate: args.saturate,
            slo_p99_ms: args.saturate.then_some(args.slo_p99_ms),
        },
        conversations,
        sent,
        echoed,
        lost_visitor_to_agent: lost_v2a,
        lost_agent_to_visitor: lost_a2v,
        duplicated_visitor_to_agent: dup_v2a,
        duplicated_agent_to_visitor: dup_a2v,
        rate_limited,
        steps,
        max_msgs_per_s,
        ceiling_reached,
    };
    Outcome {
        figures,
        lost: lost_v2a + lost_a2v,
        duplicated: dup_v2a + dup_a2v,
        complete,
        lines,
    }
}
