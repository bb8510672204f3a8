//! Records on Redis.
//!
//! Reads are plain commands (pipelined, one round trip where the keys are
//! known up front). Every commit is one Lua script ([`scripts::COMMIT`]),
//! because Redis runs a script atomically: it validates the whole commit
//! against the current state and only then applies it, so a refused commit
//! changes nothing and no other node ever sees half of one.

use std::collections::HashMap;

use serde::Serialize;

use super::keys::{self, field};
use super::{RedisEngine, scripts, unavailable};
use crate::engine::{
    Claim, Collection, Commit, EngineError, EngineResult, Expect, Home, Page, RecordKey,
    StoredRecord, Write, commit_home,
};

/// A collection entry: the order as 16 hex digits of its sign-flipped bits,
/// then the key. Every entry has score 0, so Redis sorts them byte by byte:
/// exactly by (order, key) over the whole i64 range, which a double score
/// cannot hold beyond 2^53. The record keeps this string in its order field
/// so that the entry can be removed.
fn collection_member(order: i64, key: &str) -> String {
    format!("{:016x}:{key}", order.cast_unsigned() ^ (1 << 63))
}

impl RedisEngine {
    pub async fn get(&self, key: &RecordKey) -> EngineResult<Option<StoredRecord>> {
        let mut found = self.get_many(std::slice::from_ref(key)).await?;
        Ok(found.pop().flatten())
    }

    /// Each home's records are read in one consistent snapshot; records of
    /// several homes (the organizations a listing names) in one snapshot
    /// per home, since a cluster keeps homes in different slots and
    /// refuses a transaction across them.
    pub async fn get_many(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
        let Some(first) = keys.first() else {
            return Ok(Vec::new());
        };
        if keys.iter().all(|key| key.home == first.home) {
            return self.get_in_home(keys).await;
        }
        let mut homes: Vec<Home> = keys.iter().map(|key| key.home).collect();
        homes.sort_unstable();
        homes.dedup();
        let reads = homes.iter().map(|home| {
            let of_home: Vec<RecordKey> =
                keys.iter().filter(|k| k.home == *home).cloned().collect();
            async move { self.get_in_home(&of_home).await }
        });
        let mut found: HashMap<RecordKey, StoredRecord> = HashMap::new();
        for records in futures::future::try_join_all(reads).await? {
            found.extend(records.into_iter().flatten().map(|r| (r.key.clone(), r)));
        }
        Ok(keys.iter().map(|key| found.remove(key)).collect())
    }

    /// Reads records of one home in one transaction.
    async fn get_in_home(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        // MULTI/EXEC: the answer is one consistent snapshot.
        pipe.atomic();
        for key in keys {
            pipe.cmd("HMGET")
                .arg(keys::record(&self.prefix, key))
                .arg(field::VERSION)
                .arg(field::BODY);
        }
        let mut conn = self.conn.clone();
        let rows: Vec<(Option<u64>, Option<Vec<u8>>)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        if rows.len() != keys.len() {
            return Err(EngineError::Unavailable(format!(
                "Redis answered {} rows for {} keys",
                rows.len(),
                keys.len()
            )));
        }
        Ok(keys
            .iter()
            .zip(rows)
            .map(|(key, (version, body))| {
                version.map(|version| StoredRecord {
                    key: key.clone(),
                    version,
                    body: body.unwrap_or_default(),
                })
            })
            .collect())
    }

    pub async fn lookup(&self, claim: &Claim) -> EngineResult<Option<StoredRecord>> {
        let mut conn = self.conn.clone();
        let holder: Option<String> = redis::cmd("GET")
            .arg(keys::claim(&self.prefix, claim))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match holder {
            // The holder may be deleted between the two reads: then no one
            // holds the claim any more, which `get` answers with `None`.
            Some(holder) => self.get(&decode_key(claim.home(), &holder)?).await,
            None => Ok(None),
        }
    }

    pub async fn referrers(&self, key: &RecordKey) -> EngineResult<Vec<RecordKey>> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::back_refs(&self.prefix, key))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        decode_sorted(key.home, members)
    }

    pub async fn list(
        &self,
        collection: &Collection,
        offset: u64,
        limit: u64,
    ) -> EngineResult<Page> {
        let name = keys::collection(&self.prefix, collection);
        let mut conn = self.conn.clone();
        if limit == 0 {
            let total: u64 = redis::cmd("ZCARD")
                .arg(&name)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return Ok(Page {
                total,
                records: Vec::new(),
            });
        }
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let stop =
            i64::try_from(offset.saturating_add(limit.saturating_sub(1))).unwrap_or(i64::MAX);
        let (total, members): (u64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("ZCARD")
            .arg(&name)
            .cmd("ZRANGE")
            .arg(&name)
            .arg(start)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let keys = members
            .iter()
            .map(|m| {
                decode_key(
                    collection.home(),
                    m.split_once(':').map_or("", |(_, key)| key),
                )
            })
            .collect::<EngineResult<Vec<_>>>()?;
        // A record deleted between the two round trips is left out rather
        // than returned as a hole.
        let records = self.get_many(&keys).await?.into_iter().flatten().collect();
        Ok(Page { total, records })
    }

    /// `SET` with `PX`, and `NX` for [`StashMode::IfAbsent`]: Redis decides
    /// atomically whether a live value exists (expired keys count as absent).
    pub async fn commit(&self, commit: Commit) -> EngineResult<()> {
        // `Engine::commit` checked that one home holds everything.
        let Some(home) = commit_home(&commit)? else {
            return Ok(());
        };
        let wire: Vec<WireWrite> = commit.writes.iter().map(WireWrite::from).collect();
        let json = serde_json::to_string(&wire)
            .map_err(|e| EngineError::InvalidCommit(format!("cannot encode the commit: {e}")))?;
        let mut invocation = scripts::COMMIT.prepare_invoke();
        // The record keys are declared so a cluster-aware client or proxy
        // routes the script to their slot; the script spells the keys it
        // touches itself, all under the home's hash tag.
        for write in &commit.writes {
            invocation.key(keys::record(&self.prefix, write_target(write).0));
        }
        invocation.arg(keys::home(&self.prefix, home)).arg(json);
        for write in &commit.writes {
            match write {
                Write::Put(put) => invocation.arg(put.body.as_slice()),
                Write::Delete { .. } => invocation.arg(&b""[..]),
            };
        }
        let mut conn = self.conn.clone();
        let reply: Vec<String> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        refusal(&commit, home, reply)
    }
}

