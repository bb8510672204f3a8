//! The sweeper: what no socket asks for. It times offers out, notices agents
//! whose sockets are gone (their heartbeat expired), and now and then wakes
//! every queue where conversations wait and nobody holds the assignment
//! lease, in case a wake-up was lost with a node. Its work is idempotent,
//! so every node runs it and none leads. Once a minute it also offers to
//! run the retention sweep, which one node at a time does.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide;
use super::model::{AgentState, Conversation, ConversationState, Notice, PresenceKind};
use super::{AgentIdentity, Routing, RoutingError, RoutingResult};
use crate::engine::{Channel, Collection, Space};
use crate::store::records::Queue;
use crate::store::types::OrgId;
use crate::store::{PageRequest, Record, StoreError, collection_of};

/// How many sweeps pass between two looks for queues nobody assigns.
const WAKE_ALL_EVERY: u64 = 5;

/// How many sweeps pass between two retention sweeps (one node at a time
/// runs it, under its lease; see `retention.rs`).
const RETENTION_EVERY: u64 = 60;

/// How many offers one sweep looks at, earliest deadline first.
const OFFERS_PER_SWEEP: u64 = 50;

impl Routing {
    /// Runs the sweeper until `shutdown` resolves.
    pub async fn sweep_until(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    // Leases go now, so other nodes take the queues over
                    // without waiting for them to run out.
                    self.assigners.close();
                    return;
                }
                _ = tick.tick() => {}
            }
            rounds += 1;
            let now = Utc::now();
            if let Err(e) = self.expire_offers(now).await {
                tracing::warn!(error = %e, "sweeping offers failed");
            }
            if let Err(e) = self.sweep_agents(now).await {
                tracing::warn!(error = %e, "sweeping agents failed");
            }
            if rounds.is_multiple_of(WAKE_ALL_EVERY)
                && let Err(e) = self.wake_unassigned().await
            {
                tracing::warn!(error = %e, "looking for unassigned queues failed");
            }
            if rounds.is_multiple_of(RETENTION_EVERY)
                && let Err(e) = self.sweep_retention_once(now).await
            {
                tracing::warn!(error = %e, "the retention sweep failed; the next one goes on");
            }
        }
    }

    /// Times out offers whose deadline passed: back to the queue, and the
    /// agent who let it lapse goes away.
    pub async fn expire_offers(&self, now: DateTime<Utc>) -> RoutingResult<()> {
        for org in self.org_ids().await? {
            self.expire_offers_of(org, now).await?;
        }
        Ok(())
    }

    async fn expire_offers_of(&self, org: OrgId, now: DateTime<Utc>) -> RoutingResult<()> {
        let offered = self
            .store
            .list::<Conversation>(
                &Collection::Offered(org.0),
                PageRequest {
                    number: 1,
                    size: OFFERS_PER_SWEEP,
                },
            )
            .await?;
        for c in offered.entities {
            let ConversationState::Offered {
                agent_id, deadline, ..
            } = c.state
            else {
                continue;
            };
            // Listed by deadline: the rest are later still.
            if deadline > now {
                break;
            }
            let result = self
                .transition(org, c.meta.id, agent_id, now, decide::expire_offer)
                .await;
            match result {
                Ok(c) => {
                    tracing::info!(conversation = %c.meta.id, agent = %agent_id, "offer timed out");
                    self.notify(&Channel::Agent(agent_id), &Notice::AgentChanged)
                        .await;
                    self.wake_queue(org, c.queue_id);
                }
                Err(RoutingError::NotAllowed(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Agents whose heartbeat expired: offline, their conversations back to
    /// their queues.
    pub async fn sweep_agents(&self, now: DateTime<Utc>) -> RoutingResult<()> {
        for org in self.org_ids().await? {
            let online = self
                .store
                .list_all::<AgentState>(&Collection::OnlineAgents(org.0))
                .await?;
            for agent in online {
                if !self.alive(agent.meta.id).await? {
                    self.agent_gone(org, agent.meta.id, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Every organization's id: the sweeps walk each one's lists, which
    /// live in its own home.
    pub(super) async fn org_ids(&self) -> RoutingResult<Vec<OrgId>> {
        Ok(self
            .store
            .all_organizations()
            .await?
            .into_iter()
            .map(|org| OrgId(org.meta.id))
            .collect())
    }

    /// Takes an agent offline and re-queues everything it held.
    pub async fn agent_gone(
        &self,
        org: OrgId,
        agent: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        let Some(state) = self.store.find::<AgentState>(org, agent).await? else {
            return Ok(());
        };
        let identity = AgentIdentity {
            id: agent,
            org: state.org_id,
            name: state.display_name.clone(),
            is_member: true,
        };
        for conversation in state.conversations {
            let result = self
                .transition(org, conversation, agent, now, |c, a, now| {
                    decide::release_lost(c, a, now);
                    Ok(())
                })
                .await;
            match result {
                Ok(c) => {
                    if c.agents.contains(&agent)
                        && matches!(c.state, ConversationState::Waiting { .. })
                    {
                        // Best effort: the re-queue is what matters.
                        let _ = self
                            .append_presence(conversation, &identity, PresenceKind::Leave, now)
                            .await;
                    }
                    self.wake_queue(org, c.queue_id);
                }
                Err(RoutingError::UnknownConversation) => {}
                Err(e) => return Err(e),
            }
        }
        // Offline only if the agent did not come back meanwhile.
        if !self.alive(agent).await? {
            self.update_agent(org, agent, now, decide::go_offline)
                .await?;
            tracing::info!(%agent, "agent offline; conversations re-queued");
        }
        Ok(())
    }

    /// Whether one of the agent's sockets beat within the grace period.
    async fn alive(&self, agent: Uuid) -> RoutingResult<bool> {
        let beat = self
            .engine()
            .peek(Space::AgentAlive, &agent.to_string())
            .await
            .map_err(StoreError::from)?;
        Ok(beat.is_some())
    }

    /// Wakes every queue where conversations wait while no node holds its
    /// lease: a wake lost with a node that died, a lease that ran out with
    /// its holder. A queue with a holder is the holder's.
    async fn wake_unassigned(&self) -> RoutingResult<()> {
        for org in self.org_ids().await? {
            let collection = collection_of(Queue::KIND, org);
            for queue in self.store.list_all::<Queue>(&collection).await? {
                let id = queue.meta.id;
                if self.assigners.has(id) {
                    continue;
                }
                let held = self
                    .engine()
                    .peek(Space::AssignLease, &id.to_string())
                    .await
                    .map_err(StoreError::from)?;
                if held.is_some() {
                    continue;
                }
                let waiting = self
                    .store
                    .list::<Conversation>(
                        &Collection::Waiting {
                            org: org.0,
                            queue: id,
                        },
                        PageRequest { number: 1, size: 1 },
                    )
                    .await?;
                if !waiting.entities.is_empty() {
                    self.wake_queue(org, id);
                }
            }
        }
        Ok(())
    }
}
