//! Assignment: what an agent does with a conversation (accept, decline,
//! transfer, end), and the pass that offers a queue's waiting conversations
//! to its agents in one batch and ends those past the queue's wait limit
//! (run by the queue's assigner, `assigner.rs`). Each offer and answer
//! changes the conversation and its agent's record in one commit, decided
//! by a function of [`decide`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::assigner::LeaseKeeper;
use super::commit::Writes;
use super::decide;
use super::events::agent_participant;
use super::model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, Notice, Participant,
    ParticipantRole, PresenceKind,
};
use super::{AgentIdentity, NewEvent, Routing, RoutingError, RoutingResult, TransferTarget};
use crate::engine::{Channel, Collection};
use crate::store::records::Queue;
use crate::store::types::OrgId;
use crate::store::{PageRequest, StoreError};

/// How many waiting conversations (longest waiting first) one round of a
/// pass reads and plans for: more than agents usually have room for, so
/// one round fills them, past the few every agent declined lately.
const WAITING_BATCH: u64 = 256;

/// Rounds of one pass at most; a queue busier than that gets the next pass
/// at once, after the assigner has renewed its lease and heard its wakes.
const MAX_ROUNDS: usize = 16;

/// What the visitor reads when their conversation waited longer than its
/// queue allows.
pub(super) const MAX_WAIT_TEXT: &str =
    "Sorry, no agent could take your conversation in time. Please try again later.";

/// What an assignment pass left behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PassOutcome {
    /// Conversations still wait: the assigner holds on to the queue.
    pub(super) waiting: bool,
    /// When something falls due on its own (a wait limit, a decline
    /// cool-down): the assigner looks again then.
    pub(super) next_due: Option<DateTime<Utc>>,
}

