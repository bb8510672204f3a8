//! Assignment: offers to agents, and what an agent does with a conversation
//! (accept, decline, transfer, end). Each changes the conversation and its
//! agent's record in one commit, decided by a function of [`decide`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide;
use super::events::agent_participant;
use super::model::{AgentState, AgentStatus, Conversation, EventBody, Notice, PresenceKind};
use super::{AgentIdentity, NewEvent, Routing, RoutingError, RoutingResult, TransferTarget};
use crate::engine::{Channel, Collection};
use crate::store::records::Queue;
use crate::store::{PageRequest, StoreError};

/// How many offers one routing pass makes at most before it yields; the
/// sweeper's next pass goes on.
const MAX_OFFERS_PER_PASS: usize = 64;

/// How many waiting conversations one offer considers, longest waiting
/// first: enough to get past a few that every available agent declined.
const WAITING_WINDOW: u64 = 16;

impl Routing {
    /// Changes a conversation and its agent's record together, as `decide`
    /// says, tells both that it changed, and answers the conversation.
    /// `decide` sees both records and may refuse; the commit checks both
    /// versions.
    pub(super) async fn transition(
        &self,
        conversation: Uuid,
        agent: Uuid,
        now: DateTime<Utc>,
        mut decide: impl FnMut(&mut Conversation, &mut AgentState, DateTime<Utc>) -> RoutingResult<()>,
    ) -> RoutingResult<Conversation> {
        let c = self
            .read_modify_commit(
                move || self.held(conversation, agent),
                |(mut c, mut a), writes| {
                    decide(&mut c, &mut a, now)?;
                    writes.put(&mut c, now)?;
                    writes.put(&mut a, now)?;
                    Ok(c)
                },
            )
            .await?;
        let changed = Notice::Changed {
            conversation_id: conversation,
        };
        self.notify(&Channel::Agent(agent), &changed).await;
        self.notify(&Channel::Conversation(conversation), &changed)
            .await;
        Ok(c)
    }

    /// A conversation and an agent of the same organization.
    async fn held(
        &self,
        conversation: Uuid,
        agent: Uuid,
    ) -> RoutingResult<(Conversation, AgentState)> {
        let c = self.existing_conversation(conversation).await?;
        let a = self
            .store
            .find::<AgentState>(agent)
            .await?
            .ok_or(RoutingError::NotAllowed("the agent is not connected"))?;
        if c.org_id != a.org_id {
            return Err(RoutingError::UnknownConversation);
        }
        Ok((c, a))
    }

    /// Accepts an offer.
    pub async fn accept(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let c = self
            .transition(conversation, agent.id, now, decide::accept)
            .await?;
        self.append_presence(conversation, agent, PresenceKind::Join, now)
            .await?;
        Ok(c)
    }

    /// Declines an offer: the conversation goes back to its queue, ahead of
    /// later arrivals, and is not offered to this agent again.
    pub async fn decline(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let c = self
            .transition(conversation, agent.id, now, decide::decline)
            .await?;
        self.wake_queue(c.queue_id).await;
        Ok(c)
    }