/// One write as the commit script reads it.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum WireWrite {
    Put {
        k: String,
        e: String,
        c: String,
        o: String,
        refs: Vec<String>,
        uniq: Vec<String>,
    },
    Del {
        k: String,
        e: String,
    },
}

impl From<&Write> for WireWrite {
    fn from(write: &Write) -> Self {
        match write {
            Write::Put(put) => WireWrite::Put {
                k: put.key.encode(),
                e: wire_expect(put.expect),
                c: put.collection.name(),
                o: collection_member(put.order, &put.key.encode()),
                refs: put.refs.iter().map(RecordKey::encode).collect(),
                uniq: put.unique.iter().map(Claim::name).collect(),
            },
            Write::Delete { key, expect } => WireWrite::Del {
                k: key.encode(),
                e: wire_expect(*expect),
            },
        }
    }
}

fn wire_expect(expect: Expect) -> String {
    match expect {
        Expect::Absent => "absent".to_owned(),
        Expect::Any => "any".to_owned(),
        Expect::Version(v) => v.to_string(),
    }
}

fn write_target(write: &Write) -> (&RecordKey, Expect) {
    match write {
        Write::Put(put) => (&put.key, put.expect),
        Write::Delete { key, expect } => (key, *expect),
    }
}

/// Turns the commit script's reply into the result of the commit.
fn refusal(commit: &Commit, home: Home, reply: Vec<String>) -> EngineResult<()> {
    let mut reply = reply.into_iter();
    let tag = reply.next();
    let mut next = || {
        reply.next().ok_or_else(|| {
            EngineError::Unavailable("truncated reply from the commit script".into())
        })
    };
    match tag.as_deref() {
        Some("ok") => Ok(()),
        Some("conflict") => {
            let key = decode_key(home, &next()?)?;
            let actual = next()?;
            let actual = if actual.is_empty() {
                None
            } else {
                Some(actual.parse::<u64>().map_err(|_| {
                    EngineError::Unavailable(format!("{key} has a corrupt version {actual:?}"))
                })?)
            };
            let expected = commit
                .writes
                .iter()
                .map(write_target)
                .find(|(k, _)| **k == key)
                .map_or(Expect::Any, |(_, expect)| expect);
            Err(EngineError::Conflict {
                key,
                expected,
                actual,
            })
        }
        Some("missing_ref") => Err(EngineError::MissingRef(decode_key(home, &next()?)?)),
        Some("in_use") => {
            let key = decode_key(home, &next()?)?;
            let by = decode_sorted(home, reply.collect())?;
            Err(EngineError::InUse { key, by })
        }
        Some("duplicate") => {
            let name = next()?;
            // The script answers the claim's name; the commit holds the claim.
            let claim = commit
                .writes
                .iter()
                .filter_map(|write| match write {
                    Write::Put(put) => Some(&put.unique),
                    Write::Delete { .. } => None,
                })
                .flatten()
                .find(|claim| claim.name() == name)
                .copied()
                .ok_or_else(|| {
                    EngineError::Unavailable(format!(
                        "the commit script refused a claim {name:?} the commit does not hold"
                    ))
                })?;
            let holder = decode_key(home, &next()?)?;
            Err(EngineError::Duplicate { claim, holder })
        }
        _ => Err(EngineError::Unavailable(
            "unexpected reply from the commit script".into(),
        )),
    }
}

fn decode_key(home: Home, encoded: &str) -> EngineResult<RecordKey> {
    RecordKey::decode(home, encoded)
        .ok_or_else(|| EngineError::Unavailable(format!("corrupt record key {encoded:?} in Redis")))
}

fn decode_sorted(home: Home, encoded: Vec<String>) -> EngineResult<Vec<RecordKey>> {
    let mut keys = encoded
        .iter()
        .map(|e| decode_key(home, e))
        .collect::<EngineResult<Vec<_>>>()?;
    keys.sort();
    Ok(keys)
}
