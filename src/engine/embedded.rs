//! The embedded engine: one node, records in a local redb database.
//!
//! Layout (every stored key is a [`RecordKey::encode`]d `kind:id`):
//!
//! - `records`: key → (version, body, collection, order);
//! - `refs`: (referrer, target) → (), the references a record holds, so a
//!   write can replace them without reading the previous [`super::Put`];
//! - `backrefs`: (target, referrer) → (), the same pairs the other way round,
//!   so deleting a record and `referrers` need no scan;
//! - `claims`: claim → holder, and `held`: (holder, claim) → (), so a record's
//!   claims can be released without knowing them up front;
//! - `collections`: (collection, order, key) → (), whose natural order is the
//!   listing order;
//! - `ephemeral`: `space:id` → (expires at, in Unix milliseconds, value).
//!
//! Every [`Commit`] is one redb write transaction: it validates against the
//! state before any write, aborts on the first failed check, and otherwise
//! applies every write before committing, so it is atomic by construction.
//!
//! Ephemeral values expire lazily: an entry past its expiry is invisible to
//! every operation, and a background sweep deletes such entries now and then
//! so the file does not grow. Every operation that writes one is a single
//! write transaction, and redb runs those one at a time, so each is atomic.
//! Expiry follows the wall clock, like Redis's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, ReadableTable, TableDefinition, WriteTransaction};

use super::{
    Commit, EngineError, EngineResult, Expect, Page, RecordKey, Space, StashMode, StoredRecord,
    Write,
};

/// The file inside the engine's directory.
const FILE_NAME: &str = "switchboard.redb";

/// A record's stored value: version, body, collection, order.
type RecordValue = (u64, &'static [u8], &'static str, i64);
/// A pair of encoded keys (or a key and a claim), the first one the prefix.
type Pair = (&'static str, &'static str);

