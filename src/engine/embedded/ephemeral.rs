//! Ephemeral values on the embedded engine, and the sweep that deletes them
//! once expired.
//!
//! Values expire lazily: an entry past its expiry is invisible to every
//! operation, and a background sweep deletes such entries now and then so the
//! file does not grow. Every operation that writes one is a single write
//! transaction, and redb runs those one at a time, so each is atomic. Expiry
//! follows the wall clock, like Redis's.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::Durability;
use redb::{Database, DatabaseError, ReadableTable};

use super::tables::{EPHEMERAL, EphemeralValue, ephemeral_key};
use super::{Access, EmbeddedEngine, db_err};
use crate::engine::{
    Admission, Bucket, EngineError, EngineResult, Home, Lease, Meter, Space, StashMode,
};

/// How often expired ephemeral values are deleted. Reads never see them
/// anyway; this only reclaims space.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long `open` waits for a sweep that still holds the file of a dropped
/// engine before calling the database open elsewhere.
const SWEEP_WAIT: Duration = Duration::from_secs(10);

/// The database files a sweep holds right now, one entry per sweep. A sweep
/// briefly holds the database strongly; if the engine is dropped meanwhile,
/// the file closes only when the sweep ends, and `open` waits for that
/// instead of failing.
static SWEEPING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

impl EmbeddedEngine {
    pub async fn stash(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
        ttl: Duration,
        mode: StashMode,
    ) -> EngineResult<bool> {
        let key = ephemeral_key(space, id);
        let value = value.to_vec();
        self.write_ephemeral(space, move |table, now| {
            if mode == StashMode::IfAbsent && read_live(table, &key, now)?.is_some() {
                return Ok(false);
            }
            let expires = now.saturating_add(ttl_millis(ttl));
            table
                .insert(key.as_str(), (expires, value.as_slice()))
                .map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    pub async fn peek(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(EPHEMERAL).map_err(db_err)?;
            Ok(read_live(&table, &key, now_millis())?.map(|(_, value)| value))
        })
        .await
    }

    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(space, move |table, now| {
            let live = read_live(table, &key, now)?;
            // An expired entry goes too: nobody can see it any more.
            table.remove(key.as_str()).map_err(db_err)?;
            Ok(live.map(|(_, value)| value))
        })
        .await
    }

