//! The append journal: a batch of appends is acknowledged once it is in
//! this file, written in one piece at its end and flushed, instead of once
//! redb has flushed every B-tree page the batch changed.
//!
//! A durable redb commit writes each page it changed to a new place in the
//! file and waits for the disk to hold them all. A batch of appends to a few
//! hundred conversations changes a leaf of each log and of its duplicate
//! index: hundreds of scattered writes, whose flush took 3 ms at best and
//! 87 ms at the 90th percentile on a slow day of the project's disk, where
//! the same bytes written in a row took under 1 ms (docs/benchmarks.md).
//! So a batch of appends alone is committed to redb without durability
//! (readers see it at once) and its new entries are written here, one
//! frame per batch, flushed before anyone hears of them.
//!
//! Frames are covered by the next durable redb commit, which makes every
//! earlier commit durable and says so in the same commit (the journal row:
//! this database's journal id and the covered epoch). Any batch with a
//! record commit or a durable ephemeral value is durable anyway; otherwise,
//! once the oldest frame is [`Settings::every`] old or the frames pass
//! [`Settings::soft`] bytes, a thread flushes the database file beside the
//! writer, and the writer's next batch is durable and cheap (the pages are
//! on disk already). Frames then start again at the file's start, under
//! the next epoch.
//!
//! After a crash redb opens at its last durable commit. The frames of the
//! epoch after the covered one, read from the file's start while each is
//! whole (its checksum), of this database (its id, so a journal left beside
//! a restored database is not applied to it) and of that epoch, are the
//! appends committed since, in order; each is applied again unless already
//! there, and one durable commit covers them. A frame cut short by the crash
//! was never acknowledged, and its batch's senders resend it.
//!
//! Only appends are journaled: each is an entry at a known place, so
//! applying it twice is applying it once. Deleting a log is a durable batch
//! of the writer, so no frame an epoch still holds predates a deletion it
//! would undo.
//!
//! A frame, integers little-endian:
//!
//! | bytes | |
//! |---|---|
//! | 4 | `sbj1` |
//! | 16 | the database's journal id |
//! | 8 | the epoch |
//! | 4 | the payload's length |
//! | 4 | CRC-32 of the id, epoch, length and payload |
//! | … | the payload: per entry, the log (16), the sequence (8), the dedup id's length (4, `u32::MAX` for none) and bytes, the body's length (4) and bytes |

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Weak;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, WriteTransaction};

use super::log::LogTables;
use super::tables::{JOURNAL, JOURNAL_ROW};
use super::writer::Job;
use super::{db_err, restrict};
use crate::engine::{EngineError, EngineResult};

/// The journal's file inside the engine's directory.
pub(super) const FILE_NAME: &str = "switchboard.journal";

const MAGIC: [u8; 4] = *b"sbj1";
/// Magic, id, epoch, length, checksum.
const HEADER: usize = 4 + 16 + 8 + 4 + 4;
/// The dedup id's length when there is none.
const NO_DEDUP: u32 = u32::MAX;

/// When frames ask to be covered by a durable commit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// The oldest frame's age.
    pub(super) every: Duration,
    /// The frames' bytes.
    pub(super) soft: u64,
    /// The most the frames of one epoch may take: a batch that would pass
    /// it is made durable instead.
    pub(super) hard: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            soft: 4 << 20,
            hard: 64 << 20,
        }
    }
}

/// One new entry of a log, as a frame holds it.
pub(super) struct Entry<'a> {
    pub(super) log: u128,
    pub(super) seq: u64,
    pub(super) dedup: Option<&'a str>,
    pub(super) body: &'a [u8],
}

/// Where the flush of the database file that lets frames be covered
/// stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// Not asked for.
    Idle,
    /// Running beside the writer.
    Running,
    /// Done (or not possible): the next durable commit covers the frames.
    Done,
}

