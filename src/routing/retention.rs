//! Retention and erasure: what is deleted when it has been kept long
//! enough, and what an admin erases on request.
//!
//! - **Retention.** An organization keeps ended conversations (with their
//!   logs), visitors' sessions and records, and its audit entries for its
//!   `retentionDays` (the node's default where it sets none); a deployment
//!   may set its own for its conversations and sessions. A session without
//!   a conversation (one that never spoke, or whose conversation was
//!   cleared or deleted) goes sooner, after the node's silent-session
//!   expiry: anonymous clients create sessions at will. The sweep runs on
//!   one node at a time, the holder of [`Space::RetentionLease`] (a
//!   session's push device goes with it); every
//!   step is idempotent (deleting what is gone is a no-op), so a node that
//!   dies midway leaves work the next sweep finishes. A conversation that
//!   waited for an agent longer than its retention goes too, so that a
//!   queue nobody answers does not grow forever.
//! - **Erasure.** One conversation, or everything about one signed-in
//!   visitor: their conversations and logs, sessions and record.
//!
//! Erasing a conversation removes its record, its log, and every mention
//! of it: its agent's load, its visitor's history, its session's current
//! conversation; one commit with version checks, so a concurrent change
//! makes it read and try again.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::commit::{MAX_ATTEMPTS, backoff};
use super::model::{AgentState, Conversation, ConversationState, GuestSession, Notice, Visitor};
use super::{Routing, RoutingError, RoutingResult};
use crate::auth::visitor_token::visitor_lists_key;
use crate::engine::{Channel, Collection, Commit, Expect, Kind, Lease, Space};
use crate::store::audit::AuditEntry;
use crate::store::push_devices::PushDevice;
use crate::store::records::{DeletedDeployment, Deployment, Queue};
use crate::store::types::OrgId;
use crate::store::{Record, StoreError, StoreResult, collection_of, decode, put_for};

/// How many records one read of a collection takes.
const BATCH: u64 = 100;

/// How many conversations (and as many sessions, and audit entries) one
/// sweep deletes per organization at most, so that one sweep stays short;
/// the next sweep goes on where it stopped.
const MAX_PER_SWEEP: u64 = 1000;

/// The id of the retention sweep's one lease.
const LEASE_ID: &str = "sweep";

/// The most sessions a visitor's list keeps (the newest): an erasure finds
/// older ones through their conversations, and those without one have long
/// expired.
const MAX_INDEXED_SESSIONS: usize = 1000;

/// How long the retention sweep's lease lasts: longer than any sweep, so
/// that two nodes never sweep at once; a node that dies holding it delays
/// the next sweep by this much at most.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(300);

/// What an erasure deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    /// The conversations erased, with their logs.
    pub conversations: Vec<Uuid>,
    /// Log entries (messages and events) deleted with them.
    pub log_entries: u64,
    /// Guest sessions deleted.
    pub sessions: u64,
    /// Visitor records deleted (0 or 1).
    pub visitors: u64,
    /// Refresh-token families revoked: every sign-in of the visitor's
    /// (their refresh tokens and session tokens stop working, and their
    /// sockets are logged out).
    pub token_families: u64,
    /// The (deployment, family) of each session deleted, for the caller to
    /// revoke with the visitor's other families.
    #[serde(skip)]
    pub session_families: Vec<(Uuid, Uuid)>,
}

/// What one retention sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub conversations: u64,
    pub log_entries: u64,
    pub sessions: u64,
    pub audit_entries: u64,
}

fn days(n: u32) -> chrono::Duration {
    chrono::Duration::days(i64::from(n))
}

impl Routing {
    /// Runs one retention sweep if no other node is running one: takes the
    /// lease, sweeps, lets go. Answers what was deleted, or `None` when
    /// another node holds the lease.
    pub async fn sweep_retention_once(&self, now: DateTime<Utc>) -> RoutingResult<Option<Swept>> {
        let holder = self.assigners.holder().as_bytes().to_vec();
        let lease = self
            .engine()
            .lease(Space::RetentionLease, LEASE_ID, &holder, LEASE_TTL)
            .await
            .map_err(StoreError::from)?;
        if !matches!(lease, Lease::Held) {
            return Ok(None);
        }
        let swept = self.sweep_retention(now).await;
        if let Err(e) = self
            .engine()
            .release(Space::RetentionLease, LEASE_ID, &holder)
            .await
        {
            tracing::warn!(error = %e, "cannot release the retention lease; it runs out");
        }
        swept.map(Some)
    }

