//! Timestamps and figures.
//!
//! Every latency is a difference of two readings of one monotonic clock in
//! this process: stamped when a frame is sent, read when the matching frame
//! arrives. The stamps live in a table of atomics allocated before the
//! run, one row per message, so recording costs a few relaxed stores and no
//! allocation; percentiles are computed from the table afterwards.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The tool's clock: nanoseconds since the run started, never 0 (0 means
/// "not yet" in the tables).
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    start: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The instant `ns` after the start, for timers.
    pub(super) fn instant(&self, ns: u64) -> Instant {
        self.start + Duration::from_nanos(ns)
    }
}

/// One message and its echo, as seen from both ends.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The visitor sent it.
    pub visitor_sent: AtomicU64,
    /// The visitor's send was acknowledged (it is in the log).
    pub visitor_acked: AtomicU64,
    /// First delivery to an agent, and how many deliveries.
    pub agent_got: AtomicU64,
    pub agent_got_count: AtomicU32,
    /// The agent sent its echo, and the echo was acknowledged.
    pub agent_sent: AtomicU64,
    pub agent_acked: AtomicU64,
    /// First delivery of the echo to the visitor, and how many deliveries.
    pub visitor_got: AtomicU64,
    pub visitor_got_count: AtomicU32,
}

/// Stores `now` unless a time is already there (the first one counts).
pub(super) fn stamp_once(cell: &AtomicU64, now: u64) {
    let _ = cell.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
}

/// Counts a delivery; stamps the first. Answers whether it was the first.
pub(super) fn deliver(time: &AtomicU64, count: &AtomicU32, now: u64) -> bool {
    let first = count.fetch_add(1, Ordering::Relaxed) == 0;
    if first {
        time.store(now, Ordering::Relaxed);
    }
    first
}

pub(super) fn load(cell: &AtomicU64) -> u64 {
    cell.load(Ordering::Relaxed)
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From durations in nanoseconds (sorted here).
    pub(super) fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let pick = |p: f64| {
            let last = samples.len().saturating_sub(1);
            // Nearest rank: the smallest sample with at least p of them at or below it.
            let rank = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
            samples.get(rank.min(last)).copied().unwrap_or(0) as f64 / 1e6
        };
        Self {
            count: samples.len(),
            p50_ms: round3(pick(0.5)),
            p99_ms: round3(pick(0.99)),
            max_ms: round3(samples.last().copied().unwrap_or(0) as f64 / 1e6),
        }
    }

    /// The latencies `to - from` over rows where both are stamped.
    pub(super) fn between<'a, T: 'a>(
        rows: impl Iterator<Item = &'a T>,
        from: impl Fn(&T) -> &AtomicU64,
        to: impl Fn(&T) -> &AtomicU64,
    ) -> Self {
        Self::of(
            rows.filter_map(|row| {
                let (a, b) = (load(from(row)), load(to(row)));
                (a != 0 && b != 0).then(|| b.saturating_sub(a))
            })
            .collect(),
        )
    }

    pub(super) fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/<pid>/status).
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time a process has used, user and system, in milliseconds (fields
/// 14 and 15 of /proc/<pid>/stat, counted after the command name, which may
/// hold spaces).
pub(super) fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Some(user.saturating_add(system) as f64 * 1000.0 / ticks)
}

/// Bytes a process has caused to be written to storage (`write_bytes` of
/// /proc/<pid>/io, counted when it dirties the pages, whoever flushes
/// them later).
pub(super) fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// A few distinct error texts, for the summary: enough to say what went
/// wrong without repeating one error thousands of times.
#[derive(Debug, Default)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, error: impl ToString) {
        self.count += 1;
        let text = error.to_string();
        if self.samples.len() < 5 && !self.samples.contains(&text) {
            self.samples.push(text);
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.count += other.count.saturating_sub(other.samples.len() as u64);
        for sample in other.samples {
            self.add(sample);
        }
    }
}
