//! What a visitor's traffic may create: new conversations are rate-limited
//! per client address and per deployment, and the conversations one
//! address has waiting in a deployment's queues are bounded, so that one
//! client cannot fill the queues real visitors wait in.
//!
//! The bound keeps, per address and deployment, the ids of the newest
//! conversations it opened (an ephemeral value that expires a day after the
//! last one, added to in one engine step), and counts those whose records
//! still wait: the records are
//! the truth, the list only says where to look, so a conversation that
//! ended or was answered stops counting at once.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::model::{Conversation, ConversationState};
use super::{Routing, RoutingError, RoutingResult};
use crate::engine::{RecordKey, Space};
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

/// What the two rates of new conversations refuse.
const PER_ADDRESS: &str = "new conversations from this address";
const PER_DEPLOYMENT: &str = "new conversations in this deployment";

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
        let per_deployment = Key::ConversationsPerDeployment { deployment: id };
        let Some(address) = client else {
            return self
                .limiter
                .admit(per_deployment, rates.conversations_per_deployment)
                .await
                .map_err(limited(PER_DEPLOYMENT));
        };
        let bound = usize::try_from(rates.queued_per_address).unwrap_or(usize::MAX);
        if self.queue_full(address, deployment, bound).await? {
            return Err(RoutingError::Limited {
                what: "conversations waiting from this address",
                retry_after: QUEUE_FULL_RETRY,
            });
        }
        // Both buckets in one engine step, all or none: a conversation
        // refused by the deployment's rate spends nothing of the address's.
        let per_address = Key::ConversationsPerAddress {
            address,
            deployment: id,
        };
        let buckets = [
            (per_address, rates.conversations_per_address),
            (per_deployment, rates.conversations_per_deployment),
        ];
        self.limiter
            .admit_all(deployment.org_id, &buckets)
            .await
            .map_err(|(index, refused)| {
                let what = if index == 0 {
                    PER_ADDRESS
                } else {
                    PER_DEPLOYMENT
                };
                limited(what)(refused)
            })
    }

    /// Adds a conversation just opened to its address's list. A failure
    /// only loses count of this one.
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

    /// Whether `bound` conversations or more from `address` in
    /// `deployment` still wait for an agent (waiting or offered). An address
    /// whose list holds fewer than `bound` ids cannot be at it, and its
    /// records are not read: most arrivals cost one small read here, where
    /// reading every listed record made each arrival from a busy address
    /// read all the conversations it opened before (in a burst from a few
    /// addresses, tens of records per arrival; docs/benchmarks.md).
    async fn queue_full(
        &self,
        address: IpAddr,
        deployment: &Deployment,
        bound: usize,
    ) -> RoutingResult<bool> {
        let listed = self
            .engine()
            .peek(
                Space::QueuedByAddress,
                &list_id(address, deployment.meta.id),
            )
            .await
            .map_err(StoreError::from)?;
        let listed = parse_list(listed.as_deref());
        if listed.len() < bound {
            return Ok(false);
        }
        Ok(self.still_waiting(deployment.org_id, listed).await? >= bound)
    }

    /// How many of `ids` still wait for an agent (waiting or offered).
    async fn still_waiting(&self, org: OrgId, ids: Vec<Uuid>) -> RoutingResult<usize> {
        if ids.is_empty() {
            return Ok(0);
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
        let mut waiting = 0;
        for record in found.into_iter().flatten() {
            let conversation: Conversation = crate::store::decode(record)?;
            if matches!(
                conversation.state,
                ConversationState::Waiting { .. } | ConversationState::Offered { .. }
            ) {
                waiting += 1;
            }
        }
        Ok(waiting)
    }

    /// One atomic step in the engine, whatever other nodes add at once.
    /// It used to be read, prune, write back over the value read, retried
    /// on a race: a burst of arrivals from one address (a NAT, an office)
    /// raced on the list, most adds gave up, and the bound let through
    /// what it should have counted (docs/benchmarks.md).
    async fn add_queued(
        &self,
        address: IpAddr,
        deployment: &Deployment,
        conversation: Uuid,
    ) -> RoutingResult<()> {
        let bound = self.limiter.org(deployment.org_id).await.queued_per_address;
        self.engine()
            .remember(
                Space::QueuedByAddress,
                &list_id(address, deployment.meta.id),
                &conversation.to_string(),
                QUEUED_LIST_TTL,
                list_cap(bound),
            )
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}

/// How many of an address's newest conversations its list keeps: four
/// times the bound, at least 64. Those that ended are not pruned (that
/// would be a read and a write, which race), only pushed out by newer
/// ones; a still-waiting one is pushed out only by that many newer
/// conversations from the same address, which the per-address rate of new
/// conversations spreads over time.
fn list_cap(bound: u32) -> usize {
    usize::try_from(bound)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .max(64)
}

/// `<deployment>:<address>`, the address as per-address limits count it.
fn list_id(address: IpAddr, deployment: Uuid) -> String {
    format!("{deployment}:{}", address_key(address))
}

/// The stored list (newline-separated ids, as the engine's `remember`
/// keeps them; a JSON array as written before); anything unreadable is
/// skipped (it is only where to look).
fn parse_list(body: Option<&[u8]>) -> Vec<Uuid> {
    let Some(body) = body else {
        return Vec::new();
    };
    if body.first() == Some(&b'[') {
        return serde_json::from_slice(body).unwrap_or_default();
    }
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_in_either_format_and_skip_what_is_not_an_id() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let lines = format!("{a}\nnot an id\n{b}");
        assert_eq!(parse_list(Some(lines.as_bytes())), [a, b]);
        let json = serde_json::to_vec(&[a, b]).unwrap();
        assert_eq!(parse_list(Some(&json)), [a, b]);
        assert!(parse_list(Some(b"[broken")).is_empty());
        assert!(parse_list(None).is_empty());
    }

    #[test]
    fn a_list_keeps_several_times_the_bound() {
        assert_eq!(list_cap(2), 64);
        assert_eq!(list_cap(20), 80);
        assert_eq!(list_cap(10_000), 40_000);
    }
}