    /// Deletes everything past its retention at `now`, in every
    /// organization. Idempotent; callers hold the retention lease (tests
    /// call it directly with the `now` they want).
    pub async fn sweep_retention(&self, now: DateTime<Utc>) -> RoutingResult<Swept> {
        let mut swept = Swept::default();
        let default_days = self.config.retention.default_days;
        for org in self.store.all_organizations().await? {
            let org_id = OrgId(org.meta.id);
            let org_days = org.retention_days.unwrap_or(default_days);
            let deployments = self
                .store
                .list_all::<Deployment>(&collection_of(Kind::Deployment, org_id))
                .await?;
            let by_deployment: HashMap<Uuid, u32> = deployments
                .iter()
                .map(|d| (d.meta.id, d.retention_days.unwrap_or(org_days)))
                .collect();
            let days_of =
                |deployment: Uuid| by_deployment.get(&deployment).copied().unwrap_or(org_days);
            let shortest = by_deployment
                .values()
                .copied()
                .chain([org_days])
                .min()
                .unwrap_or(org_days);
            let (conversations, entries) = self
                .sweep_conversations(
                    Collection::Ended(org_id.0),
                    now,
                    shortest,
                    days_of,
                    ended_at,
                )
                .await?;
            swept.conversations += conversations;
            swept.log_entries += entries;
            for queue in self
                .store
                .list_all::<Queue>(&collection_of(Kind::Queue, org_id))
                .await?
            {
                let (conversations, entries) = self
                    .sweep_conversations(
                        Collection::Waiting {
                            org: org_id.0,
                            queue: queue.meta.id,
                        },
                        now,
                        shortest,
                        days_of,
                        waiting_since,
                    )
                    .await?;
                swept.conversations += conversations;
                swept.log_entries += entries;
            }
            for deployment in &deployments {
                swept.sessions += self.sweep_sessions(org_id, deployment.meta.id, now).await?;
            }
            for gone in self
                .store
                .list_all::<DeletedDeployment>(&collection_of(Kind::DeletedDeployment, org_id))
                .await?
            {
                swept.sessions += self.sweep_deleted_deployment(&gone).await?;
            }
            swept.audit_entries += self.sweep_audit(org_id, now - days(org_days)).await?;
            if let Some(attachments) = &self.attachments {
                let orphans = attachments.sweep_orphans(org_id, now).await;
                if orphans > 0 {
                    tracing::info!(org = %org_id, orphans, "attachments never sent were deleted");
                }
            }
        }
        if swept != Swept::default() {
            tracing::info!(
                conversations = swept.conversations,
                log_entries = swept.log_entries,
                sessions = swept.sessions,
                audit_entries = swept.audit_entries,
                "retention: deleted what was past its time"
            );
        }
        Ok(swept)
    }

    /// The conversations of `collection` past their deployment's
    /// retention, counted from `since` (when they ended, or began to
    /// wait), by which the collection is ordered. Answers how many were
    /// erased and their log entries.
    async fn sweep_conversations(
        &self,
        collection: Collection,
        now: DateTime<Utc>,
        shortest_days: u32,
        days_of: impl Fn(Uuid) -> u32,
        since: fn(&ConversationState) -> Option<DateTime<Utc>>,
    ) -> RoutingResult<(u64, u64)> {
        // Nothing later than this is past any retention.
        let horizon = now - days(shortest_days);
        let (mut erased, mut entries, mut kept) = (0, 0, 0);
        loop {
            let page = self.page::<Conversation>(&collection, kept).await?;
            let full = page.len() as u64 == BATCH;
            for c in page {
                let Some(at) = since(&c.state) else {
                    kept += 1;
                    continue;
                };
                if at >= horizon {
                    return Ok((erased, entries));
                }
                if at < now - days(days_of(c.deployment_id)) {
                    if let Some(n) = self
                        .erase_conversation(c.org_id, c.meta.id, None, now)
                        .await?
                    {
                        erased += 1;
                        entries += n;
                    }
                    if erased >= MAX_PER_SWEEP {
                        return Ok((erased, entries));
                    }
                } else {
                    kept += 1;
                }
            }
            if !full {
                return Ok((erased, entries));
            }
        }
    }

