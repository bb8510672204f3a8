//! Conversation logs on the embedded engine.
//!
//! Appends are group-committed by the engine's writer (see `writer`), so
//! a burst of messages from many sockets costs one fsync, not one each.
//! Within the transaction the read of a log's last sequence sees the
//! batch's own inserts, so sequences stay gapless and are never handed out
//! twice. An append is answered only after its batch is durable, and
//! announced (an [`EntryNotice`] on its log's channel) just before, in the
//! order of the batch, so subscribers see a log's entries in sequence
//! order.

use redb::{ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::tables::{LOG, LOG_DEDUP};
use super::writer::{Job, settle, stopped};
use super::{Access, EmbeddedEngine, db_err};
use crate::engine::bus::LocalHub;
use crate::engine::{
    Admission, Appended, BusMessage, Channel, EngineError, EngineResult, EntryNotice, LogEntry,
    Meter, Metered, Space,
};

/// One append waiting for the writer.
pub(super) struct PendingAppend {
    log: u128,
    body: Vec<u8>,
    dedup: Option<String>,
    done: oneshot::Sender<EngineResult<Appended>>,
    /// Where it landed, once run: answered when the batch commits.
    appended: Option<Appended>,
}

/// The tables an append writes, opened once per batch.
pub(super) struct LogTables<'txn> {
    entries: redb::Table<'txn, (u128, u64), &'static [u8]>,
    seen: redb::Table<'txn, (u128, &'static str), u64>,
}

impl<'txn> LogTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> EngineResult<Self> {
        Ok(Self {
            entries: txn.open_table(LOG).map_err(db_err)?,
            seen: txn.open_table(LOG_DEDUP).map_err(db_err)?,
        })
    }
}

impl PendingAppend {
    /// Appends after the log's last entry as the batch has left it (so
    /// sequences stay gapless and are never handed out twice), or finds
    /// the sequence its dedup id already got; answers whether it wrote.
    pub(super) fn run(&mut self, tables: &mut LogTables<'_>) -> EngineResult<bool> {
        let log = self.log;
        if let Some(id) = &self.dedup
            && let Some(seq) = tables.seen.get((log, id.as_str())).map_err(db_err)?
        {
            self.appended = Some(Appended {
                seq: seq.value(),
                duplicate: true,
            });
            return Ok(false);
        }
        let seq = last_in(&tables.entries, log)?
            .checked_add(1)
            .ok_or_else(|| EngineError::Unavailable("the log is full".into()))?;
        tables
            .entries
            .insert((log, seq), self.body.as_slice())
            .map_err(db_err)?;
        if let Some(id) = &self.dedup {
            tables
                .seen
                .insert((log, id.as_str()), seq)
                .map_err(db_err)?;
        }
        self.appended = Some(Appended {
            seq,
            duplicate: false,
        });
        Ok(true)
    }

    /// Announces a new entry on its log's channel (a duplicate is not new).
    pub(super) fn announce(&self, hub: &LocalHub) {
        if let Some(appended) = self.appended.filter(|a| !a.duplicate) {
            let notice = EntryNotice::encode(appended.seq, &self.body);
            hub.deliver(
                &Channel::Conversation(uuid::Uuid::from_u128(self.log)),
                BusMessage::Payload(notice.into()),
            );
        }
    }

    /// `failed`: the batch did not commit, for this reason.
    pub(super) fn answer(self, failed: Option<&EngineError>) {
        // The caller may have gone; the entry is logged anyway.
        let _ = self.done.send(settle(failed, self.appended.map(Ok)));
    }
}

/// An entry as a range of [`LOG`] yields it, as the engine hands it out.
fn log_entry(
    (key, body): (
        redb::AccessGuard<'_, (u128, u64)>,
        redb::AccessGuard<'_, &'static [u8]>,
    ),
) -> LogEntry {
    LogEntry {
        seq: key.value().1,
        body: body.value().to_vec(),
    }
}

/// The sequence of the newest entry of `log`, 0 when it has none.
fn last_in<T>(table: &T, log: u128) -> EngineResult<u64>
where
    T: ReadableTable<(u128, u64), &'static [u8]>,
{
    match table
        .range((log, 0)..=(log, u64::MAX))
        .map_err(db_err)?
        .next_back()
    {
        Some(entry) => Ok(entry.map_err(db_err)?.0.value().1),
        None => Ok(0),
    }
}

impl EmbeddedEngine {
    pub async fn append(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
    ) -> EngineResult<Appended> {
        let (done, answer) = oneshot::channel();
        self.writer.send(Job::Append(PendingAppend {
            log: log.as_u128(),
            body: body.to_vec(),
            dedup: dedup.map(str::to_owned),
            done,
            appended: None,
        }))?;
        answer.await.map_err(|_| stopped())?
    }

    /// The bucket first (in memory, see `buckets`), then the append: not
    /// one step as on Redis, but the same outcome on one node (a refused
    /// event appends nothing), and the bucket costs no write.
    pub async fn append_metered(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
        meter: Meter<'_>,
    ) -> EngineResult<Metered> {
        if let Admission::Refused { retry_after } = self.throttle_beside(log, meter).await? {
            return Ok(Metered::Refused { retry_after });
        }
        Ok(Metered::Appended(self.append(log, body, dedup).await?))
    }

