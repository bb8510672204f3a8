//! Ephemeral values. Real time: Redis expires keys on its own clock, so the
//! cases sleep past short TTLs, leaving generous slack for the checks that
//! must still see a value live.

use super::*;
use switchboard::engine::Lease;

contract! {
    stash_then_peek => stash_then_peek_redis, stash_then_peek_embedded, stash_then_peek_cluster, stash_then_peek_sentinel;
    stash_if_absent_refuses_live_value => stash_if_absent_refuses_live_value_redis, stash_if_absent_refuses_live_value_embedded, stash_if_absent_refuses_live_value_cluster, stash_if_absent_refuses_live_value_sentinel;
    stash_replace_resets_value_and_expiry => stash_replace_resets_value_and_expiry_redis, stash_replace_resets_value_and_expiry_embedded, stash_replace_resets_value_and_expiry_cluster, stash_replace_resets_value_and_expiry_sentinel;
    take_returns_once => take_returns_once_redis, take_returns_once_embedded, take_returns_once_cluster, take_returns_once_sentinel;
    swap_of_absent_writes_nothing => swap_of_absent_writes_nothing_redis, swap_of_absent_writes_nothing_embedded, swap_of_absent_writes_nothing_cluster, swap_of_absent_writes_nothing_sentinel;
    swap_keeps_expiry => swap_keeps_expiry_redis, swap_keeps_expiry_embedded, swap_keeps_expiry_cluster, swap_keeps_expiry_sentinel;
    concurrent_swaps_one_sees_original => concurrent_swaps_one_sees_original_redis, concurrent_swaps_one_sees_original_embedded, concurrent_swaps_one_sees_original_cluster, concurrent_swaps_one_sees_original_sentinel;
    discard_removes => discard_removes_redis, discard_removes_embedded, discard_removes_cluster, discard_removes_sentinel;
    count_restarts_after_window => count_restarts_after_window_redis, count_restarts_after_window_embedded, count_restarts_after_window_cluster, count_restarts_after_window_sentinel;
    spaces_are_independent => spaces_are_independent_redis, spaces_are_independent_embedded, spaces_are_independent_cluster, spaces_are_independent_sentinel;
    binary_ephemeral_values => binary_ephemeral_values_redis, binary_ephemeral_values_embedded, binary_ephemeral_values_cluster, binary_ephemeral_values_sentinel;
    expired_value_is_invisible => expired_value_is_invisible_redis, expired_value_is_invisible_embedded, expired_value_is_invisible_cluster, expired_value_is_invisible_sentinel;
    a_lease_has_one_holder_who_renews_and_releases => a_lease_has_one_holder_who_renews_and_releases_redis, a_lease_has_one_holder_who_renews_and_releases_embedded, a_lease_has_one_holder_who_renews_and_releases_cluster, a_lease_has_one_holder_who_renews_and_releases_sentinel;
    an_unrenewed_lease_runs_out => an_unrenewed_lease_runs_out_redis, an_unrenewed_lease_runs_out_embedded, an_unrenewed_lease_runs_out_cluster, an_unrenewed_lease_runs_out_sentinel;
    concurrent_leases_one_holder => concurrent_leases_one_holder_redis, concurrent_leases_one_holder_embedded, concurrent_leases_one_holder_cluster, concurrent_leases_one_holder_sentinel;
    a_remembered_list_keeps_each_id_once_the_newest_and_expires => a_remembered_list_keeps_each_id_once_the_newest_and_expires_redis, a_remembered_list_keeps_each_id_once_the_newest_and_expires_embedded, a_remembered_list_keeps_each_id_once_the_newest_and_expires_cluster, a_remembered_list_keeps_each_id_once_the_newest_and_expires_sentinel;
    concurrent_remembers_all_land => concurrent_remembers_all_land_redis, concurrent_remembers_all_land_embedded, concurrent_remembers_all_land_cluster, concurrent_remembers_all_land_sentinel;
    buckets_taken_together_take_from_all_or_none => buckets_taken_together_take_from_all_or_none_redis, buckets_taken_together_take_from_all_or_none_embedded, buckets_taken_together_take_from_all_or_none_cluster, buckets_taken_together_take_from_all_or_none_sentinel;
}

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

async fn lease(engine: &Engine, holder: &str, ttl: Duration) -> Lease {
    engine
        .lease(Space::AssignLease, "queue", holder.as_bytes(), ttl)
        .await
        .expect("lease")
}

async fn release(engine: &Engine, holder: &str) -> bool {
    engine
        .release(Space::AssignLease, "queue", holder.as_bytes())
        .await
        .expect("release")
}

async fn a_lease_has_one_holder_who_renews_and_releases(engine: &Engine) {
    assert_eq!(lease(engine, "node-a", LONG).await, Lease::Held);
    let Lease::Busy { remaining } = lease(engine, "node-b", ms(10)).await else {
        panic!("a second holder while the first one's lease runs");
    };
    assert!(
        remaining > LONG - Duration::from_secs(5) && remaining <= LONG,
        "{remaining:?}"
    );
    // The holder renews, here to a short time.
    assert_eq!(lease(engine, "node-a", ms(200)).await, Lease::Held);
    let Lease::Busy { remaining } = lease(engine, "node-b", LONG).await else {
        panic!("renewing keeps the lease");
    };
    assert!(remaining <= ms(200), "{remaining:?}");
    // Only the holder lets go of it.
    assert!(!release(engine, "node-b").await);
    assert!(matches!(
        lease(engine, "node-b", LONG).await,
        Lease::Busy { .. }
    ));
    assert!(release(engine, "node-a").await);
    assert!(!release(engine, "node-a").await, "released once");
    assert_eq!(lease(engine, "node-b", LONG).await, Lease::Held);
    // The lease lives beside other values of its space, not on them.
    assert_eq!(
        peek(engine, Space::AssignLease, "queue").await.as_deref(),
        Some(&b"node-b"[..])
    );
    assert_eq!(peek(engine, Space::AssignLease, "other").await, None);
}