/// The journal, owned by the writer thread.
pub(super) struct Journal {
    file: File,
    id: u128,
    /// The epoch the frames being written belong to.
    epoch: u64,
    /// Where the next frame goes: the end of this epoch's frames.
    end: u64,
    /// When this epoch's first frame was written; `None` while it has none.
    since: Option<Instant>,
    settings: Settings,
    flush: Flush,
    /// Flushes the database file beside the writer; `None` if it could not
    /// be opened (the covering commit then flushes everything itself).
    flusher: Option<Sender<u64>>,
    /// Off after a write failed: every batch is durable from then on.
    broken: bool,
    /// The payload of the frame being built, kept for its allocation.
    payload: Vec<u8>,
}

impl Journal {
    /// Opens the journal in `dir`, beside `db`, and applies what a crash
    /// left of its uncovered epoch, in a durable commit that covers it.
    /// Answers the journal and how many entries were applied again.
    pub(super) fn recover(
        db: &Database,
        dir: &Path,
        settings: Settings,
    ) -> EngineResult<(Self, u64)> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                EngineError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
        // It holds visitors' messages, like the database.
        restrict(&path)?;
        let mut frames = Vec::new();
        file.read_to_end(&mut frames).map_err(|e| {
            EngineError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?;

        let txn = db.begin_write().map_err(db_err)?;
        let replayed = (|| {
            let mut row = txn.open_table(JOURNAL).map_err(db_err)?;
            let known = row.get(JOURNAL_ROW).map_err(db_err)?.map(|v| v.value());
            let (id, covered) = known.unwrap_or_else(|| (rand::random(), 0));
            let mut applied = 0;
            if known.is_some() {
                let mut log = LogTables::open(&txn)?;
                for entry in entries_of(&frames, id, covered + 1) {
                    applied += u64::from(log.restore(&entry)?);
                }
            }
            row.insert(JOURNAL_ROW, (id, covered + 1)).map_err(db_err)?;
            Ok::<_, EngineError>((id, covered + 1, applied))
        })();
        let (id, covered, applied) = match replayed {
            Ok(replayed) => {
                txn.commit().map_err(db_err)?;
                replayed
            }
            Err(e) => {
                txn.abort().map_err(db_err)?;
                return Err(e);
            }
        };
        frames.clear();
        Ok((
            Self {
                file,
                id,
                epoch: covered + 1,
                end: 0,
                since: None,
                settings,
                flush: Flush::Idle,
                flusher: None,
                broken: false,
                payload: frames,
            },
            applied,
        ))
    }

    /// Starts the thread that flushes the database file at `db_file`
    /// beside the writer, which hears back through `writer` (held weakly:
    /// the thread must not keep the writer's queue open).
    pub(super) fn start_flusher(&mut self, db_file: &Path, writer: Weak<Sender<Job>>) {
        let Ok(file) = File::open(db_file) else {
            return;
        };
        let (ask, asked) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("switchboard-flusher".into())
            .spawn(move || flush_when_asked(&file, &asked, &writer));
        if started.is_ok() {
            self.flusher = Some(ask);
        }
    }

    /// Whether a batch of these jobs may be journaled rather than made
    /// durable: appends alone, while no covering commit is due.
    pub(super) fn takes(&self, batch: &[Job]) -> bool {
        !self.broken
            && self.flush != Flush::Done
            && batch.iter().all(|job| matches!(job, Job::Append(_)))
    }

    /// Whether the frames of this epoch wait for a covering commit.
    pub(super) fn holds_frames(&self) -> bool {
        self.since.is_some()
    }

    /// Whether a covering commit should go now, the database file being
    /// flushed.
    pub(super) fn covering_due(&self) -> bool {
        self.holds_frames() && self.flush == Flush::Done
    }

    /// How long the writer may wait for a job before asking for the
    /// flush; `None` while it has nothing to ask (no frames, or the flush
    /// asked for already).
    pub(super) fn patience(&self) -> Option<Duration> {
        let since = self.since?;
        (self.flush == Flush::Idle).then(|| self.settings.every.saturating_sub(since.elapsed()))
    }

    /// Writes one frame of `entries` and flushes it; asks for the flush of
    /// the database file once the frames are due to be covered. Answers
    /// whether the frame was written: `false` when the epoch is full (a
    /// durable commit must cover the batch instead).
    pub(super) fn write<'a>(
        &mut self,
        entries: impl Iterator<Item = Entry<'a>>,
    ) -> io::Result<bool> {
        self.payload.clear();
        for entry in entries {
            self.payload.extend_from_slice(&entry.log.to_le_bytes());
            self.payload.extend_from_slice(&entry.seq.to_le_bytes());
            match entry.dedup {
                Some(id) => {
                    self.payload
                        .extend_from_slice(&length(id.len())?.to_le_bytes());
                    self.payload.extend_from_slice(id.as_bytes());
                }
                None => self.payload.extend_from_slice(&NO_DEDUP.to_le_bytes()),
            }
            self.payload
                .extend_from_slice(&length(entry.body.len())?.to_le_bytes());
            self.payload.extend_from_slice(entry.body);
        }
        let mut head = Vec::with_capacity(HEADER);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&self.id.to_le_bytes());
        head.extend_from_slice(&self.epoch.to_le_bytes());
        head.extend_from_slice(&length(self.payload.len())?.to_le_bytes());
        let crc = checksum(head.get(MAGIC.len()..).unwrap_or_default(), &self.payload);
        head.extend_from_slice(&crc.to_le_bytes());

