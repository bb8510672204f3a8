//! Every Redis key name and record hash field the engine uses, spelled here
//! and nowhere else. The scripts get the same spellings through
//! [`lua_prelude`] and [`lua_log_prelude`], so Rust and Lua cannot drift
//! apart.
//!
//! Layout, with `<p>` the configured prefix, `<home>` the hash tag of a
//! record's [`Home`] (`{rec}` installation-wide, `{o:<uuid>}` for one
//! organization) and `<key>` an encoded [`RecordKey`] (`kind:id`):
//!
//! - `<p><home>:r:<key>`: HASH, one record (fields in [`field`]);
//! - `<p><home>:by:<key>`: SET of the encoded keys of the records that
//!   reference `<key>` (always of the same home);
//! - `<p><home>:c:<collection>`: ZSET, score the record's order, member its
//!   encoded key (ties therefore list by key);
//! - `<p><home>:u:<claim>`: STRING, the encoded key of the claim's holder;
//! - `<p>e:<space>:<id>`: STRING with a TTL, one ephemeral value (a decimal
//!   integer for counters, the holder's id for a lease).
//!
//! A commit touches only keys of one home (the engine refuses any other),
//! and the commit script discovers some of them only while running, so a
//! home's keys must share a Redis Cluster slot: hence the hash tag. One tag
//! per organization spreads a contact center's organizations over the
//! shards while each one's admin records and routing state change together
//! on one. Ephemeral keys carry no tag: every operation on them touches one
//! key.
//!
//! Conversations ([`conversation_log`] and its siblings) have a tag per
//! conversation instead, `{c:<uuid>}`, so the append script's keys share a
//! slot while conversations spread over the cluster. Bus channels
//! ([`bus_channel`], [`bus_probe`], [`bus_shard_probe`]) are PUB/SUB channel
//! names, not keys; a conversation's carries its tag too, because sharded
//! PUB/SUB on a cluster hashes channel names into slots like keys.

use crate::engine::{Claim, Collection, Home, RecordKey, Space};

const RECORD: &str = "r:";
const BACK_REFS: &str = "by:";
const COLLECTION: &str = "c:";
const CLAIM: &str = "u:";
/// Ephemeral values, outside any home's hash tag.
const EPHEMERAL: &str = "e:";

/// Fields of a record hash.
pub(super) mod field {
    /// The version, a decimal integer starting at 1.
    pub(in crate::engine::redis) const VERSION: &str = "v";
    /// The body bytes.
    pub(in crate::engine::redis) const BODY: &str = "b";
    /// The collection the record is listed in.
    pub(in crate::engine::redis) const COLLECTION: &str = "c";
    /// The record's order in its collection, a decimal integer.
    pub(in crate::engine::redis) const ORDER: &str = "o";
    /// JSON array of the encoded keys the record references.
    pub(in crate::engine::redis) const REFS: &str = "refs";
    /// JSON array of the unique claims the record holds.
    pub(in crate::engine::redis) const UNIQUE: &str = "uniq";
}

/// `<p><home>:`, what every key of one home starts with. The commit script
/// gets it whole, so it spells only keys of that home.
pub(super) fn home(prefix: &str, home: Home) -> String {
    match home {
        Home::Installation => format!("{prefix}{{rec}}:"),
        Home::Org(org) => format!("{prefix}{{o:{org}}}:"),
    }
}

pub(super) fn record(prefix: &str, key: &RecordKey) -> String {
    format!("{}{RECORD}{}", home(prefix, key.home), key.encode())
}

pub(super) fn back_refs(prefix: &str, key: &RecordKey) -> String {
    format!("{}{BACK_REFS}{}", home(prefix, key.home), key.encode())
}

pub(super) fn collection(prefix: &str, collection: &Collection) -> String {
    format!(
        "{}{COLLECTION}{}",
        home(prefix, collection.home()),
        collection.name()
    )
}

