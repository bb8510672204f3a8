//! The engine: storage and fan-out behind records and routing.
//!
//! Two implementations with one behaviour: [`RedisEngine`] for any number of
//! nodes sharing a Redis, and [`EmbeddedEngine`] for a single node keeping its
//! data in a local redb database. Everything above this module is the same
//! code whichever is chosen; the contract tests in `tests/` run one suite
//! against both.
//!
//! Records are opaque JSON bodies addressed by a [`RecordKey`]. What the
//! engine understands about them is exactly what must be atomic:
//!
//! - a **version** per record, checked on every write ([`Expect`]), so a
//!   stale update is refused instead of silently overwriting a newer one;
//! - **references**: a record may name others it uses. They must exist when
//!   the write commits, and a record that is referenced cannot be deleted;
//! - **unique claims** ([`Claim`]): what at most one record may hold (a
//!   member's issuer and subject, say);
//! - **collections** ([`Collection`]): ordered lists of records, paged for
//!   the admin API and scanned by routing.
//!
//! Kinds, claims, collections, spaces and channels are closed enums, so no
//! storage name is ever spelled from outside input.
//!
//! A [`Commit`] applies several writes all-or-nothing, so publishing a
//! configuration version and bumping the configuration is one step.
//!
//! Beside records, the engine keeps **ephemeral** values: short-lived state
//! with a time to live (login transactions, used nonces, refresh tokens,
//! rate-limit windows), addressed by a [`Space`] and an id, with the atomic
//! single-key operations that state needs (set-if-absent, take, swap, count,
//! and leases: a value only its holder renews or removes, which any other
//! node may take once it expired).
//!
//! Conversations add two more: an append-only **event log** per conversation
//! with a gapless sequence (a Redis Stream on Redis), where a message counts
//! as sent once it is in the log; and a **bus** that tells every node about
//! new events (PUB/SUB on Redis, in-process when embedded). The bus is only a
//! hint: a subscriber that may have missed something is told to resync, and
//! catches up from the log, so a lost notification never loses a message.

mod bus;
mod embedded;
mod homes;
mod names;
mod redis;
mod throttle;

pub(crate) use throttle::gcra;
pub use throttle::{Admission, Bucket};

pub use self::appends::{EntryNotice, Meter, Metered};

use std::fmt;

pub use self::bus::Subscription;
pub use self::embedded::EmbeddedEngine;
pub use self::names::{Channel, Claim, Collection, Kind, Retired, Space};
pub use self::redis::{RedisEngine, RedisTarget, TargetError};

/// What a bus subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusMessage {
    /// A published payload.
    Payload(bytes::Bytes),
    /// Messages may have been missed (the connection to Redis was
    /// re-established, or this subscriber lagged): catch up from the log.
    Resync,
}

/// One entry of a conversation log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// 1, 2, 3, ... without gaps within one log.
    pub seq: u64,
    pub body: Vec<u8>,
}

/// The outcome of [`Engine::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The dedup id was seen before: nothing was appended, and `seq` is the
    /// sequence of the first append.
    pub duplicate: bool,
}

/// Whether [`Engine::stash`] may replace a live value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StashMode {
    Replace,
    /// Only when no live value exists: first writer wins.
    IfAbsent,
}

/// What [`Engine::lease`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease, for the whole time to live asked for
    /// from this call on.
    Held,
    /// Another holder has it for about this much longer (unless it renews).
    Busy { remaining: std::time::Duration },
}

/// Where a record lives. Everything one commit touches lives in one home
/// (checked on both engines), so a Redis Cluster can give each home its own
/// hash slot: an organization's records and routing state change together
/// on one shard, while organizations spread over the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Home {
    /// Installation-wide records: organizations and settings.
    Installation,
    /// One organization's records, lists, claims and routing state.
    Org(uuid::Uuid),
}

/// The address of one record: where it lives, its kind and its id. Ids are
/// UUIDs or other strings chosen by switchboard, never raw input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub home: Home,
    pub kind: Kind,
    pub id: String,
}

