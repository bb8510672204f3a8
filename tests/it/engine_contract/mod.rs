//! The engine contract: one suite, both engines.
//!
//! Every case is an `async fn(&Engine)` written once; [`contract!`] runs it as
//! `<case>_redis` (a fresh key prefix on the shared throwaway Redis),
//! `<case>_embedded` (a fresh temporary directory), `<case>_cluster` (a
//! fresh prefix on the shared 3-master Redis Cluster) and `<case>_sentinel`
//! (a fresh prefix on the master of the shared Sentinel set). The cases are grouped
//! by topic: records and collections, references and claims, commits,
//! ephemeral values, logs and the bus; the few that only make sense for
//! one engine are in [`engine_specific`].

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use switchboard::engine::{
    BusMessage, Channel, Claim, Collection, Commit, EmbeddedEngine, Engine, EngineError,
    EngineResult, Expect, Home, Kind, LogEntry, Page, Put, RecordKey, RedisEngine, Space,
    StashMode, StoredRecord, Subscription,
};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{self, RedisServer};

async fn redis_engine_on(url: &str, prefix: &str) -> Engine {
    let engine = RedisEngine::connect(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("RedisEngine::connect({url}, {prefix}): {e}"));
    Engine::Redis(engine)
}

async fn redis_engine() -> Engine {
    redis_engine_on(&support::redis::shared().url(), &support::unique_prefix()).await
}

async fn embedded_engine(dir: &Path) -> Engine {
    let engine = EmbeddedEngine::open(dir)
        .await
        .unwrap_or_else(|e| panic!("EmbeddedEngine::open({}): {e}", dir.display()));
    Engine::Embedded(engine)
}

/// On the shared 3-master cluster, a fresh prefix.
async fn cluster_engine() -> Engine {
    let target = support::redis::cluster::shared().target();
    let engine = RedisEngine::open(&target, &support::unique_prefix())
        .await
        .unwrap_or_else(|e| panic!("RedisEngine::open(cluster): {e}"));
    Engine::Redis(engine)
}

/// On the shared Sentinel set's master, a fresh prefix.
async fn sentinel_engine() -> Engine {
    let target = support::redis::sentinel::shared().target();
    let engine = RedisEngine::open(&target, &support::unique_prefix())
        .await
        .unwrap_or_else(|e| panic!("RedisEngine::open(sentinel): {e}"));
    Engine::Redis(engine)
}

