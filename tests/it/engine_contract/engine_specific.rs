//! What only one engine has: the embedded engine's file across a reopen,
//! Redis key prefixes.

use super::*;

// ---- embedded only ----------------------------------------------------------

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

// ---- Redis only -------------------------------------------------------------

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
    let _ = holder(&engine, "iss|sub").await;
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

// ---- Redis over TLS -----------------------------------------------------------

/// `rediss://` with a private CA: records and the bus work over TLS; without
/// the CA the server's certificate is refused rather than trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca() {
    let server = support::redis::tls::TlsRedis::start();
    let url = format!("rediss://127.0.0.1:{}", server.tls_port);
    let ca = std::fs::read(server.ca_file()).expect("CA file");
    let target = switchboard::engine::RedisTarget::single(&url)
        .and_then(|t| t.with_ca_pem(ca))
        .expect("TLS target");
    let engine = Engine::Redis(
        RedisEngine::open(&target, &support::unique_prefix())
            .await
            .expect("connect over TLS"),
    );
    let a = dep("a");
    apply_put(&engine, put(&a)).await;
    assert_eq!(version(&engine, &a).await, Some(1));
    let channel = Channel::Conversation(Uuid::new_v4());
    let mut subscription = engine.subscribe(channel.clone()).await.expect("subscribe");
    engine
        .publish(&channel, b"over tls")
        .await
        .expect("publish");
    let message = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
        .await
        .expect("a message within 10 s");
    assert_eq!(
        message,
        Some(BusMessage::Payload(Bytes::from_static(b"over tls")))
    );

    // The same server without its CA: the system's roots do not know it.
    let untrusted = switchboard::engine::RedisTarget::single(&url).expect("target");
    let err = RedisEngine::open(&untrusted, &support::unique_prefix())
        .await
        .expect_err("an unknown CA is refused");
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
}

/// `SWITCHBOARD_REDIS_WAIT_REPLICAS`: an append waits for its replicas, and
/// is refused (to be resent) when fewer acknowledge in time; the resend is
/// recognised, not logged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_for_replicas() {
    let set = support::redis::sentinel::shared();
    let prefix = support::unique_prefix();
    let one = set.target().with_wait_replicas(1, Duration::from_secs(5));
    let engine = Engine::Redis(RedisEngine::open(&one, &prefix).await.expect("open"));
    let log = Uuid::new_v4();
    let first = engine
        .append(log, b"hi", Some("m1"))
        .await
        .expect("one replica");
    assert_eq!((first.seq, first.duplicate), (1, false));

    // More replicas than the set has: refused after the timeout, though
    // the master holds the entry; the resend answers its first sequence.
    let two = set
        .target()
        .with_wait_replicas(2, Duration::from_millis(100));
    let strict = Engine::Redis(RedisEngine::open(&two, &prefix).await.expect("open"));
    let err = strict.append(log, b"again", Some("m2")).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    let resent = engine
        .append(log, b"again", Some("m2"))
        .await
        .expect("resend");
    assert_eq!((resent.seq, resent.duplicate), (2, true));
    assert_eq!(engine.last_seq(log).await.expect("last"), 2);
}
