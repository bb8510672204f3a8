//! The one way routing changes records: read, decide, commit with version
//! checks, and on a lost race read and decide again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{Routing, RoutingError, RoutingResult};
use crate::engine::{Commit, Expect, Put, Write};
use crate::store::{Record, StoreError, put_for};

/// How often a transition reads and decides again when another node changed
/// the same records first. Bounded, so a hot record fails one caller with
/// [`RoutingError::Contended`] rather than spinning.
pub(super) const MAX_ATTEMPTS: usize = 8;

/// The longest pause before reading again after a lost race.
const MAX_BACKOFF: Duration = Duration::from_millis(25);

/// Pauses before attempt `attempt` (1 for the first retry) of a
/// transition that lost a race: a random time up to 0.5 ms doubled per
/// attempt, at most [`MAX_BACKOFF`]. Without it, the two writers of a hot
/// record are answered by one engine batch, read again at once and commit
/// again side by side, in the same order every time: on the embedded
/// engine, whose reads return without yielding, an agent's `accept` lost
/// all its attempts to the assigner making that agent's offers, and the
/// agent was told `busy`. A random pause breaks the lockstep; the first
/// retries stay well under a millisecond.
pub(super) async fn backoff(attempt: usize) {
    let ceiling = Duration::from_micros(500)
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    let pause = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
    tokio::time::sleep(pause).await;
}

/// The writes one decision stages: each record is put expecting the version
/// it was read at, or expecting no record when it is new (version 0).
#[derive(Debug, Default)]
pub(super) struct Writes(Vec<Put>);

impl Writes {
    /// Stages `record`, changed at `now`. Afterwards its meta shows the
    /// version it has once the commit succeeds, so the decision can answer
    /// the record as stored.
    pub(super) fn put<R: Record>(
        &mut self,
        record: &mut R,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        let meta = record.meta_mut();
        meta.date_modified = now;
        let read = meta.version;
        let expect = match read {
            0 => Expect::Absent,
            read => Expect::Version(read),
        };
        self.0.push(put_for(record, expect)?);
        record.meta_mut().version = read + 1;
        Ok(())
    }

    /// The staged writes as one commit.
    pub(super) fn into_commit(self) -> Commit {
        Commit {
            writes: self.0.into_iter().map(Write::Put).collect(),
        }
    }
}

impl Routing {
    /// Reads records with `read`, lets `decide` change them and stage what
    /// it wrote, and commits the staged writes at once. When a write finds
    /// its record changed since the read (another node was first), everything
    /// is read and decided again, up to [`MAX_ATTEMPTS`] times. A decision
    /// that stages nothing commits nothing.
    ///
    /// `decide` should be a pure function of the records (and the time), so
    /// that deciding again on fresh records is always right.
    pub(super) async fn read_modify_commit<R, T, Fut>(
        &self,
        mut read: impl FnMut() -> Fut,
        mut decide: impl FnMut(R, &mut Writes) -> RoutingResult<T>,
    ) -> RoutingResult<T>
    where
        Fut: Future<Output = RoutingResult<R>>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let records = read().await?;
            let mut writes = Writes::default();
            let answer = decide(records, &mut writes)?;
            if writes.0.is_empty() {
                return Ok(answer);
            }
            match self.store.commit(writes.into_commit()).await {
                Ok(()) => return Ok(answer),
                // Stale: a record changed. Conflict: a record to create
                // exists now. Either way another node was first.
                Err(StoreError::Stale { .. } | StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }
}
