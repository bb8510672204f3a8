//! Records on the embedded engine.
//!
//! Every [`Commit`] runs in the writer's transaction (see `writer`): it
//! validates against the state before any write and writes nothing when a
//! check fails, and otherwise applies every write, so it is atomic by
//! construction, and durable once its batch commits.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use redb::{ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use super::tables::{BACKREFS, CLAIMS, COLLECTIONS, HELD, Pair, RECORDS, REFS, RecordValue};
use super::writer::{Job, settle, stopped};
use super::{Access, EmbeddedEngine, db_err};
use crate::engine::{
    Claim, Collection, Commit, EngineError, EngineResult, Expect, Home, Page, RecordKey,
    StoredRecord, Write,
};

/// A stored key that does not decode means the file was written by something
/// else; refuse rather than guess.
fn decode(home: Home, encoded: &str) -> EngineResult<RecordKey> {
    RecordKey::decode(home, encoded)
        .ok_or_else(|| EngineError::Unavailable(format!("corrupt stored key {encoded:?}")))
}

/// The owned form of a `records` value.
struct Envelope {
    version: u64,
    body: Vec<u8>,
    collection: String,
    order: i64,
}

fn read_record<T>(table: &T, key: &str) -> EngineResult<Option<Envelope>>
where
    T: ReadableTable<&'static str, RecordValue>,
{
    let Some(guard) = table.get(key).map_err(db_err)? else {
        return Ok(None);
    };
    let (version, body, collection, order) = guard.value();
    Ok(Some(Envelope {
        version,
        body: body.to_vec(),
        collection: collection.to_owned(),
        order,
    }))
}

fn read_stored<T>(table: &T, key: &RecordKey) -> EngineResult<Option<StoredRecord>>
where
    T: ReadableTable<&'static str, RecordValue>,
{
    Ok(read_record(table, &key.encode())?.map(|env| StoredRecord {
        key: key.clone(),
        version: env.version,
        body: env.body,
    }))
}

/// The second halves of all pairs whose first half is `first`, in order.
fn pairs_from<T>(table: &T, first: &str) -> EngineResult<Vec<String>>
where
    T: ReadableTable<Pair, ()>,
{
    let mut out = Vec::new();
    for entry in table.range((first, "")..).map_err(db_err)? {
        let (key, _) = entry.map_err(db_err)?;
        let (a, b) = key.value();
        if a != first {
            break;
        }
        out.push(b.to_owned());
    }
    Ok(out)
}

/// Keeps the first occurrence of each item: a `Put` listing a ref or claim
/// twice means the same as listing it once.
fn dedup<T: Eq + Hash>(items: &[T]) -> Vec<&T> {
    let mut seen = HashSet::new();
    items.iter().filter(|item| seen.insert(*item)).collect()
}