    /// Sessions of a deployment without a conversation whose last
    /// activity is older than the silent-session expiry: those that never
    /// spoke, were cleared, or whose conversation was deleted.
    async fn sweep_sessions(
        &self,
        org: OrgId,
        deployment: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<u64> {
        let silent = chrono::Duration::from_std(self.config.retention.silent_session)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = now - silent;
        let collection = Collection::DeploymentSessions {
            org: org.0,
            deployment,
        };
        let (mut deleted, mut kept) = (0, 0);
        loop {
            let page = self.page::<GuestSession>(&collection, kept).await?;
            let full = page.len() as u64 == BATCH;
            for s in page {
                // Listed by last activity (or, for older sessions, by
                // creation, which is never later): the rest are newer.
                if s.meta.date_created >= cutoff {
                    return Ok(deleted);
                }
                let lapsed = s.last_active < cutoff
                    && match s.conversation_id {
                        None => true,
                        Some(c) => self.conversation(org, c).await?.is_none(),
                    };
                let gone = lapsed
                    && self
                        .store
                        .commit(
                            Commit::new()
                                .delete(s.key(), Expect::Version(s.meta.version))
                                .delete(
                                    PushDevice::key_of(org, deployment, s.meta.id),
                                    Expect::Any,
                                ),
                        )
                        .await
                        .is_ok();
                if gone {
                    deleted += 1;
                    if deleted >= MAX_PER_SWEEP {
                        return Ok(deleted);
                    }
                } else {
                    // In use, changed meanwhile (the next sweep looks
                    // again), or not yet due.
                    kept += 1;
                }
            }
            if !full {
                return Ok(deleted);
            }
        }
    }

    /// Everything a deleted deployment left: its guest sessions (whatever
    /// their age: nobody can use them any more) and its push devices, at
    /// most [`MAX_PER_SWEEP`] records a sweep; then its tombstone. Its
    /// conversations are the organization's and go with its retention.
    /// Answers how many sessions were deleted.
    async fn sweep_deleted_deployment(&self, gone: &DeletedDeployment) -> RoutingResult<u64> {
        let (org, id) = (gone.org_id, gone.meta.id);
        let mut sessions = 0;
        let mut deleted = 0;
        for collection in [
            Collection::DeploymentSessions {
                org: org.0,
                deployment: id,
            },
            PushDevice::collection_of(org, id),
        ] {
            loop {
                let page = self
                    .engine()
                    .list(&collection, 0, BATCH)
                    .await
                    .map_err(StoreError::from)?;
                if page.records.is_empty() {
                    break;
                }
                let is_sessions = matches!(collection, Collection::DeploymentSessions { .. });
                let mut commit = Commit::new();
                for record in &page.records {
                    commit = commit.delete(record.key.clone(), Expect::Any);
                    if is_sessions && let Ok(session) = record.key.id.parse::<Uuid>() {
                        commit = commit.delete(PushDevice::key_of(org, id, session), Expect::Any);
                    }
                }
                self.store.commit(commit).await?;
                let n = page.records.len() as u64;
                deleted += n;
                if is_sessions {
                    sessions += n;
                }
                if deleted >= MAX_PER_SWEEP {
                    // The rest, and the tombstone, at the next sweep.
                    return Ok(sessions);
                }
            }
        }
        self.store
            .commit(Commit::new().delete(gone.key(), Expect::Version(gone.meta.version)))
            .await?;
        tracing::info!(deployment = %id, sessions, "retention: a deleted deployment's sessions are gone");
        Ok(sessions)
    }

    /// Audit entries of `org` older than `cutoff`.
    async fn sweep_audit(&self, org: OrgId, cutoff: DateTime<Utc>) -> RoutingResult<u64> {
        let collection = Collection::Audit(org.0);
        let mut deleted = 0;
        loop {
            let page = self.page::<AuditEntry>(&collection, 0).await?;
            let full = page.len() as u64 == BATCH;
            let due: Vec<&AuditEntry> = page.iter().filter(|e| e.time < cutoff).collect();
            let all_due = due.len() == page.len();
            if !due.is_empty() {
                let commit = due.iter().fold(Commit::new(), |commit, e| {
                    commit.delete(e.key(), Expect::Any)
                });
                self.store.commit(commit).await?;
                deleted += due.len() as u64;
            }
            if !full || !all_due || deleted >= MAX_PER_SWEEP {
                return Ok(deleted);
            }
        }
    }

    /// One batch of a collection from `offset`.
    async fn page<T: Record>(&self, collection: &Collection, offset: u64) -> StoreResult<Vec<T>> {
        let page = self
            .engine()
            .list(collection, offset, BATCH)
            .await
            .map_err(StoreError::from)?;
        page.records.into_iter().map(decode::<T>).collect()
    }

    /// Erases one conversation: its record and log, and its mentions in
    /// its agent's load, its visitor's history (`visitor`, or the visitor
    /// its session names) and its session. Answers how many log entries
    /// went, or `None` when there was no such conversation (its log, if
    /// any was left, is deleted all the same).
    pub async fn erase_conversation(
        &self,
        org: OrgId,
        id: Uuid,
        visitor: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> RoutingResult<Option<u64>> {
        let mut agent = None;
        let mut found = false;
        for attempt in 0.. {
            if attempt == MAX_ATTEMPTS {
                return Err(RoutingError::Contended);
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(c) = self.conversation(org, id).await? else {
                break;
            };
            found = true;
            agent = c.agent();
            let mut commit = Commit::new().delete(c.key(), Expect::Version(c.meta.version));
            if let Some(agent) = agent
                && let Some(mut state) = self.store.find::<AgentState>(org, agent).await?
                && state.conversations.contains(&id)
            {
                state.conversations.retain(|held| *held != id);
                if state.conversations.is_empty() {
                    state.idle_since = now;
                }
                commit = commit.put(touched(&mut state, now)?);
            }
            let session = self.store.find::<GuestSession>(org, c.session_id).await?;
            let visitor = visitor.or(session.as_ref().and_then(|s| s.visitor_id));
            if let Some(mut session) = session
                && session.conversation_id == Some(id)
            {
                session.conversation_id = None;
                commit = commit.put(touched(&mut session, now)?);
            }
            if let Some(visitor) = visitor
                && let Some(mut record) = self.store.find::<Visitor>(org, visitor).await?
                && record.conversations.contains(&id)
            {
                record.conversations.retain(|held| *held != id);
                commit = if record.conversations.is_empty() {
                    commit.delete(record.key(), Expect::Version(record.meta.version))
                } else {
                    commit.put(touched(&mut record, now)?)
                };
            }
            match self.store.commit(commit).await {
                Ok(()) => break,
                Err(StoreError::Stale { .. } | StoreError::Conflict(_) | StoreError::NotFound) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let entries = self
            .engine()
            .delete_log(id)
            .await
            .map_err(StoreError::from)?;
        if found && let Some(attachments) = &self.attachments {
            attachments.delete_conversations(org, &[id]).await;
        }
        if let Some(agent) = agent {
            self.notify(&Channel::Agent(agent), &Notice::AgentChanged)
                .await;
        }
        if found {
            tracing::info!(conversation = %id, entries, "conversation erased");
        }
        Ok(found.then_some(entries))
    }

    /// Notes that `visitor` of `org` signed in to `session`, in the
    /// visitor's list of sessions ([`Space::VisitorSessions`]), which an
    /// erasure reads instead of every session of the organization. The list
    /// lasts as long as a signed-in session without a conversation can (the
    /// silent-session expiry after its last sign-in, every reconnect being
    /// one) or its refresh-token family (whichever is longer); a session
    /// with a conversation is found through it.
    pub(super) async fn index_visitor_session(
        &self,
        org: OrgId,
        visitor: Uuid,
        session: Uuid,
    ) -> RoutingResult<()> {
        let ttl = self
            .config
            .retention
            .silent_session
            .max(crate::auth::refresh::MAX_FAMILY_LIFETIME);
        self.engine()
            .remember(
                Space::VisitorSessions,
                &visitor_lists_key(org, visitor),
                &session.to_string(),
                ttl,
                MAX_INDEXED_SESSIONS,
            )
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Erases everything about one signed-in visitor of `org`: their
    /// conversations (with logs), every session signed in as them (and the
    /// conversations those sessions had; their sockets are told to close),
    /// and their record. The sessions are the ones their list names and the
    /// ones their conversations were had in: no scan of the organization's
    /// sessions. What the caller must still revoke, the refresh-token
    /// families of those sessions, is in [`Erased::session_families`].
    pub async fn erase_visitor(
        &self,
        org: OrgId,
        visitor: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<Erased> {
        let mut erased = Erased::default();
        let record = self.store.find::<Visitor>(org, visitor).await?;
        let mut conversations = record
            .as_ref()
            .map(|v| v.conversations.clone())
            .unwrap_or_default();
        let index = visitor_lists_key(org, visitor);
        let mut session_ids: Vec<Uuid> = self
            .engine()
            .recall(Space::VisitorSessions, &index)
            .await
            .map_err(StoreError::from)?
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect();
        for id in &conversations {
            if let Some(c) = self.conversation(org, *id).await? {
                session_ids.push(c.session_id);
            }
        }
        session_ids.sort();
        session_ids.dedup();
        let mut sessions = Vec::new();
        for id in session_ids {
            if let Some(session) = self.store.find::<GuestSession>(org, id).await?
                && session.visitor_id == Some(visitor)
            {
                conversations.extend(session.conversation_id);
                sessions.push(session);
            }
        }
        conversations.sort();
        conversations.dedup();
        for id in conversations {
            if self.conversation(org, id).await?.is_none() {
                continue;
            }
            if let Some(entries) = self.erase_conversation(org, id, Some(visitor), now).await? {
                erased.conversations.push(id);
                erased.log_entries += entries;
            }
        }
        for session in sessions {
            if let Some(family) = session.token_family {
                erased
                    .session_families
                    .push((session.deployment_id, family));
            }
            self.store
                .commit(Commit::new().delete(session.key(), Expect::Any).delete(
                    PushDevice::key_of(org, session.deployment_id, session.meta.id),
                    Expect::Any,
                ))
                .await?;
            erased.sessions += 1;
            // Its sockets go: what they showed no longer exists.
            self.notify(
                &Channel::Session(session.meta.id),
                &Notice::SessionEnded {
                    reason: super::model::SessionEndReason::Closed,
                    except_socket: None,
                },
            )
            .await;
        }
        if let Some(record) = record {
            self.store
                .commit(Commit::new().delete(record.key(), Expect::Any))
                .await?;
            erased.visitors = 1;
        }
        self.engine()
            .discard(Space::VisitorSessions, &index)
            .await
            .map_err(StoreError::from)?;
        tracing::info!(%org, conversations = erased.conversations.len(), sessions = erased.sessions, "visitor erased");
        Ok(erased)
    }
}

fn ended_at(state: &ConversationState) -> Option<DateTime<Utc>> {
    match state {
        ConversationState::Ended { at, .. } => Some(*at),
        _ => None,
    }
}

/// Nobody answered it: a conversation that waited longer than its
/// retention goes too, so a queue without agents does not grow forever.
fn waiting_since(state: &ConversationState) -> Option<DateTime<Utc>> {
    match state {
        ConversationState::Waiting { since } => Some(*since),
        _ => None,
    }
}

/// The write that stores `record` changed at `now`, expecting the version
/// it was read at.
fn touched<R: Record>(record: &mut R, now: DateTime<Utc>) -> StoreResult<crate::engine::Put> {
    let version = record.meta().version;
    record.meta_mut().date_modified = now;
    put_for(record, Expect::Version(version))
}
