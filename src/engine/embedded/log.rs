//! Conversation logs on the embedded engine.
//!
//! Each append is one write transaction, and redb runs those one at a time,
//! so the read of the last sequence and the insert after it are atomic:
//! sequences are gapless and never handed out twice.

use redb::ReadableTable;

use super::tables::{LOG, LOG_DEDUP};
use super::{EmbeddedEngine, db_err};
use crate::engine::{Appended, EngineError, EngineResult, LogEntry};

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
        let log = log.as_u128();
        let body = body.to_vec();
        let dedup = dedup.map(str::to_owned);
        self.blocking(move |db| {
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
        self.blocking(move |db| {
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

    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let log = log.as_u128();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(LOG).map_err(db_err)?;
            last_in(&entries, log)
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
}