pub(super) fn claim(prefix: &str, claim: &Claim) -> String {
    format!("{}{CLAIM}{}", home(prefix, claim.home()), claim.name())
}

pub(super) fn ephemeral(prefix: &str, space: Space, id: &str) -> String {
    format!("{prefix}{EPHEMERAL}{}:{id}", space.as_str())
}

/// `<p>{<home>}:e:<space>:<id>`: an ephemeral value kept in a home's slot,
/// beside others that one script takes together.
pub(super) fn ephemeral_in(prefix: &str, home: Home, space: Space, id: &str) -> String {
    format!(
        "{}{EPHEMERAL}{}:{id}",
        self::home(prefix, home),
        space.as_str()
    )
}

/// `<p>{c:<uuid>}:log`: STREAM, one conversation's events, entry ids
/// `<seq>-1` so that stream ids are the sequences; each entry holds the body
/// in the field [`EVENT_BODY`].
pub(super) fn conversation_log(prefix: &str, log: uuid::Uuid) -> String {
    format!("{prefix}{{c:{log}}}:log")
}

/// `<p>{c:<uuid>}:dedup`: HASH, client dedup id → the sequence it got. Ids
/// are hash fields, never part of a key name.
pub(super) fn conversation_dedup(prefix: &str, log: uuid::Uuid) -> String {
    format!("{prefix}{{c:{log}}}:dedup")
}

/// `<p>{c:<uuid>}:seq`: STRING, the conversation's last sequence.
pub(super) fn conversation_seq(prefix: &str, log: uuid::Uuid) -> String {
    format!("{prefix}{{c:{log}}}:seq")
}

/// `<p>{c:<uuid>}:rate:<id>`: STRING with a TTL, a sender's rate bucket
/// kept beside the conversation (see `engine::Meter`), so the append script
/// takes from it in the conversation's slot. `id` is spelled by switchboard.
pub(super) fn conversation_rate(prefix: &str, log: uuid::Uuid, id: &str) -> String {
    format!("{prefix}{{c:{log}}}:rate:{id}")
}

/// The field of a conversation stream entry holding the event body.
pub(super) const EVENT_BODY: &str = "b";

/// The PUB/SUB channel of a bus [`crate::engine::Channel`]: `<p>bus:<name>`,
/// except a conversation's, `<p>{c:<uuid>}:bus`, which carries the
/// conversation's hash tag so that on a cluster its notices go through the
/// shard that owns its log (sharded PUB/SUB hashes channel names like keys).
pub(super) fn bus_channel(prefix: &str, channel: &crate::engine::Channel) -> String {
    match channel {
        crate::engine::Channel::Conversation(id) => format!("{prefix}{{c:{id}}}:bus"),
        other => format!("{prefix}bus:{}", other.name()),
    }
}

/// `<p>bus:probe:<node>`: one node's liveness-probe channel. Channel names
/// all start with their kind (`conv:`, `agent:`...), so none is `probe:`.
pub(super) fn bus_probe(prefix: &str, node: uuid::Uuid) -> String {
    format!("{prefix}bus:probe:{node}")
}

/// `<p>bus:probe:<node>:{<tag>}`: one node's probe channel for the shard
/// that owns the slot of `tag` (see [`tag_in_slots`]).
pub(super) fn bus_shard_probe(prefix: &str, node: uuid::Uuid, tag: &str) -> String {
    format!("{prefix}bus:probe:{node}:{{{tag}}}")
}

/// How many slots a Redis Cluster has.
pub(super) const SLOTS: u16 = 16384;

