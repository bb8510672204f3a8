//! The engine contract: one suite, both engines.
//!
//! Every case is an `async fn(&Engine)` written once; [`contract!`] runs it as
//! `<case>_redis` (a fresh key prefix on the shared throwaway Redis) and
//! `<case>_embedded` (a fresh temporary directory). The few cases that only
//! make sense for one engine follow at the end.

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use switchboard::engine::{
    Claim, Collection, Commit, EmbeddedEngine, Engine, EngineError, EngineResult, Expect, Kind,
    Page, Put, RecordKey, RedisEngine, Space, StashMode, StoredRecord,
};
use tokio::task::JoinSet;

use crate::support::{self, RedisServer};

// ---------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------

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

/// `contract! { case => case_redis, case_embedded; ... }`
macro_rules! contract {
    ($($case:ident => $redis:ident, $embedded:ident;)*) => {$(
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

contract! {
    ping_answers => ping_answers_redis, ping_answers_embedded;
    create_then_get => create_then_get_redis, create_then_get_embedded;
    binary_and_large_bodies => binary_and_large_bodies_redis, binary_and_large_bodies_embedded;
    update_with_right_version => update_with_right_version_redis, update_with_right_version_embedded;
    stale_version_conflicts => stale_version_conflicts_redis, stale_version_conflicts_embedded;
    create_twice_conflicts => create_twice_conflicts_redis, create_twice_conflicts_embedded;
    update_of_missing_conflicts => update_of_missing_conflicts_redis, update_of_missing_conflicts_embedded;
    delete_checks_version => delete_checks_version_redis, delete_checks_version_embedded;
    put_expect_any => put_expect_any_redis, put_expect_any_embedded;
    get_many_mixed => get_many_mixed_redis, get_many_mixed_embedded;
    ref_to_missing_refused => ref_to_missing_refused_redis, ref_to_missing_refused_embedded;
    ref_to_record_put_in_same_commit => ref_to_record_put_in_same_commit_redis, ref_to_record_put_in_same_commit_embedded;
    ref_to_record_deleted_in_same_commit => ref_to_record_deleted_in_same_commit_redis, ref_to_record_deleted_in_same_commit_embedded;
    delete_referenced_in_use => delete_referenced_in_use_redis, delete_referenced_in_use_embedded;
    delete_referrer_and_referenced_together => delete_referrer_and_referenced_together_redis, delete_referrer_and_referenced_together_embedded;
    reput_without_ref_frees => reput_without_ref_frees_redis, reput_without_ref_frees_embedded;
    reput_keeping_ref_blocks_delete => reput_keeping_ref_blocks_delete_redis, reput_keeping_ref_blocks_delete_embedded;
    deleting_referrer_frees => deleting_referrer_frees_redis, deleting_referrer_frees_embedded;
    unique_duplicate_refused => unique_duplicate_refused_redis, unique_duplicate_refused_embedded;
    unique_released_on_delete => unique_released_on_delete_redis, unique_released_on_delete_embedded;
    unique_released_on_reput => unique_released_on_reput_redis, unique_released_on_reput_embedded;
    unique_handover_in_one_commit => unique_handover_in_one_commit_redis, unique_handover_in_one_commit_embedded;
    unique_same_claim_twice_in_commit => unique_same_claim_twice_in_commit_redis, unique_same_claim_twice_in_commit_embedded;
    lookup_finds_holder => lookup_finds_holder_redis, lookup_finds_holder_embedded;
    list_orders_by_order_then_key => list_orders_by_order_then_key_redis, list_orders_by_order_then_key_embedded;
    list_order_extremes => list_order_extremes_redis, list_order_extremes_embedded;
    list_paging => list_paging_redis, list_paging_embedded;
    list_limit_zero => list_limit_zero_redis, list_limit_zero_embedded;
    list_move_to_other_collection => list_move_to_other_collection_redis, list_move_to_other_collection_embedded;
    list_delete_removes => list_delete_removes_redis, list_delete_removes_embedded;
    failing_commit_changes_nothing => failing_commit_changes_nothing_redis, failing_commit_changes_nothing_embedded;
    successful_multi_write_commit => successful_multi_write_commit_redis, successful_multi_write_commit_embedded;
    invalid_commit_refused => invalid_commit_refused_redis, invalid_commit_refused_embedded;
    delete_any_of_missing_is_noop => delete_any_of_missing_is_noop_redis, delete_any_of_missing_is_noop_embedded;
    concurrent_creates_one_wins => concurrent_creates_one_wins_redis, concurrent_creates_one_wins_embedded;
    concurrent_updates_one_wins => concurrent_updates_one_wins_redis, concurrent_updates_one_wins_embedded;
    concurrent_claims_one_holder => concurrent_claims_one_holder_redis, concurrent_claims_one_holder_embedded;
    concurrent_delete_vs_reference => concurrent_delete_vs_reference_redis, concurrent_delete_vs_reference_embedded;
    stash_then_peek => stash_then_peek_redis, stash_then_peek_embedded;
    stash_if_absent_refuses_live_value => stash_if_absent_refuses_live_value_redis, stash_if_absent_refuses_live_value_embedded;
    stash_replace_resets_value_and_expiry => stash_replace_resets_value_and_expiry_redis, stash_replace_resets_value_and_expiry_embedded;
    take_returns_once => take_returns_once_redis, take_returns_once_embedded;
    swap_of_absent_writes_nothing => swap_of_absent_writes_nothing_redis, swap_of_absent_writes_nothing_embedded;
    swap_keeps_expiry => swap_keeps_expiry_redis, swap_keeps_expiry_embedded;
    concurrent_swaps_one_sees_original => concurrent_swaps_one_sees_original_redis, concurrent_swaps_one_sees_original_embedded;
    discard_removes => discard_removes_redis, discard_removes_embedded;
    count_restarts_after_window => count_restarts_after_window_redis, count_restarts_after_window_embedded;
    spaces_are_independent => spaces_are_independent_redis, spaces_are_independent_embedded;
    binary_ephemeral_values => binary_ephemeral_values_redis, binary_ephemeral_values_embedded;
    expired_value_is_invisible => expired_value_is_invisible_redis, expired_value_is_invisible_embedded;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const COLLECTION: &str = "org/o1/dep";

/// The cases name collections and claims by short strings, for readability;
/// each name stands for a typed collection or claim of its own.
fn collection(name: &str) -> Collection {
    Collection::Waiting(named_uuid(name))
}

fn claim(name: &str) -> Claim {
    Claim::member_identity(named_uuid("contract"), "https://issuer.test", name)
}

fn named_uuid(name: &str) -> uuid::Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes)
}

fn dep(id: &str) -> RecordKey {
    RecordKey::new(Kind::Deployment, id)
}

fn queue(id: &str) -> RecordKey {
    RecordKey::new(Kind::Queue, id)
}

fn member(id: &str) -> RecordKey {
    RecordKey::new(Kind::Member, id)
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

// ---------------------------------------------------------------------------
// Records and versions
// ---------------------------------------------------------------------------

async fn ping_answers(engine: &Engine) {
    engine.ping().await.expect("ping");
}

async fn create_then_get(engine: &Engine) {
    let a = dep("a");
    let body = r#"{"name":"Ünïcødé ✓ \"quoted\"","nested":{"n":[1,2,3]},"nothing":null}"#;
    apply_put(engine, put(&a).body(body.as_bytes())).await;

    let got = get(engine, &a).await.expect("a exists after creation");
    assert_eq!(
        got,
        StoredRecord {
            key: a.clone(),
            version: 1,
            body: body.as_bytes().to_vec(),
        }
    );

    assert_eq!(get(engine, &dep("missing")).await, None);
    // Same id, another kind: another record.
    assert_eq!(get(engine, &queue("a")).await, None);
}

async fn binary_and_large_bodies(engine: &Engine) {
    let bin = dep("bin");
    let bytes: Vec<u8> = (0..=255u8)
        .chain((0..=255u8).rev())
        .chain([0, 0, 0xff, 0xfe, b'\r', b'\n', 0])
        .collect();
    let big = dep("big");
    let big_body: Vec<u8> = (0..400_000u32)
        .map(|i| u8::try_from(i % 251).expect("< 256"))
        .collect();
    apply(
        engine,
        Commit::new()
            .put(put(&bin).body(&bytes))
            .put(put(&big).body(&big_body)),
    )
    .await;

    let got = get(engine, &bin).await.expect("bin exists");
    assert_eq!((got.version, got.body.len()), (1, bytes.len()));
    assert!(got.body == bytes, "binary body came back altered");
    let got = get(engine, &big).await.expect("big exists");
    assert_eq!((got.version, got.body.len()), (1, big_body.len()));
    assert!(got.body == big_body, "large body came back altered");

    // Bodies survive updates byte for byte, too.
    let updated: Vec<u8> = bytes.iter().rev().copied().collect();
    apply_put(engine, put(&bin).expect(Expect::Version(1)).body(&updated)).await;
    let got = get(engine, &bin).await.expect("bin exists");
    assert_eq!(got.version, 2);
    assert!(got.body == updated, "updated binary body came back altered");
}

async fn update_with_right_version(engine: &Engine) {
    let a = dep("a");
    apply_put(engine, put(&a).body(b"{\"v\":1}")).await;
    apply_put(
        engine,
        put(&a).expect(Expect::Version(1)).body(b"{\"v\":2}"),
    )
    .await;
    assert_eq!(
        get(engine, &a).await,
        Some(StoredRecord {
            key: a.clone(),
            version: 2,
            body: b"{\"v\":2}".to_vec(),
        })
    );
    apply_put(
        engine,
        put(&a).expect(Expect::Version(2)).body(b"{\"v\":3}"),
    )
    .await;
    let got = get(engine, &a).await.expect("a exists");
    assert_eq!((got.version, got.body), (3, b"{\"v\":3}".to_vec()));
}

async fn stale_version_conflicts(engine: &Engine) {
    let a = dep("a");
    apply_put(engine, put(&a).body(b"{\"v\":1}")).await;
    apply_put(
        engine,
        put(&a).expect(Expect::Version(1)).body(b"{\"v\":2}"),
    )
    .await;

    let res = engine
        .commit(Commit::new().put(put(&a).expect(Expect::Version(1)).body(b"{\"stale\":true}")))
        .await;
    assert_conflict(res, &a, Expect::Version(1), Some(2));
    // From the future, too.
    let res = engine
        .commit(
            Commit::new().put(
                put(&a)
                    .expect(Expect::Version(7))
                    .body(b"{\"future\":true}"),
            ),
        )
        .await;
    assert_conflict(res, &a, Expect::Version(7), Some(2));

    let got = get(engine, &a).await.expect("a exists");
    assert_eq!(
        (got.version, got.body),
        (2, b"{\"v\":2}".to_vec()),
        "refused writes changed a"
    );
}

async fn create_twice_conflicts(engine: &Engine) {
    let a = dep("a");
    apply_put(engine, put(&a).body(b"{\"first\":true}")).await;
    let res = engine
        .commit(Commit::new().put(put(&a).body(b"{\"second\":true}")))
        .await;
    assert_conflict(res, &a, Expect::Absent, Some(1));

    apply_put(engine, put(&a).expect(Expect::Version(1))).await;
    let res = engine.commit(Commit::new().put(put(&a))).await;
    assert_conflict(res, &a, Expect::Absent, Some(2));
    assert_eq!(version(engine, &a).await, Some(2));
}

async fn update_of_missing_conflicts(engine: &Engine) {
    let a = dep("a");
    let res = engine
        .commit(Commit::new().put(put(&a).expect(Expect::Version(1))))
        .await;
    assert_conflict(res, &a, Expect::Version(1), None);
    assert_eq!(get(engine, &a).await, None, "a refused update created a");

    // Deleted records are missing, too; re-creating one starts over at 1.
    apply_put(engine, put(&a)).await;
    apply(engine, Commit::new().delete(a.clone(), Expect::Version(1))).await;
    let res = engine
        .commit(Commit::new().put(put(&a).expect(Expect::Version(1))))
        .await;
    assert_conflict(res, &a, Expect::Version(1), None);
    apply_put(engine, put(&a)).await;
    assert_eq!(version(engine, &a).await, Some(1));
}

async fn delete_checks_version(engine: &Engine) {
    let a = dep("a");
    apply_put(engine, put(&a)).await;
    apply_put(engine, put(&a).expect(Expect::Version(1))).await;

    let res = engine
        .commit(Commit::new().delete(a.clone(), Expect::Version(1)))
        .await;
    assert_conflict(res, &a, Expect::Version(1), Some(2));
    let res = engine
        .commit(Commit::new().delete(a.clone(), Expect::Absent))
        .await;
    assert_conflict(res, &a, Expect::Absent, Some(2));
    assert_eq!(version(engine, &a).await, Some(2));

    apply(engine, Commit::new().delete(a.clone(), Expect::Version(2))).await;
    assert_eq!(get(engine, &a).await, None);

    let res = engine
        .commit(Commit::new().delete(a.clone(), Expect::Version(2)))
        .await;
    assert_conflict(res, &a, Expect::Version(2), None);

    // Expect::Any deletes whatever version there is.
    apply_put(engine, put(&a)).await;
    apply_put(engine, put(&a).expect(Expect::Version(1))).await;
    apply(engine, Commit::new().delete(a.clone(), Expect::Any)).await;
    assert_eq!(get(engine, &a).await, None);
}

async fn put_expect_any(engine: &Engine) {
    let a = dep("a");
    apply_put(engine, put(&a).expect(Expect::Any).body(b"{\"n\":1}")).await;
    assert_eq!(
        version(engine, &a).await,
        Some(1),
        "Put/Any of a missing record creates it"
    );
    apply_put(engine, put(&a).expect(Expect::Any).body(b"{\"n\":2}")).await;
    let got = get(engine, &a).await.expect("a exists");
    assert_eq!((got.version, got.body), (2, b"{\"n\":2}".to_vec()));
}

async fn get_many_mixed(engine: &Engine) {
    let (a, b, c) = (dep("a"), dep("b"), queue("c"));
    apply(
        engine,
        Commit::new()
            .put(put(&a).body(b"\"a\""))
            .put(put(&b).body(b"\"b\""))
            .put(put(&c).body(b"\"c\"")),
    )
    .await;
    apply_put(engine, put(&b).expect(Expect::Version(1)).body(b"\"b2\"")).await;

    let keys = [
        c.clone(),
        dep("nope"),
        a.clone(),
        queue("a"),
        b.clone(),
        a.clone(),
    ];
    let got = engine.get_many(&keys).await.expect("get_many");
    let summary: Vec<Option<(RecordKey, u64, Vec<u8>)>> = got
        .into_iter()
        .map(|r| r.map(|r| (r.key, r.version, r.body)))
        .collect();
    assert_eq!(
        summary,
        vec![
            Some((c.clone(), 1, b"\"c\"".to_vec())),
            None,
            Some((a.clone(), 1, b"\"a\"".to_vec())),
            None,
            Some((b.clone(), 2, b"\"b2\"".to_vec())),
            Some((a.clone(), 1, b"\"a\"".to_vec())),
        ]
    );

    assert_eq!(
        engine.get_many(&[]).await.expect("get_many of nothing"),
        vec![]
    );
    assert_eq!(
        engine
            .get_many(&[dep("x"), dep("y")])
            .await
            .expect("get_many"),
        vec![None, None]
    );
}

// ---------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------

async fn ref_to_missing_refused(engine: &Engine) {
    let (a, b) = (dep("a"), queue("b"));
    let res = engine.commit(Commit::new().put(put(&a).refs(&[&b]))).await;
    assert_missing_ref(res, &b);
    assert_eq!(get(engine, &a).await, None);
    assert_eq!(referrers(engine, &b).await, vec![]);

    // One missing ref among present ones is enough.
    let present = queue("present");
    apply_put(engine, put(&present)).await;
    let res = engine
        .commit(Commit::new().put(put(&a).refs(&[&present, &b])))
        .await;
    assert_missing_ref(res, &b);
    assert_eq!(get(engine, &a).await, None);
    assert_eq!(referrers(engine, &present).await, vec![]);

    // An existing referrer cannot gain a missing ref either.
    apply_put(engine, put(&a).refs(&[&present])).await;
    let res = engine
        .commit(Commit::new().put(put(&a).expect(Expect::Version(1)).refs(&[&present, &b])))
        .await;
    assert_missing_ref(res, &b);
    assert_eq!(version(engine, &a).await, Some(1));
    assert_eq!(referrers(engine, &present).await, vec![a.clone()]);
}

async fn ref_to_record_put_in_same_commit(engine: &Engine) {
    let (a, b, c) = (dep("a"), queue("b"), queue("c"));
    // The referrer comes first in the commit: order within it does not matter.
    apply(
        engine,
        Commit::new()
            .put(put(&a).refs(&[&b, &c]))
            .put(put(&b))
            .put(put(&c)),
    )
    .await;
    assert_eq!(version(engine, &a).await, Some(1));
    assert_eq!(version(engine, &b).await, Some(1));
    assert_eq!(referrers(engine, &b).await, vec![a.clone()]);
    assert_eq!(referrers(engine, &c).await, vec![a.clone()]);
    assert_eq!(referrers(engine, &a).await, vec![]);

    // Changing refs replaces them: b is freed, c kept.
    apply_put(engine, put(&a).expect(Expect::Version(1)).refs(&[&c])).await;
    assert_eq!(referrers(engine, &b).await, vec![]);
    assert_eq!(referrers(engine, &c).await, vec![a.clone()]);
    apply(engine, Commit::new().delete(b.clone(), Expect::Version(1))).await;
}

async fn ref_to_record_deleted_in_same_commit(engine: &Engine) {
    let (n, b) = (dep("n"), queue("b"));
    apply_put(engine, put(&b)).await;
    // b has no referrers before the commit, but the commit both deletes it and
    // creates a record naming it.
    let res = engine
        .commit(
            Commit::new()
                .put(put(&n).refs(&[&b]))
                .delete(b.clone(), Expect::Version(1)),
        )
        .await;
    assert_missing_ref(res, &b);
    assert_eq!(get(engine, &n).await, None);
    assert_eq!(version(engine, &b).await, Some(1));
    assert_eq!(referrers(engine, &b).await, vec![]);
}

async fn delete_referenced_in_use(engine: &Engine) {
    let b = queue("b");
    let (z, m, a10, a9) = (dep("z"), dep("m"), dep("a10"), dep("a9"));
    apply_put(engine, put(&b)).await;
    apply(
        engine,
        Commit::new()
            .put(put(&z).refs(&[&b]))
            .put(put(&a9).refs(&[&b]))
            .put(put(&m).refs(&[&b]))
            .put(put(&a10).refs(&[&b])),
    )
    .await;
    // Sorted by key (same kind here: by id, as strings).
    assert_eq!(
        referrers(engine, &b).await,
        vec![a10.clone(), a9.clone(), m.clone(), z.clone()]
    );

    let res = engine
        .commit(Commit::new().delete(b.clone(), Expect::Version(1)))
        .await;
    assert_in_use(res, &b, &[&a10, &a9, &m, &z]);
    let res = engine
        .commit(Commit::new().delete(b.clone(), Expect::Any))
        .await;
    assert_in_use(res, &b, &[&a10, &a9, &m, &z]);

    // Deleting some referrers along with it leaves the others named.
    let res = engine
        .commit(
            Commit::new()
                .delete(z.clone(), Expect::Version(1))
                .delete(b.clone(), Expect::Version(1))
                .delete(a10.clone(), Expect::Version(1)),
        )
        .await;
    assert_in_use(res, &b, &[&a9, &m]);

    // Nothing changed.
    assert_eq!(version(engine, &b).await, Some(1));
    assert_eq!(version(engine, &z).await, Some(1));
    assert_eq!(version(engine, &a10).await, Some(1));
    assert_eq!(
        referrers(engine, &b).await,
        vec![a10.clone(), a9.clone(), m.clone(), z.clone()]
    );
}

async fn delete_referrer_and_referenced_together(engine: &Engine) {
    let (a, b, c) = (dep("a"), queue("b"), queue("c"));
    apply_put(engine, put(&b)).await;
    apply_put(engine, put(&c)).await;
    apply_put(engine, put(&a).refs(&[&b, &c])).await;

    // Referenced first, referrer last: order within the commit does not matter.
    apply(
        engine,
        Commit::new()
            .delete(b.clone(), Expect::Version(1))
            .delete(c.clone(), Expect::Any)
            .delete(a.clone(), Expect::Version(1)),
    )
    .await;
    assert_eq!(
        engine
            .get_many(&[a.clone(), b.clone(), c.clone()])
            .await
            .expect("get_many"),
        vec![None, None, None]
    );
    assert_eq!(referrers(engine, &b).await, vec![]);
    assert_eq!(referrers(engine, &c).await, vec![]);

    // Nothing of them lingers: all three can be created afresh.
    apply(engine, Commit::new().put(put(&b)).put(put(&a).refs(&[&b]))).await;
    assert_eq!(referrers(engine, &b).await, vec![a.clone()]);
}

async fn reput_without_ref_frees(engine: &Engine) {
    let (a, b, c) = (dep("a"), queue("b"), queue("c"));
    apply(engine, Commit::new().put(put(&b)).put(put(&c))).await;
    apply_put(engine, put(&a).refs(&[&b])).await;

    // In one commit: a moves from b to c, and b goes.
    apply(
        engine,
        Commit::new()
            .delete(b.clone(), Expect::Version(1))
            .put(put(&a).expect(Expect::Version(1)).refs(&[&c])),
    )
    .await;
    assert_eq!(get(engine, &b).await, None);
    assert_eq!(version(engine, &a).await, Some(2));
    assert_eq!(referrers(engine, &c).await, vec![a.clone()]);

    // In two commits: a drops c, then c can go.
    apply_put(engine, put(&a).expect(Expect::Version(2))).await;
    assert_eq!(referrers(engine, &c).await, vec![]);
    apply(engine, Commit::new().delete(c.clone(), Expect::Version(1))).await;
    assert_eq!(get(engine, &c).await, None);
    assert_eq!(version(engine, &a).await, Some(3));
}

async fn reput_keeping_ref_blocks_delete(engine: &Engine) {
    let (a, b) = (dep("a"), queue("b"));
    apply_put(engine, put(&b)).await;
    apply_put(engine, put(&a).refs(&[&b])).await;

    // a is re-put still naming b: b must not go. Both rule 2 (a ref deleted
    // by the commit) and rule 3 (a referrer remains) apply; either answer is
    // fine, applying is not.
    let res = engine
        .commit(
            Commit::new()
                .put(
                    put(&a)
                        .expect(Expect::Version(1))
                        .refs(&[&b])
                        .body(b"{\"new\":1}"),
                )
                .delete(b.clone(), Expect::Version(1)),
        )
        .await;
    match res {
        Err(EngineError::MissingRef(k)) => assert_eq!(k, b),
        Err(EngineError::InUse { key, by }) => assert_eq!((key, by), (b.clone(), vec![a.clone()])),
        other => panic!("expected MissingRef({b}) or InUse({b} by [{a}]), got {other:?}"),
    }
    assert_eq!(version(engine, &a).await, Some(1));
    assert_eq!(version(engine, &b).await, Some(1));
    assert_eq!(referrers(engine, &b).await, vec![a.clone()]);
}

async fn deleting_referrer_frees(engine: &Engine) {
    let (a, x, b) = (dep("a"), dep("x"), queue("b"));
    apply_put(engine, put(&b)).await;
    apply(
        engine,
        Commit::new()
            .put(put(&a).refs(&[&b]))
            .put(put(&x).refs(&[&b])),
    )
    .await;
    apply(engine, Commit::new().delete(a.clone(), Expect::Version(1))).await;
    assert_eq!(referrers(engine, &b).await, vec![x.clone()]);
    let res = engine
        .commit(Commit::new().delete(b.clone(), Expect::Any))
        .await;
    assert_in_use(res, &b, &[&x]);
    apply(engine, Commit::new().delete(x.clone(), Expect::Any)).await;
    assert_eq!(referrers(engine, &b).await, vec![]);
    apply(engine, Commit::new().delete(b.clone(), Expect::Version(1))).await;
    assert_eq!(get(engine, &b).await, None);
}

// ---------------------------------------------------------------------------
// Unique claims
// ---------------------------------------------------------------------------

async fn unique_duplicate_refused(engine: &Engine) {
    let (a, b) = (member("a"), member("b"));
    apply_put(engine, put(&a).unique(&["issuer|alice", "email|a@x"])).await;

    let res = engine
        .commit(Commit::new().put(put(&b).unique(&["other", "email|a@x"])))
        .await;
    assert_duplicate(res, "email|a@x", &[&a]);
    assert_eq!(get(engine, &b).await, None);
    assert_eq!(holder(engine, "other").await, None);

    // An existing record cannot take it over either.
    apply_put(engine, put(&b).unique(&["issuer|bob"])).await;
    let res = engine
        .commit(Commit::new().put(put(&b).expect(Expect::Version(1)).unique(&["issuer|alice"])))
        .await;
    assert_duplicate(res, "issuer|alice", &[&a]);
    assert_eq!(holder(engine, "issuer|alice").await, Some(a.clone()));
    assert_eq!(holder(engine, "issuer|bob").await, Some(b.clone()));
    assert_eq!(version(engine, &b).await, Some(1));

    // The holder itself may keep its claims on re-put.
    apply_put(
        engine,
        put(&a)
            .expect(Expect::Version(1))
            .unique(&["issuer|alice", "email|a@x"]),
    )
    .await;
    assert_eq!(holder(engine, "email|a@x").await, Some(a.clone()));
}

async fn unique_released_on_delete(engine: &Engine) {
    let (a, b) = (member("a"), member("b"));
    apply_put(engine, put(&a).unique(&["sub|1"])).await;
    apply(engine, Commit::new().delete(a.clone(), Expect::Version(1))).await;
    assert_eq!(holder(engine, "sub|1").await, None);
    apply_put(engine, put(&b).unique(&["sub|1"])).await;
    assert_eq!(holder(engine, "sub|1").await, Some(b.clone()));
}

async fn unique_released_on_reput(engine: &Engine) {
    let (a, b) = (member("a"), member("b"));
    apply_put(engine, put(&a).unique(&["sub|1", "sub|2"])).await;
    apply_put(
        engine,
        put(&a)
            .expect(Expect::Version(1))
            .unique(&["sub|2", "sub|3"]),
    )
    .await;
    assert_eq!(holder(engine, "sub|1").await, None);
    assert_eq!(holder(engine, "sub|2").await, Some(a.clone()));
    assert_eq!(holder(engine, "sub|3").await, Some(a.clone()));
    apply_put(engine, put(&b).unique(&["sub|1"])).await;
    assert_eq!(holder(engine, "sub|1").await, Some(b.clone()));

    // Dropping every claim releases them all.
    apply_put(engine, put(&a).expect(Expect::Version(2))).await;
    assert_eq!(holder(engine, "sub|2").await, None);
    assert_eq!(holder(engine, "sub|3").await, None);
}

async fn unique_handover_in_one_commit(engine: &Engine) {
    let (a, b, c, d) = (member("a"), member("b"), member("c"), member("d"));
    apply(
        engine,
        Commit::new()
            .put(put(&a).unique(&["p"]))
            .put(put(&b).unique(&["q"]))
            .put(put(&c).unique(&["r"])),
    )
    .await;

    // Deleted holder: its claim is free within the same commit.
    apply(
        engine,
        Commit::new()
            .put(put(&d).unique(&["r"]))
            .delete(c.clone(), Expect::Version(1)),
    )
    .await;
    assert_eq!(holder(engine, "r").await, Some(d.clone()));

    // Re-put holders without the claim: a and b swap theirs.
    apply(
        engine,
        Commit::new()
            .put(put(&a).expect(Expect::Version(1)).unique(&["q"]))
            .put(put(&b).expect(Expect::Version(1)).unique(&["p"])),
    )
    .await;
    assert_eq!(holder(engine, "p").await, Some(b.clone()));
    assert_eq!(holder(engine, "q").await, Some(a.clone()));
}

async fn unique_same_claim_twice_in_commit(engine: &Engine) {
    let (a, b) = (member("a"), member("b"));
    let res = engine
        .commit(
            Commit::new()
                .put(put(&a).unique(&["same"]))
                .put(put(&b).unique(&["same"])),
        )
        .await;
    assert_duplicate(res, "same", &[&a, &b]);
    assert_eq!(
        engine
            .get_many(&[a.clone(), b.clone()])
            .await
            .expect("get_many"),
        vec![None, None]
    );
    assert_eq!(holder(engine, "same").await, None);

    // Also when one of them already holds it and keeps it.
    apply_put(engine, put(&a).unique(&["same"])).await;
    let res = engine
        .commit(
            Commit::new()
                .put(put(&a).expect(Expect::Version(1)).unique(&["same"]))
                .put(put(&b).unique(&["same"])),
        )
        .await;
    assert_duplicate(res, "same", &[&a, &b]);
    assert_eq!(version(engine, &a).await, Some(1));
    assert_eq!(get(engine, &b).await, None);
    assert_eq!(holder(engine, "same").await, Some(a.clone()));
}

async fn lookup_finds_holder(engine: &Engine) {
    let a = member("a");
    assert_eq!(engine.lookup(&claim("nobody")).await.expect("lookup"), None);
    apply_put(engine, put(&a).unique(&["k1", "k2"]).body(b"{\"v\":1}")).await;
    let want = StoredRecord {
        key: a.clone(),
        version: 1,
        body: b"{\"v\":1}".to_vec(),
    };
    assert_eq!(
        engine.lookup(&claim("k1")).await.expect("lookup"),
        Some(want.clone())
    );
    assert_eq!(
        engine.lookup(&claim("k2")).await.expect("lookup"),
        Some(want)
    );

    apply_put(
        engine,
        put(&a)
            .expect(Expect::Version(1))
            .unique(&["k1", "k2"])
            .body(b"{\"v\":2}"),
    )
    .await;
    let got = engine
        .lookup(&claim("k2"))
        .await
        .expect("lookup")
        .expect("held");
    assert_eq!(
        (got.key, got.version, got.body),
        (a.clone(), 2, b"{\"v\":2}".to_vec())
    );

    apply(engine, Commit::new().delete(a.clone(), Expect::Version(2))).await;
    assert_eq!(engine.lookup(&claim("k1")).await.expect("lookup"), None);
    assert_eq!(engine.lookup(&claim("k2")).await.expect("lookup"), None);
}

// ---------------------------------------------------------------------------
// Collections
// ---------------------------------------------------------------------------

async fn list_orders_by_order_then_key(engine: &Engine) {
    let coll = "org/o1/queue";
    let other = "org/o2/queue";
    let mut commit = Commit::new();
    for (id, order) in [
        ("m", 5),
        ("b", -3),
        ("a9", 5),
        ("z", 0),
        ("a10", 5),
        ("c", 0),
        ("max", i64::MAX),
        ("min", i64::MIN),
    ] {
        commit = commit.put(put(&queue(id)).listed(coll, order));
    }
    commit = commit.put(put(&queue("elsewhere")).listed(other, 1));
    apply(engine, commit).await;

    let want: Vec<RecordKey> = ["min", "b", "c", "z", "a10", "a9", "m", "max"]
        .into_iter()
        .map(queue)
        .collect();
    let page = list(engine, coll, 0, 100).await;
    assert_eq!(page.total, 8);
    assert_eq!(
        page.records
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>(),
        want
    );
    // Pages carry whole records.
    let first = page.records.first().expect("a record");
    assert_eq!(
        (first.version, first.body.clone()),
        (
            1,
            serde_json::to_vec(&serde_json::json!({ "id": "min" })).expect("json")
        )
    );

    assert_eq!(listed_keys(engine, other).await, vec![queue("elsewhere")]);
    assert_eq!(
        list(engine, "org/none/queue", 0, 10).await,
        Page {
            total: 0,
            records: vec![]
        }
    );

    // Re-ordering moves a record; its version grows.
    apply_put(
        engine,
        put(&queue("m"))
            .expect(Expect::Version(1))
            .listed(coll, -10),
    )
    .await;
    let keys = listed_keys(engine, coll).await;
    assert_eq!(keys.get(..2), Some(&[queue("min"), queue("m")][..]));
    let page = list(engine, coll, 1, 1).await;
    assert_eq!(page.records.first().map(|r| r.version), Some(2));
}

async fn list_order_extremes(engine: &Engine) {
    // Orders are i64: neighbours far beyond 2^53 must still sort apart, and
    // the key only breaks exact ties.
    let coll = "extremes";
    apply(
        engine,
        Commit::new()
            .put(put(&dep("a")).listed(coll, i64::MAX))
            .put(put(&dep("b")).listed(coll, i64::MAX - 1))
            .put(put(&dep("c")).listed(coll, (1 << 53) + 1))
            .put(put(&dep("d")).listed(coll, 1 << 53))
            .put(put(&dep("e")).listed(coll, i64::MIN + 1))
            .put(put(&dep("f")).listed(coll, i64::MIN)),
    )
    .await;
    assert_eq!(
        listed_keys(engine, coll).await,
        ["f", "e", "d", "c", "b", "a"]
            .into_iter()
            .map(dep)
            .collect::<Vec<_>>()
    );
}

async fn list_paging(engine: &Engine) {
    let coll = "paged";
    let mut commit = Commit::new();
    for i in 0..7i64 {
        commit = commit.put(put(&dep(&format!("r{i}"))).listed(coll, 100 - i));
    }
    apply(engine, commit).await;
    // Descending ids by order: r6 (94) first, r0 (100) last.
    let all: Vec<RecordKey> = (0..7).rev().map(|i| dep(&format!("r{i}"))).collect();

    let keys_of = |page: &Page| {
        page.records
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>()
    };
    for (offset, limit, range) in [
        (0, 3, 0..3),
        (3, 3, 3..6),
        (6, 3, 6..7),
        (2, 1, 2..3),
        (0, 7, 0..7),
        (0, 100, 0..7),
        (5, 100, 5..7),
        (7, 3, 7..7),
        (100, 3, 7..7),
    ] {
        let page = list(engine, coll, offset, limit).await;
        assert_eq!(page.total, 7, "total at offset {offset} limit {limit}");
        assert_eq!(
            keys_of(&page),
            all.get(range).expect("range").to_vec(),
            "offset {offset} limit {limit}"
        );
    }
}

async fn list_limit_zero(engine: &Engine) {
    let coll = "zero";
    apply(
        engine,
        Commit::new()
            .put(put(&dep("a")).listed(coll, 1))
            .put(put(&dep("b")).listed(coll, 2)),
    )
    .await;
    for offset in [0, 1, 5] {
        assert_eq!(
            list(engine, coll, offset, 0).await,
            Page {
                total: 2,
                records: vec![]
            },
            "limit 0 at offset {offset}"
        );
    }
}

async fn list_move_to_other_collection(engine: &Engine) {
    let (from, to) = ("org/o1/cfg", "org/o2/cfg");
    let (a, b, c) = (dep("a"), dep("b"), dep("c"));
    apply(
        engine,
        Commit::new()
            .put(put(&a).listed(from, 1))
            .put(put(&b).listed(from, 2))
            .put(put(&c).listed(to, 1)),
    )
    .await;

    apply_put(engine, put(&a).expect(Expect::Version(1)).listed(to, 5)).await;
    assert_eq!(listed_keys(engine, from).await, vec![b.clone()]);
    assert_eq!(listed_keys(engine, to).await, vec![c.clone(), a.clone()]);
    let page = list(engine, to, 1, 10).await;
    assert_eq!(
        page.records.first().map(|r| (r.key.clone(), r.version)),
        Some((a.clone(), 2))
    );

    // Re-put in the same collection and order: listed once.
    apply_put(engine, put(&a).expect(Expect::Version(2)).listed(to, 5)).await;
    assert_eq!(listed_keys(engine, to).await, vec![c.clone(), a.clone()]);
}

async fn list_delete_removes(engine: &Engine) {
    let coll = "deleting";
    let (a, b, c) = (dep("a"), dep("b"), dep("c"));
    apply(
        engine,
        Commit::new()
            .put(put(&a).listed(coll, 1))
            .put(put(&b).listed(coll, 2))
            .put(put(&c).listed(coll, 3)),
    )
    .await;
    apply(engine, Commit::new().delete(b.clone(), Expect::Version(1))).await;
    assert_eq!(listed_keys(engine, coll).await, vec![a.clone(), c.clone()]);
    apply(
        engine,
        Commit::new()
            .delete(a.clone(), Expect::Any)
            .delete(c.clone(), Expect::Version(1)),
    )
    .await;
    assert_eq!(
        list(engine, coll, 0, 10).await,
        Page {
            total: 0,
            records: vec![]
        }
    );
}

// ---------------------------------------------------------------------------
// Commits
// ---------------------------------------------------------------------------

async fn failing_commit_changes_nothing(engine: &Engine) {
    let (a, b, d, h, n, q, r, x) = (
        dep("a"),
        queue("b"),
        dep("d"),
        member("h"),
        dep("n"),
        dep("q"),
        queue("r"),
        dep("x"),
    );
    let ghost = queue("ghost");
    let (c1, c2) = ("fc/one", "fc/two");
    apply(
        engine,
        Commit::new()
            .put(put(&b).listed(c1, 1))
            .put(put(&r).listed(c1, 2))
            .put(put(&a).refs(&[&b]).unique(&["claim-a"]).listed(c1, 3))
            .put(put(&d).unique(&["claim-d"]).listed(c2, 1))
            .put(put(&h).unique(&["claim-h"]).listed(c2, 2))
            .put(put(&q).refs(&[&r]).listed(c2, 3)),
    )
    .await;
    apply_put(
        engine,
        put(&a)
            .expect(Expect::Version(1))
            .refs(&[&b])
            .unique(&["claim-a"])
            .listed(c1, 3),
    )
    .await;

    let keys = [
        a.clone(),
        b.clone(),
        d.clone(),
        h.clone(),
        n.clone(),
        q.clone(),
        r.clone(),
        x.clone(),
        ghost.clone(),
    ];
    let claims = [
        "claim-a", "claim-a2", "claim-d", "claim-h", "claim-n", "claim-x",
    ];
    let collections = [c1, c2, "fc/three"];
    let before = snapshot(engine, &keys, &claims, &collections).await;

    // Writes that would each succeed on their own...
    let valid = || {
        Commit::new()
            .put(
                put(&a)
                    .expect(Expect::Version(2))
                    .body(b"{\"changed\":true}")
                    .refs(&[])
                    .unique(&["claim-a2"])
                    .listed("fc/three", 9),
            )
            .put(put(&n).refs(&[&b]).unique(&["claim-n"]).listed(c1, 0))
            .delete(d.clone(), Expect::Version(1))
            .put(
                put(&b)
                    .expect(Expect::Version(1))
                    .body(b"{\"changed\":true}")
                    .listed(c2, 0),
            )
    };
    // ...spoilt by one that fails, last or first.
    let failing = |put_first: Option<Put>,
                   delete_last: Option<(RecordKey, Expect)>,
                   put_last: Option<Put>| {
        let mut commit = Commit::new();
        if let Some(p) = put_first {
            commit = commit.put(p);
        }
        commit.writes.extend(valid().writes);
        if let Some((key, expect)) = delete_last {
            commit = commit.delete(key, expect);
        }
        if let Some(p) = put_last {
            commit = commit.put(p);
        }
        commit
    };

    // 1. Conflict: updating a missing record.
    let res = engine
        .commit(failing(
            None,
            None,
            Some(put(&x).expect(Expect::Version(3)).unique(&["claim-x"])),
        ))
        .await;
    assert_conflict(res, &x, Expect::Version(3), None);
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after Conflict"
    );

    // 1b. Conflict first in the commit.
    let res = engine
        .commit(failing(
            Some(put(&h).unique(&["claim-h"]).listed(c2, 2)),
            None,
            None,
        ))
        .await;
    assert_conflict(res, &h, Expect::Absent, Some(1));
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after early Conflict"
    );

    // 2. MissingRef.
    let res = engine
        .commit(failing(
            None,
            None,
            Some(put(&x).refs(&[&ghost]).unique(&["claim-x"])),
        ))
        .await;
    assert_missing_ref(res, &ghost);
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after MissingRef"
    );

    // 3. InUse: r is referenced by q, which the commit leaves alone.
    let res = engine
        .commit(failing(None, Some((r.clone(), Expect::Version(1))), None))
        .await;
    assert_in_use(res, &r, &[&q]);
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after InUse"
    );

    // 4. Duplicate: h holds claim-h and is not part of the commit.
    let res = engine
        .commit(failing(
            None,
            None,
            Some(put(&x).unique(&["claim-x", "claim-h"])),
        ))
        .await;
    assert_duplicate(res, "claim-h", &[&h]);
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after Duplicate"
    );

    // 5. InvalidCommit: a written twice.
    let res = engine
        .commit(failing(None, Some((a.clone(), Expect::Any)), None))
        .await;
    assert_invalid(res);
    assert_eq!(
        snapshot(engine, &keys, &claims, &collections).await,
        before,
        "after InvalidCommit"
    );

    // And the valid part alone does apply, in full.
    apply(engine, valid()).await;
    let after = snapshot(engine, &keys, &claims, &collections).await;
    assert_ne!(after, before);
    assert_eq!(version(engine, &a).await, Some(3));
    assert_eq!(version(engine, &b).await, Some(2));
    assert_eq!(version(engine, &n).await, Some(1));
    assert_eq!(get(engine, &d).await, None);
    assert_eq!(holder(engine, "claim-a").await, None);
    assert_eq!(holder(engine, "claim-a2").await, Some(a.clone()));
    assert_eq!(holder(engine, "claim-n").await, Some(n.clone()));
    assert_eq!(holder(engine, "claim-d").await, None);
    assert_eq!(referrers(engine, &b).await, vec![n.clone()]);
    assert_eq!(listed_keys(engine, c1).await, vec![n.clone(), r.clone()]);
    assert_eq!(
        listed_keys(engine, c2).await,
        vec![b.clone(), h.clone(), q.clone()]
    );
    assert_eq!(listed_keys(engine, "fc/three").await, vec![a.clone()]);
}

