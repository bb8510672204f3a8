//! The embedded engine: one node, everything in a local redb database.
//!
//! The same parts as the Redis engine, one file each: [`tables`] spells the
//! storage layout, `records` keeps the versioned records, `ephemeral` the
//! values with a time to live, and `log` the conversation logs. The bus has
//! one node to reach, so the local hub is all of it.
//!
//! Every write is one redb write transaction, and redb runs those one at a
//! time, so each operation is atomic by construction. What a crash may lose
//! stays out of the database: rate buckets (`buckets`) and the ephemeral
//! values of leases, wake marks, presence and abuse counters (`volatile`),
//! each behind one lock.

mod backup;
mod buckets;
mod ephemeral;
mod homes;
mod log;
mod records;
mod tables;
mod volatile;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::Semaphore;

use super::bus::LocalHub;
use super::{BusMessage, Channel, EngineError, EngineResult, Subscription};

/// The single-node engine. Cheap to clone: clones share one open database.
#[derive(Clone)]
pub struct EmbeddedEngine {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// The bus: one node, so the local fan-out is all of it.
    hub: LocalHub,
    /// Record commits, appends and durable ephemeral values,
    /// group-committed by one thread.
    writer: writer::Writer,
    /// Rate buckets, in memory (see `buckets`).
    buckets: Arc<buckets::Buckets>,
    /// Ephemeral values a crash may lose, in memory (see `volatile`).
    volatile: Arc<volatile::Volatile>,
    /// How many blocking threads may run storage work at once.
    lanes: Arc<Lanes>,
}

/// Which lane a piece of storage work takes.
#[derive(Clone, Copy, Debug)]
enum Access {
    /// A read transaction (or a backup, which only reads this database).
    Read,
    /// A write transaction.
    Write,
}

/// Bounds on the blocking threads storage work occupies: scans (listings,
/// referrers, backups) and the few writes that do not go through the
/// writer (sweeps, deleting a log). Point reads run on the caller's thread
/// ([`EmbeddedEngine::read_now`]) and the hot writes on the writer's
/// (`writer`). redb runs one write transaction at a time, so a burst of
/// writes would otherwise park a blocking thread per waiting write, each
/// with its stack and allocator arena, and the process keeps much of that
/// memory after the burst (docs/benchmarks.md). Waiting for a lane costs a
/// task, not a thread. Scans run side by side, a few per core; writes two
/// at a time, so the next is ready when redb's lock frees.
#[derive(Debug)]
struct Lanes {
    readers: Arc<Semaphore>,
    writers: Arc<Semaphore>,
}

/// Writes queued inside redb at once: one running, one ready.
const WRITE_LANES: usize = 2;
/// The fewest read lanes, whatever the core count.
const MIN_READ_LANES: usize = 4;

impl Lanes {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            readers: Arc::new(Semaphore::new(MIN_READ_LANES.max(2 * cores))),
            writers: Arc::new(Semaphore::new(WRITE_LANES)),
        }
    }

    fn of(&self, access: Access) -> Arc<Semaphore> {
        match access {
            Access::Read => Arc::clone(&self.readers),
            Access::Write => Arc::clone(&self.writers),
        }
    }
}

// By hand: `redb::Database` says nothing useful about itself, the path does.
impl fmt::Debug for EmbeddedEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The batches a writer thread (`writer.rs`) works through: it blocks for
/// the first job, then takes whatever else is already waiting, up to `max`.
/// When the last batch held several jobs (callers are writing side by
/// side) and began less than `pace` ago, it first waits for `pace` to pass,
/// so that more jobs share the next commit; a caller alone, writing one job
/// after another, never waits. Ends when every sender is gone.
fn batches<T>(
    waiting: &Receiver<T>,
    max: usize,
    pace: Duration,
) -> impl Iterator<Item = Vec<T>> + '_ {
    // When the last batch began, if it held more than one job.
    let mut last: Option<Instant> = None;
    std::iter::from_fn(move || {
        let mut batch = vec![waiting.recv().ok()?];
        if let Some(wait) = last.and_then(|last| pace.checked_sub(last.elapsed())) {
            std::thread::sleep(wait);
        }
        let began = Instant::now();
        while batch.len() < max {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        last = (batch.len() > 1).then_some(began);
        Some(batch)
    })
}

