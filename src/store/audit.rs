//! The audit log: one entry per admin change and per staff sign-in, kept
//! per organization and deleted after the organization's retention like its
//! conversations.
//!
//! An entry says who (the principal), when, which record, and what changed:
//! the names of the fields whose shown value differs, with the values before
//! and after. Values come from the record as the API shows it, which never
//! carries a secret; a field whose name says it holds a secret or a token is
//! listed without values all the same, so a secret shown once (a new API
//! client's) never reaches the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::records::Meta;
use super::types::OrgId;
use super::{Listing, PageRequest, Record, Store, StoreResult, put_for};
use crate::engine::{Collection, Expect, Kind, Put};

/// Fields that change with every write and say nothing an auditor needs.
const BOOKKEEPING: [&str; 5] = [
    "version",
    "dateCreated",
    "dateModified",
    "selfUri",
    "snippet",
];

/// How many entries a filtered read looks at, newest first, before it
/// stops: a filter over a long log answers from its recent part.
pub const MAX_SCANNED: u64 = 10_000;

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub kind: ActorKind,
    /// The API client's or member's id; none for the operator and the
    /// system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActorKind {
    /// The holder of the bootstrap token.
    Operator,
    ApiClient,
    Member,
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    /// A configuration's draft was published as a new version.
    Publish,
    /// A staff member signed in to the console.
    SignIn,
    /// A conversation, or everything about a visitor, was erased.
    Erase,
}

/// The record acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditTarget {
    /// `deployment`, `queue`, `member`, `conversation`, `visitor`, ...
    pub kind: String,
    pub id: String,
}

impl AuditTarget {
    pub fn new(kind: Kind, id: impl ToString) -> Self {
        Self {
            kind: kind_name(kind).to_owned(),
            id: id.to_string(),
        }
    }
}

/// The name of a record's kind in the audit log: the API's, in camelCase.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Organization => "organization",
        Kind::OidcIntegration => "oidcIntegration",
        Kind::Configuration => "configuration",
        Kind::ConfigurationVersion => "configurationVersion",
        Kind::Deployment => "deployment",
        Kind::Queue => "queue",
        Kind::Member => "member",
        Kind::ApiClient => "apiClient",
        Kind::Setting => "setting",
        Kind::GuestSession => "session",
        Kind::Visitor => "visitor",
        Kind::Conversation => "conversation",
        Kind::AgentState => "agent",
        Kind::AuditEntry => "auditEntry",
        Kind::DeletedDeployment => "deletedDeployment",
    }
}

/// One changed field. Secret fields carry no values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// One entry of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    #[serde(flatten)]
    pub meta: Meta,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    pub time: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    pub record: AuditTarget,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

impl Record for AuditEntry {
    const KIND: Kind = Kind::AuditEntry;
    crate::store::record_basics!();
    fn collection(&self) -> Collection {
        Collection::Audit(self.org_id.0)
    }
    fn order(&self) -> i64 {
        self.time.timestamp_millis()
    }
}

impl AuditEntry {
    /// A new entry at `now`; its id orders by time.
    pub fn new(
        org: OrgId,
        actor: Actor,
        action: AuditAction,
        record: AuditTarget,
        changes: Vec<FieldChange>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut meta = Meta::new(now);
        meta.id = Uuid::now_v7();
        Self {
            meta,
            org_id: org,
            time: now,
            actor,
            action,
            record,
            changes,
        }
    }

    /// The write that stores the entry, to commit with the change itself so
    /// that a change is never made without its entry.
    pub fn put(&self) -> StoreResult<Put> {
        put_for(self, Expect::Absent)
    }
}

/// Whether a field's value may be kept in the log.
fn is_secret(field: &str) -> bool {
    let lower = field.to_ascii_lowercase();
    (lower.contains("secret") || lower.contains("token") || lower.contains("password"))
        && !lower.ends_with("set")
}

/// The fields that differ between two shown forms of a record (`None` for
/// a record that does not exist on that side), top-level fields only, in
/// name order.
pub fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let before = before.and_then(Value::as_object).unwrap_or(&empty);
    let after = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|field| !BOOKKEEPING.contains(&field.as_str()))
        .filter_map(|field| {
            let old = before.get(field).filter(|v| !v.is_null());
            let new = after.get(field).filter(|v| !v.is_null());
            if old == new {
                return None;
            }
            let secret = is_secret(field);
            Some(FieldChange {
                field: field.clone(),
                before: old.filter(|_| !secret).cloned(),
                after: new.filter(|_| !secret).cloned(),
            })
        })
        .collect()
}

