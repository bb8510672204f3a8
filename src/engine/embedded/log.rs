//! Conversation logs on the embedded engine.
//!
//! Appends are group-committed: one writer thread takes every append that
//! is waiting, writes them in one transaction and commits once, so a burst
//! of messages from many sockets costs one fsync, not one each. Within the
//! transaction the read of a log's last sequence sees the batch's own
//! inserts, so sequences stay gapless and are never handed out twice.
//! An append is answered only after its batch is durable, and announced
//! (an [`EntryNotice`] on its log's channel) just before, in the order of
//! the batch, so subscribers see a log's entries in sequence order.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};

use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::tables::{LOG, LOG_DEDUP};
use super::{Access, EmbeddedEngine, batches, db_err, fail_batch, open_db};
use crate::engine::bus::WeakHub;
use crate::engine::{
    Admission, Appended, BusMessage, Channel, EngineError, EngineResult, EntryNotice, LogEntry,
    Meter, Metered, Space,
};

/// The most appends one commit carries: a bound on how long the first of a
/// batch waits for the others' writes.
const MAX_BATCH: usize = 256;

/// One append waiting for the writer.
struct Pending {
    log: u128,
    body: Vec<u8>,
    dedup: Option<String>,
    done: oneshot::Sender<EngineResult<Appended>>,
}

/// The way to the log writer thread. The thread ends when every clone of
/// the engine is gone (the channel closes), and holds the database only
/// while it writes, so a closed engine releases its file at once.
#[derive(Clone)]
pub(super) struct LogWriter {
    queue: Arc<Sender<Pending>>,
}

impl LogWriter {
    /// `hub` is held weakly, like the database: the thread must not keep
    /// the engine's subscriptions alive.
    pub(super) fn spawn(db: Weak<Database>, hub: WeakHub) -> EngineResult<Self> {
        let (queue, waiting) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("switchboard-log-writer".into())
            .spawn(move || write_batches(&db, &hub, &waiting))
            .map_err(|e| EngineError::Unavailable(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            queue: Arc::new(queue),
        })
    }
}

fn write_batches(db: &Weak<Database>, hub: &WeakHub, waiting: &Receiver<Pending>) {
    for batch in batches(waiting, MAX_BATCH) {
        match open_db(db).and_then(|db| write_batch(&db, &batch)) {
            Ok(appended) => {
                if let Some(hub) = hub.upgrade() {
                    for (pending, appended) in batch.iter().zip(&appended) {
                        if !appended.duplicate {
                            let notice = EntryNotice::encode(appended.seq, &pending.body);
                            hub.deliver(
                                &Channel::Conversation(uuid::Uuid::from_u128(pending.log)),
                                BusMessage::Payload(notice.into()),
                            );
                        }
                    }
                }
                for (pending, appended) in batch.into_iter().zip(appended) {
                    // The caller may have gone; the entry is logged anyway.
                    let _ = pending.done.send(Ok(appended));
                }
            }
            Err(e) => fail_batch(batch.into_iter().map(|pending| pending.done), &e),
        }
    }
}

/// Appends a batch in one transaction: all of it is committed, or none.
fn write_batch(db: &Database, batch: &[Pending]) -> EngineResult<Vec<Appended>> {
    let txn = db.begin_write().map_err(db_err)?;
    let outcome = (|| {
        let mut seen = txn.open_table(LOG_DEDUP).map_err(db_err)?;
        let mut entries = txn.open_table(LOG).map_err(db_err)?;
        batch
            .iter()
            .map(|pending| {
                let log = pending.log;
                if let Some(id) = &pending.dedup
                    && let Some(seq) = seen.get((log, id.as_str())).map_err(db_err)?
                {
                    return Ok(Appended {
                        seq: seq.value(),
                        duplicate: true,
                    });
                }
                let seq = last_in(&entries, log)?
                    .checked_add(1)
                    .ok_or_else(|| EngineError::Unavailable("the log is full".into()))?;
                entries
                    .insert((log, seq), pending.body.as_slice())
                    .map_err(db_err)?;
                if let Some(id) = &pending.dedup {
                    seen.insert((log, id.as_str()), seq).map_err(db_err)?;
                }
                Ok(Appended {
                    seq,
                    duplicate: false,
                })
            })
            .collect::<EngineResult<Vec<_>>>()
    })();
    match outcome {
        // A batch of duplicates wrote nothing: no need to pay for a commit.
        Ok(appended) if appended.iter().any(|a| !a.duplicate) => {
            txn.commit().map_err(db_err)?;
            Ok(appended)
        }
        other => {
            txn.abort().map_err(db_err)?;
            other
        }
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
        let pending = Pending {
            log: log.as_u128(),
            body: body.to_vec(),
            dedup: dedup.map(str::to_owned),
            done,
        };
        self.log_writer
            .queue
            .send(pending)
            .map_err(|_| EngineError::Unavailable("the log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| EngineError::Unavailable("the log writer has stopped".into()))?
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
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            entries
                .range((log, first)..=(log, u64::MAX))
                .map_err(db_err)?
                .take(limit)
                .map(|entry| {
                    let (key, body) = entry.map_err(db_err)?;
                    Ok(LogEntry {
                        seq: key.value().1,
                        body: body.value().to_vec(),
                    })
                })
                .collect()
        })
        .await
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
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            entries
                .range((log, 1)..=(log, last))
                .map_err(db_err)?
                .rev()
                .take(limit)
                .map(|entry| {
                    let (key, body) = entry.map_err(db_err)?;
                    Ok(LogEntry {
                        seq: key.value().1,
                        body: body.value().to_vec(),
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let log = log.as_u128();
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            last_in(&entries, log)
        })
        .await
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
