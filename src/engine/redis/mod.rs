//! The Redis engine: records shared by every node on one Redis.
//!
//! Reads are plain commands (pipelined, one round trip where the keys are
//! known up front). Every commit is one Lua script, because Redis runs a
//! script atomically: it validates the whole commit against the current
//! state and only then applies it, so a refused commit changes nothing and
//! no other node ever sees half of one. Key names live in [`keys`].

mod bus;
mod keys;
mod log;

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    RedisError, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use serde::Serialize;

use self::keys::field;
use super::{
    Commit, EngineError, EngineResult, Expect, Page, RecordKey, Space, StashMode, StoredRecord,
    Write,
};

/// How long one attempt to open a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `connect` waits in total (connection, handshake, script load),
/// so a silent Redis fails start-up instead of hanging it.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How long a command may take. Generous: the commit script does several
/// lookups per write, and a timed-out commit is reported as unavailable even
/// though Redis may still apply it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Cap on the pause between reconnection attempts, so a Redis that comes
/// back is used again quickly.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The longest TTL sent to Redis (about 285,000 years): Redis refuses an
/// expiry that overflows its clock, and nothing here needs more.
const MAX_TTL_MILLIS: u64 = 1 << 53;

/// Adds one to the counter `KEYS[1]` and answers the new count. The first
/// increment starts the window of `ARGV[1]` milliseconds; later ones keep
/// it. A counter without an expiry (left by something else) gets one too,
/// so it can never count forever.
const COUNT_LUA: &str = r#"
local n = redis.call("INCR", KEYS[1])
if n == 1 or redis.call("PTTL", KEYS[1]) == -1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return n
"#;

/// The commit script's body; [`keys::lua_prelude`] is prepended to it.
///
/// ARGV[1] is the key prefix, ARGV[2] the writes as JSON (an array of
/// `{op = "put"|"del", k, e, c, o, refs, uniq}`, `e` being `"absent"`,
/// `"any"` or the expected version in decimal), and ARGV[2 + i] the body of
/// write i (empty for deletes). Versions and orders travel as strings
/// because Lua numbers are doubles.
///
/// Returns `{"ok"}`, or without changing anything one of
/// `{"conflict", key, actual_version_or_empty}`, `{"missing_ref", key}`,
/// `{"in_use", key, referrer...}`, `{"duplicate", claim, holder}`.
const COMMIT_LUA: &str = r#"
local writes = cjson.decode(ARGV[2])
local puts, dels, current = {}, {}, {}

local function contains(list, x)
  for _, y in ipairs(list) do
    if y == x then return true end
  end
  return false
end

local function encode_list(t)
  -- cjson encodes an empty table as an object.
  if #t == 0 then return "[]" end
  return cjson.encode(t)
end

local function decode_list(s)
  if not s then return {} end
  return cjson.decode(s)
end

-- Drops a claim only if this record still holds it: another write of the
-- same commit may have taken it over already.
local function release(claim, enc)
  local k = claim_key(claim)
  if redis.call("GET", k) == enc then redis.call("DEL", k) end
end

for _, w in ipairs(writes) do
  if w.op == "put" then puts[w.k] = w else dels[w.k] = true end
end

-- 1. Expectations.
for _, w in ipairs(writes) do
  local v = redis.call("HGET", record_key(w.k), F_VERSION)
  current[w.k] = v
  if w.e == "absent" then
    if v then return {"conflict", w.k, v} end
  elseif w.e ~= "any" then
    if v ~= w.e then return {"conflict", w.k, v or ""} end
  end
end

-- 2. References exist after the commit.
for _, w in ipairs(writes) do
  if w.op == "put" then
    for _, r in ipairs(w.refs) do
      if not puts[r] and (dels[r] or redis.call("EXISTS", record_key(r)) == 0) then
        return {"missing_ref", r}
      end
    end
  end
end

