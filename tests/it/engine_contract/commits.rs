//! Commits: all or nothing, and atomic with their checks when they race.

use super::*;

contract! {
    failing_commit_changes_nothing => failing_commit_changes_nothing_redis, failing_commit_changes_nothing_embedded, failing_commit_changes_nothing_cluster, failing_commit_changes_nothing_sentinel;
    successful_multi_write_commit => successful_multi_write_commit_redis, successful_multi_write_commit_embedded, successful_multi_write_commit_cluster, successful_multi_write_commit_sentinel;
    invalid_commit_refused => invalid_commit_refused_redis, invalid_commit_refused_embedded, invalid_commit_refused_cluster, invalid_commit_refused_sentinel;
    delete_any_of_missing_is_noop => delete_any_of_missing_is_noop_redis, delete_any_of_missing_is_noop_embedded, delete_any_of_missing_is_noop_cluster, delete_any_of_missing_is_noop_sentinel;
    concurrent_creates_one_wins => concurrent_creates_one_wins_redis, concurrent_creates_one_wins_embedded, concurrent_creates_one_wins_cluster, concurrent_creates_one_wins_sentinel;
    concurrent_updates_one_wins => concurrent_updates_one_wins_redis, concurrent_updates_one_wins_embedded, concurrent_updates_one_wins_cluster, concurrent_updates_one_wins_sentinel;
    concurrent_claims_one_holder => concurrent_claims_one_holder_redis, concurrent_claims_one_holder_embedded, concurrent_claims_one_holder_cluster, concurrent_claims_one_holder_sentinel;
    concurrent_delete_vs_reference => concurrent_delete_vs_reference_redis, concurrent_delete_vs_reference_embedded, concurrent_delete_vs_reference_cluster, concurrent_delete_vs_reference_sentinel;
}

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
        RecordKey::new(home(), Kind::Organization, "o"),
        RecordKey::new(home(), Kind::Configuration, "c"),
        RecordKey::new(home(), Kind::ConfigurationVersion, "c-1"),
        RecordKey::new(home(), Kind::ConfigurationVersion, "c-2"),
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

    // Everything one commit touches lives in one home (on a cluster, one
    // slot): another organization's record, list, reference or claim is
    // refused, whatever the engine.
    let elsewhere = Home::Org(named_uuid("elsewhere"));
    let foreign = RecordKey::new(elsewhere, Kind::Deployment, "f");
    let res = engine
        .commit(Commit::new().put(put(&a)).put(put(&foreign)))
        .await;
    assert_invalid(res);
    let res = engine.commit(Commit::new().put(put(&foreign))).await;
    assert_invalid(res);
    let res = engine
        .commit(Commit::new().put(put(&a).refs(&[&foreign])))
        .await;
    assert_invalid(res);
    let mut claimed = put(&a);
    claimed.unique = vec![Claim::member_identity(named_uuid("elsewhere"), "i", "s")];
    assert_invalid(engine.commit(Commit::new().put(claimed)).await);
    let res = engine
        .commit(
            Commit::new()
                .delete(foreign.clone(), Expect::Any)
                .put(put(&a)),
        )
        .await;
    assert_invalid(res);

    assert_eq!(get(engine, &a).await, None);
    assert_eq!(get(engine, &foreign).await, None);
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

// ---- concurrency: the checks are atomic with the writes ---------------------

/// [`RACERS`] tasks write `key` at once, each its own body, all expecting
/// `expect`: exactly one wins and makes version `version`; the others see
/// a Conflict at that version.
async fn one_write_wins(engine: &Engine, key: &RecordKey, expect: Expect, version: u64) {
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let (engine, key) = (engine.clone(), key.clone());
        tasks.spawn(async move {
            let body = format!("{{\"racer\":{i}}}").into_bytes();
            let res = engine
                .commit(Commit::new().put(put(&key).expect(expect).body(&body)))
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
    assert_eq!(winners.len(), 1, "exactly one write wins: {results:?}");
    for (_, res) in results.iter().filter(|(_, res)| res.is_err()) {
        assert!(
            matches!(res, Err(EngineError::Conflict { actual: Some(v), .. }) if *v == version),
            "losers see a Conflict at version {version}: {res:?}"
        );
    }
    let got = get(engine, key).await.expect("written");
    assert_eq!(
        (got.version, Some(&got.body)),
        (version, winners.first().copied())
    );
}

async fn concurrent_creates_one_wins(engine: &Engine) {
    one_write_wins(engine, &dep("race"), Expect::Absent, 1).await;
}

async fn concurrent_updates_one_wins(engine: &Engine) {
    let a = dep("race");
    apply_put(engine, put(&a)).await;
    one_write_wins(engine, &a, Expect::Version(1), 2).await;
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
                    (&super::claim("contested"), winner),
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