async fn successful_multi_write_commit(engine: &Engine) {
    let (org, cfg, ver1, ver2) = (
        RecordKey::new(Kind::Organization, "o"),
        RecordKey::new(Kind::Configuration, "c"),
        RecordKey::new(Kind::ConfigurationVersion, "c-1"),
        RecordKey::new(Kind::ConfigurationVersion, "c-2"),
    );
    apply(
        engine,
        Commit::new()
            .put(put(&org).listed("org", 0).unique(&["org-name|acme"]))
            .put(put(&cfg).listed("org/o/cfg", 0).refs(&[&org]))
            .put(put(&ver1).listed("org/o/cfg/c/ver", 1).refs(&[&cfg])),
    )
    .await;
    // Publishing: a new version and the configuration bumped, in one step.
    apply(
        engine,
        Commit::new()
            .put(put(&ver2).listed("org/o/cfg/c/ver", 2).refs(&[&cfg]))
            .put(
                put(&cfg)
                    .expect(Expect::Version(1))
                    .listed("org/o/cfg", 0)
                    .refs(&[&org, &ver2])
                    .body(b"{\"published\":2}"),
            ),
    )
    .await;
    assert_eq!(version(engine, &cfg).await, Some(2));
    assert_eq!(referrers(engine, &ver2).await, vec![cfg.clone()]);
    assert_eq!(
        referrers(engine, &cfg).await,
        vec![ver1.clone(), ver2.clone()]
    );
    assert_eq!(referrers(engine, &org).await, vec![cfg.clone()]);
    assert_eq!(
        listed_keys(engine, "org/o/cfg/c/ver").await,
        vec![ver1.clone(), ver2.clone()]
    );
    assert_eq!(holder(engine, "org-name|acme").await, Some(org.clone()));

    // The configuration and its versions reference each other; deleting them
    // together frees the cycle, and the organization with it.
    let res = engine
        .commit(Commit::new().delete(cfg.clone(), Expect::Version(2)))
        .await;
    assert_in_use(res, &cfg, &[&ver1, &ver2]);
    apply(
        engine,
        Commit::new()
            .delete(ver2.clone(), Expect::Version(1))
            .delete(cfg.clone(), Expect::Version(2))
            .delete(ver1.clone(), Expect::Version(1)),
    )
    .await;
    assert_eq!(referrers(engine, &org).await, vec![]);
    assert_eq!(listed_keys(engine, "org/o/cfg/c/ver").await, vec![]);
    apply(
        engine,
        Commit::new().delete(org.clone(), Expect::Version(1)),
    )
    .await;
    assert_eq!(holder(engine, "org-name|acme").await, None);
}