impl Routing {
    /// Changes a conversation and its agent's record together, as `decide`
    /// says, tells both that it changed, and answers the conversation.
    /// `decide` sees both records and may refuse; the commit checks both
    /// versions.
    pub(super) async fn transition(
        &self,
        org: OrgId,
        conversation: Uuid,
        agent: Uuid,
        now: DateTime<Utc>,
        mut decide: impl FnMut(&mut Conversation, &mut AgentState, DateTime<Utc>) -> RoutingResult<()>,
    ) -> RoutingResult<Conversation> {
        let c = self
            .read_modify_commit(
                move || self.held(org, conversation, agent),
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
        org: OrgId,
        conversation: Uuid,
        agent: Uuid,
    ) -> RoutingResult<(Conversation, AgentState)> {
        let c = self.existing_conversation(org, conversation).await?;
        let a = self
            .store
            .find::<AgentState>(org, agent)
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
            .transition(agent.org, conversation, agent.id, now, decide::accept)
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
            .transition(agent.org, conversation, agent.id, now, decide::decline)
            .await?;
        self.wake_queue(c.org_id, c.queue_id);
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
        let c = match target {
            TransferTarget::Queue(queue) => {
                // The target must exist in the agent's organization.
                self.store
                    .get::<Queue>(agent.org, queue)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => RoutingError::NotAllowed("no such queue"),
                        e => e.into(),
                    })?;
                self.transition(agent.org, conversation, agent.id, now, |c, a, now| {
                    decide::transfer(c, a, target, now)
                })
                .await?
            }
            TransferTarget::Agent(target) => {
                self.transfer_to_agent(agent, conversation, target, now)
                    .await?
            }
        };
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
        // The sender has room again in its own queues too.
        self.wake_agent_queues(agent).await;
        if matches!(c.state, ConversationState::Waiting { .. }) {
            // To a queue, or to an agent who could not take it: the queue's
            // agents are offered it.
            self.wake_queue(c.org_id, c.queue_id);
        }
        Ok(c)
    }

    /// A transfer to one agent: the conversation leaves the sender and is
    /// offered to the target in one commit of the three records. Were it
    /// to wait in its queue between two commits, the queue's assigner
    /// could offer it to someone else first (the sender, whose room it
    /// just freed). A target without room (or not connected at the
    /// commit) leaves it waiting in its queue.
    async fn transfer_to_agent(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        target: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let org = agent.org;
        let c = self
            .read_modify_commit(
                move || async move {
                    let (c, from) = self.held(org, conversation, agent.id).await?;
                    let to = self
                        .store
                        .find::<AgentState>(org, target)
                        .await?
                        .filter(|to| to.status != AgentStatus::Offline)
                        .ok_or(RoutingError::NotAllowed("that agent is not connected"))?;
                    let queue = self.store.find::<Queue>(org, c.queue_id).await?;
                    Ok((c, from, to, queue))
                },
                |(mut c, mut from, mut to, queue), writes| {
                    let offered =
                        decide::transfer_to_agent(&mut c, &mut from, &mut to, queue.as_ref(), now)?;
                    writes.put(&mut c, now)?;
                    writes.put(&mut from, now)?;
                    if offered {
                        writes.put(&mut to, now)?;
                    }
                    Ok(c)
                },
            )
            .await?;
        let changed = Notice::Changed {
            conversation_id: conversation,
        };
        self.notify(&Channel::Agent(agent.id), &changed).await;
        self.notify(&Channel::Conversation(conversation), &changed)
            .await;
        if matches!(c.state, ConversationState::Offered { .. }) {
            self.offered(conversation, target).await;
        } else {
            tracing::info!(%conversation, "direct transfer not possible; the conversation waits in its queue");
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
            .transition(agent.org, conversation, agent.id, now, |c, a, now| {
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
        self.wake_agent_queues(agent).await;
        Ok(c)
    }

    /// Wakes every queue an agent who just freed up takes offers from:
    /// those it named, or all that are its own now.
    async fn wake_agent_queues(&self, agent: &AgentIdentity) {
        let queues = match self.agent_state(agent.org, agent.id).await {
            Ok(Some(state)) if state.all_queues => self.agent_queues(agent, &[]).await,
            Ok(Some(state)) => Ok(state.queues),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        match queues {
            Ok(queues) => {
                for queue in queues {
                    self.wake_queue(agent.org, queue);
                }
            }
            Err(e) => {
                tracing::warn!(agent = %agent.id, error = %e, "cannot wake the agent's queues; the sweeper does");
            }
        }
    }

    /// One assignment pass over a queue, by the holder of its lease (see
    /// `assigner.rs`): conversations waiting past the queue's limit end,
    /// and the rest are offered in one batch to the agents with room,
    /// planned by [`decide::plan_offers`] and made one by one, each a commit
    /// of the conversation and its agent, pushed to the agent as it is made.
    /// Goes on while a round made offers and more may be possible (a page
    /// full, an offer that no longer fitted). Answers what is left waiting,
    /// or `None` when the lease was lost midway.
    pub(super) async fn assign_pass(
        &self,
        org: OrgId,
        queue_id: Uuid,
        now: DateTime<Utc>,
        lease: &mut LeaseKeeper<'_>,
    ) -> RoutingResult<Option<PassOutcome>> {
        for _ in 0..MAX_ROUNDS {
            let Some(queue) = self.store.find::<Queue>(org, queue_id).await? else {
                return Ok(Some(PassOutcome::default()));
            };
            let page = self
                .store
                .list::<Conversation>(
                    &Collection::Waiting {
                        org: org.0,
                        queue: queue_id,
                    },
                    PageRequest {
                        number: 1,
                        size: WAITING_BATCH,
                    },
                )
                .await?;
            let full = page.entities.len() as u64 >= WAITING_BATCH;
            let (overdue, waiting): (Vec<Conversation>, Vec<Conversation>) = page
                .entities
                .into_iter()
                .partition(|c| decide::overdue(c, &queue, now));
            for c in &overdue {
                if !lease.keep().await? {
                    return Ok(None);
                }
                if let Err(e) = self.give_up(c.meta.id, &queue, now).await {
                    tracing::warn!(conversation = %c.meta.id, error = %e, "cannot end a conversation past its wait limit; trying again");
                }
            }
            if waiting.is_empty() {
                if overdue.is_empty() {
                    return Ok(Some(PassOutcome::default()));
                }
                continue;
            }
            let agents = self
                .store
                .list_all::<AgentState>(&Collection::OnlineAgents(org.0))
                .await?;
            let plan = decide::plan_offers(&waiting, &agents, &queue, now);
            if !lease.keep().await? {
                return Ok(None);
            }
            let (offered, missed) = self.make_offers(&plan, &waiting, agents, &queue, now).await;
            let made = offered.len();
            let again = !overdue.is_empty() || (made > 0 && (missed > 0 || full));
            if !again {
                let left: Vec<Conversation> = waiting
                    .into_iter()
                    .filter(|c| !offered.contains(&c.meta.id))
                    .collect();
                return Ok(Some(PassOutcome {
                    waiting: !left.is_empty(),
                    next_due: decide::next_due(&left, &queue, now),
                }));
            }
        }
        // A very busy queue: the assigner comes back at once.
        Ok(Some(PassOutcome {
            waiting: true,
            next_due: Some(now),
        }))
    }

    /// Makes a round's planned offers: each agent's in the plan's order,
    /// one after another (each sees the agent as the one before left it),
    /// different agents' side by side. A round then takes as many commits
    /// in a row as the most offers one agent gets, not one per offer: on
    /// the embedded engine a commit waits for an fsync, and a burst of a
    /// thousand arrivals was offered one fsync at a time. Answers the
    /// conversations offered, and how many planned offers were not made.
    async fn make_offers(
        &self,
        plan: &[decide::Planned],
        waiting: &[Conversation],
        agents: Vec<AgentState>,
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> (HashSet<Uuid>, usize) {
        let waiting: HashMap<Uuid, &Conversation> =
            waiting.iter().map(|c| (c.meta.id, c)).collect();
        let mut chains: HashMap<Uuid, (AgentState, Vec<Conversation>)> = agents
            .into_iter()
            .map(|a| (a.meta.id, (a, Vec::new())))
            .collect();
        let mut missed = 0;
        for planned in plan {
            match (
                waiting.get(&planned.conversation),
                chains.get_mut(&planned.agent),
            ) {
                (Some(c), Some((_, offers))) => offers.push((*c).clone()),
                _ => missed += 1,
            }
        }
        let chains = chains
            .into_values()
            .filter(|(_, offers)| !offers.is_empty())
            .map(|(agent, offers)| self.offer_in_turn(agent, offers, queue, now));
        let mut offered = HashSet::new();
        for (made, not_made) in futures::future::join_all(chains).await {
            offered.extend(made);
            missed += not_made;
        }
        (offered, missed)
    }

    /// One agent's offers of a round: all in one commit when none of the
    /// records changed since the plan was made, else one after another on
    /// fresh reads. Answers those made and how many were not.
    async fn offer_in_turn(
        &self,
        mut agent: AgentState,
        offers: Vec<Conversation>,
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> (Vec<Uuid>, usize) {
        if offers.len() > 1 {
            match self.offer_together(&agent, &offers, queue, now).await {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(agent = %agent.meta.id, error = %e, "offers failed; making them one by one");
                }
            }
        }
        let (mut made, mut missed) = (Vec::new(), 0);
        for c in offers {
            let id = c.meta.id;
            match self.make_offer(c, agent.clone(), queue, now).await {
                Ok(Some(a)) => {
                    made.push(id);
                    agent = a;
                }
                Ok(None) => missed += 1,
                Err(e) => {
                    tracing::warn!(conversation = %id, agent = %agent.meta.id, error = %e, "offer failed; the next pass tries again");
                    missed += 1;
                }
            }
        }
        (made, missed)
    }

    /// Makes an agent's planned offers of a round in one commit of the
    /// agent's record and every conversation offered, on the records the
    /// plan was made on. One commit, not one per offer: an agent's record
    /// changes once a round, so its own `accept` of an earlier offer races
    /// one write, not a chain of them (under a burst the accept lost every
    /// attempt to the chain and the agent was told `busy`), and a round
    /// costs one engine round trip per agent. Answers `None`, having
    /// written nothing, when a record changed since the plan.
    async fn offer_together(
        &self,
        agent: &AgentState,
        offers: &[Conversation],
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> RoutingResult<Option<(Vec<Uuid>, usize)>> {
        let mut a = agent.clone();
        let mut writes = Writes::default();
        let (mut made, mut missed) = (Vec::new(), 0);
        for c in offers {
            let mut c = c.clone();
            if decide::offer_planned(&mut c, &mut a, queue, now).is_err() {
                missed += 1;
                continue;
            }
            writes.put(&mut c, now)?;
            made.push(c.meta.id);
        }
        if made.is_empty() {
            return Ok(Some((made, missed)));
        }
        writes.put(&mut a, now)?;
        match self.store.commit(writes.into_commit()).await {
            Ok(()) => {}
            Err(StoreError::Stale { .. } | StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        for conversation in &made {
            self.offered(*conversation, a.meta.id).await;
        }
        Ok(Some((made, missed)))
    }

    /// Makes one planned offer: committed on the records the plan was made
    /// on (which the lease keeps current), or, when one changed meanwhile,
    /// decided again on fresh ones. Answers the agent as committed, or
    /// `None` when the offer no longer fits.
    async fn make_offer(
        &self,
        c: Conversation,
        a: AgentState,
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> RoutingResult<Option<AgentState>> {
        let (conversation, agent) = (c.meta.id, a.meta.id);
        let mut planned = Some((c, a));
        let made = self
            .read_modify_commit(
                move || {
                    let planned = planned.take();
                    async move {
                        match planned {
                            Some(records) => Ok(Some(records)),
                            None => self.pair(queue.org_id, conversation, agent).await,
                        }
                    }
                },
                |found, writes| {
                    let Some((mut c, mut a)) = found else {
                        return Ok(None);
                    };
                    if decide::offer_planned(&mut c, &mut a, queue, now).is_err() {
                        return Ok(None);
                    }
                    writes.put(&mut c, now)?;
                    writes.put(&mut a, now)?;
                    Ok(Some(a))
                },
            )
            .await?;
        if made.is_some() {
            self.offered(conversation, agent).await;
        }
        Ok(made)
    }

    /// A conversation and an agent as stored now, if both exist.
    async fn pair(
        &self,
        org: OrgId,
        conversation: Uuid,
        agent: Uuid,
    ) -> RoutingResult<Option<(Conversation, AgentState)>> {
        let c = self.store.find::<Conversation>(org, conversation).await?;
        let a = self.store.find::<AgentState>(org, agent).await?;
        Ok(c.zip(a))
    }

    /// Ends a conversation that waited longer than its queue allows, and
    /// tells the visitor: a message from the queue, then the `Disconnect`
    /// presence a guest client takes as the end of the conversation (as when
    /// an agent ends it), then the `ended` marker.
    async fn give_up(
        &self,
        conversation: Uuid,
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        let ended = self
            .read_modify_commit(
                move || async move { self.existing_conversation(queue.org_id, conversation).await },
                |mut c, writes| {
                    if decide::give_up(&mut c, queue, now).is_err() {
                        return Ok(false);
                    }
                    writes.put(&mut c, now)?;
                    Ok(true)
                },
            )
            .await?;
        if !ended {
            return Ok(());
        }
        tracing::info!(%conversation, queue = %queue.meta.id, "no agent within the queue's wait limit; the conversation ends");
        let from = Participant {
            role: ParticipantRole::System,
            id: None,
            name: queue.name.clone(),
            authenticated: false,
            first_name: None,
            last_name: None,
        };
        let events = [
            EventBody::text(MAX_WAIT_TEXT, None),
            EventBody::presence(PresenceKind::Disconnect),
            EventBody::Ended {
                wrap_up: Some(decide::MAX_WAIT_WRAP_UP.to_owned()),
            },
        ];
        for body in events {
            let event = NewEvent { body, dedup: None };
            self.append(conversation, from.clone(), event, now).await?;
        }
        self.notify(
            &Channel::Conversation(conversation),
            &Notice::Changed {
                conversation_id: conversation,
            },
        )
        .await;
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
