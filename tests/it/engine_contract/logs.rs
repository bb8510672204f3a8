//! Conversation logs: gapless sequences from one, reads after a sequence,
//! dedup ids, concurrent appends, and the logs' keys on Redis.

use super::*;

contract! {
    appends_number_from_one => appends_number_from_one_redis, appends_number_from_one_embedded, appends_number_from_one_cluster, appends_number_from_one_sentinel;
    read_log_after_and_limit => read_log_after_and_limit_redis, read_log_after_and_limit_embedded, read_log_after_and_limit_cluster, read_log_after_and_limit_sentinel;
    read_log_before_reads_backwards => read_log_before_reads_backwards_redis, read_log_before_reads_backwards_embedded, read_log_before_reads_backwards_cluster, read_log_before_reads_backwards_sentinel;
    unknown_log_is_empty => unknown_log_is_empty_redis, unknown_log_is_empty_embedded, unknown_log_is_empty_cluster, unknown_log_is_empty_sentinel;
    dedup_returns_first_seq => dedup_returns_first_seq_redis, dedup_returns_first_seq_embedded, dedup_returns_first_seq_cluster, dedup_returns_first_seq_sentinel;
    concurrent_appends_are_gapless => concurrent_appends_are_gapless_redis, concurrent_appends_are_gapless_embedded, concurrent_appends_are_gapless_cluster, concurrent_appends_are_gapless_sentinel;
    concurrent_duplicates_append_once => concurrent_duplicates_append_once_redis, concurrent_duplicates_append_once_embedded, concurrent_duplicates_append_once_cluster, concurrent_duplicates_append_once_sentinel;
    logs_are_independent => logs_are_independent_redis, logs_are_independent_embedded, logs_are_independent_cluster, logs_are_independent_sentinel;
    delete_log_removes_everything_of_one_log => delete_log_removes_everything_of_one_log_redis, delete_log_removes_everything_of_one_log_embedded, delete_log_removes_everything_of_one_log_cluster, delete_log_removes_everything_of_one_log_sentinel;
}

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

async fn read_log_before_reads_backwards(engine: &Engine) {
    let log = Uuid::new_v4();
    let neighbour = Uuid::new_v4();
    append(engine, neighbour, b"other", None).await;
    for i in 1..=10u64 {
        append(engine, log, format!("e{i}").as_bytes(), None).await;
    }
    let before = |before: u64, limit: usize| async move {
        engine
            .read_log_before(log, before, limit)
            .await
            .expect("read_log_before")
    };
    let newest = before(u64::MAX, 3).await;
    assert_eq!(seqs(&newest), vec![10, 9, 8]);
    assert_eq!(newest[0], entry(10, b"e10"));
    assert_eq!(seqs(&before(8, 2).await), vec![7, 6]);
    assert_eq!(seqs(&before(3, 10).await), vec![2, 1]);
    assert_eq!(seqs(&before(11, 1).await), vec![10]);
    assert_eq!(seqs(&before(500, 1).await), vec![10]);
    assert!(before(1, 5).await.is_empty());
    assert!(before(0, 5).await.is_empty());
    assert!(before(5, 0).await.is_empty());
    assert_eq!(before(u64::MAX, usize::MAX).await.len(), 10);
    assert!(
        engine
            .read_log_before(Uuid::new_v4(), u64::MAX, 5)
            .await
            .expect("read_log_before")
            .is_empty()
    );
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

/// Retention and erasure delete a log whole: entries, dedup ids and the
/// sequence, so a later append starts afresh; a neighbour keeps its own.
async fn delete_log_removes_everything_of_one_log(engine: &Engine) {
    let log = Uuid::from_u128(Uuid::new_v4().as_u128() | 1);
    let next = Uuid::from_u128(log.as_u128() + 1);
    for i in 0..3 {
        append(engine, log, b"x", Some(&format!("m{i}"))).await;
    }
    append(engine, next, b"kept", Some("m0")).await;
    assert_eq!(engine.delete_log(log).await.expect("delete_log"), 3);
    assert!(read(engine, log, 0, 10).await.is_empty());
    assert_eq!(engine.last_seq(log).await.expect("last_seq"), 0);
    // The dedup ids went too: a resend is a new first message.
    assert_eq!(append(engine, log, b"again", Some("m1")).await, (1, false));
    assert_eq!(read(engine, next, 0, 10).await, vec![entry(1, b"kept")]);
    assert_eq!(append(engine, next, b"dup", Some("m0")).await, (1, true));
    // Deleting what is gone is harmless.
    let unknown = Uuid::new_v4();
    assert_eq!(engine.delete_log(unknown).await.expect("delete_log"), 0);
    assert_eq!(engine.delete_log(log).await.expect("delete_log"), 1);
    assert_eq!(engine.delete_log(log).await.expect("delete_log"), 0);
}