impl RecordKey {
    pub fn new(home: Home, kind: Kind, id: impl Into<String>) -> Self {
        Self {
            home,
            kind,
            id: id.into(),
        }
    }

    /// An installation-wide record (a setting, an organization).
    pub fn installation(kind: Kind, id: impl Into<String>) -> Self {
        Self::new(Home::Installation, kind, id)
    }

    /// `kind:id`, the form in which keys are stored inside the engine (in
    /// reference sets, unique claims and collections). The home is not part
    /// of it: what refers to a record lives in the same home.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }

    /// The key `encode` spelled, of a record living in `home`.
    pub fn decode(home: Home, s: &str) -> Option<RecordKey> {
        let (kind, id) = s.split_once(':')?;
        Some(RecordKey::new(home, Kind::parse(kind)?, id))
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// A record as the engine returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: RecordKey,
    /// Starts at 1 and grows by one with every write.
    pub version: u64,
    pub body: Vec<u8>,
}

/// What a write expects to find, checked atomically with the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The record must not exist (creation).
    Absent,
    /// The record must exist at exactly this version.
    Version(u64),
    /// The record may or may not exist. Only for deletes that clean up.
    Any,
}

/// Create or replace one record.
#[derive(Clone, Debug)]
pub struct Put {
    pub key: RecordKey,
    pub expect: Expect,
    pub body: Vec<u8>,
    /// The collection the record is listed in, and its place there: records
    /// list in ascending `order`, then by key.
    pub collection: Collection,
    pub order: i64,
    /// Records this one uses. Each must exist when the commit applies; while
    /// this record names them, they cannot be deleted. Replaces the record's
    /// previous references.
    pub refs: Vec<RecordKey>,
    /// Claims this record holds exclusively. Replaces its previous claims.
    pub unique: Vec<Claim>,
}

/// One write of a [`Commit`].
#[derive(Clone, Debug)]
pub enum Write {
    Put(Put),
    /// Remove a record, its references, claims and collection entry. Refused
    /// while another record references it.
    Delete {
        key: RecordKey,
        expect: Expect,
    },
}

/// Writes applied all-or-nothing, in order. A key appears at most once.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    pub writes: Vec<Write>,
}

impl Commit {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(mut self, put: Put) -> Self {
        self.writes.push(Write::Put(put));
        self
    }

    pub fn delete(mut self, key: RecordKey, expect: Expect) -> Self {
        self.writes.push(Write::Delete { key, expect });
        self
    }
}

/// One page of a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// How many records the whole collection holds.
    pub total: u64,
    pub records: Vec<StoredRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The record was not in the state the write expected: it exists when it
    /// should not, is missing, or has another version.
    #[error("{key} is at version {actual:?}, the write expected {expected:?}")]
    Conflict {
        key: RecordKey,
        expected: Expect,
        actual: Option<u64>,
    },
    /// A referenced record does not exist.
    #[error("{0} does not exist")]
    MissingRef(RecordKey),
    /// The record is referenced by others and cannot be deleted.
    #[error("{key} is used by {}", by.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    InUse { key: RecordKey, by: Vec<RecordKey> },
    /// Another record already holds a unique claim.
    #[error("claim {:?} is held by {holder}", claim.name())]
    Duplicate { claim: Claim, holder: RecordKey },
    /// The commit itself is malformed (the same key twice, say).
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    /// Storage failed or is unreachable.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl EngineError {
    /// Whether the engine refused the operation for what it asked (a stale
    /// version, a missing reference, a taken claim, a malformed commit),
    /// as opposed to failing to carry it out.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, EngineError::Unavailable(_))
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// The engine chosen at start. An enum rather than a trait object: two
/// implementations, known at compile time, dispatched without boxing futures.
#[derive(Clone, Debug)]
pub enum Engine {
    Redis(RedisEngine),
    Embedded(EmbeddedEngine),
}