/// `contract! { case => case_redis, case_embedded, case_cluster, case_sentinel; ... }`
macro_rules! contract {
    ($($case:ident => $redis:ident, $embedded:ident, $cluster:ident, $sentinel:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $cluster() {
            let engine = cluster_engine().await;
            $case(&engine).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sentinel() {
            let engine = sentinel_engine().await;
            $case(&engine).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis() {
            let engine = redis_engine().await;
            assert_eq!(engine.name(), "redis");
            $case(&engine).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            let dir = tempfile::tempdir().expect("temporary directory");
            let engine = embedded_engine(dir.path()).await;
            assert_eq!(engine.name(), "embedded");
            $case(&engine).await;
        }
    )*};
}

mod bus;
mod commits;
mod engine_specific;
mod ephemeral;
mod logs;
mod records;
mod references;

// ---- helpers ----------------------------------------------------------------

const COLLECTION: &str = "org/o1/dep";

/// The cases name collections and claims by short strings, for readability;
/// each name stands for a typed collection or claim of its own.
fn collection(name: &str) -> Collection {
    Collection::Waiting {
        org: named_uuid("contract"),
        queue: named_uuid(name),
    }
}

/// Where every record of the cases lives: one organization's home, like
/// everything one commit touches.
fn home() -> Home {
    Home::Org(named_uuid("contract"))
}

fn claim(name: &str) -> Claim {
    Claim::member_identity(named_uuid("contract"), "https://issuer.test", name)
}

fn named_uuid(name: &str) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// How many tasks race in the concurrency cases.
const RACERS: usize = 8;

fn dep(id: &str) -> RecordKey {
    RecordKey::new(home(), Kind::Deployment, id)
}

fn queue(id: &str) -> RecordKey {
    RecordKey::new(home(), Kind::Queue, id)
}

fn member(id: &str) -> RecordKey {
    RecordKey::new(home(), Kind::Member, id)
}

/// A creation of `key` (Expect::Absent) with a small JSON body, listed in
/// [`COLLECTION`] at order 0, no refs, no claims. Adjust with [`PutExt`].
fn put(key: &RecordKey) -> Put {
    Put {
        key: key.clone(),
        expect: Expect::Absent,
        body: serde_json::to_vec(&serde_json::json!({ "id": key.id })).expect("json"),
        collection: collection(COLLECTION),
        order: 0,
        refs: Vec::new(),
        unique: Vec::new(),
    }
}

trait PutExt {
    fn expect(self, expect: Expect) -> Self;
    fn body(self, body: &[u8]) -> Self;
    fn refs(self, refs: &[&RecordKey]) -> Self;
    fn unique(self, claims: &[&str]) -> Self;
    fn listed(self, name: &str, order: i64) -> Self;
}

impl PutExt for Put {
    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }
    fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
    fn refs(mut self, refs: &[&RecordKey]) -> Self {
        self.refs = refs.iter().map(|&k| k.clone()).collect();
        self
    }
    fn unique(mut self, claims: &[&str]) -> Self {
        self.unique = claims.iter().map(|&c| claim(c)).collect();
        self
    }
    fn listed(mut self, name: &str, order: i64) -> Self {
        self.collection = collection(name);
        self.order = order;
        self
    }
}

/// Commits and panics with the error if the engine refuses.
async fn apply(engine: &Engine, commit: Commit) {
    let what = format!("{commit:?}");
    if let Err(e) = engine.commit(commit).await {
        panic!("commit refused: {e} ({e:?})\ncommit: {what}");
    }
}

async fn apply_put(engine: &Engine, put: Put) {
    apply(engine, Commit::new().put(put)).await;
}

async fn get(engine: &Engine, key: &RecordKey) -> Option<StoredRecord> {
    engine.get(key).await.expect("get")
}

async fn version(engine: &Engine, key: &RecordKey) -> Option<u64> {
    get(engine, key).await.map(|r| r.version)
}

async fn holder(engine: &Engine, name: &str) -> Option<RecordKey> {
    engine
        .lookup(&claim(name))
        .await
        .expect("lookup")
        .map(|r| r.key)
}

async fn referrers(engine: &Engine, key: &RecordKey) -> Vec<RecordKey> {
    engine.referrers(key).await.expect("referrers")
}

async fn list(engine: &Engine, name: &str, offset: u64, limit: u64) -> Page {
    engine
        .list(&collection(name), offset, limit)
        .await
        .expect("list")
}

/// The keys of a whole collection, in list order.
async fn listed_keys(engine: &Engine, collection: &str) -> Vec<RecordKey> {
    let page = list(engine, collection, 0, 1000).await;
    let keys: Vec<RecordKey> = page.records.into_iter().map(|r| r.key).collect();
    assert_eq!(page.total, keys.len() as u64, "total of {collection}");
    keys
}

#[track_caller]
fn assert_conflict(res: EngineResult<()>, key: &RecordKey, expected: Expect, actual: Option<u64>) {
    match res {
        Err(EngineError::Conflict {
            key: k,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (&k, e, a),
            (key, expected, actual),
            "Conflict fields (key, expected, actual)"
        ),
        other => {
            panic!("expected Conflict on {key} ({expected:?}, actual {actual:?}), got {other:?}")
        }
    }
}

#[track_caller]
fn assert_missing_ref(res: EngineResult<()>, key: &RecordKey) {
    match res {
        Err(EngineError::MissingRef(k)) => {
            assert_eq!(&k, key, "MissingRef names the missing record")
        }
        other => panic!("expected MissingRef({key}), got {other:?}"),
    }
}

#[track_caller]
fn assert_in_use(res: EngineResult<()>, key: &RecordKey, by: &[&RecordKey]) {
    let by: Vec<RecordKey> = by.iter().map(|&k| k.clone()).collect();
    match res {
        Err(EngineError::InUse { key: k, by: b }) => {
            assert_eq!((&k, &b), (key, &by), "InUse fields (key, by)");
        }
        other => panic!("expected InUse({key} by {by:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_duplicate(res: EngineResult<()>, name: &str, holders: &[&RecordKey]) {
    match res {
        Err(EngineError::Duplicate {
            claim: c,
            holder: h,
        }) => {
            assert_eq!(c, claim(name), "Duplicate names the claim");
            assert!(
                holders.contains(&&h),
                "Duplicate holder {h} is not one of {holders:?}"
            );
        }
        other => panic!("expected Duplicate({name:?} held by {holders:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid(res: EngineResult<()>) {
    match res {
        Err(EngineError::InvalidCommit(_)) => {}
        other => panic!("expected InvalidCommit, got {other:?}"),
    }
}

/// Everything observable about a set of keys, claims and collections.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    records: Vec<Option<StoredRecord>>,
    holders: Vec<Option<StoredRecord>>,
    lists: Vec<Page>,
    referrers: Vec<Vec<RecordKey>>,
}

async fn snapshot(
    engine: &Engine,
    keys: &[RecordKey],
    claims: &[&str],
    collections: &[&str],
) -> Snapshot {
    let mut holders = Vec::new();
    for name in claims {
        holders.push(engine.lookup(&claim(name)).await.expect("lookup"));
    }
    let mut lists = Vec::new();
    for collection in collections {
        lists.push(list(engine, collection, 0, 1000).await);
    }
    let mut refs = Vec::new();
    for key in keys {
        refs.push(referrers(engine, key).await);
    }
    Snapshot {
        records: engine.get_many(keys).await.expect("get_many"),
        holders,
        lists,
        referrers: refs,
    }
}

/// A plain connection to the Redis server at `url`, beside the engine's.
async fn raw_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    let client = ::redis::Client::open(url).expect("redis client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// Every key on the Redis server at `url`.
async fn raw_keys(url: &str) -> Vec<Vec<u8>> {
    ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw_connection(url).await)
        .await
        .expect("KEYS")
}
