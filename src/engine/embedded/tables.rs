//! Every redb table and stored key of the embedded engine, spelled here and
//! nowhere else: the embedded counterpart of the Redis engine's `keys`.
//!
//! Every stored record key is a [`RecordKey::encode`]d `kind:id`.
//!
//! - [`RECORDS`]: key → (version, body, collection, order);
//! - [`REFS`]: (referrer, target) → (), the references a record holds, so a
//!   write can replace them without reading the previous [`crate::engine::Put`];
//! - [`BACKREFS`]: (target, referrer) → (), the same pairs the other way
//!   round, so deleting a record and `referrers` need no scan;
//! - [`CLAIMS`]: claim → holder, and [`HELD`]: (holder, claim) → (), so a
//!   record's claims can be released without knowing them up front;
//! - [`COLLECTIONS`]: (collection, order, key) → (), whose natural order is
//!   the listing order;
//! - [`EPHEMERAL`]: [`ephemeral_key`] → (expires at, in Unix milliseconds,
//!   value);
//! - [`LOG`]: (conversation, seq) → body, whose natural order is each log's
//!   order, so the last sequence is the last key of the conversation's range;
//! - [`LOG_DEDUP`]: (conversation, dedup id) → the seq that id got.

use redb::{TableDefinition, WriteTransaction};

use super::db_err;
use crate::engine::{EngineResult, Space};

/// The database file inside the engine's directory.
pub(super) const FILE_NAME: &str = "switchboard.redb";

/// A record's stored value: version, body, collection, order.
pub(super) type RecordValue = (u64, &'static [u8], &'static str, i64);
/// A pair of encoded keys (or a key and a claim), the first one the prefix.
pub(super) type Pair = (&'static str, &'static str);
/// An ephemeral value: expiry in Unix milliseconds, then the value.
pub(super) type EphemeralValue = (u64, &'static [u8]);

pub(super) const RECORDS: TableDefinition<&str, RecordValue> = TableDefinition::new("records");
pub(super) const REFS: TableDefinition<Pair, ()> = TableDefinition::new("refs");
pub(super) const BACKREFS: TableDefinition<Pair, ()> = TableDefinition::new("backrefs");
pub(super) const CLAIMS: TableDefinition<&str, &str> = TableDefinition::new("claims");
pub(super) const HELD: TableDefinition<Pair, ()> = TableDefinition::new("held");
pub(super) const COLLECTIONS: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("collections");
pub(super) const EPHEMERAL: TableDefinition<&str, EphemeralValue> =
    TableDefinition::new("ephemeral");
/// Conversations are keyed by their UUID as a number: 16 bytes, ordered.
pub(super) const LOG: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("log");
pub(super) const LOG_DEDUP: TableDefinition<(u128, &str), u64> = TableDefinition::new("log_dedup");

/// Where an ephemeral value is stored.
pub(super) fn ephemeral_key(space: Space, id: &str) -> String {
    format!("{}:{id}", space.as_str())
}

/// Creates every table, so that read transactions can always open them, even
/// on a database that never had a write.
pub(super) fn create_all(txn: &WriteTransaction) -> EngineResult<()> {
    txn.open_table(RECORDS).map_err(db_err)?;
    txn.open_table(REFS).map_err(db_err)?;
    txn.open_table(BACKREFS).map_err(db_err)?;
    txn.open_table(CLAIMS).map_err(db_err)?;
    txn.open_table(HELD).map_err(db_err)?;
    txn.open_table(COLLECTIONS).map_err(db_err)?;
    txn.open_table(EPHEMERAL).map_err(db_err)?;
    txn.open_table(LOG).map_err(db_err)?;
    txn.open_table(LOG_DEDUP).map_err(db_err)?;
    Ok(())
}