impl EmbeddedEngine {
    pub async fn get(&self, key: &RecordKey) -> EngineResult<Option<StoredRecord>> {
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            read_stored(&records, key)
        })
    }

    pub async fn get_many(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            keys.iter().map(|key| read_stored(&records, key)).collect()
        })
    }

    pub async fn lookup(&self, claim: &Claim) -> EngineResult<Option<StoredRecord>> {
        let home = claim.home();
        let claim = claim.name();
        self.read_now(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let claims = txn.open_table(CLAIMS).map_err(db_err)?;
            let holder = match claims.get(claim.as_str()).map_err(db_err)? {
                Some(guard) => decode(home, guard.value())?,
                None => return Ok(None),
            };
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            read_stored(&records, &holder)
        })
    }

    pub async fn referrers(&self, key: &RecordKey) -> EngineResult<Vec<RecordKey>> {
        let home = key.home;
        let encoded = key.encode();
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let backrefs = txn.open_table(BACKREFS).map_err(db_err)?;
            let mut keys = pairs_from(&backrefs, &encoded)?
                .iter()
                .map(|k| decode(home, k))
                .collect::<EngineResult<Vec<_>>>()?;
            keys.sort();
            Ok(keys)
        })
        .await
    }

    pub async fn list(
        &self,
        collection: &Collection,
        offset: u64,
        limit: u64,
    ) -> EngineResult<Page> {
        let home = collection.home();
        let collection = collection.name();
        self.blocking(Access::Read, move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let entries = txn.open_table(COLLECTIONS).map_err(db_err)?;
            let records = txn.open_table(RECORDS).map_err(db_err)?;
            let end = offset.saturating_add(limit);
            let mut total: u64 = 0;
            let mut page = Vec::new();
            // Admin collections are small: counting by walking the range is
            // cheaper to keep right than a separate counter.
            let start = (collection.as_str(), i64::MIN, "");
            for entry in entries.range(start..).map_err(db_err)? {
                let (guard, _) = entry.map_err(db_err)?;
                let (col, _, encoded) = guard.value();
                if col != collection {
                    break;
                }
                if total >= offset && total < end {
                    let key = decode(home, encoded)?;
                    let record = read_stored(&records, &key)?.ok_or_else(|| {
                        EngineError::Unavailable(format!(
                            "collection {collection:?} lists missing record {key}"
                        ))
                    })?;
                    page.push(record);
                }
                total = total.saturating_add(1);
            }
            Ok(Page {
                total,
                records: page,
            })
        })
        .await
    }

    /// Answered once the commit is durable: it goes to the writer, which
    /// commits it with whatever else is waiting (see `writer`).
    pub async fn commit(&self, commit: Commit) -> EngineResult<()> {
        let (done, answer) = oneshot::channel();
        self.writer.send(Job::Commit(PendingCommit {
            commit,
            done,
            outcome: None,
        }))?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One record commit waiting for the writer.
pub(super) struct PendingCommit {
    commit: Commit,
    done: oneshot::Sender<EngineResult<()>>,
    /// Its checks' verdict, once run: answered when the batch commits.
    outcome: Option<EngineResult<()>>,
}

impl PendingCommit {
    /// Checks the commit against the batch's state so far and applies it
    /// unless refused; answers whether it wrote. A storage failure is the
    /// whole batch's.
    pub(super) fn run(&mut self, tables: &mut Tables<'_>) -> EngineResult<bool> {
        let outcome = match check(tables, &self.commit) {
            Ok(()) => {
                apply(tables, &self.commit)?;
                Ok(())
            }
            Err(refused) if refused.is_refusal() => Err(refused),
            Err(failed) => return Err(failed),
        };
        let wrote = outcome.is_ok();
        self.outcome = Some(outcome);
        Ok(wrote)
    }

    /// `failed`: the batch did not commit, for this reason.
    pub(super) fn answer(self, failed: Option<&EngineError>) {
        // The caller may have gone; the commit stands anyway.
        let _ = self.done.send(settle(failed, self.outcome));
    }
}

/// The tables a record commit reads and writes, opened once per batch.
pub(super) struct Tables<'txn> {
    records: redb::Table<'txn, &'static str, RecordValue>,
    refs: redb::Table<'txn, Pair, ()>,
    backrefs: redb::Table<'txn, Pair, ()>,
    claims: redb::Table<'txn, &'static str, &'static str>,
    held: redb::Table<'txn, Pair, ()>,
    collections: redb::Table<'txn, (&'static str, i64, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> EngineResult<Self> {
        Ok(Self {
            records: txn.open_table(RECORDS).map_err(db_err)?,
            refs: txn.open_table(REFS).map_err(db_err)?,
            backrefs: txn.open_table(BACKREFS).map_err(db_err)?,
            claims: txn.open_table(CLAIMS).map_err(db_err)?,
            held: txn.open_table(HELD).map_err(db_err)?,
            collections: txn.open_table(COLLECTIONS).map_err(db_err)?,
        })
    }
}