        let size = (HEADER + self.payload.len()) as u64;
        if self.end + size > self.settings.hard {
            return Ok(false);
        }
        let written = (|| {
            self.file.seek(SeekFrom::Start(self.end))?;
            self.file.write_all(&head)?;
            self.file.write_all(&self.payload)?;
            self.file.sync_data()
        })();
        if let Err(e) = written {
            // A frame may be half written: never write after it again.
            self.broken = true;
            return Err(e);
        }
        self.end += size;
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.settings.every || self.end >= self.settings.soft {
            self.ask_for_flush();
        }
        Ok(true)
    }

    /// Asks for the flush of the database file that makes the covering
    /// commit cheap (once, and only with frames to cover).
    pub(super) fn ask_for_flush(&mut self) {
        if !self.holds_frames() || self.flush != Flush::Idle {
            return;
        }
        let asked = self
            .flusher
            .as_ref()
            .is_some_and(|flusher| flusher.send(self.epoch).is_ok());
        self.flush = if asked { Flush::Running } else { Flush::Done };
    }

    /// The flusher is done with the flush it was asked for in `epoch`.
    pub(super) fn flushed(&mut self, epoch: u64) {
        if epoch == self.epoch && self.flush == Flush::Running {
            self.flush = Flush::Done;
        }
    }

    /// Writes, in a durable commit's `txn`, that it covers this epoch's
    /// frames; [`Self::covered`] once it has committed.
    pub(super) fn cover(&self, txn: &WriteTransaction) -> EngineResult<()> {
        let mut row = txn.open_table(JOURNAL).map_err(db_err)?;
        row.insert(JOURNAL_ROW, (self.id, self.epoch))
            .map_err(db_err)?;
        Ok(())
    }

    /// A durable commit with [`Self::cover`] has committed: the next frames
    /// start the next epoch at the file's start.
    pub(super) fn covered(&mut self) {
        self.epoch += 1;
        self.end = 0;
        self.since = None;
        self.flush = Flush::Idle;
    }
}

/// A length as a frame spells it.
fn length(len: usize) -> io::Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|len| *len != NO_DEDUP)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too large for a frame"))
}

fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(payload);
    crc.finalize()
}