macro_rules! dispatch {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            Engine::Redis($e) => $call,
            Engine::Embedded($e) => $call,
        }
    };
    // An operation that answers a result: timed and counted under `$op`
    // (the `switchboard_engine_*` metrics).
    ($self:ident, $op:literal, $e:ident => $call:expr) => {{
        let started = std::time::Instant::now();
        let result = dispatch!($self, $e => $call);
        crate::telemetry::observe_engine($self.name(), $op, started.elapsed(), result.is_ok());
        result
    }};
}

impl Engine {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Redis(_) => "redis",
            Engine::Embedded(_) => "embedded",
        }
    }

    /// Whether storage answers right now; drives `/readyz`.
    pub async fn ping(&self) -> EngineResult<()> {
        dispatch!(self, "ping", e => e.ping().await)
    }

    pub async fn get(&self, key: &RecordKey) -> EngineResult<Option<StoredRecord>> {
        dispatch!(self, "get", e => e.get(key).await)
    }

    /// Reads several records at once; the answer has one slot per key.
    pub async fn get_many(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
        dispatch!(self, "get_many", e => e.get_many(keys).await)
    }

    /// The record holding a unique claim, if any.
    pub async fn lookup(&self, claim: &Claim) -> EngineResult<Option<StoredRecord>> {
        dispatch!(self, "lookup", e => e.lookup(claim).await)
    }

    /// The records that reference `key`, in key order.
    pub async fn referrers(&self, key: &RecordKey) -> EngineResult<Vec<RecordKey>> {
        dispatch!(self, "referrers", e => e.referrers(key).await)
    }

    /// A page of a collection: `limit` records from position `offset`.
    pub async fn list(
        &self,
        collection: &Collection,
        offset: u64,
        limit: u64,
    ) -> EngineResult<Page> {
        dispatch!(self, "list", e => e.list(collection, offset, limit).await)
    }

    /// Moves records written before homes existed into their
    /// organizations' homes (the schema version 2 migration); answers how
    /// many records or entries moved.
    pub async fn move_to_homes(&self) -> EngineResult<u64> {
        match self {
            Engine::Redis(e) => e.move_to_homes().await,
            Engine::Embedded(e) => e.move_to_homes().await,
        }
    }

    /// Applies all writes or none.
    pub async fn commit(&self, commit: Commit) -> EngineResult<()> {
        validate_commit(&commit)?;
        dispatch!(self, "commit", e => e.commit(commit).await)
    }

    /// Stores an ephemeral value for `ttl`. Answers whether it was written
    /// (always with [`StashMode::Replace`]; with [`StashMode::IfAbsent`] only
    /// when no live value existed).
    pub async fn stash(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
        ttl: std::time::Duration,
        mode: StashMode,
    ) -> EngineResult<bool> {
        dispatch!(self, "stash", e => e.stash(space, id, value, ttl, mode).await)
    }

    /// The live value, if any.
    pub async fn peek(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        dispatch!(self, "peek", e => e.peek(space, id).await)
    }

    /// Removes and returns the live value atomically: of concurrent takers,
    /// exactly one gets it (single-use login transactions).
    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        dispatch!(self, "take", e => e.take(space, id).await)
    }

    /// Replaces a live value, keeping its expiry, and returns the previous
    /// one atomically. Writes nothing and answers `None` when there is no
    /// live value (refresh-token rotation: exactly one caller sees the token
    /// unused).
    pub async fn swap(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
    ) -> EngineResult<Option<Vec<u8>>> {
        dispatch!(self, "swap", e => e.swap(space, id, value).await)
    }

    /// Takes a lease for `holder`, or renews the one it holds: when no live
    /// value exists or the live value is `holder`, writes `holder` for `ttl`
    /// and answers [`Lease::Held`]; otherwise answers how long the other
    /// holder's lease still runs. One atomic step, so of two nodes asking at
    /// once exactly one holds it. A holder that stops renewing (it died)
    /// loses the lease when `ttl` runs out, and the next asker gets it.
    pub async fn lease(
        &self,
        space: Space,
        id: &str,
        holder: &[u8],
        ttl: std::time::Duration,
    ) -> EngineResult<Lease> {
        dispatch!(self, "lease", e => e.lease(space, id, holder, ttl).await)
    }

    /// Gives up a lease `holder` holds, so another node need not wait for it
    /// to expire. Never removes another holder's; answers whether `holder`
    /// held it.
    pub async fn release(&self, space: Space, id: &str, holder: &[u8]) -> EngineResult<bool> {
        dispatch!(self, "release", e => e.release(space, id, holder).await)
    }

    /// Adds `item` (an id without a newline) to the list of ids kept under
    /// (`space`, `id`): once (an id already there moves to the end), at
    /// most the last `cap` of them, and the whole list now expires `ttl`
    /// from now. One atomic step, so concurrent additions all land. An
    /// index kept beside records (a visitor's sessions, say): bounded in
    /// length and in time, like every ephemeral value.
    pub async fn remember(
        &self,
        space: Space,
        id: &str,
        item: &str,
        ttl: std::time::Duration,
        cap: usize,
    ) -> EngineResult<()> {
        dispatch!(self, "remember", e => e.remember(space, id, item, ttl, cap).await)
    }

    /// The ids [`Engine::remember`] kept under (`space`, `id`), oldest
    /// first; none when the list expired or was never written.
    pub async fn recall(&self, space: Space, id: &str) -> EngineResult<Vec<String>> {
        let value = self.peek(space, id).await?;
        Ok(remembered(value.as_deref()))
    }

    /// Removes a value if present.
    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        dispatch!(self, "discard", e => e.discard(space, id).await)
    }

    /// Appends an event to a conversation's log and answers its sequence.
    /// With a `dedup` id (a client-supplied message id) a resend answers the
    /// first append's sequence instead of appending again. The entry is
    /// announced on the log's channel in the same step (see
    /// [`EntryNotice`]); a resend is not announced again.
    pub async fn append(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
    ) -> EngineResult<Appended> {
        // An empty id is no id (the Redis script spells "none" so).
        let dedup = dedup.filter(|id| !id.is_empty());
        dispatch!(self, "append", e => e.append(log, body, dedup).await)
    }

    /// Up to `limit` entries with a sequence above `after`, ascending.
    pub async fn read_log(
        &self,
        log: uuid::Uuid,
        after: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        dispatch!(self, "read_log", e => e.read_log(log, after, limit).await)
    }

    /// Up to `limit` entries with a sequence below `before`, newest first:
    /// reading a log backwards one page at a time, so a reader that wants
    /// the newest few entries never loads the rest.
    pub async fn read_log_before(
        &self,
        log: uuid::Uuid,
        before: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        dispatch!(self, e => e.read_log_before(log, before, limit).await)
    }

    /// The sequence of the newest entry, 0 for an empty or unknown log.
    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        dispatch!(self, "last_seq", e => e.last_seq(log).await)
    }

    /// Removes a conversation's log whole: its entries, its dedup ids and
    /// its sequence counter (retention and erasure). Answers how many
    /// entries it held; an unknown log holds none, so deleting twice is
    /// harmless.
    pub async fn delete_log(&self, log: uuid::Uuid) -> EngineResult<u64> {
        dispatch!(self, e => e.delete_log(log).await)
    }

    /// Tells every node's subscribers of `channel`. Delivery is best effort;
    /// correctness comes from the logs.
    pub async fn publish(&self, channel: &Channel, payload: &[u8]) -> EngineResult<()> {
        dispatch!(self, "publish", e => e.publish(channel, payload).await)
    }

    /// Whether the bus delivers right now: on Redis, the subscription
    /// connection is up and passed its last liveness probe (a node whose bus
    /// is down would miss live events, so `/readyz` reports it). Always true
    /// on the embedded engine.
    pub fn bus_healthy(&self) -> bool {
        dispatch!(self, e => e.bus_healthy())
    }

    /// Subscribes this node to `channel`. The subscription ends (and the node
    /// unsubscribes when no other local subscriber remains) when dropped.
    pub async fn subscribe(&self, channel: Channel) -> EngineResult<Subscription> {
        dispatch!(self, "subscribe", e => e.subscribe(channel).await)
    }

    /// Takes one event from the token bucket `id` (see [`Bucket`]), in one
    /// atomic step on the engine's clock, so every node counts against the
    /// same budget.
    pub async fn throttle(
        &self,
        space: Space,
        id: &str,
        bucket: Bucket,
    ) -> EngineResult<Admission> {
        dispatch!(self, e => e.throttle(space, id, bucket).await)
    }

    /// Takes one event from every bucket in `meters`, or from none: refused
    /// when any of them would refuse, naming the one with the longest wait
    /// (its index in `meters`). One atomic step, like [`Engine::throttle`];
    /// the buckets live in `home` (on Redis, one slot), so a sender and its
    /// organization are metered in one round trip.
    pub async fn throttle_all(
        &self,
        space: Space,
        home: Home,
        meters: &[Meter<'_>],
    ) -> EngineResult<Option<(usize, Admission)>> {
        dispatch!(self, e => e.throttle_all(space, home, meters).await)
    }

    /// Adds one to a counter and answers the new count. The first increment
    /// starts a window of `window`; when it ends, counting starts again at 1.
    pub async fn count(
        &self,
        space: Space,
        id: &str,
        window: std::time::Duration,
    ) -> EngineResult<u64> {
        dispatch!(self, "count", e => e.count(space, id, window).await)
    }
}