/// Whether `commit` may apply to the records as they are: every version
/// expected, every reference there, nothing deleted still referenced,
/// every unique claim free. Writes nothing.
fn check(tables: &Tables<'_>, commit: &Commit) -> EngineResult<()> {
    let Tables {
        records,
        backrefs,
        claims,
        ..
    } = tables;

    // What the commit does, by encoded key, for the checks below.
    let mut deleted: HashSet<String> = HashSet::new();
    let mut put_refs: HashMap<String, HashSet<String>> = HashMap::new();
    let mut put_claims: HashMap<String, HashSet<String>> = HashMap::new();
    for write in &commit.writes {
        match write {
            Write::Put(put) => {
                let encoded = put.key.encode();
                put_refs.insert(
                    encoded.clone(),
                    put.refs.iter().map(RecordKey::encode).collect(),
                );
                put_claims.insert(encoded, put.unique.iter().map(Claim::name).collect());
            }
            Write::Delete { key, .. } => {
                deleted.insert(key.encode());
            }
        }
    }

    // 1. Expectations.
    for write in &commit.writes {
        let (key, expect) = match write {
            Write::Put(put) => (&put.key, put.expect),
            Write::Delete { key, expect } => (key, *expect),
        };
        let actual = read_record(records, &key.encode())?.map(|env| env.version);
        let ok = match expect {
            Expect::Absent => actual.is_none(),
            Expect::Version(v) => actual == Some(v),
            Expect::Any => true,
        };
        if !ok {
            return Err(EngineError::Conflict {
                key: key.clone(),
                expected: expect,
                actual,
            });
        }
    }

    // 2. Every reference exists once the commit applies.
    for write in &commit.writes {
        let Write::Put(put) = write else { continue };
        for target in &put.refs {
            let encoded = target.encode();
            let exists = put_refs.contains_key(&encoded)
                || (!deleted.contains(&encoded) && read_record(records, &encoded)?.is_some());
            if !exists {
                return Err(EngineError::MissingRef(target.clone()));
            }
        }
    }

    // 3. Nothing deleted stays referenced.
    for write in &commit.writes {
        let Write::Delete { key, .. } = write else {
            continue;
        };
        let encoded = key.encode();
        let mut remaining = pairs_from(backrefs, &encoded)?
            .into_iter()
            .filter(|referrer| {
                !deleted.contains(referrer)
                    && put_refs
                        .get(referrer)
                        .is_none_or(|new_refs| new_refs.contains(&encoded))
            })
            .map(|referrer| decode(key.home, &referrer))
            .collect::<EngineResult<Vec<_>>>()?;
        if !remaining.is_empty() {
            remaining.sort();
            return Err(EngineError::InUse {
                key: key.clone(),
                by: remaining,
            });
        }
    }

    // 4. Unique claims: free, already ours, or released by this commit; and
    // never claimed twice within it.
    let mut claimed: HashMap<String, &RecordKey> = HashMap::new();
    for write in &commit.writes {
        let Write::Put(put) = write else { continue };
        let encoded = put.key.encode();
        for claim in dedup(&put.unique) {
            let name = claim.name();
            if let Some(holder) = claimed.get(&name) {
                return Err(EngineError::Duplicate {
                    claim: *claim,
                    holder: (*holder).clone(),
                });
            }
            let holder = claims
                .get(name.as_str())
                .map_err(db_err)?
                .map(|guard| guard.value().to_owned());
            if let Some(holder) = holder {
                let released = holder == encoded
                    || deleted.contains(&holder)
                    || put_claims
                        .get(&holder)
                        .is_some_and(|kept| !kept.contains(&name));
                if !released {
                    return Err(EngineError::Duplicate {
                        claim: *claim,
                        holder: decode(claim.home(), &holder)?,
                    });
                }
            }
            claimed.insert(name, &put.key);
        }
    }

    Ok(())
}

/// Applies a checked commit, in order. A claim is released only if the
/// record still holds it: an earlier write of this commit may have handed
/// it on already.
fn apply(tables: &mut Tables<'_>, commit: &Commit) -> EngineResult<()> {
    let Tables {
        records,
        refs,
        backrefs,
        claims,
        held,
        collections,
    } = tables;
    for write in &commit.writes {
        match write {
            Write::Put(put) => {
                let encoded = put.key.encode();
                let key = encoded.as_str();
                let old = read_record(records, key)?;
                let collection = put.collection.name();
                let version = old.as_ref().map_or(1, |env| env.version.saturating_add(1));
                if let Some(old) = &old {
                    collections
                        .remove((old.collection.as_str(), old.order, key))
                        .map_err(db_err)?;
                }
                records
                    .insert(
                        key,
                        (version, put.body.as_slice(), collection.as_str(), put.order),
                    )
                    .map_err(db_err)?;
                collections
                    .insert((collection.as_str(), put.order, key), ())
                    .map_err(db_err)?;

                let new_refs: Vec<String> = dedup(&put.refs)
                    .into_iter()
                    .map(RecordKey::encode)
                    .collect();
                for target in pairs_from(refs, key)? {
                    if !new_refs.contains(&target) {
                        refs.remove((key, target.as_str())).map_err(db_err)?;
                        backrefs.remove((target.as_str(), key)).map_err(db_err)?;
                    }
                }
                for target in &new_refs {
                    refs.insert((key, target.as_str()), ()).map_err(db_err)?;
                    backrefs
                        .insert((target.as_str(), key), ())
                        .map_err(db_err)?;
                }

                let new_claims: Vec<String> =
                    dedup(&put.unique).into_iter().map(Claim::name).collect();
                for claim in pairs_from(held, key)? {
                    if !new_claims.contains(&claim) {
                        held.remove((key, claim.as_str())).map_err(db_err)?;
                        release_claim(claims, &claim, key)?;
                    }
                }
                for claim in &new_claims {
                    held.insert((key, claim.as_str()), ()).map_err(db_err)?;
                    claims.insert(claim.as_str(), key).map_err(db_err)?;
                }
            }
            Write::Delete { key, .. } => {
                let encoded = key.encode();
                let key = encoded.as_str();
                let Some(old) = read_record(records, key)? else {
                    continue;
                };
                records.remove(key).map_err(db_err)?;
                collections
                    .remove((old.collection.as_str(), old.order, key))
                    .map_err(db_err)?;
                for target in pairs_from(refs, key)? {
                    refs.remove((key, target.as_str())).map_err(db_err)?;
                    backrefs.remove((target.as_str(), key)).map_err(db_err)?;
                }
                for claim in pairs_from(held, key)? {
                    held.remove((key, claim.as_str())).map_err(db_err)?;
                    release_claim(claims, &claim, key)?;
                }
            }
        }
    }
    Ok(())
}