/// The database a writer thread holds only while it writes, or why not.
fn open_db(db: &Weak<Database>) -> EngineResult<Arc<Database>> {
    db.upgrade()
        .ok_or_else(|| EngineError::Unavailable("the database is closed".into()))
}

/// Every storage failure is `Unavailable`: callers cannot do anything more
/// specific with a redb error than report it.
fn db_err(err: impl fmt::Display) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

impl EmbeddedEngine {
    /// Opens (creating if needed) the database in `dir`. Fails if another
    /// process holds it: redb allows one writer process per file.
    ///
    /// Also starts the sweep of expired ephemeral values, which stops by
    /// itself once every clone of the engine is dropped.
    pub async fn open(dir: &Path) -> EngineResult<Self> {
        let dir = dir.to_path_buf();
        let path = dir.join(tables::FILE_NAME);
        let file = path.clone();
        let (db, canonical) = tokio::task::spawn_blocking(move || -> EngineResult<_> {
            std::fs::create_dir_all(&dir).map_err(|e| {
                EngineError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
            // The sweep registry needs one name per file, however `dir` was
            // spelled.
            let canonical = std::fs::canonicalize(&dir)
                .unwrap_or_else(|_| dir.clone())
                .join(tables::FILE_NAME);
            let db = ephemeral::create_database(&file, &canonical)?;
            // The records hold sealed secrets and visitors' messages: owner
            // only, like the master key beside them.
            restrict(&file)?;
            let txn = db.begin_write().map_err(db_err)?;
            tables::create_all(&txn)?;
            txn.commit().map_err(db_err)?;
            Ok((db, canonical))
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("storage task failed: {e}")))??;
        let db = Arc::new(db);
        let volatile = Arc::default();
        ephemeral::spawn_sweeper(Arc::downgrade(&db), Arc::downgrade(&volatile), canonical);
        let hub = LocalHub::default();
        let writer = writer::Writer::spawn(Arc::downgrade(&db), hub.downgrade())?;
        Ok(Self {
            db,
            path: Arc::new(path),
            hub,
            writer,
            buckets: Arc::default(),
            volatile,
            lanes: Arc::new(Lanes::new()),
        })
    }

    /// Runs blocking redb work off the async runtime, once its lane has
    /// room (see [`Lanes`]). The lane is held until the work ends, even if
    /// the caller stops waiting for it.
    async fn blocking<T, F>(&self, access: Access, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> EngineResult<T> + Send + 'static,
    {
        let lane = self
            .lanes
            .of(access)
            .acquire_owned()
            .await
            .map_err(|e| EngineError::Unavailable(format!("storage lanes closed: {e}")))?;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let _lane = lane;
            work(&db)
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Runs a point read (a few keys, or a bounded range of one log) on
    /// the caller's thread. It touches a few B-tree pages, in redb's cache
    /// or the kernel's, and takes microseconds: handing it to a blocking
    /// thread cost more than the read, and under a burst of arrivals point
    /// reads queued for the read lanes for milliseconds each, which made
    /// every session open and first message wait (docs/benchmarks.md).
    /// Scans (listings, referrers, backups) still take a lane.
    fn read_now<T>(&self, work: impl FnOnce(&Database) -> EngineResult<T>) -> EngineResult<T> {
        work(&self.db)
    }

    pub async fn ping(&self) -> EngineResult<()> {
        self.blocking(Access::Read, |db| {
            let txn = db.begin_read().map_err(db_err)?;
            txn.open_table(tables::RECORDS).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub async fn publish(&self, channel: &Channel, payload: &[u8]) -> EngineResult<()> {
        self.hub.deliver(
            channel,
            BusMessage::Payload(bytes::Bytes::copy_from_slice(payload)),
        );
        Ok(())
    }

    pub async fn subscribe(&self, channel: Channel) -> EngineResult<Subscription> {
        Ok(self.hub.subscribe(channel))
    }

    /// Writes a consistent copy of the whole database to `dest`, a file
    /// that must not exist yet, while the node goes on serving.
    pub async fn backup_to(&self, dest: PathBuf) -> EngineResult<()> {
        self.blocking(Access::Read, move |db| backup::copy_to(db, &dest))
            .await
    }

    /// The database file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Always: there is no connection that could be down.
    pub fn bus_healthy(&self) -> bool {
        true
    }
}

/// Makes a database file readable and writable by its owner only.
pub(crate) fn restrict(file: &Path) -> EngineResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            EngineError::Unavailable(format!("cannot restrict {}: {e}", file.display()))
        })?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redb allows one holder per file; a second node on the same data
    /// directory must fail to start rather than corrupt it.
    #[tokio::test]
    async fn second_open_fails_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let first = EmbeddedEngine::open(dir.path()).await.unwrap();
        let err = EmbeddedEngine::open(dir.path()).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Unavailable(msg) if msg.contains("already open")),
            "{err:?}"
        );
        assert!(format!("{first:?}").contains(tables::FILE_NAME));
        drop(first);
        EmbeddedEngine::open(dir.path())
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_backup_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(engine.path()), 0o600);
        let copy = dir.path().join("copy.redb");
        engine.backup_to(copy.clone()).await.unwrap();
        assert_eq!(mode(&copy), 0o600);
    }