    pub async fn swap(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
    ) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        let value = value.to_vec();
        self.write_ephemeral(space, move |table, now| {
            let Some((expires, old)) = read_live(table, &key, now)? else {
                return Ok(None);
            };
            table
                .insert(key.as_str(), (expires, value.as_slice()))
                .map_err(db_err)?;
            Ok(Some(old))
        })
        .await
    }

    pub async fn lease(
        &self,
        space: Space,
        id: &str,
        holder: &[u8],
        ttl: Duration,
    ) -> EngineResult<Lease> {
        let key = ephemeral_key(space, id);
        let holder = holder.to_vec();
        self.write_ephemeral(space, move |table, now| {
            if let Some((expires, held)) = read_live(table, &key, now)?
                && held != holder
            {
                return Ok(Lease::Busy {
                    remaining: Duration::from_millis(expires.saturating_sub(now)),
                });
            }
            let expires = now.saturating_add(ttl_millis(ttl));
            table
                .insert(key.as_str(), (expires, holder.as_slice()))
                .map_err(db_err)?;
            Ok(Lease::Held)
        })
        .await
    }

    pub async fn release(&self, space: Space, id: &str, holder: &[u8]) -> EngineResult<bool> {
        let key = ephemeral_key(space, id);
        let holder = holder.to_vec();
        self.write_ephemeral(space, move |table, now| {
            let mine = read_live(table, &key, now)?.is_some_and(|(_, held)| held == holder);
            if mine {
                table.remove(key.as_str()).map_err(db_err)?;
            }
            Ok(mine)
        })
        .await
    }

    /// The same list as Redis keeps (newline-separated ids), changed in one
    /// write transaction.
    pub async fn remember(
        &self,
        space: Space,
        id: &str,
        item: &str,
        ttl: Duration,
        cap: usize,
    ) -> EngineResult<()> {
        let key = ephemeral_key(space, id);
        let item = item.to_owned();
        self.write_ephemeral(space, move |table, now| {
            let current = read_live(table, &key, now)?.map(|(_, value)| value);
            let text = crate::engine::remembered_with(current.as_deref(), &item, cap);
            let expires = now.saturating_add(ttl_millis(ttl));
            table
                .insert(key.as_str(), (expires, text.as_bytes()))
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(space, move |table, _| {
            table.remove(key.as_str()).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// Counts are stored as decimal text, as Redis stores them, so `peek`
    /// answers the same on both engines.
    pub async fn count(&self, space: Space, id: &str, window: Duration) -> EngineResult<u64> {
        let key = ephemeral_key(space, id);
        // A counter is a rate-limit window: losing it in a crash costs
        // nothing, so it is not worth an fsync per message. It becomes
        // durable with the next durable commit anyway.
        self.write_ephemeral_as(Durability::None, move |table, now| {
            let (expires, count) = match read_live(table, &key, now)? {
                Some((expires, value)) => {
                    let count = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|text| text.parse::<u64>().ok())
                        .ok_or_else(|| {
                            EngineError::Unavailable(format!("{key} does not hold a count"))
                        })?;
                    (expires, count.saturating_add(1))
                }
                None => (now.saturating_add(ttl_millis(window)), 1),
            };
            let text = count.to_string();
            table
                .insert(key.as_str(), (expires, text.as_bytes()))
                .map_err(db_err)?;
            Ok(count)
        })
        .await
    }

    /// A token bucket (see [`gcra`]), in memory (see `buckets`): a restart
    /// only refills it.
    pub async fn throttle(
        &self,
        space: Space,
        id: &str,
        bucket: Bucket,
    ) -> EngineResult<Admission> {
        Ok(self.buckets.take(ephemeral_key(space, id), bucket))
    }

    pub async fn throttle_all(
        &self,
        space: Space,
        home: Home,
        meters: &[Meter<'_>],
    ) -> EngineResult<Option<(usize, Admission)>> {
        // Keys apart from `throttle`'s, as on Redis, where they live in
        // the home's slot.
        let home = match home {
            Home::Installation => "installation".to_owned(),
            Home::Org(org) => format!("o:{org}"),
        };
        let buckets: Vec<_> = meters
            .iter()
            .map(|meter| {
                let key = ephemeral_key(space, &format!("{home}/{}", meter.id));
                (key, meter.bucket)
            })
            .collect();
        Ok(self.buckets.take_all(&buckets))
    }

    /// Runs `work` on the `ephemeral` table in one write transaction, with
    /// the time read once the transaction holds the write lock. Commits when
    /// `work` succeeds (also when it wrote nothing, which costs little and
    /// keeps this simple), aborts when it fails.
    /// Durable when `space` must outlive a crash
    /// ([`Space::outlives_a_crash`]).
    async fn write_ephemeral<T, F>(&self, space: Space, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut redb::Table<'_, &'static str, EphemeralValue>, u64) -> EngineResult<T>
            + Send
            + 'static,
    {
        let durability = if space.outlives_a_crash() {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write_ephemeral_as(durability, work).await
    }

    /// [`Self::write_ephemeral`] with the commit's durability chosen.
    async fn write_ephemeral_as<T, F>(&self, durability: Durability, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut redb::Table<'_, &'static str, EphemeralValue>, u64) -> EngineResult<T>
            + Send
            + 'static,
    {
        self.blocking(Access::Write, move |db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(durability);
            let result = {
                let mut table = txn.open_table(EPHEMERAL).map_err(db_err)?;
                work(&mut table, now_millis())
            };
            match result {
                Ok(value) => {
                    txn.commit().map_err(db_err)?;
                    Ok(value)
                }
                Err(err) => {
                    txn.abort().map_err(db_err)?;
                    Err(err)
                }
            }
        })
        .await
    }
}

/// Now, in Unix milliseconds. A clock before 1970 reads as 0, which only
/// makes values live longer.
pub(super) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Now, in Unix microseconds, for token buckets.
pub(super) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// A TTL in whole milliseconds, at least 1: a zero TTL still stores the
/// value, for an instant, as Redis would with the 1 ms it is sent.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The entry at `key` with its expiry, if it has not expired at `now`.
fn read_live<T>(table: &T, key: &str, now: u64) -> EngineResult<Option<(u64, Vec<u8>)>>
where
    T: ReadableTable<&'static str, EphemeralValue>,
{
    let Some(guard) = table.get(key).map_err(db_err)? else {
        return Ok(None);
    };
    let (expires, value) = guard.value();
    Ok((expires > now).then(|| (expires, value.to_vec())))
}

/// `Database::create`, waiting for a sweep that holds the file of a dropped
/// engine (see [`SWEEPING`]) rather than calling the file open elsewhere.
pub(super) fn create_database(file: &Path, canonical: &Path) -> EngineResult<Database> {
    let deadline = Instant::now() + SWEEP_WAIT;
    // A sweep may end between a refused create and the look at the
    // registry: one more try settles it.
    let mut retried = false;
    loop {
        match Database::create(file) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                if is_sweeping(canonical) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                } else if !retried {
                    retried = true;
                } else {
                    return Err(EngineError::Unavailable(format!(
                        "{} is already open in another process (only one switchboard node may use an embedded data directory)",
                        file.display()
                    )));
                }
            }
            Err(other) => {
                return Err(EngineError::Unavailable(format!(
                    "cannot open {}: {other}",
                    file.display()
                )));
            }
        }
    }
}

fn is_sweeping(file: &Path) -> bool {
    SWEEPING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|p| p == file)
}