-- 3. Nothing still references a deleted record.
for _, w in ipairs(writes) do
  if w.op == "del" and current[w.k] then
    local reply = {"in_use", w.k}
    for _, r in ipairs(redis.call("SMEMBERS", back_refs_key(w.k))) do
      local p = puts[r]
      if not dels[r] and not (p and not contains(p.refs, w.k)) then
        table.insert(reply, r)
      end
    end
    if #reply > 2 then return reply end
  end
end

-- 4. Unique claims.
local claimed = {}
for _, w in ipairs(writes) do
  if w.op == "put" then
    for _, c in ipairs(w.uniq) do
      local other = claimed[c]
      if other and other ~= w.k then return {"duplicate", c, other} end
      claimed[c] = w.k
      local h = redis.call("GET", claim_key(c))
      if h and h ~= w.k and not dels[h] then
        local p = puts[h]
        local released = p and not contains(p.uniq, c)
        if not released and redis.call("EXISTS", record_key(h)) == 1 then
          return {"duplicate", c, h}
        end
      end
    end
  end
end

-- Apply.
for i, w in ipairs(writes) do
  local rk = record_key(w.k)
  if w.op == "put" then
    local old = redis.call("HMGET", rk, F_REFS, F_UNIQUE, F_COLLECTION, F_ORDER)
    for _, r in ipairs(decode_list(old[1])) do
      if not contains(w.refs, r) then redis.call("SREM", back_refs_key(r), w.k) end
    end
    for _, r in ipairs(w.refs) do redis.call("SADD", back_refs_key(r), w.k) end
    for _, c in ipairs(decode_list(old[2])) do
      if not contains(w.uniq, c) then release(c, w.k) end
    end
    for _, c in ipairs(w.uniq) do redis.call("SET", claim_key(c), w.k) end
    if old[3] and (old[3] ~= w.c or old[4] ~= w.o) then
      redis.call("ZREM", collection_key(old[3]), old[4])
    end
    redis.call("ZADD", collection_key(w.c), 0, w.o)
    redis.call("HINCRBY", rk, F_VERSION, 1)
    redis.call("HSET", rk, F_BODY, ARGV[2 + i], F_COLLECTION, w.c, F_ORDER, w.o,
      F_REFS, encode_list(w.refs), F_UNIQUE, encode_list(w.uniq))
  elseif current[w.k] then
    local old = redis.call("HMGET", rk, F_REFS, F_UNIQUE, F_COLLECTION, F_ORDER)
    for _, r in ipairs(decode_list(old[1])) do redis.call("SREM", back_refs_key(r), w.k) end
    for _, c in ipairs(decode_list(old[2])) do release(c, w.k) end
    if old[3] then redis.call("ZREM", collection_key(old[3]), old[4]) end
    redis.call("DEL", rk, back_refs_key(w.k))
  end
end
return {"ok"}
"#;

/// A collection entry: the order as 16 hex digits of its sign-flipped bits,
/// then the key. Every entry has score 0, so Redis sorts them byte by byte:
/// exactly by (order, key) over the whole i64 range, which a double score
/// cannot hold beyond 2^53. The record keeps this string in its order field
/// so that the entry can be removed.
fn collection_member(order: i64, key: &str) -> String {
    format!("{:016x}:{key}", order.cast_unsigned() ^ (1 << 63))
}

#[derive(Clone)]
pub struct RedisEngine {
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// Built once: `invoke_async` sends EVALSHA and reloads the script itself
    /// if Redis lost it (a restart, say).
    commit_script: Arc<Script>,
    /// [`COUNT_LUA`], cached the same way.
    count_script: Arc<Script>,
    /// The subscription side of the bus (see [`bus`]).
    bus: bus::RedisBus,
}