    /// Runs `n` pieces of work in `access`'s lane at once, each holding
    /// its thread for a moment; answers the most that ran side by side.
    async fn most_at_once(engine: &EmbeddedEngine, access: Access, n: usize) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let works = (0..n).map(|_| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            engine.blocking(access, move |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
        });
        for done in futures::future::join_all(works).await {
            done.unwrap();
        }
        most.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn storage_work_takes_a_bounded_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        // Sixty writes at once wait for a lane as tasks, not as threads.
        assert!(most_at_once(&engine, Access::Write, 60).await <= WRITE_LANES);
        let readers = engine.lanes.readers.available_permits();
        assert!(readers >= MIN_READ_LANES);
        let most = most_at_once(&engine, Access::Read, 60).await;
        assert!((2..=readers).contains(&most), "{most} reads at once");
        // Every lane is back.
        assert_eq!(engine.lanes.readers.available_permits(), readers);
        assert_eq!(engine.lanes.writers.available_permits(), WRITE_LANES);
    }

    /// Jobs from callers writing side by side wait for the pace, so the
    /// next batch gathers what arrives meanwhile; a caller alone does not.
    #[test]
    fn batches_gather_while_callers_write_side_by_side() {
        let pace = Duration::from_secs(1);
        let (send, waiting) = std::sync::mpsc::channel();
        let (report, reports) = std::sync::mpsc::channel();
        // Both waiting before the writer starts, so its first batch takes
        // both (sent after, the writer could take "a" before "b" came).
        send.send("a").unwrap();
        send.send("b").unwrap();
        let writer = std::thread::spawn(move || {
            for batch in batches(&waiting, 10, pace) {
                report.send(batch).unwrap();
            }
        });
        assert_eq!(reports.recv().unwrap(), ["a", "b"]);
        send.send("c").unwrap();
        // Sent well after "c" was taken, within the pace.
        std::thread::sleep(Duration::from_millis(20));
        send.send("d").unwrap();
        assert_eq!(reports.recv().unwrap(), ["c", "d"]);
        // One job waits for the pace once more; it alone arms nothing, so
        // the next lone job is taken at once.
        send.send("e").unwrap();
        assert_eq!(reports.recv().unwrap(), ["e"]);
        let sent = Instant::now();
        send.send("f").unwrap();
        assert_eq!(reports.recv().unwrap(), ["f"]);
        assert!(sent.elapsed() < pace, "a lone job waited for the pace");
        drop(send);
        writer.join().unwrap();
    }
}