    /// Sends a connected conversation to another queue or agent.
    pub async fn transfer(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        target: TransferTarget,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        // The target must exist in the agent's organization.
        match target {
            TransferTarget::Queue(queue) => {
                self.store
                    .get::<Queue>(agent.org, queue)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => RoutingError::NotAllowed("no such queue"),
                        e => e.into(),
                    })?;
            }
            TransferTarget::Agent(target) => {
                let state = self.store.find::<AgentState>(target).await?;
                if !state.is_some_and(|s| s.org_id == agent.org && s.status != AgentStatus::Offline)
                {
                    return Err(RoutingError::NotAllowed("that agent is not connected"));
                }
            }
        }
        let c = self
            .transition(conversation, agent.id, now, |c, a, now| {
                decide::transfer(c, a, target, now)
            })
            .await?;
        self.append_presence(conversation, agent, PresenceKind::Leave, now)
            .await?;
        let (queue_id, agent_id) = match target {
            TransferTarget::Queue(q) => (Some(q), None),
            TransferTarget::Agent(a) => (None, Some(a)),
        };
        self.append(
            conversation,
            agent_participant(agent),
            NewEvent {
                body: EventBody::Transfer { queue_id, agent_id },
                dedup: None,
            },
            now,
        )
        .await?;
        match target {
            TransferTarget::Queue(queue) => self.wake_queue(queue).await,
            TransferTarget::Agent(target) => {
                if let Err(e) = self.offer_to(conversation, target, now).await {
                    tracing::info!(%conversation, error = %e, "direct transfer not possible; the conversation waits in its queue");
                    self.wake_queue(c.queue_id).await;
                }
            }
        }
        Ok(c)
    }

    /// Ends a conversation with an optional wrap-up code.
    pub async fn end(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        wrap_up: Option<String>,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let c = self
            .transition(conversation, agent.id, now, |c, a, now| {
                decide::end(c, a, wrap_up.clone(), now)
            })
            .await?;
        self.append_presence(conversation, agent, PresenceKind::Disconnect, now)
            .await?;
        self.append(
            conversation,
            agent_participant(agent),
            NewEvent {
                body: EventBody::Ended { wrap_up },
                dedup: None,
            },
            now,
        )
        .await?;
        for queue in self
            .agent_state(agent.id)
            .await?
            .map(|a| a.queues)
            .unwrap_or_default()
        {
            self.wake_queue(queue).await;
        }
        Ok(c)
    }

    /// Routes a queue now, on this node.
    pub(super) async fn wake_queue(&self, queue: Uuid) {
        self.route(queue, Utc::now()).await;
    }

    /// Offers waiting conversations of a queue to available agents with
    /// capacity, longest idle first, until one of the two runs out.
    pub async fn route(&self, queue: Uuid, now: DateTime<Utc>) {
        for _ in 0..MAX_OFFERS_PER_PASS {
            match self.offer_next(queue, now).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "routing failed; the sweeper retries");
                    break;
                }
            }
        }
    }

    /// Makes at most one offer. Answers whether routing should look again.
    async fn offer_next(&self, queue_id: Uuid, now: DateTime<Utc>) -> RoutingResult<bool> {
        let offered = self
            .read_modify_commit(
                move || self.read_queue(queue_id),
                |view, writes| {
                    let Some((waiting, queue, agents)) = view else {
                        return Ok(None);
                    };
                    let Some((c, a)) = decide::next_offer(&waiting, &agents, &queue) else {
                        return Ok(None);
                    };
                    let (mut c, mut a) = (c.clone(), a.clone());
                    decide::offer(&mut c, &mut a, &queue, now)?;
                    writes.put(&mut c, now)?;
                    writes.put(&mut a, now)?;
                    Ok(Some((c.meta.id, a.meta.id)))
                },
            )
            .await;
        match offered {
            Ok(Some((conversation, agent))) => {
                self.offered(conversation, agent).await;
                Ok(true)
            }
            Ok(None) => Ok(false),
            // A record went away under the offer: look again.
            Err(RoutingError::Store(StoreError::NotFound)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// What the next offer in a queue is decided on: the longest-waiting
    /// conversations, the queue, and the agents online. `None` when nothing
    /// waits (then nothing else is read) or the queue is gone.
    async fn read_queue(
        &self,
        queue_id: Uuid,
    ) -> RoutingResult<Option<(Vec<Conversation>, Queue, Vec<AgentState>)>> {
        let waiting = self
            .store
            .list::<Conversation>(
                &Collection::Waiting(queue_id),
                PageRequest {
                    number: 1,
                    size: WAITING_WINDOW,
                },
            )
            .await?;
        if waiting.entities.is_empty() {
            return Ok(None);
        }
        let Some(queue) = self.store.find::<Queue>(queue_id).await? else {
            return Ok(None);
        };
        let agents = self
            .store
            .list_all::<AgentState>(&Collection::OnlineAgents)
            .await?;
        Ok(Some((waiting.entities, queue, agents)))
    }

    /// Offers a conversation waiting in its queue to one agent directly (a
    /// transfer to an agent), if they have capacity.
    async fn offer_to(
        &self,
        conversation: Uuid,
        agent: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        self.read_modify_commit(
            move || async move {
                let (c, a) = self.held(conversation, agent).await?;
                let queue = self
                    .store
                    .find::<Queue>(c.queue_id)
                    .await?
                    .ok_or(RoutingError::NotAllowed("no such queue"))?;
                Ok((c, a, queue))
            },
            |(mut c, mut a, queue), writes| {
                decide::offer_directly(&mut c, &mut a, &queue, now)?;
                writes.put(&mut c, now)?;
                writes.put(&mut a, now)?;
                Ok(())
            },
        )
        .await?;
        self.offered(conversation, agent).await;
        Ok(())
    }

    /// Tells the agent of a new offer.
    async fn offered(&self, conversation: Uuid, agent: Uuid) {
        tracing::info!(%conversation, %agent, "offered");
        self.notify(
            &Channel::Agent(agent),
            &Notice::Changed {
                conversation_id: conversation,
            },
        )
        .await;
    }
}