    /// A bucket named after the log: the one [`Self::append_metered`] takes
    /// from.
    pub async fn throttle_beside(
        &self,
        log: uuid::Uuid,
        meter: Meter<'_>,
    ) -> EngineResult<Admission> {
        let id = format!("beside/{log}/{}", meter.id);
        self.throttle(Space::RateLimit, &id, meter.bucket).await
    }

    pub async fn read_log(
        &self,
        log: uuid::Uuid,
        after: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        let log = log.as_u128();
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            entries
                .range((log, first)..=(log, u64::MAX))
                .map_err(db_err)?
                .take(limit)
                .map(|entry| entry.map(log_entry).map_err(db_err))
                .collect()
        })
    }

    pub async fn read_log_before(
        &self,
        log: uuid::Uuid,
        before: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        let log = log.as_u128();
        let Some(last) = before.checked_sub(1).filter(|last| *last > 0) else {
            return Ok(Vec::new());
        };
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            entries
                .range((log, 1)..=(log, last))
                .map_err(db_err)?
                .rev()
                .take(limit)
                .map(|entry| entry.map(log_entry).map_err(db_err))
                .collect()
        })
    }

    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let log = log.as_u128();
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            last_in(&entries, log)
        })
    }

    /// The log's entries and dedup ids in one write transaction. The
    /// sequence is the last entry's, so it goes with them.
    pub async fn delete_log(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let log = log.as_u128();
        self.blocking(Access::Write, move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let removed = (|| {
                let mut entries = txn.open_table(LOG).map_err(db_err)?;
                let range = (log, 0)..=(log, u64::MAX);
                let removed = entries.range(range.clone()).map_err(db_err)?.count() as u64;
                entries.retain_in(range, |_, _| false).map_err(db_err)?;
                let mut seen = txn.open_table(LOG_DEDUP).map_err(db_err)?;
                // Dedup ids are strings: the log's range ends where the next
                // conversation's begins.
                let cleared = match log.checked_add(1) {
                    Some(next) => seen.retain_in((log, "")..(next, ""), |_, _| false),
                    None => seen.retain_in((log, "").., |_, _| false),
                };
                cleared.map_err(db_err)?;
                Ok::<_, EngineError>(removed)
            })();
            match removed {
                Ok(removed) => {
                    txn.commit().map_err(db_err)?;
                    Ok(removed)
                }
                Err(e) => {
                    txn.abort().map_err(db_err)?;
                    Err(e)
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs are ranges of one table: a neighbour's entries must not leak
    /// into a log's range, in either direction.
    #[tokio::test]
    async fn adjacent_conversation_ids_keep_apart() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let log = uuid::Uuid::from_u128(1 << 64);
        let below = uuid::Uuid::from_u128((1 << 64) - 1);
        let above = uuid::Uuid::from_u128((1 << 64) + 1);
        engine.append(below, b"b", None).await.unwrap();
        engine.append(above, b"a", None).await.unwrap();
        engine.append(above, b"a", None).await.unwrap();
        assert_eq!(engine.last_seq(log).await.unwrap(), 0);
        assert!(engine.read_log(log, 0, 10).await.unwrap().is_empty());
        assert_eq!(engine.append(log, b"x", Some("m")).await.unwrap().seq, 1);
        assert_eq!(engine.read_log(log, 0, 10).await.unwrap().len(), 1);
        assert_eq!(engine.last_seq(above).await.unwrap(), 2);
    }

    /// Appends racing from many tasks land in shared commits: sequences
    /// stay gapless, and a resend in the same batch as its original is
    /// still a duplicate of it.
    #[tokio::test]
    async fn concurrent_appends_share_commits_and_stay_gapless() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let log = uuid::Uuid::now_v7();
        let appends = (0..300).map(|i| {
            let engine = engine.clone();
            // Every third append resends the one before it.
            let dedup = format!("m{}", i - usize::from(i % 3 == 2));
            tokio::spawn(async move {
                let body = format!("body {dedup}");
                (
                    dedup.clone(),
                    engine
                        .append(log, body.as_bytes(), Some(&dedup))
                        .await
                        .unwrap(),
                )
            })
        });
        let results = futures::future::join_all(appends).await;
        let mut by_id = std::collections::HashMap::new();
        for result in results {
            let (id, appended) = result.unwrap();
            let seq = *by_id.entry(id).or_insert(appended.seq);
            assert_eq!(
                seq, appended.seq,
                "a resend answers its original's sequence"
            );
        }
        let logged = engine.read_log(log, 0, 1000).await.unwrap();
        assert_eq!(logged.len(), by_id.len());
        let seqs: Vec<u64> = logged.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=u64::try_from(by_id.len()).unwrap()).collect::<Vec<_>>()
        );
        for entry in logged {
            let id = std::str::from_utf8(&entry.body)
                .unwrap()
                .trim_start_matches("body ");
            assert_eq!(by_id[id], entry.seq);
        }
    }
}