/// By hand: the connection's own `Debug` prints the client, URL credentials
/// included.
impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEngine")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisEngine {
    /// Connects to `url` and checks that Redis answers. Every key the engine
    /// uses starts with `prefix`, so several installations can share a Redis.
    pub async fn connect(url: &str, prefix: &str) -> EngineResult<Self> {
        Self::connect_with_probe_interval(url, prefix, bus::DEFAULT_PROBE_INTERVAL).await
    }

    /// [`Self::connect`] with another bus liveness-probe interval, for tests
    /// that cannot wait for the default.
    #[doc(hidden)]
    pub async fn connect_with_probe_interval(
        url: &str,
        prefix: &str,
        probe_interval: Duration,
    ) -> EngineResult<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            EngineError::Unavailable(redact(url, format!("invalid Redis URL: {e}")))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let commit_script = Arc::new(Script::new(&format!("{}{COMMIT_LUA}", keys::lua_prelude())));
        let count_script = Arc::new(Script::new(COUNT_LUA));
        let setup = async {
            let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            commit_script.load_async(&mut conn).await?;
            count_script.load_async(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(CONNECT_DEADLINE, setup).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(EngineError::Unavailable(redact(
                    url,
                    format!("cannot connect to Redis: {e}"),
                )));
            }
            Err(_) => {
                return Err(EngineError::Unavailable(format!(
                    "Redis did not answer within {}s",
                    CONNECT_DEADLINE.as_secs()
                )));
            }
        };
        let bus = bus::RedisBus::start(client, conn.clone(), prefix, probe_interval)
            .await
            .map_err(|e| {
                EngineError::Unavailable(redact(url, format!("cannot open the bus: {e}")))
            })?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            commit_script,
            count_script,
            bus,
        })
    }

    pub async fn ping(&self) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn get(&self, key: &RecordKey) -> EngineResult<Option<StoredRecord>> {
        let mut found = self.get_many(std::slice::from_ref(key)).await?;
        Ok(found.pop().flatten())
    }

    pub async fn get_many(&self, keys: &[RecordKey]) -> EngineResult<Vec<Option<StoredRecord>>> {
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

    pub async fn lookup(&self, claim: &str) -> EngineResult<Option<StoredRecord>> {
        let mut conn = self.conn.clone();
        let holder: Option<String> = redis::cmd("GET")
            .arg(keys::claim(&self.prefix, claim))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match holder {
            // The holder may be deleted between the two reads: then no one
            // holds the claim any more, which `get` answers with `None`.
            Some(holder) => self.get(&decode_key(&holder)?).await,
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
        decode_sorted(members)
    }

    pub async fn list(&self, collection: &str, offset: u64, limit: u64) -> EngineResult<Page> {
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
            .map(|m| decode_key(m.split_once(':').map_or("", |(_, key)| key)))
            .collect::<EngineResult<Vec<_>>>()?;
        // A record deleted between the two round trips is left out rather
        // than returned as a hole.
        let records = self.get_many(&keys).await?.into_iter().flatten().collect();
        Ok(Page { total, records })
    }

    /// `SET` with `PX`, and `NX` for [`StashMode::IfAbsent`]: Redis decides
    /// atomically whether a live value exists (expired keys count as absent).
    pub async fn stash(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
        ttl: Duration,
        mode: StashMode,
    ) -> EngineResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(keys::ephemeral(&self.prefix, space, id))
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl));
        if mode == StashMode::IfAbsent {
            cmd.arg("NX");
        }
        let mut conn = self.conn.clone();
        // "OK" when written, nil when NX found a live value.
        let reply: Option<String> = cmd.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(reply.is_some())
    }

    pub async fn peek(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `GETDEL`: one command, so of concurrent takers exactly one gets it.
    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("GETDEL")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `SET XX KEEPTTL GET` (Redis 7): replaces only an existing value, keeps
    /// its expiry and answers the previous value, all in one command.
    pub async fn swap(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
    ) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .arg(value)
            .arg("XX")
            .arg("KEEPTTL")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// [`COUNT_LUA`]: the increment and the start of the window in one
    /// atomic step, so a crash between them cannot leave a counter forever.
    pub async fn count(&self, space: Space, id: &str, window: Duration) -> EngineResult<u64> {
        let mut conn = self.conn.clone();
        self.count_script
            .key(keys::ephemeral(&self.prefix, space, id))
            .arg(ttl_millis(window))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    pub async fn commit(&self, commit: Commit) -> EngineResult<()> {
        if commit.writes.is_empty() {
            return Ok(());
        }
        let wire: Vec<WireWrite<'_>> = commit.writes.iter().map(WireWrite::from).collect();
        let json = serde_json::to_string(&wire)
            .map_err(|e| EngineError::InvalidCommit(format!("cannot encode the commit: {e}")))?;
        let mut invocation = self.commit_script.prepare_invoke();
        // The record keys are declared so a cluster-aware client or proxy
        // routes the script to their slot; the script spells the keys it
        // touches itself, all under the same hash tag.
        for write in &commit.writes {
            invocation.key(keys::record(&self.prefix, write_target(write).0));
        }
        invocation.arg(&*self.prefix).arg(json);
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
        refusal(&commit, reply)
    }
}

/// One write as the commit script reads it.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum WireWrite<'a> {
    Put {
        k: String,
        e: String,
        c: &'a str,
        o: String,
        refs: Vec<String>,
        uniq: &'a [String],
    },
    Del {
        k: String,
        e: String,
    },
}