async fn invalid_commit_refused(engine: &Engine) {
    let (a, b) = (dep("a"), dep("b"));
    apply_put(engine, put(&b)).await;

    let res = engine.commit(Commit::new().put(put(&a)).put(put(&a))).await;
    assert_invalid(res);
    let res = engine
        .commit(Commit::new().put(put(&a)).delete(a.clone(), Expect::Any))
        .await;
    assert_invalid(res);
    let res = engine
        .commit(
            Commit::new()
                .delete(b.clone(), Expect::Version(1))
                .delete(b.clone(), Expect::Any),
        )
        .await;
    assert_invalid(res);
    let res = engine
        .commit(Commit::new().put(put(&b).expect(Expect::Version(1)).refs(&[&b])))
        .await;
    assert_invalid(res);

    assert_eq!(get(engine, &a).await, None);
    assert_eq!(version(engine, &b).await, Some(1));
    assert_eq!(referrers(engine, &b).await, vec![]);

    // An empty commit is fine and does nothing.
    apply(engine, Commit::new()).await;
}

async fn delete_any_of_missing_is_noop(engine: &Engine) {
    let (a, ghost) = (dep("a"), dep("ghost"));
    apply(engine, Commit::new().delete(ghost.clone(), Expect::Any)).await;
    assert_eq!(get(engine, &ghost).await, None);

    // Alongside other writes, which still apply.
    apply(
        engine,
        Commit::new()
            .delete(ghost.clone(), Expect::Any)
            .put(put(&a).unique(&["c"]).listed("noop", 1)),
    )
    .await;
    assert_eq!(version(engine, &a).await, Some(1));
    assert_eq!(get(engine, &ghost).await, None);
    assert_eq!(listed_keys(engine, "noop").await, vec![a.clone()]);
    assert_eq!(listed_keys(engine, COLLECTION).await, vec![]);

    // A ghost deleted "again" after it existed once.
    apply_put(engine, put(&ghost)).await;
    apply(
        engine,
        Commit::new().delete(ghost.clone(), Expect::Version(1)),
    )
    .await;
    apply(engine, Commit::new().delete(ghost.clone(), Expect::Any)).await;
    assert_eq!(get(engine, &ghost).await, None);
}