/// The flusher thread: one flush of the database file per request, each
/// answered on the writer's queue. Ends when the writer is gone.
fn flush_when_asked(file: &File, asked: &Receiver<u64>, writer: &Weak<Sender<Job>>) {
    for epoch in asked {
        if let Err(e) = file.sync_data() {
            // The covering commit flushes the file itself, and says so if
            // it cannot.
            tracing::debug!(error = %e, "cannot flush the database file ahead of a commit");
        }
        let Some(writer) = writer.upgrade() else {
            return;
        };
        if writer.send(Job::Flushed(epoch)).is_err() {
            return;
        }
    }
}

/// The entries of the whole frames of `id` and `epoch` at the start of
/// `file`, in order; stops at the first frame that is not one of them.
fn entries_of(file: &[u8], id: u128, epoch: u64) -> impl Iterator<Item = Entry<'_>> {
    let mut rest = file;
    std::iter::from_fn(move || {
        let payload = frame(&mut rest, id, epoch)?;
        Some(EntriesOf(payload))
    })
    .flatten()
}

/// The payload of the frame at the start of `rest`, if it is a whole frame
/// of `id` and `epoch`; moves `rest` past it.
fn frame<'a>(rest: &mut &'a [u8], id: u128, epoch: u64) -> Option<&'a [u8]> {
    let mut reader = Reader(rest);
    if reader.bytes(4)? != MAGIC {
        return None;
    }
    let head = rest.get(MAGIC.len()..HEADER - 4)?;
    if reader.u128()? != id || reader.u64()? != epoch {
        return None;
    }
    let len = reader.u32()?;
    let crc = reader.u32()?;
    let payload = reader.bytes(usize::try_from(len).ok()?)?;
    if checksum(head, payload) != crc {
        return None;
    }
    *rest = reader.0;
    Some(payload)
}

/// The entries of one frame's payload; stops at the first that does not
/// parse (a frame whose checksum matched always parses).
struct EntriesOf<'a>(&'a [u8]);

impl<'a> Iterator for EntriesOf<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let mut reader = Reader(self.0);
        let log = reader.u128()?;
        let seq = reader.u64()?;
        let dedup = match reader.u32()? {
            NO_DEDUP => None,
            len => Some(std::str::from_utf8(reader.bytes(usize::try_from(len).ok()?)?).ok()?),
        };
        let body_len = usize::try_from(reader.u32()?).ok()?;
        let body = reader.bytes(body_len)?;
        self.0 = reader.0;
        Some(Entry {
            log,
            seq,
            dedup,
            body,
        })
    }
}

