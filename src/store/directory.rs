//! The installation's directory: which organization a record lives in, for
//! the few kinds the public surface names by id alone (a deployment in a
//! snippet, an API client in the client-credentials grant), and the list of
//! organizations itself (each organization's record lives in its own
//! home, so the installation lists them here).
//!
//! Records live in their organization's home, so reading one takes its
//! organization. Everything else that reads records knows it (from a token,
//! a session, the record that refers to it); these kinds get an entry here,
//! an installation-wide setting written before the record is created and
//! removed after it is deleted. An entry whose record is gone leads nowhere
//! and reads as absent, so the order of the two writes is all the
//! consistency the directory needs.
//!
//! A record never changes organization, so a node remembers what it read:
//! a bounded map, emptied when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::OrgId;
use super::{StoreError, StoreResult};
use crate::engine::{Collection, Commit, Engine, Expect, Kind, Put, RecordKey};

/// How many places a node remembers before it starts over.
const REMEMBERED: usize = 10_000;

#[derive(Clone, Debug, Default)]
pub(super) struct Directory {
    known: Arc<Mutex<HashMap<(Kind, Uuid), OrgId>>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    org_id: OrgId,
}

/// The setting that holds the entry of record `id` of `kind`.
pub(super) fn entry_key(kind: Kind, id: Uuid) -> RecordKey {
    RecordKey::installation(Kind::Setting, format!("home/{}/{id}", kind.as_str()))
}

impl Directory {
    /// The organization record `id` of `kind` was created in, if the
    /// directory has it.
    pub(super) async fn org_of(
        &self,
        engine: &Engine,
        kind: Kind,
        id: Uuid,
    ) -> StoreResult<Option<OrgId>> {
        if let Some(org) = self.remembered(kind, id) {
            return Ok(Some(org));
        }
        let key = entry_key(kind, id);
        let Some(stored) = engine.get(&key).await? else {
            return Ok(None);
        };
        let entry: Entry =
            serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
                key,
                message: e.to_string(),
            })?;
        self.remember(kind, id, entry.org_id);
        Ok(Some(entry.org_id))
    }

    /// Lists record `id` of `kind` as living in `org`, at `order` among
    /// its kind. Idempotent.
    pub(super) async fn enter(
        &self,
        engine: &Engine,
        kind: Kind,
        id: Uuid,
        org: OrgId,
        order: i64,
    ) -> StoreResult<()> {
        engine
            .commit(Commit::new().put(entry(kind, id, org, order)?))
            .await?;
        self.remember(kind, id, org);
        Ok(())
    }

    /// Forgets record `id` of `kind` (after it was deleted).
    pub(super) async fn remove(&self, engine: &Engine, kind: Kind, id: Uuid) -> StoreResult<()> {
        engine
            .commit(Commit::new().delete(entry_key(kind, id), Expect::Any))
            .await?;
        Ok(())
    }

    fn remembered(&self, kind: Kind, id: Uuid) -> Option<OrgId> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&(kind, id)).copied()
    }

    fn remember(&self, kind: Kind, id: Uuid, org: OrgId) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert((kind, id), org);
    }
}

/// The write that lists record `id` of `kind` in `org`.
pub(super) fn entry(kind: Kind, id: Uuid, org: OrgId, order: i64) -> StoreResult<Put> {
    Ok(Put {
        key: entry_key(kind, id),
        expect: Expect::Any,
        body: super::encode(&Entry { org_id: org })?,
        collection: list_of(kind),
        order,
        refs: Vec::new(),
        unique: Vec::new(),
    })
}

/// Where the entries of `kind` are listed: organizations in the list of
/// organizations, the rest among the settings.
pub(super) fn list_of(kind: Kind) -> Collection {
    match kind {
        Kind::Organization => Collection::Organizations,
        _ => Collection::Settings,
    }
}

/// The organization an entry names.
pub(super) fn org_of_entry(stored: &crate::engine::StoredRecord) -> StoreResult<OrgId> {
    let entry: Entry = serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
        key: stored.key.clone(),
        message: e.to_string(),
    })?;
    Ok(entry.org_id)
}
