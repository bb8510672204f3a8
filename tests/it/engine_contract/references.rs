//! References between records, and unique claims.

use super::*;

contract! {
    ref_to_missing_refused => ref_to_missing_refused_redis, ref_to_missing_refused_embedded, ref_to_missing_refused_cluster, ref_to_missing_refused_sentinel;
    ref_to_record_put_in_same_commit => ref_to_record_put_in_same_commit_redis, ref_to_record_put_in_same_commit_embedded, ref_to_record_put_in_same_commit_cluster, ref_to_record_put_in_same_commit_sentinel;
    ref_to_record_deleted_in_same_commit => ref_to_record_deleted_in_same_commit_redis, ref_to_record_deleted_in_same_commit_embedded, ref_to_record_deleted_in_same_commit_cluster, ref_to_record_deleted_in_same_commit_sentinel;
    delete_referenced_in_use => delete_referenced_in_use_redis, delete_referenced_in_use_embedded, delete_referenced_in_use_cluster, delete_referenced_in_use_sentinel;
    delete_referrer_and_referenced_together => delete_referrer_and_referenced_together_redis, delete_referrer_and_referenced_together_embedded, delete_referrer_and_referenced_together_cluster, delete_referrer_and_referenced_together_sentinel;
    reput_without_ref_frees => reput_without_ref_frees_redis, reput_without_ref_frees_embedded, reput_without_ref_frees_cluster, reput_without_ref_frees_sentinel;
    reput_keeping_ref_blocks_delete => reput_keeping_ref_blocks_delete_redis, reput_keeping_ref_blocks_delete_embedded, reput_keeping_ref_blocks_delete_cluster, reput_keeping_ref_blocks_delete_sentinel;
    deleting_referrer_frees => deleting_referrer_frees_redis, deleting_referrer_frees_embedded, deleting_referrer_frees_cluster, deleting_referrer_frees_sentinel;
    unique_duplicate_refused => unique_duplicate_refused_redis, unique_duplicate_refused_embedded, unique_duplicate_refused_cluster, unique_duplicate_refused_sentinel;
    unique_released_on_delete => unique_released_on_delete_redis, unique_released_on_delete_embedded, unique_released_on_delete_cluster, unique_released_on_delete_sentinel;
    unique_released_on_reput => unique_released_on_reput_redis, unique_released_on_reput_embedded, unique_released_on_reput_cluster, unique_released_on_reput_sentinel;
    unique_handover_in_one_commit => unique_handover_in_one_commit_redis, unique_handover_in_one_commit_embedded, unique_handover_in_one_commit_cluster, unique_handover_in_one_commit_sentinel;
    unique_same_claim_twice_in_commit => unique_same_claim_twice_in_commit_redis, unique_same_claim_twice_in_commit_embedded, unique_same_claim_twice_in_commit_cluster, unique_same_claim_twice_in_commit_sentinel;
    lookup_finds_holder => lookup_finds_holder_redis, lookup_finds_holder_embedded, lookup_finds_holder_cluster, lookup_finds_holder_sentinel;
}

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

// ---- unique claims ----------------------------------------------------------

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