/// What an audit read is narrowed to.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Entries about this record id.
    pub record: Option<String>,
    /// Entries by this actor id.
    pub actor: Option<Uuid>,
}

impl AuditFilter {
    fn is_empty(&self) -> bool {
        self.record.is_none() && self.actor.is_none()
    }

    fn matches(&self, entry: &AuditEntry) -> bool {
        self.record.as_ref().is_none_or(|r| *r == entry.record.id)
            && self.actor.is_none_or(|a| entry.actor.id == Some(a))
    }
}

impl Store {
    /// Writes an entry on its own: for events that change no record (a
    /// sign-in). A failure is logged, not returned: the sign-in happened.
    pub async fn audit_alone(&self, entry: &AuditEntry) {
        let result = match entry.put() {
            Ok(put) => self.commit(crate::engine::Commit::new().put(put)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(org = %entry.org_id, error = %e, "cannot write an audit entry");
        }
    }

    /// A page of an organization's audit log, newest first, narrowed by
    /// `filter`. Unfiltered pages are read directly; a filtered read looks
    /// at the newest [`MAX_SCANNED`] entries.
    pub async fn audit_page(
        &self,
        org: OrgId,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Listing<AuditEntry>> {
        let collection = Collection::Audit(org.0);
        let total = self
            .list::<AuditEntry>(&collection, PageRequest { number: 1, size: 0 })
            .await?
            .total;
        if filter.is_empty() {
            // Newest first over a list kept oldest first: the page's window
            // counted from the end.
            let end = total.saturating_sub(page.offset());
            let start = end.saturating_sub(page.size);
            let found = self.engine().list(&collection, start, end - start).await?;
            let mut entities = found
                .records
                .into_iter()
                .map(super::decode::<AuditEntry>)
                .collect::<StoreResult<Vec<_>>>()?;
            entities.reverse();
            return Ok(Listing { total, entities });
        }
        const CHUNK: u64 = 200;
        let floor = total.saturating_sub(MAX_SCANNED);
        let mut end = total;
        let mut matched = Vec::new();
        while end > floor {
            let start = end.saturating_sub(CHUNK).max(floor);
            let found = self.engine().list(&collection, start, end - start).await?;
            let mut chunk = found
                .records
                .into_iter()
                .map(super::decode::<AuditEntry>)
                .collect::<StoreResult<Vec<_>>>()?;
            chunk.reverse();
            matched.extend(chunk.into_iter().filter(|e| filter.matches(e)));
            end = start;
        }
        let total = matched.len() as u64;
        let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
        let take = usize::try_from(page.size).unwrap_or(usize::MAX);
        Ok(Listing {
            total,
            entities: matched.into_iter().skip(skip).take(take).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_list_differing_fields_without_secret_values() {
        let before =
            json!({"name": "a", "version": 1, "clientSecretSet": false, "scopes": ["openid"]});
        let after = json!({"name": "b", "version": 2, "clientSecretSet": true, "scopes": ["openid"],
            "secret": "s3cr3t", "clientSecret": "x"});
        let found = changes(Some(&before), Some(&after));
        let fields: Vec<&str> = found.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["clientSecret", "clientSecretSet", "name", "secret"]
        );
        let text = serde_json::to_string(&found).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("\"x\""),
            "{text}"
        );
        assert_eq!(found[2].before, Some(json!("a")));
        assert_eq!(found[2].after, Some(json!("b")));
        assert_eq!(found[1].after, Some(json!(true)));
    }

    #[test]
    fn creation_and_deletion_list_every_field() {
        let shown = json!({"name": "q", "agentCapacity": 3});
        let created = changes(None, Some(&shown));
        assert_eq!(created.len(), 2);
        assert!(
            created
                .iter()
                .all(|c| c.before.is_none() && c.after.is_some())
        );
        let deleted = changes(Some(&shown), None);
        assert!(
            deleted
                .iter()
                .all(|c| c.before.is_some() && c.after.is_none())
        );
    }
}