/// Marks a file in [`SWEEPING`] while alive.
struct SweepMark(PathBuf);

impl SweepMark {
    fn new(file: &Path) -> Self {
        SWEEPING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(file.to_path_buf());
        Self(file.to_path_buf())
    }
}

impl Drop for SweepMark {
    fn drop(&mut self) {
        let mut sweeping = SWEEPING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = sweeping.iter().position(|p| *p == self.0) {
            sweeping.swap_remove(at);
        }
    }
}

/// Every [`SWEEP_INTERVAL`], deletes expired ephemeral values. Holds only a
/// `Weak` between sweeps, so dropping the engine closes the database and
/// ends the task at its next wake-up.
pub(super) fn spawn_sweeper(db: Weak<Database>, file: PathBuf) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let (db, file) = (db.clone(), file.clone());
            match tokio::task::spawn_blocking(move || sweep_once(&db, &file)).await {
                Ok(Some(Ok(removed))) => {
                    tracing::debug!(removed, "swept expired ephemeral values");
                }
                Ok(Some(Err(err))) => {
                    tracing::warn!(error = %err, "sweeping expired ephemeral values failed");
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "the ephemeral sweep task failed");
                }
            }
        }
    });
}

/// One sweep; `None` once the engine is gone. The database is dropped
/// before the mark, so when this was the last holder the file is closed by
/// the time `open` stops waiting.
fn sweep_once(db: &Weak<Database>, file: &Path) -> Option<EngineResult<u64>> {
    let _mark = SweepMark::new(file);
    let db = db.upgrade()?;
    let result = sweep_expired(&db, now_millis());
    drop(db);
    Some(result)
}

/// Deletes every ephemeral value expired at `now`; answers how many.
fn sweep_expired(db: &Database, now: u64) -> EngineResult<u64> {
    let txn = db.begin_write().map_err(db_err)?;
    let mut removed: u64 = 0;
    {
        let mut table = txn.open_table(EPHEMERAL).map_err(db_err)?;
        table
            .retain(|_, (expires, _)| {
                let live = expires > now;
                if !live {
                    removed = removed.saturating_add(1);
                }
                live
            })
            .map_err(db_err)?;
    }
    txn.commit().map_err(db_err)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::embedded::tables::FILE_NAME;

    fn ephemeral_rows(e: &EmbeddedEngine) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = e.db.begin_read().unwrap();
        txn.open_table(EPHEMERAL).unwrap().len().unwrap()
    }

    #[tokio::test]
    async fn sweep_removes_only_expired_values() {
        let dir = tempfile::tempdir().unwrap();
        let e = EmbeddedEngine::open(dir.path()).await.unwrap();
        let short = Duration::from_millis(30);
        let long = Duration::from_secs(60);
        e.stash(Space::UsedNonce, "a", b"x", short, StashMode::Replace)
            .await
            .unwrap();
        e.count(Space::RateLimit, "b", short).await.unwrap();
        e.stash(Space::UsedNonce, "c", b"y", long, StashMode::Replace)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Lazily invisible, but still stored until a sweep.
        assert_eq!(e.peek(Space::UsedNonce, "a").await.unwrap(), None);
        assert_eq!(ephemeral_rows(&e), 3);
        assert_eq!(sweep_expired(&e.db, now_millis()).unwrap(), 2);
        assert_eq!(ephemeral_rows(&e), 1);
        assert_eq!(
            e.peek(Space::UsedNonce, "c").await.unwrap().as_deref(),
            Some(&b"y"[..])
        );
        // Once the engine is gone, a sweep reports that instead of running.
        let weak = Arc::downgrade(&e.db);
        let file = e.path.as_ref().clone();
        drop(e);
        assert!(sweep_once(&weak, &file).is_none());
    }

    #[tokio::test]
    async fn open_waits_for_a_sweep_holding_a_dropped_engine() {
        let dir = tempfile::tempdir().unwrap();
        let e = EmbeddedEngine::open(dir.path()).await.unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap().join(FILE_NAME);
        // A sweep in progress: it holds the database and is registered.
        let mark = SweepMark::new(&canonical);
        let held = Arc::clone(&e.db);
        drop(e);
        let sweep = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(held);
            drop(mark);
        });
        let reopened = EmbeddedEngine::open(dir.path()).await.unwrap();
        sweep.join().unwrap();
        reopened.ping().await.unwrap();
        assert!(!is_sweeping(&canonical));
    }
}
