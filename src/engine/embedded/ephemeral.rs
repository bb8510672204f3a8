//! Ephemeral values on the embedded engine, and the sweep that deletes them
//! once expired.
//!
//! Values of the spaces that must outlive a crash (nonces, refresh tokens,
//! revocations...) live in the database, each write run by the writer in
//! its batch's transaction as if alone (see `writer`), so each is atomic
//! and durable once answered; the others live in memory (`volatile`), each
//! operation under one lock.
//!
//! Values expire lazily: an entry past its expiry is invisible to every
//! operation, and a background sweep deletes such entries now and then so the
//! file does not grow. Expiry follows the wall clock, like Redis's.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, ReadableTable};
use tokio::sync::oneshot;

use super::tables::{EPHEMERAL, EphemeralValue, ephemeral_key};
use super::volatile::{Slots, Volatile};
use super::writer::{DurableWork, Job, settle, stopped};
use super::{EmbeddedEngine, db_err};
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
        self.write_ephemeral(space, move |slots, now| {
            if mode == StashMode::IfAbsent && slots.live(&key, now)?.is_some() {
                return Ok(false);
            }
            let expires = now.saturating_add(ttl_millis(ttl));
            slots.put(&key, expires, &value)?;
            Ok(true)
        })
        .await
    }

    pub async fn peek(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        let live = if space.outlives_a_crash() {
            self.read_now(|db| {
                let txn = db.begin_read().map_err(db_err)?;
                let table = txn.open_table(EPHEMERAL).map_err(db_err)?;
                read_live(&table, &key, now_millis())
            })?
        } else {
            self.volatile
                .with(now_millis(), |slots, now| slots.live(&key, now))?
        };
        Ok(live.map(|(_, value)| value))
    }

    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(space, move |slots, now| {
            let live = slots.live(&key, now)?;
            // An expired entry goes too: nobody can see it any more.
            slots.remove(&key)?;
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
        self.write_ephemeral(space, move |slots, now| {
            let Some((expires, old)) = slots.live(&key, now)? else {
                return Ok(None);
            };
            slots.put(&key, expires, &value)?;
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
        self.write_ephemeral(space, move |slots, now| {
            if let Some((expires, held)) = slots.live(&key, now)?
                && held != holder
            {
                return Ok(Lease::Busy {
                    remaining: Duration::from_millis(expires.saturating_sub(now)),
                });
            }
            let expires = now.saturating_add(ttl_millis(ttl));
            slots.put(&key, expires, &holder)?;
            Ok(Lease::Held)
        })
        .await
    }

    pub async fn release(&self, space: Space, id: &str, holder: &[u8]) -> EngineResult<bool> {
        let key = ephemeral_key(space, id);
        let holder = holder.to_vec();
        self.write_ephemeral(space, move |slots, now| {
            let mine = slots
                .live(&key, now)?
                .is_some_and(|(_, held)| held == holder);
            if mine {
                slots.remove(&key)?;
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
        self.write_ephemeral(space, move |slots, now| {
            let current = slots.live(&key, now)?.map(|(_, value)| value);
            let text = crate::engine::remembered_with(current.as_deref(), &item, cap);
            let expires = now.saturating_add(ttl_millis(ttl));
            slots.put(&key, expires, text.as_bytes())?;
            Ok(())
        })
        .await
    }

    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(space, move |slots, _| {
            slots.remove(&key)?;
            Ok(())
        })
        .await
    }

    /// Counts are stored as decimal text, as Redis stores them, so `peek`
    /// answers the same on both engines.
    pub async fn count(&self, space: Space, id: &str, window: Duration) -> EngineResult<u64> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(space, move |slots, now| {
            let (expires, count) = match slots.live(&key, now)? {
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
            slots.put(&key, expires, count.to_string().as_bytes())?;
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

    /// Runs `work` where `space` keeps its values, with the time read once
    /// `work` has them to itself: in memory for the spaces a crash may lose
    /// (see `volatile`); else in the writer's next transaction, so a burst
    /// of sign-ins and session tokens shares fsyncs with records and
    /// appends (see `writer`), answered once durable. `work`
    /// must write nothing when it fails: the rest of its batch stands.
    async fn write_ephemeral<T, F>(&self, space: Space, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Slots, u64) -> EngineResult<T> + Send + 'static,
    {
        if !space.outlives_a_crash() {
            return self.volatile.with(now_millis(), work);
        }
        let (done, answer) = oneshot::channel();
        self.writer.send(Job::Ephemeral(Box::new(Durable {
            work: Some(work),
            result: None,
            done,
        })))?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One durable ephemeral operation riding in a writer's batch.
struct Durable<T, F> {
    work: Option<F>,
    result: Option<EngineResult<T>>,
    done: oneshot::Sender<EngineResult<T>>,
}

impl<T, F> DurableWork for Durable<T, F>
where
    T: Send,
    F: FnOnce(&mut dyn Slots, u64) -> EngineResult<T> + Send,
{
    fn run(&mut self, ephemeral: &mut redb::Table<'_, &'static str, EphemeralValue>, now: u64) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(ephemeral, now));
        }
    }

    fn answer(self: Box<Self>, failed: Option<&EngineError>) {
        // The caller may have gone.
        let _ = self.done.send(settle(failed, self.result));
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

impl Slots for redb::Table<'_, &'static str, EphemeralValue> {
    fn live(&self, key: &str, now: u64) -> EngineResult<Option<(u64, Vec<u8>)>> {
        read_live(self, key, now)
    }

    fn put(&mut self, key: &str, expires: u64, value: &[u8]) -> EngineResult<()> {
        self.insert(key, (expires, value)).map_err(db_err)?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> EngineResult<()> {
        redb::Table::remove(self, key).map_err(db_err)?;
        Ok(())
    }
}

/// The entry at `key` of an ephemeral redb table with its expiry, if it has
/// not expired at `now`.
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
pub(super) fn spawn_sweeper(db: Weak<Database>, volatile: Weak<Volatile>, file: PathBuf) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            if let Some(volatile) = volatile.upgrade() {
                volatile.sweep(now_millis());
            }
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
        e.stash(Space::RefreshToken, "b", b"z", short, StashMode::Replace)
            .await
            .unwrap();
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
    async fn values_a_crash_may_lose_stay_out_of_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let e = EmbeddedEngine::open(dir.path()).await.unwrap();
        let ttl = Duration::from_secs(60);
        assert_eq!(e.count(Space::RateLimit, "ip", ttl).await.unwrap(), 1);
        assert_eq!(e.count(Space::RateLimit, "ip", ttl).await.unwrap(), 2);
        let lease = e.lease(Space::AssignLease, "q", b"me", ttl).await.unwrap();
        assert_eq!(lease, Lease::Held);
        let taken = e.lease(Space::AssignLease, "q", b"you", ttl).await.unwrap();
        assert!(matches!(taken, Lease::Busy { .. }));
        e.remember(Space::QueuedByAddress, "ip", "c1", ttl, 10)
            .await
            .unwrap();
        assert_eq!(ephemeral_rows(&e), 0);
        assert_eq!(
            e.peek(Space::RateLimit, "ip").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        // A space that must outlive a crash is written to the database.
        e.stash(Space::UsedNonce, "n", b"x", ttl, StashMode::Replace)
            .await
            .unwrap();
        assert_eq!(ephemeral_rows(&e), 1);
        // A reopened engine (a restarted node) starts without the others.
        drop(e);
        let e = EmbeddedEngine::open(dir.path()).await.unwrap();
        assert_eq!(e.peek(Space::RateLimit, "ip").await.unwrap(), None);
        assert!(e.peek(Space::UsedNonce, "n").await.unwrap().is_some());
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
