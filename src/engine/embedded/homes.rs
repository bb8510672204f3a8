//! The embedded side of schema version 2 (see the Redis engine's `homes`):
//! one file holds every home, so no record moves, but the three lists that
//! spanned organizations (offers, online agents, the push outbox) become
//! one list per organization, push jobs learn their organization, and each
//! organization's record leaves the installation's list of organizations
//! (the directory's entries are that list now) for a list of its own.

use redb::{ReadableTable, WriteTransaction};

use super::tables::{COLLECTIONS, RECORDS};
use super::{Access, EmbeddedEngine, db_err};
use crate::engine::homes::{job_conversation, org_in, renamed, with_org};
use crate::engine::{Collection, EngineResult, Kind, Retired};

impl EmbeddedEngine {
    /// Answers how many list entries and references changed.
    pub async fn move_to_homes(&self) -> EngineResult<u64> {
        self.blocking(Access::Write, |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let mut changed = 0;
            for retired in [Retired::PushOutbox, Retired::Offered, Retired::OnlineAgents] {
                changed += split_list(&txn, &Collection::Retired(retired))?;
            }
            changed += split_list(&txn, &Collection::Organizations)?;
            txn.commit().map_err(db_err)?;
            Ok(changed)
        })
        .await
    }
}

/// Moves the entries of a list that spanned organizations to their
/// organizations' own lists.
fn split_list(txn: &WriteTransaction, list: &Collection) -> EngineResult<u64> {
    let mut records = txn.open_table(RECORDS).map_err(db_err)?;
    let mut collections = txn.open_table(COLLECTIONS).map_err(db_err)?;
    let name = list.name();
    let mut entries = Vec::new();
    for entry in collections
        .range((name.as_str(), i64::MIN, "")..)
        .map_err(db_err)?
    {
        let (guard, _) = entry.map_err(db_err)?;
        let (collection, order, key) = guard.value();
        if collection != name {
            break;
        }
        entries.push((order, key.to_owned()));
    }
    let mut moved = 0;
    for (order, key) in entries {
        let Some(guard) = records.get(key.as_str()).map_err(db_err)? else {
            continue;
        };
        let (version, body, _, stored_order) = guard.value();
        let mut body = body.to_vec();
        drop(guard);
        let org = match key.split_once(':') {
            // An organization is its own home.
            Some((kind, id)) if kind == Kind::Organization.as_str() => id.parse().ok(),
            // The directory's entries stay in the list of organizations.
            Some((kind, _)) if kind == Kind::Setting.as_str() && org_in(&body).is_none() => {
                // A push job: its conversation's organization.
                let org = job_org(&records, &body)?;
                if let Some(org) = org {
                    body = with_org(&body, org);
                }
                org
            }
            Some((kind, _)) if kind == Kind::Setting.as_str() && name == "orgs" => None,
            _ => org_in(&body),
        };
        let Some(org) = org else { continue };
        collections
            .remove((name.as_str(), order, key.as_str()))
            .map_err(db_err)?;
        let now = renamed(&name, org);
        records
            .insert(
                key.as_str(),
                (version, body.as_slice(), now.as_str(), stored_order),
            )
            .map_err(db_err)?;
        collections
            .insert((now.as_str(), stored_order, key.as_str()), ())
            .map_err(db_err)?;
        moved += 1;
    }
    Ok(moved)
}

/// The organization of the conversation a push job names.
fn job_org<T>(records: &T, body: &[u8]) -> EngineResult<Option<uuid::Uuid>>
where
    T: ReadableTable<&'static str, super::tables::RecordValue>,
{
    let Some(conversation) = job_conversation(body) else {
        return Ok(None);
    };
    let key = format!("{}:{conversation}", Kind::Conversation.as_str());
    Ok(records
        .get(key.as_str())
        .map_err(db_err)?
        .and_then(|guard| org_in(guard.value().1)))
}