/// Removes `claim` if `holder` still holds it.
fn release_claim(
    claims: &mut redb::Table<'_, &'static str, &'static str>,
    claim: &str,
    holder: &str,
) -> EngineResult<()> {
    let holds = claims
        .get(claim)
        .map_err(db_err)?
        .is_some_and(|guard| guard.value() == holder);
    if holds {
        claims.remove(claim).map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::embedded::writer::run_batch;
    use crate::engine::{Kind, Put};

    fn queue(org: uuid::Uuid, id: &str, expect: Expect) -> Commit {
        Commit::new().put(Put {
            key: RecordKey::new(Home::Org(org), Kind::Queue, id),
            expect,
            body: id.as_bytes().to_vec(),
            collection: Collection::Org {
                org,
                kind: Kind::Queue,
            },
            order: 0,
            refs: Vec::new(),
            unique: Vec::new(),
        })
    }

    fn pending(commit: Commit) -> Job {
        Job::Commit(PendingCommit {
            commit,
            done: oneshot::channel().0,
            outcome: None,
        })
    }

    fn outcomes(batch: Vec<Job>) -> Vec<EngineResult<()>> {
        batch
            .into_iter()
            .filter_map(|job| match job {
                Job::Commit(pending) => pending.outcome,
                _ => None,
            })
            .collect()
    }

    /// One batch runs its commits as if one by one: each sees those before
    /// it, a refused one writes nothing and the others still land, all in
    /// one transaction.
    #[tokio::test]
    async fn a_batch_commits_as_if_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let org = uuid::Uuid::new_v4();
        let commits = [
            queue(org, "a", Expect::Absent),
            // Created just before, in the same batch: refused.
            queue(org, "a", Expect::Absent),
            // Sees the first one's version.
            queue(org, "a", Expect::Version(1)),
            queue(org, "b", Expect::Version(7)),
            queue(org, "c", Expect::Absent),
        ];
        let mut batch: Vec<Job> = commits.into_iter().map(pending).collect();
        run_batch(&engine.db, &mut batch).unwrap();
        let answers = outcomes(batch);
        let refused: Vec<bool> = answers.iter().map(Result::is_err).collect();
        assert_eq!(refused, [false, true, false, true, false]);
        assert!(matches!(
            &answers[1],
            Err(EngineError::Conflict {
                actual: Some(1),
                ..
            })
        ));
        let key = |id: &str| RecordKey::new(Home::Org(org), Kind::Queue, id);
        let read = engine
            .get_many(&[key("a"), key("b"), key("c")])
            .await
            .unwrap();
        let versions: Vec<Option<u64>> =
            read.iter().map(|r| r.as_ref().map(|r| r.version)).collect();
        assert_eq!(versions, [Some(2), None, Some(1)]);

        // A batch refused whole writes nothing at all.
        let mut batch = vec![pending(queue(org, "c", Expect::Absent))];
        run_batch(&engine.db, &mut batch).unwrap();
        assert!(outcomes(batch)[0].is_err());
        assert_eq!(engine.get(&key("c")).await.unwrap().unwrap().version, 1);
    }

    /// Commits racing from many tasks share transactions and each gets
    /// its own answer.
    #[tokio::test]
    async fn racing_commits_each_get_their_answer() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let org = uuid::Uuid::new_v4();
        let commits = (0..200).map(|i| {
            let engine = engine.clone();
            // Two tasks create each record: one of the two wins.
            tokio::spawn(async move {
                engine
                    .commit(queue(org, &format!("q{}", i / 2), Expect::Absent))
                    .await
            })
        });
        let answers = futures::future::join_all(commits).await;
        let won = answers.iter().filter(|a| matches!(a, Ok(Ok(())))).count();
        let lost = answers
            .iter()
            .filter(|a| matches!(a, Ok(Err(EngineError::Conflict { .. }))))
            .count();
        assert_eq!((won, lost), (100, 100));
    }
}