const RECORDS: TableDefinition<&str, RecordValue> = TableDefinition::new("records");
const REFS: TableDefinition<Pair, ()> = TableDefinition::new("refs");
const BACKREFS: TableDefinition<Pair, ()> = TableDefinition::new("backrefs");
const CLAIMS: TableDefinition<&str, &str> = TableDefinition::new("claims");
const HELD: TableDefinition<Pair, ()> = TableDefinition::new("held");
const COLLECTIONS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("collections");
/// An ephemeral value: expiry in Unix milliseconds, then the value.
type EphemeralValue = (u64, &'static [u8]);
const EPHEMERAL: TableDefinition<&str, EphemeralValue> = TableDefinition::new("ephemeral");

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

/// The single-node engine. Cheap to clone: clones share one open database.
#[derive(Clone)]
pub struct EmbeddedEngine {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// The bus: one node, so the local fan-out is all of it.
    hub: super::bus::LocalHub,
}

/// For the conversation logs and the bus, which live in `embedded_log`.
impl EmbeddedEngine {
    pub(super) fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub(super) fn hub(&self) -> &super::bus::LocalHub {
        &self.hub
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

/// Every storage failure is `Unavailable`: callers cannot do anything more
/// specific with a redb error than report it.
fn db_err(err: impl fmt::Display) -> EngineError {
    EngineError::Unavailable(err.to_string())
}

/// A stored key that does not decode means the file was written by something
/// else; refuse rather than guess.
fn decode(encoded: &str) -> EngineResult<RecordKey> {
    RecordKey::decode(encoded)
        .ok_or_else(|| EngineError::Unavailable(format!("corrupt stored key {encoded:?}")))
}

/// The owned form of a `records` value.
struct Envelope {
    version: u64,
    body: Vec<u8>,
    collection: String,
    order: i64,
}

fn read_record<T>(table: &T, key: &str) -> EngineResult<Option<Envelope>>
where
    T: ReadableTable<&'static str, RecordValue>,
{
    let Some(guard) = table.get(key).map_err(db_err)? else {
        return Ok(None);
    };
    let (version, body, collection, order) = guard.value();
    Ok(Some(Envelope {
        version,
        body: body.to_vec(),
        collection: collection.to_owned(),
        order,
    }))
}

fn read_stored<T>(table: &T, key: &RecordKey) -> EngineResult<Option<StoredRecord>>
where
    T: ReadableTable<&'static str, RecordValue>,
{
    Ok(read_record(table, &key.encode())?.map(|env| StoredRecord {
        key: key.clone(),
        version: env.version,
        body: env.body,
    }))
}

/// The second halves of all pairs whose first half is `first`, in order.
fn pairs_from<T>(table: &T, first: &str) -> EngineResult<Vec<String>>
where
    T: ReadableTable<Pair, ()>,
{
    let mut out = Vec::new();
    for entry in table.range((first, "")..).map_err(db_err)? {
        let (key, _) = entry.map_err(db_err)?;
        let (a, b) = key.value();
        if a != first {
            break;
        }
        out.push(b.to_owned());
    }
    Ok(out)
}

/// Keeps the first occurrence of each item: a `Put` listing a ref or claim
/// twice means the same as listing it once.
fn dedup<'a, I: IntoIterator<Item = &'a String>>(items: I) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .map(String::as_str)
        .filter(|s| seen.insert(*s))
        .collect()
}

impl EmbeddedEngine {
    /// Opens (creating if needed) the database in `dir`. Fails if another
    /// process holds it: redb allows one writer process per file.
    ///
    /// Also starts the sweep of expired ephemeral values, which stops by
    /// itself once every clone of the engine is dropped.
    pub async fn open(dir: &Path) -> EngineResult<Self> {
        let dir = dir.to_path_buf();
        let path = dir.join(FILE_NAME);
        let file = path.clone();
        let (db, canonical) = tokio::task::spawn_blocking(move || -> EngineResult<_> {
            std::fs::create_dir_all(&dir).map_err(|e| {
                EngineError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
            // The sweep registry needs one name per file, however `dir` was
            // spelled.
            let canonical = std::fs::canonicalize(&dir)
                .unwrap_or_else(|_| dir.clone())
                .join(FILE_NAME);
            let db = create_database(&file, &canonical)?;
            // Create every table up front so read transactions can always
            // open them, even on an empty database.
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(RECORDS).map_err(db_err)?;
            txn.open_table(REFS).map_err(db_err)?;
            txn.open_table(BACKREFS).map_err(db_err)?;
            txn.open_table(CLAIMS).map_err(db_err)?;
            txn.open_table(HELD).map_err(db_err)?;
            txn.open_table(COLLECTIONS).map_err(db_err)?;
            txn.open_table(EPHEMERAL).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
            Ok((db, canonical))
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("storage task failed: {e}")))??;
        let db = Arc::new(db);
        spawn_sweeper(Arc::downgrade(&db), canonical);
        Ok(Self {
            db,
            path: Arc::new(path),
            hub: super::bus::LocalHub::default(),
        })
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> EngineResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| EngineError::Unavailable(format!("storage task failed: {e}")))?
    }

    pub async fn ping(&self) -> EngineResult<()> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            txn.open_table(RECORDS).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, key: &RecordKey) -> EngineResult<Option<StoredRecord>> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            read_stored(&records, &key)
        })
        .await
    }

    pub async fn get_many(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
        let keys = keys.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            keys.iter().map(|key| read_stored(&records, key)).collect()
        })
        .await
    }

    pub async fn lookup(&self, claim: &str) -> EngineResult<Option<StoredRecord>> {
        let claim = claim.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let claims = txn.open_table(CLAIMS).map_err(db_err)?;
            let holder = match claims.get(claim.as_str()).map_err(db_err)? {
                Some(guard) => decode(guard.value())?,
                None => return Ok(None),
            };
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            read_stored(&records, &holder)
        })
        .await
    }

    pub async fn referrers(&self, key: &RecordKey) -> EngineResult<Vec<RecordKey>> {
        let encoded = key.encode();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let backrefs = txn.open_table(BACKREFS).map_err(db_err)?;
            let mut keys = pairs_from(&backrefs, &encoded)?
                .iter()
                .map(|k| decode(k))
                .collect::<EngineResult<Vec<_>>>()?;
            keys.sort();
            Ok(keys)
        })
        .await
    }

    pub async fn list(&self, collection: &str, offset: u64, limit: u64) -> EngineResult<Page> {
        let collection = collection.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(COLLECTIONS).map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            let end = offset.saturating_add(limit);
            let mut total: u64 = 0;
            let mut page = Vec::new();
            // Admin collections are small: counting by walking the range is
            // cheaper to keep right than a separate counter.
            let start = (collection.as_str(), i64::MIN, "");
            for entry in entries.range(start..).map_err(db_err)? {
                let (guard, _) = entry.map_err(db_err)?;
                let (col, _, encoded) = guard.value();
                if col != collection {
                    break;
                }
                if total >= offset && total < end {
                    let key = decode(encoded)?;
                    let record = read_stored(&records, &key)?.ok_or_else(|| {
                        EngineError::Unavailable(format!(
                            "collection {collection:?} lists missing record {key}"
                        ))
                    })?;
                    page.push(record);
                }
                total = total.saturating_add(1);
            }
            Ok(Page {
                total,
                records: page,
            })
        })
        .await
    }

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
        self.write_ephemeral(move |table, now| {
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
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(EPHEMERAL).map_err(db_err)?;
            Ok(read_live(&table, &key, now_millis())?.map(|(_, value)| value))
        })
        .await
    }

    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(move |table, now| {
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
        self.write_ephemeral(move |table, now| {
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

    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(move |table, _| {
            table.remove(key.as_str()).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// Counts are stored as decimal text, as Redis stores them, so `peek`
    /// answers the same on both engines.
    pub async fn count(&self, space: Space, id: &str, window: Duration) -> EngineResult<u64> {
        let key = ephemeral_key(space, id);
        self.write_ephemeral(move |table, now| {
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

    /// Runs `work` on the `ephemeral` table in one write transaction, with
    /// the time read once the transaction holds the write lock. Commits when
    /// `work` succeeds (also when it wrote nothing, which costs little and
    /// keeps this simple), aborts when it fails.
    async fn write_ephemeral<T, F>(&self, work: F) -> EngineResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut redb::Table<'_, &'static str, EphemeralValue>, u64) -> EngineResult<T>
            + Send
            + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
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

    pub async fn commit(&self, commit: Commit) -> EngineResult<()> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            match commit_in(&txn, &commit) {
                Ok(()) => txn.commit().map_err(db_err),
                Err(err) => {
                    txn.abort().map_err(db_err)?;
                    Err(err)
                }
            }
        })
        .await
    }
}

/// Validates `commit` against the state before it, then applies it, all
/// inside `txn`. On error the caller aborts, so nothing applied stays.
fn commit_in(txn: &WriteTransaction, commit: &Commit) -> EngineResult<()> {
    let mut records = txn.open_table(RECORDS).map_err(db_err)?;
    let mut refs = txn.open_table(REFS).map_err(db_err)?;
    let mut backrefs = txn.open_table(BACKREFS).map_err(db_err)?;
    let mut claims = txn.open_table(CLAIMS).map_err(db_err)?;
    let mut held = txn.open_table(HELD).map_err(db_err)?;
    let mut collections = txn.open_table(COLLECTIONS).map_err(db_err)?;

    // What the commit does, by encoded key, for the checks below.
    let mut deleted: HashSet<String> = HashSet::new();
    let mut put_refs: HashMap<String, HashSet<String>> = HashMap::new();
    let mut put_claims: HashMap<String, HashSet<&str>> = HashMap::new();
    for write in &commit.writes {
        match write {
            Write::Put(put) => {
                let encoded = put.key.encode();
                put_refs.insert(
                    encoded.clone(),
                    put.refs.iter().map(RecordKey::encode).collect(),
                );
                put_claims.insert(encoded, put.unique.iter().map(String::as_str).collect());
            }
            Write::Delete { key, .. } => {
                deleted.insert(key.encode());
            }
        }
    }

    // 1. Expectations.
    for write in &commit.writes {
        let (key, expect) = match write {
            Write::Put(put) => (&put.key, put.expect),
            Write::Delete { key, expect } => (key, *expect),
        };
        let actual = read_record(&records, &key.encode())?.map(|env| env.version);
        let ok = match expect {
            Expect::Absent => actual.is_none(),
            Expect::Version(v) => actual == Some(v),
            Expect::Any => true,
        };
        if !ok {
            return Err(EngineError::Conflict {
                key: key.clone(),
                expected: expect,
                actual,
            });
        }
    }

    // 2. Every reference exists once the commit applies.
    for write in &commit.writes {
        let Write::Put(put) = write else { continue };
        for target in &put.refs {
            let encoded = target.encode();
            let exists = put_refs.contains_key(&encoded)
                || (!deleted.contains(&encoded) && read_record(&records, &encoded)?.is_some());
            if !exists {
                return Err(EngineError::MissingRef(target.clone()));
            }
        }
    }

    // 3. Nothing deleted stays referenced.
    for write in &commit.writes {
        let Write::Delete { key, .. } = write else {
            continue;
        };
        let encoded = key.encode();
        let mut remaining = pairs_from(&backrefs, &encoded)?
            .into_iter()
            .filter(|referrer| {
                !deleted.contains(referrer)
                    && put_refs
                        .get(referrer)
                        .is_none_or(|new_refs| new_refs.contains(&encoded))
            })
            .map(|referrer| decode(&referrer))
            .collect::<EngineResult<Vec<_>>>()?;
        if !remaining.is_empty() {
            remaining.sort();
            return Err(EngineError::InUse {
                key: key.clone(),
                by: remaining,
            });
        }
    }

    // 4. Unique claims: free, already ours, or released by this commit; and
    // never claimed twice within it.
    let mut claimed: HashMap<&str, &RecordKey> = HashMap::new();
    for write in &commit.writes {
        let Write::Put(put) = write else { continue };
        let encoded = put.key.encode();
        for claim in dedup(&put.unique) {
            if let Some(holder) = claimed.get(claim) {
                return Err(EngineError::Duplicate {
                    claim: claim.to_owned(),
                    holder: (*holder).clone(),
                });
            }
            let holder = claims
                .get(claim)
                .map_err(db_err)?
                .map(|guard| guard.value().to_owned());
            if let Some(holder) = holder {
                let released = holder == encoded
                    || deleted.contains(&holder)
                    || put_claims
                        .get(&holder)
                        .is_some_and(|kept| !kept.contains(claim));
                if !released {
                    return Err(EngineError::Duplicate {
                        claim: claim.to_owned(),
                        holder: decode(&holder)?,
                    });
                }
            }
            claimed.insert(claim, &put.key);
        }
    }

    // Apply, in order. A claim is released only if the record still holds
    // it: an earlier write of this commit may have handed it on already.
    for write in &commit.writes {
        match write {
            Write::Put(put) => {
                let encoded = put.key.encode();
                let key = encoded.as_str();
                let old = read_record(&records, key)?;
                let version = old.as_ref().map_or(1, |env| env.version.saturating_add(1));
                if let Some(old) = &old {
                    collections
                        .remove((old.collection.as_str(), old.order, key))
                        .map_err(db_err)?;
                }
                records
                    .insert(
                        key,
                        (
                            version,
                            put.body.as_slice(),
                            put.collection.as_str(),
                            put.order,
                        ),
                    )
                    .map_err(db_err)?;
                collections
                    .insert((put.collection.as_str(), put.order, key), ())
                    .map_err(db_err)?;

                let new_refs: Vec<String> = put.refs.iter().map(RecordKey::encode).collect();
                let new_refs = dedup(&new_refs);
                for target in pairs_from(&refs, key)? {
                    if !new_refs.contains(&target.as_str()) {
                        refs.remove((key, target.as_str())).map_err(db_err)?;
                        backrefs.remove((target.as_str(), key)).map_err(db_err)?;
                    }
                }
                for target in &new_refs {
                    refs.insert((key, *target), ()).map_err(db_err)?;
                    backrefs.insert((*target, key), ()).map_err(db_err)?;
                }

                let new_claims = dedup(&put.unique);
                for claim in pairs_from(&held, key)? {
                    if !new_claims.contains(&claim.as_str()) {
                        held.remove((key, claim.as_str())).map_err(db_err)?;
                        release_claim(&mut claims, &claim, key)?;
                    }
                }
                for claim in &new_claims {
                    held.insert((key, *claim), ()).map_err(db_err)?;
                    claims.insert(*claim, key).map_err(db_err)?;
                }
            }
            Write::Delete { key, .. } => {
                let encoded = key.encode();
                let key = encoded.as_str();
                let Some(old) = read_record(&records, key)? else {
                    continue;
                };
                records.remove(key).map_err(db_err)?;
                collections
                    .remove((old.collection.as_str(), old.order, key))
                    .map_err(db_err)?;
                for target in pairs_from(&refs, key)? {
                    refs.remove((key, target.as_str())).map_err(db_err)?;
                    backrefs.remove((target.as_str(), key)).map_err(db_err)?;
                }
                for claim in pairs_from(&held, key)? {
                    held.remove((key, claim.as_str())).map_err(db_err)?;
                    release_claim(&mut claims, &claim, key)?;
                }
            }
        }
    }
    Ok(())
}

/// Where an ephemeral value is stored.
fn ephemeral_key(space: Space, id: &str) -> String {
    format!("{}:{id}", space.as_str())
}

/// Now, in Unix milliseconds. A clock before 1970 reads as 0, which only
/// makes values live longer.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
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
fn create_database(file: &Path, canonical: &Path) -> EngineResult<Database> {
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
fn spawn_sweeper(db: Weak<Database>, file: PathBuf) {
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

/// Removes `claim` if `holder` still holds it.
fn release_claim(
    claims: &mut redb::Table<'_, &'static str, &'static str>,
    claim: &str,
    holder: &str,
) -> EngineResult<()> {
    let holds = claims
        .get(claim)
        .map_err(db_err)?
        .is_some_and(|guard| guard.value() == holder);
    if holds {
        claims.remove(claim).map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::engine::{Kind, Put};

    fn key(kind: Kind, id: &str) -> RecordKey {
        RecordKey::new(kind, id)
    }

    fn put(key: &RecordKey, expect: Expect, body: &str) -> Put {
        Put {
            key: key.clone(),
            expect,
            body: body.as_bytes().to_vec(),
            collection: "c".into(),
            order: 0,
            refs: vec![],
            unique: vec![],
        }
    }

    async fn engine() -> (tempfile::TempDir, EmbeddedEngine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(&dir.path().join("data"))
            .await
            .unwrap();
        (dir, engine)
    }

    #[tokio::test]
    async fn create_update_and_conflict() {
        let (_dir, e) = engine().await;
        e.ping().await.unwrap();
        let k = key(Kind::Organization, "a");
        assert_eq!(e.get(&k).await.unwrap(), None);

        e.commit(Commit::new().put(put(&k, Expect::Absent, "1")))
            .await
            .unwrap();
        let rec = e.get(&k).await.unwrap().unwrap();
        assert_eq!((rec.version, rec.body.as_slice()), (1, b"1".as_slice()));

        let err = e
            .commit(Commit::new().put(put(&k, Expect::Absent, "x")))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::Conflict {
                    actual: Some(1),
                    ..
                }
            ),
            "{err:?}"
        );
        let err = e
            .commit(Commit::new().put(put(&k, Expect::Version(7), "x")))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            EngineError::Conflict {
                actual: Some(1),
                expected: Expect::Version(7),
                ..
            }
        ));

        e.commit(Commit::new().put(put(&k, Expect::Version(1), "2")))
            .await
            .unwrap();
        e.commit(Commit::new().put(put(&k, Expect::Any, "3")))
            .await
            .unwrap();
        let rec = e.get(&k).await.unwrap().unwrap();
        assert_eq!((rec.version, rec.body.as_slice()), (3, b"3".as_slice()));

        let missing = key(Kind::Organization, "b");
        let err = e
            .commit(Commit::new().put(put(&missing, Expect::Version(1), "x")))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Conflict { actual: None, .. }));
        let err = e
            .commit(Commit::new().delete(missing.clone(), Expect::Version(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Conflict { actual: None, .. }));
        // Deleting a missing record with Any is a no-op.
        e.commit(Commit::new().delete(missing.clone(), Expect::Any))
            .await
            .unwrap();

        let many = e.get_many(&[k.clone(), missing, k.clone()]).await.unwrap();
        assert_eq!(many.len(), 3);
        assert_eq!(many[0].as_ref().map(|r| r.version), Some(3));
        assert!(many[1].is_none());
        assert_eq!(many[2].as_ref().map(|r| r.version), Some(3));

        e.commit(Commit::new().delete(k.clone(), Expect::Version(3)))
            .await
            .unwrap();
        assert_eq!(e.get(&k).await.unwrap(), None);
        // A recreated record starts again at version 1.
        e.commit(Commit::new().put(put(&k, Expect::Absent, "new")))
            .await
            .unwrap();
        assert_eq!(e.get(&k).await.unwrap().unwrap().version, 1);
    }

    #[tokio::test]
    async fn refs_and_in_use() {
        let (_dir, e) = engine().await;
        let org = key(Kind::Organization, "o");
        let dep = key(Kind::Deployment, "d");
        let queue = key(Kind::Queue, "q");

        let mut p = put(&dep, Expect::Absent, "{}");
        p.refs = vec![org.clone()];
        let err = e.commit(Commit::new().put(p.clone())).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::MissingRef(k) if *k == org),
            "{err:?}"
        );

        // A ref put in the same commit counts, whatever the order.
        e.commit(
            Commit::new()
                .put(p.clone())
                .put(put(&org, Expect::Absent, "{}")),
        )
        .await
        .unwrap();
        let mut q = put(&queue, Expect::Absent, "{}");
        q.refs = vec![org.clone(), org.clone()];
        e.commit(Commit::new().put(q)).await.unwrap();
        assert_eq!(
            e.referrers(&org).await.unwrap(),
            vec![dep.clone(), queue.clone()]
        );

        let err = e
            .commit(Commit::new().delete(org.clone(), Expect::Any))
            .await
            .unwrap_err();
        match err {
            EngineError::InUse { key, by } => {
                assert_eq!(key, org);
                assert_eq!(by, vec![dep.clone(), queue.clone()]);
            }
            other => panic!("{other:?}"),
        }

        // A ref to a record this commit deletes is missing.
        let mut p2 = put(&key(Kind::Deployment, "d2"), Expect::Absent, "{}");
        p2.refs = vec![queue.clone()];
        let err = e
            .commit(Commit::new().put(p2).delete(queue.clone(), Expect::Any))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::MissingRef(k) if *k == queue),
            "{err:?}"
        );

        // Deleting one referrer and re-putting the other without the ref frees it.
        let mut p3 = put(&dep, Expect::Version(1), "{}");
        p3.refs = vec![];
        e.commit(
            Commit::new()
                .delete(org.clone(), Expect::Version(1))
                .put(p3)
                .delete(queue.clone(), Expect::Version(1)),
        )
        .await
        .unwrap();
        assert_eq!(e.get(&org).await.unwrap(), None);
        assert_eq!(e.get(&dep).await.unwrap().unwrap().version, 2);
        assert!(e.referrers(&org).await.unwrap().is_empty());

        // Replacing refs moves the back-reference.
        let a = key(Kind::Organization, "a");
        let b = key(Kind::Organization, "b");
        let mut p4 = put(&dep, Expect::Version(2), "{}");
        p4.refs = vec![a.clone()];
        e.commit(
            Commit::new()
                .put(put(&a, Expect::Absent, "{}"))
                .put(put(&b, Expect::Absent, "{}"))
                .put(p4),
        )
        .await
        .unwrap();
        let mut p5 = put(&dep, Expect::Version(3), "{}");
        p5.refs = vec![b.clone()];
        e.commit(Commit::new().put(p5)).await.unwrap();
        assert!(e.referrers(&a).await.unwrap().is_empty());
        assert_eq!(e.referrers(&b).await.unwrap(), vec![dep.clone()]);
        e.commit(Commit::new().delete(a, Expect::Version(1)))
            .await
            .unwrap();
        // Deleting the referrer releases its target.
        e.commit(Commit::new().delete(dep, Expect::Version(4)))
            .await
            .unwrap();
        assert!(e.referrers(&b).await.unwrap().is_empty());
        e.commit(Commit::new().delete(b, Expect::Version(1)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn unique_claims() {
        let (_dir, e) = engine().await;
        let m1 = key(Kind::Member, "1");
        let m2 = key(Kind::Member, "2");
        let mut p1 = put(&m1, Expect::Absent, "one");
        p1.unique = vec!["iss|sub".into()];
        e.commit(Commit::new().put(p1)).await.unwrap();
        assert_eq!(e.lookup("iss|sub").await.unwrap().unwrap().key, m1);
        assert_eq!(e.lookup("other").await.unwrap(), None);

        let mut p2 = put(&m2, Expect::Absent, "two");
        p2.unique = vec!["iss|sub".into()];
        let err = e.commit(Commit::new().put(p2.clone())).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Duplicate { claim, holder } if claim == "iss|sub" && *holder == m1),
            "{err:?}"
        );

        // Re-putting the holder keeps its claim.
        let mut p1b = put(&m1, Expect::Version(1), "one");
        p1b.unique = vec!["iss|sub".into()];
        e.commit(Commit::new().put(p1b)).await.unwrap();

        // Two puts of one commit cannot claim the same string.
        let m3 = key(Kind::Member, "3");
        let mut p3 = put(&m3, Expect::Absent, "three");
        p3.unique = vec!["x".into()];
        let mut p2x = p2.clone();
        p2x.unique = vec!["x".into()];
        let err = e.commit(Commit::new().put(p3).put(p2x)).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Duplicate { claim, holder } if claim == "x" && *holder == m3),
            "{err:?}"
        );
        assert_eq!(e.lookup("x").await.unwrap(), None);

        // A claim released in the same commit can be taken, in either order.
        let mut p1c = put(&m1, Expect::Version(2), "one");
        p1c.unique = vec!["new".into()];
        e.commit(Commit::new().put(p2.clone()).put(p1c))
            .await
            .unwrap();
        assert_eq!(e.lookup("iss|sub").await.unwrap().unwrap().key, m2);
        assert_eq!(e.lookup("new").await.unwrap().unwrap().key, m1);

        // Delete hands the claim on, and a deleted record's claims go.
        let mut p1d = put(&m1, Expect::Version(3), "one");
        p1d.unique = vec!["iss|sub".into()];
        e.commit(
            Commit::new()
                .put(p1d)
                .delete(m2.clone(), Expect::Version(1)),
        )
        .await
        .unwrap();
        assert_eq!(e.lookup("iss|sub").await.unwrap().unwrap().key, m1);
        assert_eq!(e.lookup("new").await.unwrap(), None);
        e.commit(Commit::new().delete(m1, Expect::Any))
            .await
            .unwrap();
        assert_eq!(e.lookup("iss|sub").await.unwrap(), None);
    }

    #[tokio::test]
    async fn list_pages_in_order() {
        let (_dir, e) = engine().await;
        let mut commit = Commit::new();
        for (id, order) in [("e", 5), ("b", -3), ("a", 5), ("c", 0), ("d", i64::MAX)] {
            let mut p = put(&key(Kind::Deployment, id), Expect::Absent, id);
            p.collection = "org/1/dep".into();
            p.order = order;
            commit = commit.put(p);
        }
        let mut other = put(&key(Kind::Deployment, "z"), Expect::Absent, "z");
        other.collection = "org/1/depx".into();
        e.commit(commit.put(other)).await.unwrap();

        let ids = |page: &Page| {
            page.records
                .iter()
                .map(|r| r.key.id.clone())
                .collect::<Vec<_>>()
        };
        let page = e.list("org/1/dep", 0, 10).await.unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(ids(&page), ["b", "c", "a", "e", "d"]);
        let page = e.list("org/1/dep", 1, 2).await.unwrap();
        assert_eq!(
            (page.total, ids(&page)),
            (5, vec!["c".to_owned(), "a".to_owned()])
        );
        let page = e.list("org/1/dep", 0, 0).await.unwrap();
        assert_eq!((page.total, page.records.len()), (5, 0));
        let page = e.list("org/1/dep", 9, u64::MAX).await.unwrap();
        assert_eq!((page.total, page.records.len()), (5, 0));
        assert_eq!(e.list("org/1", 0, 10).await.unwrap().total, 0);
        assert_eq!(e.list("org/1/depx", 0, 10).await.unwrap().total, 1);

        // Moving a record changes its place; moving it out removes it.
        let mut p = put(&key(Kind::Deployment, "d"), Expect::Version(1), "d");
        p.collection = "org/1/dep".into();
        p.order = -10;
        e.commit(Commit::new().put(p)).await.unwrap();
        let mut p = put(&key(Kind::Deployment, "a"), Expect::Version(1), "a");
        p.collection = "elsewhere".into();
        e.commit(
            Commit::new()
                .put(p)
                .delete(key(Kind::Deployment, "c"), Expect::Any),
        )
        .await
        .unwrap();
        let page = e.list("org/1/dep", 0, 10).await.unwrap();
        assert_eq!(
            (page.total, ids(&page)),
            (3, vec!["d".to_owned(), "b".to_owned(), "e".to_owned()])
        );
        assert_eq!(e.list("elsewhere", 0, 10).await.unwrap().total, 1);
    }

    #[tokio::test]
    async fn failing_commit_changes_nothing() {
        let (_dir, e) = engine().await;
        let org = key(Kind::Organization, "o");
        let cfg = key(Kind::Configuration, "c");
        let mut p = put(&org, Expect::Absent, "org");
        p.unique = vec!["slug".into()];
        e.commit(Commit::new().put(p).put(put(&cfg, Expect::Absent, "cfg")))
            .await
            .unwrap();

        // Earlier writes are valid, the last one conflicts.
        let mut p = put(&org, Expect::Version(1), "changed");
        p.unique = vec!["other".into()];
        p.collection = "moved".into();
        let mut v = put(&key(Kind::ConfigurationVersion, "v"), Expect::Absent, "ver");
        v.refs = vec![cfg.clone()];
        let err = e
            .commit(
                Commit::new()
                    .put(p)
                    .put(v)
                    .delete(cfg.clone(), Expect::Any)
                    .put(put(&key(Kind::Queue, "q"), Expect::Version(3), "")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Conflict { .. }), "{err:?}");

        let rec = e.get(&org).await.unwrap().unwrap();
        assert_eq!((rec.version, rec.body.as_slice()), (1, b"org".as_slice()));
        assert_eq!(e.lookup("slug").await.unwrap().unwrap().key, org);
        assert_eq!(e.lookup("other").await.unwrap(), None);
        assert!(
            e.get(&key(Kind::ConfigurationVersion, "v"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(e.get(&cfg).await.unwrap().is_some());
        assert!(e.referrers(&cfg).await.unwrap().is_empty());
        assert_eq!(e.list("c", 0, 10).await.unwrap().total, 2);
        assert_eq!(e.list("moved", 0, 10).await.unwrap().total, 0);
    }

    fn ephemeral_rows(e: &EmbeddedEngine) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = e.db.begin_read().unwrap();
        txn.open_table(EPHEMERAL).unwrap().len().unwrap()
    }

    #[tokio::test]
    async fn sweep_removes_only_expired_values() {
        let (_dir, e) = engine().await;
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

    #[tokio::test]
    async fn reopen_keeps_data_and_second_open_fails() {
        let dir = tempfile::tempdir().unwrap();
        let org = key(Kind::Organization, "o");
        let dep = key(Kind::Deployment, "d");
        {
            let e = EmbeddedEngine::open(dir.path()).await.unwrap();
            let err = EmbeddedEngine::open(dir.path()).await.unwrap_err();
            assert!(
                matches!(&err, EngineError::Unavailable(msg) if msg.contains("already open")),
                "{err:?}"
            );
            let mut p = put(&dep, Expect::Absent, "dep");
            p.refs = vec![org.clone()];
            p.unique = vec!["name".into()];
            e.commit(Commit::new().put(put(&org, Expect::Absent, "org")).put(p))
                .await
                .unwrap();
            assert!(format!("{e:?}").contains("switchboard.redb"));
        }
        let e = EmbeddedEngine::open(dir.path()).await.unwrap();
        assert_eq!(e.get(&org).await.unwrap().unwrap().body, b"org");
        assert_eq!(e.lookup("name").await.unwrap().unwrap().key, dep);
        assert_eq!(e.referrers(&org).await.unwrap(), vec![dep]);
        assert_eq!(e.list("c", 0, 10).await.unwrap().total, 2);
    }
}