impl<'a> From<&'a Write> for WireWrite<'a> {
    fn from(write: &'a Write) -> Self {
        match write {
            Write::Put(put) => WireWrite::Put {
                k: put.key.encode(),
                e: wire_expect(put.expect),
                c: &put.collection,
                o: collection_member(put.order, &put.key.encode()),
                refs: put.refs.iter().map(RecordKey::encode).collect(),
                uniq: &put.unique,
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
fn refusal(commit: &Commit, reply: Vec<String>) -> EngineResult<()> {
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
            let key = decode_key(&next()?)?;
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
        Some("missing_ref") => Err(EngineError::MissingRef(decode_key(&next()?)?)),
        Some("in_use") => {
            let key = decode_key(&next()?)?;
            let by = decode_sorted(reply.collect())?;
            Err(EngineError::InUse { key, by })
        }
        Some("duplicate") => {
            let claim = next()?;
            let holder = decode_key(&next()?)?;
            Err(EngineError::Duplicate { claim, holder })
        }
        _ => Err(EngineError::Unavailable(
            "unexpected reply from the commit script".into(),
        )),
    }
}

fn decode_key(encoded: &str) -> EngineResult<RecordKey> {
    RecordKey::decode(encoded)
        .ok_or_else(|| EngineError::Unavailable(format!("corrupt record key {encoded:?} in Redis")))
}

fn decode_sorted(encoded: Vec<String>) -> EngineResult<Vec<RecordKey>> {
    let mut keys = encoded
        .iter()
        .map(|e| decode_key(e))
        .collect::<EngineResult<Vec<_>>>()?;
    keys.sort();
    Ok(keys)
}

/// A TTL in whole milliseconds, at least 1 (Redis refuses 0) and at most
/// [`MAX_TTL_MILLIS`].
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MILLIS)
}

/// Redis errors name the failure, never the URL, so they can be passed on.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(unavailable)`
fn unavailable(e: RedisError) -> EngineError {
    EngineError::Unavailable(format!("Redis: {e}"))
}