/// Checks shared by both engines before anything touches storage.
fn validate_commit(commit: &Commit) -> EngineResult<()> {
    let mut seen = std::collections::HashSet::new();
    commit_home(commit)?;
    for write in &commit.writes {
        let key = match write {
            Write::Put(put) => {
                if put.refs.contains(&put.key) {
                    return Err(EngineError::InvalidCommit(format!(
                        "{} references itself",
                        put.key
                    )));
                }
                &put.key
            }
            Write::Delete { key, .. } => key,
        };
        if !seen.insert(key) {
            return Err(EngineError::InvalidCommit(format!("{key} written twice")));
        }
    }
    Ok(())
}

/// The one home everything a commit touches lives in: its records, their
/// lists, references and claims. A commit across homes is refused on both
/// engines, so one that would span Redis Cluster slots fails in every test,
/// not only on a cluster.
pub(crate) fn commit_home(commit: &Commit) -> EngineResult<Option<Home>> {
    let mut home = None;
    let mut place = |what: &dyn fmt::Display, there: Home| match home {
        None => {
            home = Some(there);
            Ok(())
        }
        Some(here) if here == there => Ok(()),
        Some(here) => Err(EngineError::InvalidCommit(format!(
            "{what} lives in {there:?}, the rest of the commit in {here:?}"
        ))),
    };
    for write in &commit.writes {
        match write {
            Write::Put(put) => {
                place(&put.key, put.key.home)?;
                place(&put.collection, put.collection.home())?;
                for target in &put.refs {
                    place(target, target.home)?;
                }
                for claim in &put.unique {
                    place(claim, claim.home())?;
                }
            }
            Write::Delete { key, .. } => place(key, key.home)?,
        }
    }
    Ok(home)
}

/// The ids of a list [`Engine::remember`] keeps: newline-separated text.
fn remembered(value: Option<&[u8]>) -> Vec<String> {
    value
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .map(|text| {
            text.split('\n')
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The list `current` with `item` added as `remember.lua` adds it: once, at
/// the end, keeping the last `cap`.
pub(crate) fn remembered_with(current: Option<&[u8]>, item: &str, cap: usize) -> String {
    let mut ids: Vec<String> = remembered(current)
        .into_iter()
        .filter(|id| id != item)
        .collect();
    ids.push(item.to_owned());
    let skip = ids.len().saturating_sub(cap.max(1));
    ids.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
}

// After `dispatch!`, which it uses.
mod appends;

#[cfg(test)]
mod tests;