async fn an_unrenewed_lease_runs_out(engine: &Engine) {
    assert_eq!(lease(engine, "dead-node", ms(100)).await, Lease::Held);
    sleep_ms(200).await;
    assert_eq!(
        lease(engine, "live-node", LONG).await,
        Lease::Held,
        "taken over once it ran out"
    );
    // The old holder comes back too late: it is someone else's now.
    assert!(matches!(
        lease(engine, "dead-node", LONG).await,
        Lease::Busy { .. }
    ));
    assert!(!release(engine, "dead-node").await);
}

async fn concurrent_leases_one_holder(engine: &Engine) {
    let holders: Vec<String> = (0..RACERS).map(|i| format!("node-{i}")).collect();
    let asks = holders
        .iter()
        .map(|h| engine.lease(Space::AssignLease, "queue", h.as_bytes(), LONG));
    let results: Vec<Lease> = join_all(asks)
        .await
        .into_iter()
        .map(|r| r.expect("lease"))
        .collect();
    let held = results.iter().filter(|r| **r == Lease::Held).count();
    assert_eq!(held, 1, "exactly one holder: {results:?}");
}

async fn a_remembered_list_keeps_each_id_once_the_newest_and_expires(engine: &Engine) {
    let s = Space::VisitorSessions;
    assert!(engine.recall(s, "v").await.unwrap().is_empty());
    for id in ["a", "b", "c", "a"] {
        engine.remember(s, "v", id, LONG, 3).await.unwrap();
    }
    // Once each; a repeated id moves to the end.
    assert_eq!(engine.recall(s, "v").await.unwrap(), ["b", "c", "a"]);
    // Past the cap, the oldest go.
    engine.remember(s, "v", "d", LONG, 3).await.unwrap();
    assert_eq!(engine.recall(s, "v").await.unwrap(), ["c", "a", "d"]);
    // Another list is another list.
    assert!(engine.recall(s, "w").await.unwrap().is_empty());
    // Each addition sets the expiry afresh.
    engine.remember(s, "short", "x", ms(50), 3).await.unwrap();
    sleep_ms(120).await;
    assert!(engine.recall(s, "short").await.unwrap().is_empty());
    engine.remember(s, "short", "y", LONG, 3).await.unwrap();
    assert_eq!(engine.recall(s, "short").await.unwrap(), ["y"]);
    engine.discard(s, "v").await.unwrap();
    assert!(engine.recall(s, "v").await.unwrap().is_empty());
}

async fn concurrent_remembers_all_land(engine: &Engine) {
    let s = Space::VisitorFamilies;
    let ids: Vec<String> = (0..RACERS).map(|i| format!("family-{i}")).collect();
    let adds = ids.iter().map(|id| engine.remember(s, "v", id, LONG, 1000));
    for added in join_all(adds).await {
        added.unwrap();
    }
    let mut listed = engine.recall(s, "v").await.unwrap();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

/// A sender's bucket and its organization's, taken in one step: an event
/// comes out of both or neither, and a refusal waits for the slower one.
async fn buckets_taken_together_take_from_all_or_none(engine: &Engine) {
    use switchboard::engine::{Admission, Bucket, Home, Meter};
    let hour = 3_600_000_000;
    let small = Bucket {
        interval_micros: hour,
        burst: 2,
    };
    let large = Bucket {
        interval_micros: hour,
        burst: 5,
    };
    let home = Home::Org(Uuid::new_v4());
    let together = |a: &'static str, b: &'static str| {
        [
            Meter {
                id: a,
                bucket: small,
            },
            Meter {
                id: b,
                bucket: large,
            },
        ]
    };
    let both = together("agent", "org");
    for _ in 0..2 {
        let admitted = engine.throttle_all(Space::RateLimit, home, &both).await;
        assert_eq!(admitted.unwrap(), None);
    }
    // The small bucket is empty: refused by it, and the large one keeps its
    // three.
    for _ in 0..3 {
        let refused = engine.throttle_all(Space::RateLimit, home, &both).await;
        let Ok(Some((0, Admission::Refused { retry_after }))) = refused else {
            panic!("not refused by the empty bucket: {refused:?}");
        };
        assert!(retry_after > Duration::from_secs(3000), "{retry_after:?}");
    }
    let org_alone = [Meter {
        id: "org",
        bucket: large,
    }];
    for _ in 0..3 {
        let admitted = engine
            .throttle_all(Space::RateLimit, home, &org_alone)
            .await;
        assert_eq!(
            admitted.unwrap(),
            None,
            "a refusal took from the large bucket"
        );
    }
    let refused = engine
        .throttle_all(Space::RateLimit, home, &org_alone)
        .await;
    assert!(matches!(refused, Ok(Some((0, Admission::Refused { .. })))));

    // Another sender of the same organization is refused by the shared
    // bucket (the second); another organization's buckets are apart.
    let other_agent = together("agent-2", "org");
    let refused = engine
        .throttle_all(Space::RateLimit, home, &other_agent)
        .await;
    assert!(
        matches!(refused, Ok(Some((1, Admission::Refused { .. })))),
        "{refused:?}"
    );
    let elsewhere = Home::Org(Uuid::new_v4());
    let admitted = engine
        .throttle_all(Space::RateLimit, elsewhere, &both)
        .await;
    assert_eq!(admitted.unwrap(), None);
}