/// Removes the URL's password from a message, in case a connection error
/// quotes the URL.
fn redact(url: &str, message: String) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) if !password.is_empty() => message.replace(password, "***"),
            _ => message,
        },
        Err(_) => message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::engine::{Kind, Put};

    const URL: &str = "redis://127.0.0.1:6379";

    /// An engine on a fresh prefix, so tests never see each other's data.
    async fn engine() -> RedisEngine {
        let prefix = format!("sbtest:{}:", uuid::Uuid::new_v4());
        RedisEngine::connect(URL, &prefix).await.unwrap()
    }

    /// Drops every key of the test's prefix.
    async fn cleanup(engine: &RedisEngine) {
        let mut conn = engine.conn.clone();
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", engine.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !found.is_empty() {
            redis::cmd("DEL")
                .arg(found)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }

    async fn key_count(engine: &RedisEngine) -> usize {
        let mut conn = engine.conn.clone();
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", engine.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        found.len()
    }

    fn key(kind: Kind, id: &str) -> RecordKey {
        RecordKey::new(kind, id)
    }

    fn put(key: &RecordKey, expect: Expect, body: &str) -> Put {
        Put {
            key: key.clone(),
            expect,
            body: body.as_bytes().to_vec(),
            collection: "all".into(),
            order: 0,
            refs: vec![],
            unique: vec![],
        }
    }

    async fn version(engine: &RedisEngine, key: &RecordKey) -> Option<u64> {
        engine.get(key).await.unwrap().map(|r| r.version)
    }

    #[tokio::test]
    async fn create_update_conflict_delete() {
        let e = engine().await;
        e.ping().await.unwrap();
        let a = key(Kind::Organization, "a");
        let missing = key(Kind::Organization, "missing");

        e.commit(Commit::new().put(put(&a, Expect::Absent, r#"{"n":1}"#)))
            .await
            .unwrap();
        let got = e.get(&a).await.unwrap().unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.body, br#"{"n":1}"#);

        let err = e
            .commit(Commit::new().put(put(&a, Expect::Absent, "{}")))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            EngineError::Conflict { ref key, expected: Expect::Absent, actual: Some(1) } if *key == a
        ));

        e.commit(Commit::new().put(put(&a, Expect::Version(1), "\u{0}binary\u{ff}")))
            .await
            .unwrap();
        let got = e.get(&a).await.unwrap().unwrap();
        assert_eq!(got.version, 2);
        assert_eq!(got.body, "\u{0}binary\u{ff}".as_bytes());

        let err = e
            .commit(Commit::new().put(put(&a, Expect::Version(1), "{}")))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            EngineError::Conflict {
                actual: Some(2),
                expected: Expect::Version(1),
                ..
            }
        ));
        let err = e
            .commit(Commit::new().put(put(&missing, Expect::Version(3), "{}")))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Conflict { actual: None, .. }));
        let err = e
            .commit(Commit::new().delete(missing.clone(), Expect::Version(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Conflict { actual: None, .. }));

        // Any: update without a check, delete of a missing record is a no-op.
        e.commit(Commit::new().put(put(&a, Expect::Any, "{}")))
            .await
            .unwrap();
        assert_eq!(version(&e, &a).await, Some(3));
        e.commit(Commit::new().delete(missing.clone(), Expect::Any))
            .await
            .unwrap();

        let many = e.get_many(&[a.clone(), missing.clone()]).await.unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].as_ref().map(|r| r.version), Some(3));
        assert!(many[1].is_none());
        assert!(e.get_many(&[]).await.unwrap().is_empty());

        let err = e
            .commit(Commit::new().delete(a.clone(), Expect::Version(2)))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            EngineError::Conflict {
                actual: Some(3),
                ..
            }
        ));
        e.commit(Commit::new().delete(a.clone(), Expect::Version(3)))
            .await
            .unwrap();
        assert!(e.get(&a).await.unwrap().is_none());
        assert_eq!(e.list("all", 0, 10).await.unwrap().total, 0);
        assert_eq!(key_count(&e).await, 0, "a delete leaves nothing behind");
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn references_and_in_use() {
        let e = engine().await;
        let org = key(Kind::Organization, "o");
        let cfg = key(Kind::Configuration, "c");
        let dep = key(Kind::Deployment, "d");

        let mut p_cfg = put(&cfg, Expect::Absent, "{}");
        p_cfg.refs = vec![org.clone()];
        let err = e
            .commit(Commit::new().put(p_cfg.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::MissingRef(ref k) if *k == org));

        // A reference put by the same commit is fine.
        e.commit(
            Commit::new()
                .put(p_cfg.clone())
                .put(put(&org, Expect::Absent, "{}")),
        )
        .await
        .unwrap();
        let mut p_dep = put(&dep, Expect::Absent, "{}");
        p_dep.refs = vec![org.clone(), cfg.clone()];
        e.commit(Commit::new().put(p_dep.clone())).await.unwrap();
        assert_eq!(
            e.referrers(&org).await.unwrap(),
            vec![cfg.clone(), dep.clone()]
        );
        assert_eq!(e.referrers(&cfg).await.unwrap(), vec![dep.clone()]);

        let err = e
            .commit(Commit::new().delete(org.clone(), Expect::Any))
            .await
            .unwrap_err();
        match err {
            EngineError::InUse { key, by } => {
                assert_eq!(key, org);
                assert_eq!(by, vec![cfg.clone(), dep.clone()]);
            }
            other => panic!("unexpected {other:?}"),
        }

        // A reference to a record deleted by the same commit is missing.
        let mut p_dep2 = put(&dep, Expect::Version(1), "{}");
        p_dep2.refs = vec![org.clone(), cfg.clone()];
        let err = e
            .commit(
                Commit::new()
                    .delete(cfg.clone(), Expect::Any)
                    .put(p_dep2.clone()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::MissingRef(ref k) if *k == cfg));
        p_dep2.refs = vec![org.clone()];

        // Dropping the reference in the same commit frees cfg.
        e.commit(
            Commit::new()
                .put(p_dep2)
                .delete(cfg.clone(), Expect::Version(1)),
        )
        .await
        .unwrap();
        assert_eq!(e.referrers(&org).await.unwrap(), vec![dep.clone()]);
        assert!(e.referrers(&cfg).await.unwrap().is_empty());

        // A referrer deleted by the same commit does not block.
        e.commit(
            Commit::new()
                .delete(org.clone(), Expect::Version(1))
                .delete(dep.clone(), Expect::Version(2)),
        )
        .await
        .unwrap();
        assert_eq!(key_count(&e).await, 0);
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn unique_claims() {
        let e = engine().await;
        let m1 = key(Kind::Member, "1");
        let m2 = key(Kind::Member, "2");
        let mut p1 = put(&m1, Expect::Absent, "one");
        p1.unique = vec!["iss|alice".into(), "email|a@x".into()];
        e.commit(Commit::new().put(p1)).await.unwrap();
        assert_eq!(e.lookup("iss|alice").await.unwrap().unwrap().key, m1);
        assert!(e.lookup("iss|nobody").await.unwrap().is_none());

        let mut p2 = put(&m2, Expect::Absent, "two");
        p2.unique = vec!["iss|alice".into()];
        let err = e.commit(Commit::new().put(p2.clone())).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Duplicate { ref claim, ref holder } if claim == "iss|alice" && *holder == m1)
        );

        // Moving the claim in one commit works.
        let mut p1b = put(&m1, Expect::Version(1), "one");
        p1b.unique = vec!["email|a@x".into()];
        e.commit(Commit::new().put(p2.clone()).put(p1b))
            .await
            .unwrap();
        assert_eq!(e.lookup("iss|alice").await.unwrap().unwrap().key, m2);
        assert_eq!(e.lookup("email|a@x").await.unwrap().unwrap().key, m1);

        // Two puts claiming the same string.
        let m3 = key(Kind::Member, "3");
        let m4 = key(Kind::Member, "4");
        let mut p3 = put(&m3, Expect::Absent, "");
        p3.unique = vec!["x".into()];
        let mut p4 = put(&m4, Expect::Absent, "");
        p4.unique = vec!["x".into()];
        let err = e.commit(Commit::new().put(p3).put(p4)).await.unwrap_err();
        assert!(matches!(err, EngineError::Duplicate { ref claim, .. } if claim == "x"));
        assert!(e.lookup("x").await.unwrap().is_none());

        // Deleting the holder frees the claim for a put of the same commit.
        let mut p3 = put(&m3, Expect::Absent, "");
        p3.unique = vec!["email|a@x".into()];
        e.commit(Commit::new().put(p3).delete(m1.clone(), Expect::Version(2)))
            .await
            .unwrap();
        assert_eq!(e.lookup("email|a@x").await.unwrap().unwrap().key, m3);

        // Releasing by update and by delete drops the claim.
        let p2b = put(&m2, Expect::Version(1), "two");
        e.commit(Commit::new().put(p2b)).await.unwrap();
        assert!(e.lookup("iss|alice").await.unwrap().is_none());
        e.commit(Commit::new().delete(m3.clone(), Expect::Any))
            .await
            .unwrap();
        assert!(e.lookup("email|a@x").await.unwrap().is_none());
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn list_pages_in_order() {
        let e = engine().await;
        let mut commit = Commit::new();
        for (id, order) in [("b", 2), ("a", 2), ("c", 1), ("d", 3), ("e", -5)] {
            let mut p = put(&key(Kind::Deployment, id), Expect::Absent, id);
            p.collection = "org/1/dep".into();
            p.order = order;
            commit = commit.put(p);
        }
        e.commit(commit).await.unwrap();

        let ids = |page: &Page| {
            page.records
                .iter()
                .map(|r| r.key.id.clone())
                .collect::<Vec<_>>()
        };
        let page = e.list("org/1/dep", 0, 3).await.unwrap();
        assert_eq!(page.total, 5);
        assert_eq!(ids(&page), ["e", "c", "a"]);
        assert_eq!(page.records[0].body, b"e");
        let page = e.list("org/1/dep", 3, 3).await.unwrap();
        assert_eq!(ids(&page), ["b", "d"]);
        let page = e.list("org/1/dep", 10, 3).await.unwrap();
        assert_eq!((page.total, page.records.len()), (5, 0));
        let page = e.list("org/1/dep", 0, 0).await.unwrap();
        assert_eq!((page.total, page.records.len()), (5, 0));
        let page = e.list("org/1/dep", u64::MAX, u64::MAX).await.unwrap();
        assert_eq!((page.total, page.records.len()), (5, 0));
        assert_eq!(e.list("nothing", 0, 10).await.unwrap().total, 0);

        // Moving a record to another collection and reordering it.
        let mut p = put(&key(Kind::Deployment, "a"), Expect::Version(1), "a");
        p.collection = "org/2/dep".into();
        e.commit(Commit::new().put(p)).await.unwrap();
        let mut p = put(&key(Kind::Deployment, "d"), Expect::Version(1), "d");
        p.collection = "org/1/dep".into();
        p.order = -10;
        e.commit(Commit::new().put(p)).await.unwrap();
        assert_eq!(
            ids(&e.list("org/1/dep", 0, 10).await.unwrap()),
            ["d", "e", "c", "b"]
        );
        assert_eq!(ids(&e.list("org/2/dep", 0, 10).await.unwrap()), ["a"]);
        e.commit(Commit::new().delete(key(Kind::Deployment, "e"), Expect::Any))
            .await
            .unwrap();
        assert_eq!(e.list("org/1/dep", 0, 10).await.unwrap().total, 3);
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn failing_commit_changes_nothing() {
        let e = engine().await;
        let org = key(Kind::Organization, "o");
        let cfg = key(Kind::Configuration, "c");
        let dep = key(Kind::Deployment, "d");
        let mut p_org = put(&org, Expect::Absent, "org");
        p_org.unique = vec!["slug".into()];
        let mut p_cfg = put(&cfg, Expect::Absent, "cfg");
        p_cfg.refs = vec![org.clone()];
        e.commit(Commit::new().put(p_org).put(p_cfg)).await.unwrap();

        let snapshot = async |e: &RedisEngine| {
            (
                e.get_many(&[org.clone(), cfg.clone(), dep.clone()])
                    .await
                    .unwrap(),
                e.referrers(&org).await.unwrap(),
                e.lookup("slug").await.unwrap().map(|r| r.key),
                e.lookup("other").await.unwrap().map(|r| r.key),
                e.list("all", 0, 10).await.unwrap(),
                key_count(e).await,
            )
        };
        let before = snapshot(&e).await;

        // Each commit starts with writes that would apply on their own.
        let mut new_dep = put(&dep, Expect::Absent, "dep");
        new_dep.refs = vec![org.clone()];
        new_dep.unique = vec!["other".into()];
        let mut org_v2 = put(&org, Expect::Version(1), "org2");
        org_v2.order = 9;
        let with = |mut p: Put, f: &dyn Fn(&mut Put)| {
            f(&mut p);
            p
        };
        let failing = [
            Commit::new()
                .put(new_dep.clone())
                .put(put(&org, Expect::Version(7), "x")),
            Commit::new()
                .put(org_v2.clone())
                .put(with(new_dep.clone(), &|p| {
                    p.refs = vec![key(Kind::Queue, "nope")];
                })),
            Commit::new()
                .put(with(new_dep.clone(), &|p| p.refs = vec![]))
                .delete(org.clone(), Expect::Version(1)),
            Commit::new()
                .put(org_v2.clone())
                .put(with(new_dep.clone(), &|p| {
                    p.unique = vec!["other".into(), "slug".into()];
                }))
                .put(with(
                    put(&key(Kind::Member, "m"), Expect::Absent, ""),
                    &|p| {
                        p.unique = vec!["other".into()];
                    },
                )),
            Commit::new()
                .put(with(new_dep.clone(), &|p| p.unique = vec!["slug".into()]))
                .put(with(org_v2.clone(), &|p| p.unique = vec!["slug".into()])),
        ];
        let mut errors = Vec::new();
        for commit in failing {
            errors.push(e.commit(commit).await.unwrap_err());
            assert_eq!(snapshot(&e).await, before);
        }
        assert!(matches!(errors[0], EngineError::Conflict { .. }));
        assert!(matches!(errors[1], EngineError::MissingRef(_)));
        assert!(
            matches!(&errors[2], EngineError::InUse { key, by } if *key == org && *by == [cfg.clone()])
        );
        assert!(
            matches!(&errors[3], EngineError::Duplicate { claim, holder } if claim == "other" && *holder == dep)
        );
        assert!(
            matches!(&errors[4], EngineError::Duplicate { claim, holder } if claim == "slug" && *holder == org)
        );
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn lua_spells_the_same_keys() {
        let e = engine().await;
        let k = key(Kind::ApiClient, "x-1");
        let script = Script::new(&format!(
            "{}return {{record_key(ARGV[2]), back_refs_key(ARGV[2]), collection_key(ARGV[3]), claim_key(ARGV[4]), F_VERSION, F_BODY}}",
            keys::lua_prelude()
        ));
        let mut conn = e.conn.clone();
        let got: Vec<String> = script
            .arg(&*e.prefix)
            .arg(k.encode())
            .arg("org/1/client")
            .arg("iss|sub")
            .invoke_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            got,
            [
                keys::record(&e.prefix, &k),
                keys::back_refs(&e.prefix, &k),
                keys::collection(&e.prefix, "org/1/client"),
                keys::claim(&e.prefix, "iss|sub"),
                field::VERSION.to_owned(),
                field::BODY.to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn count_gives_a_counter_without_ttl_one() {
        let e = engine().await;
        let name = keys::ephemeral(&e.prefix, Space::RateLimit, "k");
        let mut conn = e.conn.clone();
        redis::cmd("SET")
            .arg(&name)
            .arg("5")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        let n = e
            .count(Space::RateLimit, "k", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(n, 6);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&name)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
        cleanup(&e).await;
    }

    #[tokio::test]
    async fn unreachable_redis_is_unavailable_without_credentials() {
        let started = std::time::Instant::now();
        let err = RedisEngine::connect("redis://user:s3cr3t@127.0.0.1:1", "sb:")
            .await
            .unwrap_err();
        match err {
            EngineError::Unavailable(message) => assert!(!message.contains("s3cr3t"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
