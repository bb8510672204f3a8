//! Conversation logs and the bus on the embedded engine.
//!
//! Two more redb tables, created by the first append (a read of a database
//! that never had one finds them missing and answers "empty"):
//!
//! - `log`: (conversation, seq) → body, whose natural order is each log's
//!   order, so the last sequence is the last key of the conversation's range;
//! - `log_dedup`: (conversation, dedup id) → the seq that id got.
//!
//! Each append is one write transaction, and redb runs those one at a time,
//! so the read of the last sequence and the insert after it are atomic:
//! sequences are gapless and never handed out twice.
//!
//! The bus has one node to reach, so publishing delivers straight to the
//! local hub.

use redb::{Database, ReadableTable, TableDefinition, TableError};

use super::embedded::EmbeddedEngine;
use super::{Appended, BusMessage, Channel, EngineError, EngineResult, LogEntry, Subscription};

/// Conversations are keyed by their UUID as a number: 16 bytes, ordered.
const LOG: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("log");
const LOG_DEDUP: TableDefinition<(u128, &str), u64> = TableDefinition::new("log_dedup");

fn db_err(err: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(err.to_string())
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
    /// Runs blocking redb work off the async runtime.
    async fn with_db<T, F>(&self, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> EngineResult<T> + Send + 'static,
    {
        let db = std::sync::Arc::clone(self.database());
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| EngineError::Unavailable(format!("storage task failed: {e}")))?
    }

    pub async fn append(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
    ) -> EngineResult<Appended> {
        let log = log.as_u128();
        let body = body.to_vec();
        let dedup = dedup.map(str::to_owned);
        self.with_db(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let outcome = (|| {
                let mut seen = txn.open_table(LOG_DEDUP).map_err(db_err)?;
                if let Some(id) = &dedup
                    && let Some(seq) = seen.get((log, id.as_str())).map_err(db_err)?
                {
                    return Ok(Appended {
                        seq: seq.value(),
                        duplicate: true,
                    });
                }
                let mut entries = txn.open_table(LOG).map_err(db_err)?;
                let seq = last_in(&entries, log)?
                    .checked_add(1)
                    .ok_or_else(|| EngineError::Unavailable("the log is full".into()))?;
                entries
                    .insert((log, seq), body.as_slice())
                    .map_err(db_err)?;
                if let Some(id) = &dedup {
                    seen.insert((log, id.as_str()), seq).map_err(db_err)?;
                }
                Ok(Appended {
                    seq,
                    duplicate: false,
                })
            })();
            match outcome {
                // A duplicate wrote nothing: no need to pay for a commit.
                Ok(appended) if !appended.duplicate => {
                    txn.commit().map_err(db_err)?;
                    Ok(appended)
                }
                other => {
                    txn.abort().map_err(db_err)?;
                    other
                }
            }
        })
        .await
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
        self.with_db(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = match txn.open_table(LOG) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(err) => return Err(db_err(err)),
            };
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

    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let log = log.as_u128();
        self.with_db(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            match txn.open_table(LOG) {
                Ok(entries) => last_in(&entries, log),
                Err(TableError::TableDoesNotExist(_)) => Ok(0),
                Err(err) => Err(db_err(err)),
            }
        })
        .await
    }

    pub async fn publish(&self, channel: &Channel, payload: &[u8]) -> EngineResult<()> {
        self.hub().deliver(
            channel,
            BusMessage::Payload(bytes::Bytes::copy_from_slice(payload)),
        );
        Ok(())
    }

    pub async fn subscribe(&self, channel: Channel) -> EngineResult<Subscription> {
        Ok(self.hub().subscribe(channel))
    }

    /// Always: there is no connection that could be down.
    pub fn bus_healthy(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn fresh_database_reads_empty_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let log = uuid::Uuid::new_v4();
        assert_eq!(engine.last_seq(log).await.unwrap(), 0);
        assert!(engine.read_log(log, 0, 10).await.unwrap().is_empty());
        let first = engine.append(log, b"a", Some("m1")).await.unwrap();
        assert_eq!((first.seq, first.duplicate), (1, false));
        let again = engine.append(log, b"b", Some("m1")).await.unwrap();
        assert_eq!((again.seq, again.duplicate), (1, true));
        assert_eq!(engine.append(log, b"c", None).await.unwrap().seq, 2);
        assert_eq!(engine.last_seq(log).await.unwrap(), 2);
        assert!(engine.read_log(log, u64::MAX, 10).await.unwrap().is_empty());
        // Another conversation whose id sorts just above is not mixed in.
        let next = uuid::Uuid::from_u128(log.as_u128().wrapping_add(1));
        assert_eq!(engine.append(next, b"x", None).await.unwrap().seq, 1);
        assert_eq!(engine.last_seq(log).await.unwrap(), 2);
    }
}
