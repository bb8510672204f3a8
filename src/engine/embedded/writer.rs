//! The embedded engine's one writer thread: every durable write of the hot
//! paths (record commits, log appends, ephemeral values that must outlive
//! a crash) goes through it, group-committed.
//!
//! redb runs one write transaction at a time, and a durable one costs an
//! fsync. With a writer per kind of write, the writers took turns at the
//! lock, each with a small batch and its own fsync: in a burst of a
//! thousand arrivals the lock was busy the whole time and first messages
//! waited most of a second for their acknowledgement (docs/benchmarks.md).
//! One writer takes every job waiting, runs each in turn in one
//! transaction, each seeing the ones before it exactly as if they had run
//! one by one, and makes the batch durable with one fsync; what arrives
//! during that fsync is the next batch. The thread ends when every clone of
//! the engine is gone (the channel closes), and holds the database only
//! while it writes, so a closed engine releases its file at once.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redb::{Database, WriteTransaction};

use super::ephemeral::now_millis;
use super::log::{LogTables, PendingAppend};
use super::records::{PendingCommit, Tables};
use super::tables::{EPHEMERAL, EphemeralValue};
use super::{batches, db_err, open_db};
use crate::engine::bus::WeakHub;
use crate::engine::{EngineError, EngineResult};

/// The most jobs one transaction carries: a bound on how long the first of
/// a batch waits for the others' writes.
const MAX_JOBS: usize = 256;

/// The least time between the starts of two batches while jobs come from
/// many callers at once (see `batches`). Each commit writes its own copy
/// of every B-tree path it changed, of redb's own trees and of the header,
/// whatever the number of jobs in it: on a fast disk the flush takes a
/// fraction of a millisecond, batches held one or two jobs, and 4000
/// messages a second cost 27 KiB of disk writes and about 110 µs of node
/// CPU each. Waiting until a millisecond has passed since the last batch
/// began lets four jobs share a commit instead: 15 KiB and about 70 µs a
/// message, for 0.7 ms more before the median acknowledgement
/// (docs/benchmarks.md).
const PACE: Duration = Duration::from_millis(1);

/// One job waiting for the writer. Each keeps its own outcome once run,
/// and is answered when its batch has committed or failed.
pub(super) enum Job {
    Commit(PendingCommit),
    Append(PendingAppend),
    /// An ephemeral value that must outlive a crash (see `ephemeral`).
    Ephemeral(Box<dyn DurableWork>),
}

/// Work of another part of the engine run in a batch's transaction. A run
/// that fails must have written nothing, as a refused record commit writes
/// nothing, so the rest of the batch stands.
pub(super) trait DurableWork: Send {
    fn run(&mut self, ephemeral: &mut redb::Table<'_, &'static str, EphemeralValue>, now: u64);
    /// `failed`: the batch's transaction did not commit, for this reason.
    fn answer(self: Box<Self>, failed: Option<&EngineError>);
}

/// The way to the writer thread.
#[derive(Clone)]
pub(super) struct Writer {
    queue: Arc<Sender<Job>>,
}

impl Writer {
    /// `hub` is held weakly, like the database: the thread must not keep
    /// the engine's subscriptions alive.
    pub(super) fn spawn(db: Weak<Database>, hub: WeakHub) -> EngineResult<Self> {
        let (queue, waiting) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("switchboard-writer".into())
            .spawn(move || write_jobs(&db, &hub, &waiting))
            .map_err(|e| EngineError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            queue: Arc::new(queue),
        })
    }

    /// Queues a job; its answer comes through the job's own channel.
    pub(super) fn send(&self, job: Job) -> EngineResult<()> {
        self.queue.send(job).map_err(|_| stopped())
    }
}

/// What a caller hears when the writer is gone before answering.
pub(super) fn stopped() -> EngineError {
    EngineError::Unavailable("the storage writer has stopped".into())
}

/// A job's answer once its batch has ended: its own outcome, unless the
/// batch failed (`failed`) or never ran it.
pub(super) fn settle<T>(
    failed: Option<&EngineError>,
    outcome: Option<EngineResult<T>>,
) -> EngineResult<T> {
    match (failed, outcome) {
        (Some(e), _) => Err(EngineError::Unavailable(e.to_string())),
        (None, Some(outcome)) => outcome,
        (None, None) => Err(stopped()),
    }
}

fn write_jobs(db: &Weak<Database>, hub: &WeakHub, waiting: &Receiver<Job>) {
    for mut batch in batches(waiting, MAX_JOBS, PACE) {
        let outcome = open_db(db).and_then(|db| run_batch(&db, &mut batch));
        let failed = outcome.as_ref().err();
        // Appends are announced before anyone is answered, in the batch's
        // order, so subscribers see each log's entries in sequence.
        if failed.is_none()
            && let Some(hub) = hub.upgrade()
        {
            for job in &batch {
                if let Job::Append(append) = job {
                    append.announce(&hub);
                }
            }
        }
        for job in batch {
            match job {
                Job::Commit(commit) => commit.answer(failed),
                Job::Append(append) => append.answer(failed),
                Job::Ephemeral(work) => work.answer(failed),
            }
        }
    }
}

/// Runs each job of `batch` in one transaction, keeping each one's outcome
/// in it, and commits unless nothing was written. A job refused by its
/// checks writes nothing and the others go on; a storage failure fails the
/// whole batch (nothing of it is committed).
pub(super) fn run_batch(db: &Database, batch: &mut [Job]) -> EngineResult<()> {
    let txn = db.begin_write().map_err(db_err)?;
    let ran = run_in(&txn, batch);
    match ran {
        Ok(true) => txn.commit().map_err(db_err),
        other => {
            txn.abort().map_err(db_err)?;
            other.map(|_| ())
        }
    }
}

/// Answers whether anything was written.
fn run_in(txn: &WriteTransaction, batch: &mut [Job]) -> EngineResult<bool> {
    // Opened once for the batch.
    let mut records = Tables::open(txn)?;
    let mut log = LogTables::open(txn)?;
    let mut ephemeral = txn.open_table(EPHEMERAL).map_err(db_err)?;
    let now = now_millis();
    let mut wrote = false;
    for job in batch.iter_mut() {
        wrote |= match job {
            Job::Commit(commit) => commit.run(&mut records)?,
            Job::Append(append) => append.run(&mut log)?,
            Job::Ephemeral(work) => {
                work.run(&mut ephemeral, now);
                true
            }
        };
    }
    Ok(wrote)
}