/// The cluster slot of a key or sharded channel name: CRC16 (XMODEM) of its
/// hash tag (the first non-empty `{...}`), or of the whole name, modulo
/// [`SLOTS`]. Redis's own rule, so names can be aimed at a shard.
pub(super) fn key_slot(name: &[u8]) -> u16 {
    let hashed = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = name.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(name);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// A short tag whose slot falls in one of `ranges` (inclusive), found by
/// counting up; `None` only if the ranges are empty or absurdly thin.
pub(super) fn tag_in_slots(ranges: &[(u16, u16)]) -> Option<String> {
    (0u32..1_000_000).map(|n| n.to_string()).find(|tag| {
        let slot = key_slot(tag.as_bytes());
        ranges
            .iter()
            .any(|&(start, end)| (start..=end).contains(&slot))
    })
}

/// Lua definitions of the log's field name, for the append script.
pub(super) fn lua_log_prelude() -> String {
    format!("local FIELD = \"{EVENT_BODY}\"\n")
}

/// Lua definitions of the same key names and fields, for the commit script.
/// Expects the home's key prefix ([`home`]) in `ARGV[1]`; the functions take
/// encoded record keys.
pub(super) fn lua_prelude() -> String {
    format!(
        r#"local P = ARGV[1]
local F_VERSION = "{f_version}"
local F_BODY = "{f_body}"
local F_COLLECTION = "{f_collection}"
local F_ORDER = "{f_order}"
local F_REFS = "{f_refs}"
local F_UNIQUE = "{f_unique}"
local function record_key(enc) return P .. "{RECORD}" .. enc end
local function back_refs_key(enc) return P .. "{BACK_REFS}" .. enc end
local function collection_key(c) return P .. "{COLLECTION}" .. c end
local function claim_key(c) return P .. "{CLAIM}" .. c end
"#,
        f_version = field::VERSION,
        f_body = field::BODY,
        f_collection = field::COLLECTION,
        f_order = field::ORDER,
        f_refs = field::REFS,
        f_unique = field::UNIQUE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;

    /// A home's keys share one slot (the commit script touches keys it only
    /// discovers while running); organizations get slots of their own.
    #[test]
    fn a_homes_keys_share_its_tag() {
        let org = uuid::Uuid::new_v4();
        let key = RecordKey::new(Home::Org(org), Kind::Member, "m");
        let names = [
            record("sb:", &key),
            back_refs("sb:", &key),
            collection("sb:", &Collection::OnlineAgents(org)),
            claim("sb:", &Claim::member_identity(org, "iss", "{sub}")),
        ];
        for name in &names {
            assert!(name.starts_with(&format!("sb:{{o:{org}}}:")), "{name}");
            assert_eq!(key_slot(name.as_bytes()), key_slot(names[0].as_bytes()));
        }
        let setting = RecordKey::installation(Kind::Setting, "s");
        assert_eq!(record("sb:", &setting), "sb:{rec}:r:setting:s");
        assert_eq!(
            collection("sb:", &Collection::Organizations),
            "sb:{rec}:c:orgs"
        );
    }

    /// The slots Redis's own `CLUSTER KEYSLOT` answers.
    #[test]
    fn slots_follow_redis() {
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"{}x"), key_slot(b"{}x"));
        let tag = tag_in_slots(&[(100, 100)]).unwrap();
        assert_eq!(key_slot(tag.as_bytes()), 100);
        let probe = bus_shard_probe("sb:", uuid::Uuid::nil(), &tag);
        assert_eq!(key_slot(probe.as_bytes()), 100);
    }

    #[test]
    fn a_conversation_channel_shares_its_log_slot() {
        let id = uuid::Uuid::new_v4();
        let channel = bus_channel("sb:", &crate::engine::Channel::Conversation(id));
        assert_eq!(
            key_slot(channel.as_bytes()),
            key_slot(conversation_log("sb:", id).as_bytes())
        );
    }

    #[test]
    fn ephemeral_keys_name_their_space() {
        assert_eq!(ephemeral("sb:", Space::UsedNonce, "n-1"), "sb:e:nonce:n-1");
        assert_eq!(ephemeral("sb:", Space::RateLimit, "x"), "sb:e:rate:x");
        let org = uuid::Uuid::nil();
        assert_eq!(
            ephemeral_in("sb:", Home::Org(org), Space::RateLimit, "x"),
            format!("sb:{{o:{org}}}:e:rate:x")
        );
    }
}