// ---------------------------------------------------------------------------
// Concurrency: the checks are atomic with the writes.
// ---------------------------------------------------------------------------

const RACERS: usize = 8;

async fn concurrent_creates_one_wins(engine: &Engine) {
    let a = dep("race");
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (engine, a) = (engine.clone(), a.clone());
        tasks.spawn(async move {
            let body = format!("{{\"racer\":{i}}}").into_bytes();
            let res = engine.commit(Commit::new().put(put(&a).body(&body))).await;
            (body, res)
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<&Vec<u8>> = results
        .iter()
        .filter(|(_, res)| res.is_ok())
        .map(|(body, _)| body)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one creation wins: {results:?}");
    for (_, res) in results.iter().filter(|(_, res)| res.is_err()) {
        assert!(
            matches!(
                res,
                Err(EngineError::Conflict {
                    actual: Some(1),
                    ..
                })
            ),
            "losers see a Conflict at version 1: {res:?}"
        );
    }
    let got = get(engine, &a).await.expect("created");
    assert_eq!(
        (got.version, Some(&got.body)),
        (1, winners.first().copied())
    );
}

async fn concurrent_updates_one_wins(engine: &Engine) {
    let a = dep("race");
    apply_put(engine, put(&a)).await;
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (engine, a) = (engine.clone(), a.clone());
        tasks.spawn(async move {
            let body = format!("{{\"racer\":{i}}}").into_bytes();
            let res = engine
                .commit(Commit::new().put(put(&a).expect(Expect::Version(1)).body(&body)))
                .await;
            (body, res)
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<&Vec<u8>> = results
        .iter()
        .filter(|(_, res)| res.is_ok())
        .map(|(body, _)| body)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one update wins: {results:?}");
    for (_, res) in results.iter().filter(|(_, res)| res.is_err()) {
        assert!(
            matches!(
                res,
                Err(EngineError::Conflict {
                    actual: Some(2),
                    ..
                })
            ),
            "losers see a Conflict at version 2: {res:?}"
        );
    }
    let got = get(engine, &a).await.expect("exists");
    assert_eq!(
        (got.version, Some(&got.body)),
        (2, winners.first().copied())
    );
}

async fn concurrent_claims_one_holder(engine: &Engine) {
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let engine = engine.clone();
        tasks.spawn(async move {
            let key = member(&format!("m{i}"));
            let res = engine
                .commit(Commit::new().put(put(&key).unique(&["contested"])))
                .await;
            (key, res)
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<&RecordKey> = results
        .iter()
        .filter(|(_, res)| res.is_ok())
        .map(|(key, _)| key)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:?}");
    let winner = *winners.first().expect("a winner");
    for (key, res) in &results {
        if key == winner {
            continue;
        }
        match res {
            Err(EngineError::Duplicate { claim, holder }) => {
                assert_eq!(
                    (claim, holder),
                    (&self::claim("contested"), winner),
                    "{key}"
                );
            }
            other => {
                panic!("{key}: expected Duplicate(\"contested\" held by {winner}), got {other:?}")
            }
        }
        assert_eq!(get(engine, key).await, None);
    }
    assert_eq!(holder(engine, "contested").await, Some(winner.clone()));
}

async fn concurrent_delete_vs_reference(engine: &Engine) {
    for round in 0..20 {
        let target = queue(&format!("t{round}"));
        let referrer = dep(&format!("r{round}"));
        apply_put(engine, put(&target)).await;

        let deleting = {
            let (engine, target) = (engine.clone(), target.clone());
            tokio::spawn(async move {
                engine
                    .commit(Commit::new().delete(target, Expect::Version(1)))
                    .await
            })
        };
        let referencing = {
            let (engine, target, referrer) = (engine.clone(), target.clone(), referrer.clone());
            tokio::spawn(async move {
                engine
                    .commit(Commit::new().put(put(&referrer).refs(&[&target])))
                    .await
            })
        };
        let deleted = deleting.await.expect("join");
        let referenced = referencing.await.expect("join");

        match (&deleted, &referenced) {
            (Ok(()), Err(EngineError::MissingRef(k))) => {
                assert_eq!(k, &target);
                assert_eq!(get(engine, &target).await, None);
                assert_eq!(get(engine, &referrer).await, None);
            }
            (Err(EngineError::InUse { key, by }), Ok(())) => {
                assert_eq!((key, by), (&target, &vec![referrer.clone()]));
                assert_eq!(version(engine, &target).await, Some(1));
                assert_eq!(referrers(engine, &target).await, vec![referrer.clone()]);
            }
            other => panic!("round {round}: delete and reference both decided wrongly: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Ephemeral values. Real time: Redis expires keys on its own clock, so the
// cases sleep past short TTLs, leaving generous slack for the checks that
// must still see a value live.
// ---------------------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn sleep_ms(n: u64) {
    tokio::time::sleep(ms(n)).await;
}

async fn stash(
    engine: &Engine,
    space: Space,
    id: &str,
    value: &[u8],
    ttl: Duration,
    mode: StashMode,
) -> bool {
    engine
        .stash(space, id, value, ttl, mode)
        .await
        .expect("stash")
}

async fn peek(engine: &Engine, space: Space, id: &str) -> Option<Vec<u8>> {
    engine.peek(space, id).await.expect("peek")
}

async fn take(engine: &Engine, space: Space, id: &str) -> Option<Vec<u8>> {
    engine.take(space, id).await.expect("take")
}

async fn swap(engine: &Engine, space: Space, id: &str, value: &[u8]) -> Option<Vec<u8>> {
    engine.swap(space, id, value).await.expect("swap")
}

async fn count(engine: &Engine, space: Space, id: &str, window: Duration) -> u64 {
    engine.count(space, id, window).await.expect("count")
}

const LONG: Duration = Duration::from_secs(30);

async fn stash_then_peek(engine: &Engine) {
    let s = Space::LoginTransaction;
    assert_eq!(peek(engine, s, "state-1").await, None);
    assert!(
        stash(
            engine,
            s,
            "state-1",
            b"nonce+verifier",
            LONG,
            StashMode::Replace
        )
        .await
    );
    assert_eq!(
        peek(engine, s, "state-1").await.as_deref(),
        Some(&b"nonce+verifier"[..])
    );
    // Peeking does not consume.
    assert_eq!(
        peek(engine, s, "state-1").await.as_deref(),
        Some(&b"nonce+verifier"[..])
    );
    assert_eq!(peek(engine, s, "state-2").await, None);
}

async fn stash_if_absent_refuses_live_value(engine: &Engine) {
    let s = Space::UsedNonce;
    assert!(stash(engine, s, "n", b"first", ms(150), StashMode::IfAbsent).await);
    assert!(
        !stash(engine, s, "n", b"second", LONG, StashMode::IfAbsent).await,
        "a live value is kept"
    );
    assert_eq!(peek(engine, s, "n").await.as_deref(), Some(&b"first"[..]));

    sleep_ms(220).await;
    assert_eq!(peek(engine, s, "n").await, None, "expired");
    assert!(
        stash(engine, s, "n", b"third", LONG, StashMode::IfAbsent).await,
        "an expired value does not block"
    );
    assert_eq!(peek(engine, s, "n").await.as_deref(), Some(&b"third"[..]));
}

async fn stash_replace_resets_value_and_expiry(engine: &Engine) {
    let s = Space::StaffSession;
    assert!(stash(engine, s, "x", b"old", ms(100), StashMode::Replace).await);
    assert!(stash(engine, s, "x", b"new", ms(350), StashMode::Replace).await);
    assert_eq!(peek(engine, s, "x").await.as_deref(), Some(&b"new"[..]));
    sleep_ms(170).await;
    assert_eq!(
        peek(engine, s, "x").await.as_deref(),
        Some(&b"new"[..]),
        "the replacement's longer TTL counts, not the first one's"
    );
    // And a shorter one shortens it.
    assert!(stash(engine, s, "x", b"short", ms(50), StashMode::Replace).await);
    sleep_ms(120).await;
    assert_eq!(peek(engine, s, "x").await, None);
}

async fn take_returns_once(engine: &Engine) {
    let s = Space::LoginTransaction;
    assert!(stash(engine, s, "state", b"tx", LONG, StashMode::Replace).await);
    let takes = (0..RACERS).map(|_| engine.take(s, "state"));
    let results: Vec<Option<Vec<u8>>> = join_all(takes)
        .await
        .into_iter()
        .map(|r| r.expect("take"))
        .collect();
    let winners: Vec<&Vec<u8>> = results.iter().flatten().collect();
    assert_eq!(
        winners,
        [&b"tx".to_vec()],
        "exactly one take gets it: {results:?}"
    );
    assert_eq!(peek(engine, s, "state").await, None);
    assert_eq!(take(engine, s, "state").await, None);
    assert_eq!(take(engine, s, "never").await, None);
}

async fn swap_of_absent_writes_nothing(engine: &Engine) {
    let s = Space::RefreshToken;
    assert_eq!(swap(engine, s, "t", b"used").await, None);
    assert_eq!(peek(engine, s, "t").await, None, "swap wrote nothing");
    assert!(
        stash(engine, s, "t", b"fresh", LONG, StashMode::IfAbsent).await,
        "nothing blocks a later stash"
    );
}

async fn swap_keeps_expiry(engine: &Engine) {
    let s = Space::RefreshToken;
    assert!(stash(engine, s, "t", b"unused", ms(250), StashMode::Replace).await);
    sleep_ms(80).await;
    assert_eq!(
        swap(engine, s, "t", b"used").await.as_deref(),
        Some(&b"unused"[..])
    );
    assert_eq!(peek(engine, s, "t").await.as_deref(), Some(&b"used"[..]));
    assert_eq!(
        swap(engine, s, "t", b"again").await.as_deref(),
        Some(&b"used"[..])
    );
    // Past the original expiry; a swap that restarted the TTL would still
    // show the value here.
    sleep_ms(240).await;
    assert_eq!(
        peek(engine, s, "t").await,
        None,
        "expires at the original time"
    );
}

async fn concurrent_swaps_one_sees_original(engine: &Engine) {
    let s = Space::RefreshToken;
    assert!(stash(engine, s, "t", b"original", LONG, StashMode::Replace).await);
    let values: Vec<Vec<u8>> = (0..RACERS)
        .map(|i| format!("racer-{i}").into_bytes())
        .collect();
    let swaps = values.iter().map(|v| engine.swap(s, "t", v));
    let results: Vec<Option<Vec<u8>>> = join_all(swaps)
        .await
        .into_iter()
        .map(|r| r.expect("swap"))
        .collect();
    let originals = results
        .iter()
        .filter(|r| r.as_deref() == Some(&b"original"[..]))
        .count();
    assert_eq!(
        originals, 1,
        "exactly one swap sees the original: {results:?}"
    );
    // The others each saw some racer's value: a chain, never a gap.
    for r in &results {
        let seen = r.as_ref().expect("every swap found a live value");
        assert!(
            seen.as_slice() == b"original" || values.contains(seen),
            "{seen:?}"
        );
    }
    let last = peek(engine, s, "t").await.expect("a value remains");
    assert!(values.contains(&last));
    assert!(
        !results.contains(&Some(last)),
        "the final value was seen by no one"
    );
}

async fn discard_removes(engine: &Engine) {
    let s = Space::RevokedSession;
    assert!(stash(engine, s, "jti", b"1", LONG, StashMode::Replace).await);
    engine.discard(s, "jti").await.expect("discard");
    assert_eq!(peek(engine, s, "jti").await, None);
    // Discarding what is not there is fine.
    engine.discard(s, "jti").await.expect("discard again");
    engine.discard(s, "never").await.expect("discard missing");
    assert!(stash(engine, s, "jti", b"2", LONG, StashMode::IfAbsent).await);
}

async fn count_restarts_after_window(engine: &Engine) {
    let s = Space::RateLimit;
    let window = ms(250);
    assert_eq!(count(engine, s, "ip", window).await, 1);
    assert_eq!(count(engine, s, "ip", window).await, 2);
    assert_eq!(count(engine, s, "other", window).await, 1);
    sleep_ms(80).await;
    assert_eq!(count(engine, s, "ip", window).await, 3);
    // Counters read back as decimal text on both engines.
    assert_eq!(peek(engine, s, "ip").await.as_deref(), Some(&b"3"[..]));
    // Past the first increment's window; had later increments restarted it,
    // the count would go on.
    sleep_ms(240).await;
    assert_eq!(count(engine, s, "ip", window).await, 1, "a new window");
    assert_eq!(count(engine, s, "ip", window).await, 2);
}

async fn spaces_are_independent(engine: &Engine) {
    for space in Space::ALL {
        assert!(
            stash(
                engine,
                space,
                "same-id",
                space.as_str().as_bytes(),
                LONG,
                StashMode::IfAbsent
            )
            .await
        );
    }
    for space in Space::ALL {
        assert_eq!(
            peek(engine, space, "same-id").await.as_deref(),
            Some(space.as_str().as_bytes())
        );
    }
    assert_eq!(
        take(engine, Space::LoginTransaction, "same-id")
            .await
            .as_deref(),
        Some(&b"login"[..])
    );
    assert_eq!(
        peek(engine, Space::StaffLogin, "same-id").await.as_deref(),
        Some(&b"stafflogin"[..])
    );
    engine
        .discard(Space::UsedNonce, "same-id")
        .await
        .expect("discard");
    assert_eq!(
        peek(engine, Space::RefreshToken, "same-id")
            .await
            .as_deref(),
        Some(&b"refresh"[..])
    );
    assert_eq!(
        swap(engine, Space::LoginTransaction, "same-id", b"x").await,
        None
    );
    assert_eq!(
        swap(engine, Space::RefreshFamily, "same-id", b"x")
            .await
            .as_deref(),
        Some(&b"family"[..])
    );
    assert_eq!(
        peek(engine, Space::RefreshToken, "same-id")
            .await
            .as_deref(),
        Some(&b"refresh"[..])
    );
    assert_eq!(count(engine, Space::RateLimit, "n", LONG).await, 1);
    assert_eq!(count(engine, Space::RevokedSession, "n", LONG).await, 1);
    assert_eq!(count(engine, Space::RateLimit, "n", LONG).await, 2);
    // Ids that look like a space's key do not collide either.
    assert_eq!(peek(engine, Space::StaffLogin, "login:same-id").await, None);
}

async fn binary_ephemeral_values(engine: &Engine) {
    let s = Space::StaffLogin;
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    assert!(stash(engine, s, "bin", &all_bytes, LONG, StashMode::Replace).await);
    assert_eq!(peek(engine, s, "bin").await, Some(all_bytes.clone()));
    let large = vec![0xA5u8; 1 << 20];
    assert_eq!(
        swap(engine, s, "bin", &large).await,
        Some(all_bytes.clone())
    );
    assert_eq!(take(engine, s, "bin").await, Some(large));
    // Empty is a value, not an absence.
    assert!(stash(engine, s, "empty", b"", LONG, StashMode::Replace).await);
    assert_eq!(peek(engine, s, "empty").await, Some(Vec::new()));
    assert!(!stash(engine, s, "empty", b"x", LONG, StashMode::IfAbsent).await);
    assert_eq!(take(engine, s, "empty").await, Some(Vec::new()));
}

async fn expired_value_is_invisible(engine: &Engine) {
    let s = Space::LoginTransaction;
    assert!(stash(engine, s, "gone", b"v", ms(50), StashMode::Replace).await);
    // A zero TTL stores for an instant (1 ms), not forever.
    assert!(stash(engine, s, "zero", b"v", Duration::ZERO, StashMode::Replace).await);
    sleep_ms(120).await;
    assert_eq!(peek(engine, s, "zero").await, None);
    assert_eq!(peek(engine, s, "gone").await, None);
    assert_eq!(take(engine, s, "gone").await, None);
    assert_eq!(swap(engine, s, "gone", b"w").await, None);
    assert_eq!(peek(engine, s, "gone").await, None, "swap revived nothing");

    // The same through swap and take first, without a peek before them.
    assert!(stash(engine, s, "a", b"v", ms(50), StashMode::Replace).await);
    assert!(stash(engine, s, "b", b"v", ms(50), StashMode::Replace).await);
    sleep_ms(120).await;
    assert_eq!(swap(engine, s, "a", b"w").await, None);
    assert_eq!(peek(engine, s, "a").await, None);
    assert_eq!(take(engine, s, "b").await, None);
    assert!(stash(engine, s, "b", b"new", LONG, StashMode::IfAbsent).await);
    assert_eq!(take(engine, s, "b").await.as_deref(), Some(&b"new"[..]));
}

// ---------------------------------------------------------------------------
// Embedded only
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen_embedded() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (a, b, gone) = (dep("a"), queue("b"), dep("gone"));
    {
        let engine = embedded_engine(dir.path()).await;
        apply(
            &engine,
            Commit::new()
                .put(put(&b).listed("keep", 2))
                .put(put(&a).refs(&[&b]).unique(&["claim"]).listed("keep", 1))
                .put(put(&gone).unique(&["gone-claim"]).listed("keep", 3)),
        )
        .await;
        apply_put(
            &engine,
            put(&a)
                .expect(Expect::Version(1))
                .refs(&[&b])
                .unique(&["claim"])
                .listed("keep", 1)
                .body(&[0, 159, 146, 150, 255]),
        )
        .await;
        apply(
            &engine,
            Commit::new().delete(gone.clone(), Expect::Version(1)),
        )
        .await;
        drop(engine);
    }

    let engine = embedded_engine(dir.path()).await;
    assert_eq!(
        get(&engine, &a).await,
        Some(StoredRecord {
            key: a.clone(),
            version: 2,
            body: vec![0, 159, 146, 150, 255],
        })
    );
    assert_eq!(version(&engine, &b).await, Some(1));
    assert_eq!(get(&engine, &gone).await, None);
    assert_eq!(holder(&engine, "claim").await, Some(a.clone()));
    assert_eq!(holder(&engine, "gone-claim").await, None);
    assert_eq!(referrers(&engine, &b).await, vec![a.clone()]);
    assert_eq!(
        listed_keys(&engine, "keep").await,
        vec![a.clone(), b.clone()]
    );
    let res = engine
        .commit(Commit::new().delete(b.clone(), Expect::Any))
        .await;
    assert_in_use(res, &b, &[&a]);
    // Versions go on from where they were.
    apply_put(
        &engine,
        put(&a)
            .expect(Expect::Version(2))
            .refs(&[&b])
            .unique(&["claim"]),
    )
    .await;
    assert_eq!(version(&engine, &a).await, Some(3));
}

// ---------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------

async fn raw_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    let client = ::redis::Client::open(url).expect("redis client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

async fn raw_keys(url: &str) -> Vec<Vec<u8>> {
    ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw_connection(url).await)
        .await
        .expect("KEYS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_leave_no_keys_redis() {
    // A private server: every key on it is this test's.
    let server = RedisServer::start();
    let engine = redis_engine_on(&server.url(), &support::unique_prefix()).await;
    let (a, b, m) = (dep("a"), queue("b"), member("m"));
    apply(
        &engine,
        Commit::new()
            .put(put(&b).listed("org/o1/queue", 1))
            .put(
                put(&a)
                    .refs(&[&b])
                    .unique(&["a-claim"])
                    .listed("org/o1/dep", 1),
            )
            .put(put(&m).unique(&["m-claim"])),
    )
    .await;
    // A re-put that moves the record and changes its claims must not leave
    // the old entries behind either.
    apply_put(
        &engine,
        put(&a)
            .expect(Expect::Version(1))
            .refs(&[&b])
            .unique(&["a-claim-2"])
            .listed("org/o1/other", 2),
    )
    .await;
    assert!(!raw_keys(&server.url()).await.is_empty());
    apply(
        &engine,
        Commit::new()
            .delete(a.clone(), Expect::Version(2))
            .delete(b.clone(), Expect::Version(1))
            .delete(m.clone(), Expect::Version(1)),
    )
    .await;
    let left: Vec<String> = raw_keys(&server.url())
        .await
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(left.is_empty(), "keys left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_gives_a_counter_without_expiry_one_redis() {
    // A private server, so the counter is the only key.
    let server = RedisServer::start();
    let engine = redis_engine_on(&server.url(), &support::unique_prefix()).await;
    let window = Duration::from_secs(60);
    assert_eq!(
        engine
            .count(Space::RateLimit, "k", window)
            .await
            .expect("count"),
        1
    );
    let keys = raw_keys(&server.url()).await;
    let [key] = keys.as_slice() else {
        panic!("expected one key, found {keys:?}");
    };
    // Left without an expiry, as by an older node or by hand.
    let mut conn = raw_connection(&server.url()).await;
    ::redis::cmd("SET")
        .arg(key)
        .arg("5")
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");
    assert_eq!(
        engine
            .count(Space::RateLimit, "k", window)
            .await
            .expect("count"),
        6
    );
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_prefix_redis() {
    // A private server: every key on it is this test's.
    let server = RedisServer::start();
    assert!(raw_keys(&server.url()).await.is_empty());
    let prefix = support::unique_prefix();
    let engine = redis_engine_on(&server.url(), &prefix).await;

    let (a, b, m) = (dep("a"), queue("b"), member("m"));
    apply(
        &engine,
        Commit::new()
            .put(put(&b).listed("org/o1/queue", 1))
            .put(
                put(&a)
                    .refs(&[&b])
                    .unique(&["dep-claim"])
                    .listed("org/o1/dep", 1),
            )
            .put(put(&m).unique(&["iss|sub"]).listed("org/o1/member", 1)),
    )
    .await;
    apply_put(
        &engine,
        put(&a)
            .expect(Expect::Version(1))
            .refs(&[&b])
            .unique(&["dep-claim"]),
    )
    .await;
    // Exercise the reads too, in case they leave anything behind.
    let _ = engine
        .get_many(&[a.clone(), b.clone(), m.clone()])
        .await
        .expect("get_many");
    let _ = engine.lookup(&claim("iss|sub")).await.expect("lookup");
    let _ = list(&engine, "org/o1/dep", 0, 10).await;
    let _ = engine.referrers(&b).await.expect("referrers");
    // And the ephemeral values.
    engine
        .stash(
            Space::LoginTransaction,
            "s",
            b"v",
            Duration::from_secs(30),
            StashMode::Replace,
        )
        .await
        .expect("stash");
    engine
        .count(Space::RateLimit, "r", Duration::from_secs(30))
        .await
        .expect("count");

    let keys = raw_keys(&server.url()).await;
    assert!(!keys.is_empty(), "the engine wrote no keys at all");
    let stray: Vec<String> = keys
        .iter()
        .filter(|k| !k.starts_with(prefix.as_bytes()))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        stray.is_empty(),
        "keys without the prefix {prefix:?}: {stray:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_redis() {
    let url = support::redis::shared().url();
    let one = redis_engine_on(&url, &support::unique_prefix()).await;
    let two = redis_engine_on(&url, &support::unique_prefix()).await;

    let (a, b) = (dep("a"), queue("b"));
    apply(
        &one,
        Commit::new().put(put(&b).listed("shared-name", 1)).put(
            put(&a)
                .refs(&[&b])
                .unique(&["claim"])
                .listed("shared-name", 2)
                .body(b"\"one\""),
        ),
    )
    .await;

    // Two sees none of it...
    assert_eq!(get(&two, &a).await, None);
    assert_eq!(holder(&two, "claim").await, None);
    assert_eq!(referrers(&two, &b).await, vec![]);
    assert_eq!(listed_keys(&two, "shared-name").await, vec![]);
    let res = two
        .commit(Commit::new().put(put(&a).expect(Expect::Version(1))))
        .await;
    assert_conflict(res, &a, Expect::Version(1), None);
    let res = two
        .commit(Commit::new().put(put(&dep("x")).refs(&[&b])))
        .await;
    assert_missing_ref(res, &b);

    // ...and can hold the same keys and claims on its own.
    apply_put(
        &two,
        put(&a)
            .unique(&["claim"])
            .listed("shared-name", 7)
            .body(b"\"two\""),
    )
    .await;
    assert_eq!(holder(&two, "claim").await, Some(a.clone()));
    assert_eq!(listed_keys(&two, "shared-name").await, vec![a.clone()]);
    apply(&two, Commit::new().delete(a.clone(), Expect::Version(1))).await;

    // One is untouched by all that.
    let got = get(&one, &a).await.expect("a in one");
    assert_eq!((got.version, got.body), (1, b"\"one\"".to_vec()));
    assert_eq!(holder(&one, "claim").await, Some(a.clone()));
    assert_eq!(referrers(&one, &b).await, vec![a.clone()]);
    assert_eq!(
        listed_keys(&one, "shared-name").await,
        vec![b.clone(), a.clone()]
    );
    let res = one
        .commit(Commit::new().delete(b.clone(), Expect::Any))
        .await;
    assert_in_use(res, &b, &[&a]);
}

// ---------------------------------------------------------------------------
// Conversation logs and the bus
// ---------------------------------------------------------------------------

/// Event logs and the bus, in their own module so their imports and helpers
/// stay apart from the record cases above.
mod conversations {
    use std::time::Duration;

    use bytes::Bytes;
    use futures::future::join_all;
    use switchboard::engine::{BusMessage, Channel, LogEntry, Subscription};
    use uuid::Uuid;

    use super::*;

    contract! {
        appends_number_from_one => appends_number_from_one_redis, appends_number_from_one_embedded;
        read_log_after_and_limit => read_log_after_and_limit_redis, read_log_after_and_limit_embedded;
        unknown_log_is_empty => unknown_log_is_empty_redis, unknown_log_is_empty_embedded;
        dedup_returns_first_seq => dedup_returns_first_seq_redis, dedup_returns_first_seq_embedded;
        concurrent_appends_are_gapless => concurrent_appends_are_gapless_redis, concurrent_appends_are_gapless_embedded;
        concurrent_duplicates_append_once => concurrent_duplicates_append_once_redis, concurrent_duplicates_append_once_embedded;
        logs_are_independent => logs_are_independent_redis, logs_are_independent_embedded;
        publish_subscribe_round_trip => publish_subscribe_round_trip_redis, publish_subscribe_round_trip_embedded;
        two_subscribers_both_receive => two_subscribers_both_receive_redis, two_subscribers_both_receive_embedded;
        resubscribe_after_drop => resubscribe_after_drop_redis, resubscribe_after_drop_embedded;
        publish_without_subscriber_is_fine => publish_without_subscriber_is_fine_redis, publish_without_subscriber_is_fine_embedded;
        channels_are_independent => channels_are_independent_redis, channels_are_independent_embedded;
    }

    /// How long a published message may take to arrive.
    const DELIVERY: Duration = Duration::from_secs(5);

    async fn append(engine: &Engine, log: Uuid, body: &[u8], dedup: Option<&str>) -> (u64, bool) {
        let appended = engine.append(log, body, dedup).await.expect("append");
        (appended.seq, appended.duplicate)
    }

    async fn read(engine: &Engine, log: Uuid, after: u64, limit: usize) -> Vec<LogEntry> {
        engine.read_log(log, after, limit).await.expect("read_log")
    }

    fn seqs(entries: &[LogEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    fn entry(seq: u64, body: &[u8]) -> LogEntry {
        LogEntry {
            seq,
            body: body.to_vec(),
        }
    }

    /// The next message, which must come within [`DELIVERY`].
    async fn next(sub: &mut Subscription) -> BusMessage {
        tokio::time::timeout(DELIVERY, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing on {:?} within {DELIVERY:?}", sub.channel))
            .expect("the subscription ended")
    }

    fn payload(bytes: &'static [u8]) -> BusMessage {
        BusMessage::Payload(Bytes::from_static(bytes))
    }

    async fn subscribe(engine: &Engine, channel: &Channel) -> Subscription {
        engine.subscribe(channel.clone()).await.expect("subscribe")
    }

    async fn publish(engine: &Engine, channel: &Channel, body: &[u8]) {
        engine.publish(channel, body).await.expect("publish");
    }

    async fn appends_number_from_one(engine: &Engine) {
        let log = Uuid::new_v4();
        let bodies: [&[u8]; 4] = [b"{\"m\":1}", b"", b"\x00\xff binary \x00", &[7u8; 70_000]];
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(append(engine, log, body, None).await, (i as u64 + 1, false));
        }
        let expected: Vec<LogEntry> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| entry(i as u64 + 1, body))
            .collect();
        assert_eq!(read(engine, log, 0, 100).await, expected);
        assert_eq!(engine.last_seq(log).await.expect("last_seq"), 4);
    }

    async fn read_log_after_and_limit(engine: &Engine) {
        let log = Uuid::new_v4();
        for i in 1..=10u64 {
            append(engine, log, format!("e{i}").as_bytes(), None).await;
        }
        let page = read(engine, log, 3, 4).await;
        assert_eq!(seqs(&page), vec![4, 5, 6, 7]);
        assert_eq!(page[0], entry(4, b"e4"));
        assert_eq!(seqs(&read(engine, log, 9, 10).await), vec![10]);
        assert_eq!(seqs(&read(engine, log, 0, 1).await), vec![1]);
        assert!(read(engine, log, 10, 5).await.is_empty());
        assert!(read(engine, log, 500, 5).await.is_empty());
        assert!(read(engine, log, 0, 0).await.is_empty());
        assert!(read(engine, log, u64::MAX, 5).await.is_empty());
        assert_eq!(read(engine, log, 0, usize::MAX).await.len(), 10);
    }

    async fn unknown_log_is_empty(engine: &Engine) {
        let log = Uuid::new_v4();
        assert_eq!(engine.last_seq(log).await.expect("last_seq"), 0);
        assert!(read(engine, log, 0, 10).await.is_empty());
    }

    async fn dedup_returns_first_seq(engine: &Engine) {
        let log = Uuid::new_v4();
        // Dedup ids are client input: nothing in them may matter.
        let odd = "{c:x}:log *?[] \u{1F600}".repeat(5);
        let long = "m".repeat(128);
        assert_eq!(append(engine, log, b"a", Some("m1")).await, (1, false));
        assert_eq!(append(engine, log, b"b", None).await, (2, false));
        assert_eq!(append(engine, log, b"a again", Some("m1")).await, (1, true));
        assert_eq!(append(engine, log, b"c", Some(&odd)).await, (3, false));
        assert_eq!(append(engine, log, b"d", Some(&long)).await, (4, false));
        assert_eq!(append(engine, log, b"c again", Some(&odd)).await, (3, true));
        assert_eq!(
            append(engine, log, b"d again", Some(&long)).await,
            (4, true)
        );
        assert_eq!(
            append(engine, log, b"a thrice", Some("m1")).await,
            (1, true)
        );
        assert_eq!(engine.last_seq(log).await.expect("last_seq"), 4);
        assert_eq!(
            read(engine, log, 0, 10).await,
            vec![
                entry(1, b"a"),
                entry(2, b"b"),
                entry(3, b"c"),
                entry(4, b"d")
            ]
        );
        // Dedup ids belong to one log.
        let other = Uuid::new_v4();
        assert_eq!(append(engine, other, b"x", Some("m1")).await, (1, false));
    }

    async fn concurrent_appends_are_gapless(engine: &Engine) {
        let log = Uuid::new_v4();
        let tasks = (0..50).map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let body = format!("task {i}");
                // Every other append carries a (distinct) dedup id: both
                // paths of the append share one sequence.
                let dedup = (i % 2 == 0).then(|| format!("id-{i}"));
                let appended = engine
                    .append(log, body.as_bytes(), dedup.as_deref())
                    .await
                    .expect("append");
                assert!(!appended.duplicate);
                (appended.seq, body)
            })
        });
        let mut results: Vec<(u64, String)> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.expect("append task"))
            .collect();
        results.sort();
        assert_eq!(
            results.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        let stored = read(engine, log, 0, 100).await;
        let expected: Vec<LogEntry> = results
            .iter()
            .map(|(seq, body)| entry(*seq, body.as_bytes()))
            .collect();
        assert_eq!(stored, expected, "each append's body under its own seq");
        assert_eq!(engine.last_seq(log).await.expect("last_seq"), 50);
    }

    async fn concurrent_duplicates_append_once(engine: &Engine) {
        let log = Uuid::new_v4();
        let tasks = (0..20).map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .append(log, format!("resend {i}").as_bytes(), Some("same"))
                    .await
                    .expect("append")
            })
        });
        let results: Vec<_> = join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.expect("append task"))
            .collect();
        assert_eq!(results.iter().filter(|a| !a.duplicate).count(), 1);
        assert!(results.iter().all(|a| a.seq == 1), "{results:?}");
        assert_eq!(read(engine, log, 0, 100).await.len(), 1);
    }

    async fn logs_are_independent(engine: &Engine) {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(append(engine, a, b"a1", Some("x")).await, (1, false));
        assert_eq!(append(engine, b, b"b1", Some("x")).await, (1, false));
        assert_eq!(append(engine, a, b"a2", None).await, (2, false));
        assert_eq!(append(engine, a, b"a3", None).await, (3, false));
        assert_eq!(append(engine, b, b"b2", None).await, (2, false));
        assert_eq!(
            read(engine, a, 0, 10).await,
            vec![entry(1, b"a1"), entry(2, b"a2"), entry(3, b"a3")]
        );
        assert_eq!(
            read(engine, b, 0, 10).await,
            vec![entry(1, b"b1"), entry(2, b"b2")]
        );
        assert_eq!(engine.last_seq(a).await.expect("last_seq"), 3);
        assert_eq!(engine.last_seq(b).await.expect("last_seq"), 2);
    }

    async fn publish_subscribe_round_trip(engine: &Engine) {
        assert!(engine.bus_healthy());
        let channel = Channel::Conversation(Uuid::new_v4());
        let mut sub = subscribe(engine, &channel).await;
        assert_eq!(sub.channel, channel);
        // Right after subscribe returns: the subscription is already live.
        publish(engine, &channel, b"hello").await;
        assert_eq!(next(&mut sub).await, payload(b"hello"));
        publish(engine, &channel, b"\x00\xffbinary").await;
        publish(engine, &channel, b"").await;
        assert_eq!(next(&mut sub).await, payload(b"\x00\xffbinary"));
        assert_eq!(next(&mut sub).await, payload(b""));
    }

    async fn two_subscribers_both_receive(engine: &Engine) {
        let channel = Channel::Agent(Uuid::new_v4());
        let mut one = subscribe(engine, &channel).await;
        let mut two = subscribe(engine, &channel).await;
        publish(engine, &channel, b"offer").await;
        assert_eq!(next(&mut one).await, payload(b"offer"));
        assert_eq!(next(&mut two).await, payload(b"offer"));
        // One leaving does not unsubscribe the other.
        drop(one);
        publish(engine, &channel, b"still").await;
        assert_eq!(next(&mut two).await, payload(b"still"));
    }

    async fn resubscribe_after_drop(engine: &Engine) {
        let channel = Channel::Session(Uuid::new_v4());
        let mut sub = subscribe(engine, &channel).await;
        publish(engine, &channel, b"first").await;
        assert_eq!(next(&mut sub).await, payload(b"first"));
        drop(sub);
        publish(engine, &channel, b"nobody hears this").await;
        let mut sub = subscribe(engine, &channel).await;
        publish(engine, &channel, b"second").await;
        // On Redis the node may not have unsubscribed yet when the message
        // before came in, and then hands it to the new subscriber: a late
        // hint is harmless, a lost one is not.
        let mut got = next(&mut sub).await;
        if got == payload(b"nobody hears this") {
            got = next(&mut sub).await;
        }
        assert_eq!(got, payload(b"second"));
        // Many rounds in a row: unsubscribing and subscribing stay ordered.
        drop(sub);
        for i in 0..20u8 {
            let mut sub = subscribe(engine, &channel).await;
            engine.publish(&channel, &[i]).await.expect("publish");
            assert_eq!(
                next(&mut sub).await,
                BusMessage::Payload(Bytes::from(vec![i]))
            );
        }
    }

    async fn publish_without_subscriber_is_fine(engine: &Engine) {
        let channel = Channel::Queue(Uuid::new_v4());
        publish(engine, &channel, b"into the void").await;
        // A later subscriber does not get what was published before it.
        let mut sub = subscribe(engine, &channel).await;
        publish(engine, &channel, b"now").await;
        assert_eq!(next(&mut sub).await, payload(b"now"));
    }

    async fn channels_are_independent(engine: &Engine) {
        let id = Uuid::new_v4();
        // Same id, different kinds: different channels.
        let (conv, queue) = (Channel::Conversation(id), Channel::Queue(id));
        let mut sub = subscribe(engine, &conv).await;
        publish(engine, &queue, b"queue").await;
        publish(engine, &conv, b"conv").await;
        // Delivery per channel is in order, so the queue message would have
        // come first had it been delivered here.
        assert_eq!(next(&mut sub).await, payload(b"conv"));
        // A session and a token family with the same id are apart too.
        let (session, family) = (Channel::Session(id), Channel::TokenFamily(id));
        let mut sub = subscribe(engine, &session).await;
        publish(engine, &family, b"family").await;
        publish(engine, &session, b"session").await;
        assert_eq!(next(&mut sub).await, payload(b"session"));
    }

    /// The log's keys live under the prefix, share one hash tag per
    /// conversation, and never spell a dedup id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conversation_keys_redis() {
        let server = RedisServer::start();
        let prefix = support::unique_prefix();
        let engine = redis_engine_on(&server.url(), &prefix).await;
        let log = Uuid::new_v4();
        append(&engine, log, b"a", Some("dedup-id-never-a-key")).await;
        append(&engine, log, b"b", None).await;
        let keys: Vec<String> = raw_keys(&server.url())
            .await
            .into_iter()
            .map(|k| String::from_utf8(k).expect("utf-8 key"))
            .collect();
        assert!(!keys.is_empty());
        let tag = format!("{prefix}{{c:{log}}}:");
        for key in &keys {
            assert!(key.starts_with(&tag), "{key} outside {tag}");
            assert!(!key.contains("dedup-id"), "{key} spells a dedup id");
        }
        assert!(keys.contains(&format!("{tag}log")), "{keys:?}");
    }
}