/// Reads little-endian integers and byte runs off the front of a slice,
/// `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn u128(&mut self) -> Option<u128> {
        self.array().map(u128::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::embedded::EmbeddedEngine;
    use crate::engine::embedded::tables::FILE_NAME as DATABASE;

    /// Frames wait for a durable commit for an hour: only a record commit,
    /// a deletion or a full epoch covers them.
    fn patient() -> Settings {
        Settings {
            every: Duration::from_secs(3600),
            ..Settings::default()
        }
    }

    /// What the disk holds if the process died now: the files as they are
    /// (the kernel keeps what was written), copied into a new directory,
    /// with or without the journal.
    fn crash_copy(dir: &Path, journal: bool) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        let mut files = vec![DATABASE];
        if journal {
            files.push(FILE_NAME);
        }
        for file in files {
            std::fs::copy(dir.join(file), copy.path().join(file)).unwrap();
        }
        copy
    }

    async fn bodies(engine: &EmbeddedEngine, log: uuid::Uuid) -> Vec<(u64, String)> {
        engine
            .read_log(log, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, String::from_utf8(e.body).unwrap()))
            .collect()
    }

    fn entries(bodies: &[&str]) -> Vec<(u64, String)> {
        (1..).zip(bodies.iter().map(|b| (*b).to_owned())).collect()
    }

    /// Acknowledged appends are in the journal and nowhere durable else;
    /// after a crash they are all back, in order, duplicates still known.
    #[tokio::test]
    async fn acknowledged_appends_outlive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open_with(dir.path(), patient())
            .await
            .unwrap();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        for (log, body) in [(a, "a1"), (b, "b1"), (a, "a2"), (a, "a3"), (b, "b2")] {
            engine
                .append(log, body.as_bytes(), Some(body))
                .await
                .unwrap();
        }
        // Many at once: batches of several entries, one frame each.
        let racing = (0..40).map(|i| {
            let engine = engine.clone();
            async move {
                let body = format!("c{i}");
                engine.append(b, body.as_bytes(), None).await.unwrap()
            }
        });
        futures::future::join_all(racing).await;
        let before = (bodies(&engine, a).await, bodies(&engine, b).await);
        assert_eq!(before.0, entries(&["a1", "a2", "a3"]));
        assert_eq!(before.1.len(), 42);

        // Without the journal the database alone has none of them: what
        // follows is the journal's doing.
        let lost = EmbeddedEngine::open(crash_copy(dir.path(), false).path())
            .await
            .unwrap();
        assert!(bodies(&lost, a).await.is_empty());
        assert!(bodies(&lost, b).await.is_empty());

        let copy = crash_copy(dir.path(), true);
        let back = EmbeddedEngine::open(copy.path()).await.unwrap();
        assert_eq!((bodies(&back, a).await, bodies(&back, b).await), before);
        let resent = back.append(a, b"a2", Some("a2")).await.unwrap();
        assert!(resent.duplicate && resent.seq == 2, "{resent:?}");
        assert_eq!(back.append(a, b"a4", None).await.unwrap().seq, 4);
        drop(back);
        // Applied once: the next start finds it covered.
        let again = EmbeddedEngine::open(copy.path()).await.unwrap();
        assert_eq!(bodies(&again, a).await, entries(&["a1", "a2", "a3", "a4"]));
        drop(engine);
    }

    /// A frame the crash cut short was never acknowledged: the frames
    /// before it come back, it does not.
    #[tokio::test]
    async fn a_torn_frame_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open_with(dir.path(), patient())
            .await
            .unwrap();
        let log = uuid::Uuid::now_v7();
        for body in ["one", "two", "three"] {
            engine.append(log, body.as_bytes(), None).await.unwrap();
        }
        let copy = crash_copy(dir.path(), true);
        let journal = copy.path().join(FILE_NAME);
        let len = std::fs::metadata(&journal).unwrap().len();
        let file = OpenOptions::new().write(true).open(&journal).unwrap();
        file.set_len(len - 1).unwrap();
        drop(file);
        let back = EmbeddedEngine::open(copy.path()).await.unwrap();
        assert_eq!(bodies(&back, log).await, entries(&["one", "two"]));
        drop(engine);
    }

    /// A deletion is a durable commit covering the frames before it: the
    /// deleted log's frames are never applied again, and later frames are.
    #[tokio::test]
    async fn a_deleted_log_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open_with(dir.path(), patient())
            .await
            .unwrap();
        let (gone, kept) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        engine.append(gone, b"erased", Some("x")).await.unwrap();
        engine.append(kept, b"before", None).await.unwrap();
        assert_eq!(engine.delete_log(gone).await.unwrap(), 1);
        engine.append(kept, b"after", None).await.unwrap();

        let durable = EmbeddedEngine::open(crash_copy(dir.path(), false).path())
            .await
            .unwrap();
        assert_eq!(bodies(&durable, kept).await, entries(&["before"]));
        let back = EmbeddedEngine::open(crash_copy(dir.path(), true).path())
            .await
            .unwrap();
        assert!(bodies(&back, gone).await.is_empty());
        assert_eq!(bodies(&back, kept).await, entries(&["before", "after"]));
        let again = back.append(gone, b"new", Some("x")).await.unwrap();
        assert!(!again.duplicate && again.seq == 1, "{again:?}");
        drop(engine);
    }

    /// Frames past their age are covered without any other write: the
    /// database file alone then holds them.
    #[tokio::test]
    async fn old_frames_are_covered_by_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            every: Duration::from_millis(20),
            ..Settings::default()
        };
        let engine = EmbeddedEngine::open_with(dir.path(), settings)
            .await
            .unwrap();
        let covered = || {
            let txn = engine.db.begin_read().unwrap();
            let row = txn.open_table(JOURNAL).unwrap();
            row.get(JOURNAL_ROW).unwrap().unwrap().value().1
        };
        let log = uuid::Uuid::now_v7();
        let start = covered();
        engine.append(log, b"m", None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while covered() == start {
            assert!(Instant::now() < deadline, "the frame was never covered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let durable = EmbeddedEngine::open(crash_copy(dir.path(), false).path())
            .await
            .unwrap();
        assert_eq!(bodies(&durable, log).await, entries(&["m"]));
        drop(engine);
    }

    /// A restored database starts a journal of its own: the one left in
    /// the directory by another database is not applied to it.
    #[tokio::test]
    async fn another_databases_journal_is_ignored() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let engine = EmbeddedEngine::open_with(first.path(), patient())
            .await
            .unwrap();
        let log = uuid::Uuid::now_v7();
        engine.append(log, b"elsewhere", None).await.unwrap();
        drop(EmbeddedEngine::open(second.path()).await.unwrap());
        std::fs::copy(first.path().join(FILE_NAME), second.path().join(FILE_NAME)).unwrap();
        let other = EmbeddedEngine::open(second.path()).await.unwrap();
        assert!(bodies(&other, log).await.is_empty());
        drop(engine);
    }

    /// Any prefix of a journal, or one with a byte flipped anywhere, reads
    /// as its whole frames before the damage, without a panic.
    #[test]
    fn damaged_journals_read_as_their_whole_frames() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join(DATABASE)).unwrap();
        {
            let txn = db.begin_write().unwrap();
            crate::engine::embedded::tables::create_all(&txn).unwrap();
            txn.commit().unwrap();
        }
        let (mut journal, _) = Journal::recover(&db, dir.path(), Settings::default()).unwrap();
        let frames: [&[(&str, &[u8])]; 3] = [
            &[("a", b"first")],
            &[("b", b"second"), ("", b"")],
            &[("c", b"third")],
        ];
        let mut ends = Vec::new();
        for (seq, frame) in (1..).zip(frames) {
            let entries = frame.iter().map(|(dedup, body)| Entry {
                log: 7,
                seq,
                dedup: (!dedup.is_empty()).then_some(*dedup),
                body,
            });
            assert!(journal.write(entries).unwrap());
            ends.push(journal.end);
        }
        let bytes = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let (id, epoch) = (journal.id, journal.epoch);
        let whole = |file: &[u8]| entries_of(file, id, epoch).count();
        assert_eq!(whole(&bytes), 4);
        assert_eq!(entries_of(&bytes, id, epoch + 1).count(), 0);
        assert_eq!(entries_of(&bytes, id ^ 1, epoch).count(), 0);
        let counts = [1, 3, 4];
        for cut in 0..bytes.len() {
            let before = ends.iter().filter(|end| **end <= cut as u64).count();
            let expected = before.checked_sub(1).map_or(0, |i| counts[i]);
            assert_eq!(whole(&bytes[..cut]), expected, "cut at {cut}");
            let mut flipped = bytes.clone();
            flipped[cut] ^= 0x40;
            let damaged = ends.iter().position(|end| (cut as u64) < *end).unwrap();
            let expected = damaged.checked_sub(1).map_or(0, |i| counts[i]);
            assert_eq!(whole(&flipped), expected, "flipped at {cut}");
        }
        let dedups: Vec<_> = entries_of(&bytes, id, epoch).map(|e| e.dedup).collect();
        assert_eq!(dedups, [Some("a"), Some("b"), None, Some("c")]);
    }
}
