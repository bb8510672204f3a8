//! What a visitor's traffic may create: new conversations are rate-limited
//! per client address and per deployment, and the conversations one
//! address has waiting in a deployment's queues are bounded, so that one
//! client cannot fill the queues real visitors wait in.
//!
//! The bound keeps, per address and deployment, the ids of the
//! conversations it opened (an ephemeral value that expires a day after the
//! last one), and counts those whose records still wait: the records are
//! the truth, the list only says where to look, so a conversation that
//! ended or was answered stops counting at once.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::model::{Conversation, ConversationState};
use super::{Routing, RoutingError, RoutingResult};
use crate::engine::{RecordKey, Space, StashMode};
use crate::limits::{Key, Refused, address_key};
use crate::store::StoreError;
use crate::store::records::Deployment;
use crate::store::types::OrgId;

/// How long an address's list of conversations is kept after the last
/// one it opened: longer than any conversation waits in practice.
const QUEUED_LIST_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a client whose conversations fill its share of the queue is told
/// to wait before trying again.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(30);

/// Attempts at adding to an address's list while other nodes add to it too.
const LIST_ATTEMPTS: usize = 8;

fn limited(what: &'static str) -> impl Fn(Refused) -> RoutingError {
    move |refused| RoutingError::Limited {
        what,
        retry_after: refused.retry_after,
    }
}

impl Routing {
    /// Admits a new conversation from `client` (when the visitor's address
    /// is known) in `deployment`, or refuses it with
    /// [`RoutingError::Limited`].
    pub(super) async fn admit_conversation(
        &self,
        client: Option<IpAddr>,
        deployment: &Deployment,
    ) -> RoutingResult<()> {
        let rates = self.limiter.org(deployment.org_id).await;
        let id = deployment.meta.id;
        if let Some(address) = client {
            let waiting = self.queued_from(address, deployment).await?;
            if waiting.len() >= usize::try_from(rates.queued_per_address).unwrap_or(usize::MAX) {
                return Err(RoutingError::Limited {
                    what: "conversations waiting from this address",
                    retry_after: QUEUE_FULL_RETRY,
                });
            }
            self.limiter
                .admit(
                    Key::ConversationsPerAddress {
                        address,
                        deployment: id,
                    },
                    rates.conversations_per_address,
                )
                .await
                .map_err(limited("new conversations from this address"))?;
        }
        self.limiter
            .admit(
                Key::ConversationsPerDeployment { deployment: id },
                rates.conversations_per_deployment,
            )
            .await
            .map_err(limited("new conversations in this deployment"))
    }

    /// Adds a conversation just opened to its address's list, dropping the
    /// ones that no longer wait. A failure only loses count of this one.
    pub(super) async fn record_queued(
        &self,
        client: Option<IpAddr>,
        deployment: &Deployment,
        conversation: Uuid,
    ) {
        let Some(address) = client else { return };
        if let Err(e) = self.add_queued(address, deployment, conversation).await {
            tracing::warn!(%conversation, error = %e, "cannot count a conversation against its address");
        }
    }

    /// The conversations from `address` in `deployment` that still wait
    /// for an agent (waiting or offered).
    async fn queued_from(
        &self,
        address: IpAddr,
        deployment: &Deployment,
    ) -> RoutingResult<Vec<Uuid>> {
        let listed = self
            .engine()
            .peek(
                Space::QueuedByAddress,
                &list_id(address, deployment.meta.id),
            )
            .await
            .map_err(StoreError::from)?;
        self.still_waiting(deployment.org_id, parse_list(listed.as_deref()))
            .await
    }

    async fn still_waiting(&self, org: OrgId, ids: Vec<Uuid>) -> RoutingResult<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(ids);
        }
        let keys: Vec<RecordKey> = ids
            .iter()
            .map(|&id| Conversation::key_of(org, id))
            .collect();
        let found = self
            .engine()
            .get_many(&keys)
            .await
            .map_err(StoreError::from)?;
        let mut waiting = Vec::new();
        for (id, record) in ids.into_iter().zip(found) {
            let Some(record) = record else { continue };
            let conversation: Conversation = crate::store::decode(record)?;
            if matches!(
                conversation.state,
                ConversationState::Waiting { .. } | ConversationState::Offered { .. }
            ) {
                waiting.push(id);
            }
        }
        Ok(waiting)
    }

    /// Read, prune, write back with the new id; written only over the
    /// value read (or where none was), so two nodes adding at once both
    /// end up in the list.
    async fn add_queued(
        &self,
        address: IpAddr,
        deployment: &Deployment,
        conversation: Uuid,
    ) -> RoutingResult<()> {
        let id = list_id(address, deployment.meta.id);
        let engine = self.engine();
        for _ in 0..LIST_ATTEMPTS {
            let listed = engine
                .peek(Space::QueuedByAddress, &id)
                .await
                .map_err(StoreError::from)?;
            let mut ids = self
                .still_waiting(deployment.org_id, parse_list(listed.as_deref()))
                .await?;
            if !ids.contains(&conversation) {
                ids.push(conversation);
            }
            let body = serde_json::to_vec(&ids).unwrap_or_default();
            let written = match listed {
                None => engine
                    .stash(
                        Space::QueuedByAddress,
                        &id,
                        &body,
                        QUEUED_LIST_TTL,
                        StashMode::IfAbsent,
                    )
                    .await
                    .map_err(StoreError::from)?,
                Some(before) => {
                    let previous = engine
                        .swap(Space::QueuedByAddress, &id, &body)
                        .await
                        .map_err(StoreError::from)?;
                    match previous {
                        Some(previous) if previous == before => true,
                        // Another node wrote between the read and the swap:
                        // its ids are merged on the next round.
                        Some(previous) => {
                            let mut merged = parse_list(Some(&previous));
                            for mine in ids {
                                if !merged.contains(&mine) {
                                    merged.push(mine);
                                }
                            }
                            let body = serde_json::to_vec(&merged).unwrap_or_default();
                            engine
                                .swap(Space::QueuedByAddress, &id, &body)
                                .await
                                .map_err(StoreError::from)?;
                            continue;
                        }
                        None => false,
                    }
                }
            };
            if written {
                return Ok(());
            }
        }
        Err(RoutingError::Contended)
    }
}

/// `<deployment>:<address>`, the address as per-address limits count it.
fn list_id(address: IpAddr, deployment: Uuid) -> String {
    format!("{deployment}:{}", address_key(address))
}

/// The stored list; anything unreadable counts as empty (it is only where
/// to look).
fn parse_list(body: Option<&[u8]>) -> Vec<Uuid> {
    body.and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default()
}
