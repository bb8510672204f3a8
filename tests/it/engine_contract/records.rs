//! Records and versions, and the collections they are listed in.

use super::*;

contract! {
    ping_answers => ping_answers_redis, ping_answers_embedded, ping_answers_cluster, ping_answers_sentinel;
    create_then_get => create_then_get_redis, create_then_get_embedded, create_then_get_cluster, create_then_get_sentinel;
    binary_and_large_bodies => binary_and_large_bodies_redis, binary_and_large_bodies_embedded, binary_and_large_bodies_cluster, binary_and_large_bodies_sentinel;
    update_with_right_version => update_with_right_version_redis, update_with_right_version_embedded, update_with_right_version_cluster, update_with_right_version_sentinel;
    stale_version_conflicts => stale_version_conflicts_redis, stale_version_conflicts_embedded, stale_version_conflicts_cluster, stale_version_conflicts_sentinel;
    create_twice_conflicts => create_twice_conflicts_redis, create_twice_conflicts_embedded, create_twice_conflicts_cluster, create_twice_conflicts_sentinel;
    update_of_missing_conflicts => update_of_missing_conflicts_redis, update_of_missing_conflicts_embedded, update_of_missing_conflicts_cluster, update_of_missing_conflicts_sentinel;
    delete_checks_version => delete_checks_version_redis, delete_checks_version_embedded, delete_checks_version_cluster, delete_checks_version_sentinel;
    put_expect_any => put_expect_any_redis, put_expect_any_embedded, put_expect_any_cluster, put_expect_any_sentinel;
    get_many_mixed => get_many_mixed_redis, get_many_mixed_embedded, get_many_mixed_cluster, get_many_mixed_sentinel;
    list_orders_by_order_then_key => list_orders_by_order_then_key_redis, list_orders_by_order_then_key_embedded, list_orders_by_order_then_key_cluster, list_orders_by_order_then_key_sentinel;
    list_order_extremes => list_order_extremes_redis, list_order_extremes_embedded, list_order_extremes_cluster, list_order_extremes_sentinel;
    list_paging => list_paging_redis, list_paging_embedded, list_paging_cluster, list_paging_sentinel;
    list_limit_zero => list_limit_zero_redis, list_limit_zero_embedded, list_limit_zero_cluster, list_limit_zero_sentinel;
    list_move_to_other_collection => list_move_to_other_collection_redis, list_move_to_other_collection_embedded, list_move_to_other_collection_cluster, list_move_to_other_collection_sentinel;
    list_delete_removes => list_delete_removes_redis, list_delete_removes_embedded, list_delete_removes_cluster, list_delete_removes_sentinel;
}

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

// ---- collections ------------------------------------------------------------

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
