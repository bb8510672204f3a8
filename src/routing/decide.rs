//! The decisions of routing, as pure functions over the records a transition
//! read: what an offer, an answer, a transfer, a timeout or a lost agent does
//! to a conversation and its agent, which offers an assignment pass makes in
//! one batch, when declines are forgotten and a wait has gone on too long,
//! and where a visitor's message goes. A refusal is an error before anything
//! is written. The other files read the records, call these, and commit.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{
    AgentState, AgentStatus, Conversation, ConversationState, GuestSession, Visitor,
};
use super::{AgentIdentity, RoutingError, RoutingResult, TransferTarget};
use crate::store::records::{Deployment, Meta, Queue};

const NO_OFFER: RoutingError =
    RoutingError::NotAllowed("there is no offer of this conversation to you");
const NOT_CONNECTED: RoutingError =
    RoutingError::NotAllowed("you are not connected to this conversation");

// ---- offers ---------------------------------------------------------------

/// Whether `a` has room for one more conversation of `queue`.
pub(super) fn has_capacity(a: &AgentState, queue: &Queue) -> bool {
    a.conversations.len() < queue.agent_capacity as usize
}

/// Whether `queue` is one `a` takes offers from: one it named (or had when
/// it went available), or, for an agent that named none, any queue that is
/// its own at the time of the offer (a member's: one listing it; an API
/// client's: any of its organization), so queues created later count too.
pub(super) fn serves(a: &AgentState, queue: &Queue) -> bool {
    a.queues.contains(&queue.meta.id)
        || (a.all_queues && (!a.member || queue.member_ids.contains(&a.meta.id)))
}

/// Whether `a` takes offers from `queue` right now.
pub(super) fn takes_offers(a: &AgentState, queue: &Queue) -> bool {
    a.org_id == queue.org_id
        && a.status == AgentStatus::Available
        && serves(a, queue)
        && has_capacity(a, queue)
}

/// The agents who turned `c` down and may not be offered it yet: none once
/// the queue's cool-down since the last decline (or lapsed offer) passed,
/// so a conversation every agent declined is offered again rather than
/// waiting forever.
pub(super) fn recent_declines<'a>(
    c: &'a Conversation,
    queue: &Queue,
    now: DateTime<Utc>,
) -> &'a [Uuid] {
    match c.declined_at {
        Some(at) if now < at + cooldown(queue) => &c.declined,
        _ => &[],
    }
}

fn cooldown(queue: &Queue) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(queue.decline_cooldown_seconds))
}

/// One offer of an assignment batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Planned {
    pub(super) conversation: Uuid,
    pub(super) agent: Uuid,
}

/// The offers one assignment pass makes in `queue`, in the order to make
/// them: every waiting conversation, longest waiting first, to the agent
/// taking offers with the fewest conversations, then the longest idle,
/// that has not declined it recently. Each planned offer counts against
/// its agent's capacity for the ones after it, so the batch as a whole
/// never exceeds a capacity. `waiting` is in queue order.
pub(super) fn plan_offers(
    waiting: &[Conversation],
    agents: &[AgentState],
    queue: &Queue,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let capacity = queue.agent_capacity as usize;
    // Each candidate with its load once the offers planned so far are made.
    let mut candidates: Vec<(&AgentState, usize)> = agents
        .iter()
        .filter(|a| {
            a.org_id == queue.org_id && a.status == AgentStatus::Available && serves(a, queue)
        })
        .map(|a| (a, a.conversations.len()))
        .collect();
    let mut plan = Vec::new();
    for c in waiting {
        if !matches!(c.state, ConversationState::Waiting { .. }) || c.queue_id != queue.meta.id {
            continue;
        }
        if candidates.iter().all(|(_, load)| *load >= capacity) {
            break;
        }
        let declined = recent_declines(c, queue, now);
        let chosen = candidates
            .iter_mut()
            .filter(|(a, load)| *load < capacity && !declined.contains(&a.meta.id))
            // An agent with nothing to do before a busy one (whose
            // `idle_since` is from before it got busy), then longest idle.
            .min_by_key(|(a, load)| (*load, a.idle_since, a.meta.id));
        if let Some((a, load)) = chosen {
            *load += 1;
            plan.push(Planned {
                conversation: c.meta.id,
                agent: a.meta.id,
            });
        }
    }
    plan
}

/// Makes a planned offer on the records as they are now: only while the
/// conversation still waits in `queue` and the agent still takes its offers
/// and has not declined it recently. A plan is made on a read that may be
/// a moment old; this is what keeps it right.
pub(super) fn offer_planned(
    c: &mut Conversation,
    a: &mut AgentState,
    queue: &Queue,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    if c.queue_id != queue.meta.id
        || !takes_offers(a, queue)
        || recent_declines(c, queue, now).contains(&a.meta.id)
    {
        return Err(RoutingError::NotAllowed("the planned offer no longer fits"));
    }
    offer(c, a, queue, now)
}

/// Offers a waiting conversation to `a`, who must accept by the queue's
/// offer timeout. The offer counts against the agent's capacity at once.
/// Declines older than the queue's cool-down are forgotten now.
pub(super) fn offer(
    c: &mut Conversation,
    a: &mut AgentState,
    queue: &Queue,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    let ConversationState::Waiting { since } = c.state else {
        return Err(RoutingError::NotAllowed("the conversation is not waiting"));
    };
    if recent_declines(c, queue, now).is_empty() {
        c.declined.clear();
        c.declined_at = None;
    }
    c.state = ConversationState::Offered {
        agent_id: a.meta.id,
        deadline: now + chrono::Duration::seconds(i64::from(queue.offer_timeout_seconds)),
        waiting_since: since,
    };
    a.conversations.push(c.meta.id);
    Ok(())
}

// ---- wait limits --------------------------------------------------------------

/// The wrap-up code of a conversation that ended because it waited longer
/// than its queue allows.
pub(super) const MAX_WAIT_WRAP_UP: &str = "maxWaitExceeded";

/// Whether `c` has waited in `queue` for longer than the queue allows.
pub(super) fn overdue(c: &Conversation, queue: &Queue, now: DateTime<Utc>) -> bool {
    match (&c.state, queue.max_wait_seconds) {
        (ConversationState::Waiting { since }, Some(max)) => {
            c.queue_id == queue.meta.id && *since + chrono::Duration::seconds(i64::from(max)) <= now
        }
        _ => false,
    }
}

/// Ends a conversation that waited longer than its queue allows: no agent
/// took it, and the visitor should not wait on for nothing.
pub(super) fn give_up(
    c: &mut Conversation,
    queue: &Queue,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    if !overdue(c, queue, now) {
        return Err(RoutingError::NotAllowed("the conversation may wait on"));
    }
    c.state = ConversationState::Ended {
        at: now,
        wrap_up: Some(MAX_WAIT_WRAP_UP.to_owned()),
    };
    Ok(())
}

/// When something changes on its own for conversations waiting in `queue`
/// (a wait limit is reached, a decline cool-down ends): the assigner looks
/// again then, without anyone waking it.
pub(super) fn next_due(
    waiting: &[Conversation],
    queue: &Queue,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    waiting
        .iter()
        .filter_map(|c| {
            let ConversationState::Waiting { since } = c.state else {
                return None;
            };
            let limit = queue
                .max_wait_seconds
                .map(|max| since + chrono::Duration::seconds(i64::from(max)));
            let cooled = (!recent_declines(c, queue, now).is_empty())
                .then(|| c.declined_at.map(|at| at + cooldown(queue)))
                .flatten();
            limit.into_iter().chain(cooled).min()
        })
        .min()
}

/// The connected agent `from` sends the conversation to the agent `to`:
/// offered to `to` at once if it is connected and has room in the
/// conversation's queue (`queue`, absent if deleted meanwhile), else
/// waiting in that queue. Answers whether it was offered to `to`.
pub(super) fn transfer_to_agent(
    c: &mut Conversation,
    from: &mut AgentState,
    to: &mut AgentState,
    queue: Option<&Queue>,
    now: DateTime<Utc>,
) -> RoutingResult<bool> {
    if to.meta.id == from.meta.id {
        return Err(RoutingError::NotAllowed("a transfer goes to another agent"));
    }
    transfer(c, from, TransferTarget::Agent(to.meta.id), now)?;
    Ok(queue.is_some_and(|queue| offer_directly(c, to, queue, now).is_ok()))
}

/// Offers a conversation to one agent directly (a transfer to an agent):
/// only if the agent is connected and has room.
pub(super) fn offer_directly(
    c: &mut Conversation,
    a: &mut AgentState,
    queue: &Queue,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    if !has_capacity(a, queue) || a.status == AgentStatus::Offline {
        return Err(RoutingError::NotAllowed("that agent has no capacity"));
    }
    offer(c, a, queue, now)
}

// ---- what the agent does ---------------------------------------------------

/// The agent offered the conversation takes it.
pub(super) fn accept(
    c: &mut Conversation,
    a: &mut AgentState,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    let me = a.meta.id;
    match c.state {
        ConversationState::Offered { agent_id, .. } if agent_id == me => {
            c.state = ConversationState::Connected {
                agent_id: me,
                since: now,
            };
            if !c.agents.contains(&me) {
                c.agents.push(me);
            }
            Ok(())
        }
        _ => Err(NO_OFFER),
    }
}

/// The agent offered the conversation turns it down: back to its queue, in
/// its old place, never offered to this agent again.
pub(super) fn decline(
    c: &mut Conversation,
    a: &mut AgentState,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    if withdraw_offer(c, a, now) {
        Ok(())
    } else {
        Err(NO_OFFER)
    }
}

/// The connected agent sends the conversation to a queue or another agent:
/// it waits again (in the target queue, or its own while an agent is asked),
/// and the sender may get it back later.
pub(super) fn transfer(
    c: &mut Conversation,
    a: &mut AgentState,
    target: TransferTarget,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    let me = a.meta.id;
    match c.state {
        ConversationState::Connected { agent_id, .. } if agent_id == me => {
            requeue(c, a, now, now);
            // A transfer is not a decline, and ends an earlier one.
            c.declined.retain(|d| *d != me);
            if let TransferTarget::Queue(queue) = target {
                c.queue_id = queue;
            }
            Ok(())
        }
        _ => Err(NOT_CONNECTED),
    }
}

/// The connected agent ends the conversation, freeing its capacity.
pub(super) fn end(
    c: &mut Conversation,
    a: &mut AgentState,
    wrap_up: Option<String>,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    match c.state {
        ConversationState::Connected { agent_id, .. } if agent_id == a.meta.id => {
            c.state = ConversationState::Ended { at: now, wrap_up };
            release(a, c.meta.id, now);
            Ok(())
        }
        _ => Err(NOT_CONNECTED),
    }
}

// ---- what the sweeper does --------------------------------------------------

/// An offer whose deadline passed: back to the queue in its old place, and
/// the agent who let it lapse goes away (they are evidently not there).
pub(super) fn expire_offer(
    c: &mut Conversation,
    a: &mut AgentState,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    let due = matches!(c.state, ConversationState::Offered { deadline, .. } if deadline <= now);
    if due && withdraw_offer(c, a, now) {
        a.status = AgentStatus::Away;
        Ok(())
    } else {
        Err(RoutingError::NotAllowed("no longer offered"))
    }
}

/// One conversation of an agent whose sockets are gone: an offer goes back
/// to the queue in its old place, a connected conversation waits again from
/// now, and one the agent no longer holds leaves its load.
pub(super) fn release_lost(c: &mut Conversation, a: &mut AgentState, now: DateTime<Utc>) {
    if withdraw_offer(c, a, now) {
        return;
    }
    match c.state {
        ConversationState::Connected { agent_id, .. } if agent_id == a.meta.id => {
            declined_by(c, a.meta.id, now);
            requeue(c, a, now, now);
        }
        _ => a.conversations.retain(|id| *id != c.meta.id),
    }
}

/// An agent gone for longer than the grace period: offline, holding nothing.
pub(super) fn go_offline(a: &mut AgentState) {
    a.status = AgentStatus::Offline;
    a.conversations.clear();
}

/// Takes back an offer made to `a`: the conversation waits again in its old
/// place. Answers whether there was such an offer.
fn withdraw_offer(c: &mut Conversation, a: &mut AgentState, now: DateTime<Utc>) -> bool {
    match c.state {
        ConversationState::Offered {
            agent_id,
            waiting_since,
            ..
        } if agent_id == a.meta.id => {
            declined_by(c, a.meta.id, now);
            requeue(c, a, waiting_since, now);
            true
        }
        _ => false,
    }
}

/// Notes that `agent` turned the conversation down at `now`: it is not
/// offered to them again until the queue's cool-down has passed.
fn declined_by(c: &mut Conversation, agent: Uuid, now: DateTime<Utc>) {
    if !c.declined.contains(&agent) {
        c.declined.push(agent);
    }
    c.declined_at = Some(now);
}

/// Puts a conversation back to waiting (keeping its place from `since`) and
/// frees the agent's capacity.
fn requeue(c: &mut Conversation, a: &mut AgentState, since: DateTime<Utc>, now: DateTime<Utc>) {
    c.state = ConversationState::Waiting { since };
    release(a, c.meta.id, now);
}

/// Frees a conversation's place in the agent's load; an agent left with
/// nothing is idle from now, for longest-idle-first.
fn release(a: &mut AgentState, conversation: Uuid, now: DateTime<Utc>) {
    a.conversations.retain(|id| *id != conversation);
    if a.conversations.is_empty() {
        a.idle_since = now;
    }
}

// ---- agents -----------------------------------------------------------------

/// An agent's state once one of its sockets is alive: as it was while the
/// agent is online; otherwise connected but away (not yet taking offers).
/// Answers whether it changed.
pub(super) fn arrive(
    found: Option<AgentState>,
    agent: &AgentIdentity,
    now: DateTime<Utc>,
) -> (AgentState, bool) {
    match found {
        Some(state) if state.status != AgentStatus::Offline => (state, false),
        Some(mut state) => {
            state.status = AgentStatus::Away;
            state.display_name.clone_from(&agent.name);
            (state, true)
        }
        None => {
            let state = AgentState {
                meta: Meta {
                    id: agent.id,
                    ..Meta::new(now)
                },
                org_id: agent.org,
                display_name: agent.name.clone(),
                status: AgentStatus::Away,
                queues: Vec::new(),
                all_queues: false,
                member: agent.is_member,
                conversations: Vec::new(),
                idle_since: now,
            };
            (state, true)
        }
    }
}

/// An agent sets itself available (for `queues`, and with `all_queues`
/// for every queue that becomes its own later) or away.
pub(super) fn set_status(
    a: &mut AgentState,
    agent: &AgentIdentity,
    status: AgentStatus,
    queues: &[Uuid],
    all_queues: bool,
    now: DateTime<Utc>,
) {
    a.status = status;
    a.member = agent.is_member;
    if status == AgentStatus::Available {
        a.queues = queues.to_vec();
        a.all_queues = all_queues;
        if a.conversations.is_empty() {
            a.idle_since = now;
        }
    }
}

// ---- visitors -----------------------------------------------------------------

/// Where a visitor's next message goes.
#[derive(Debug, PartialEq)]
pub(super) enum Target<'a> {
    /// The session's conversation, which is still open.
    Current(&'a Conversation),
    /// Nowhere: the conversation ended and the configuration makes it
    /// read-only.
    ReadOnly,
    /// A new conversation.
    New,
}

/// Where a message goes, given the session's current conversation.
pub(super) fn target(current: Option<&Conversation>, read_only_after_end: bool) -> Target<'_> {
    match current {
        Some(c) if !c.is_ended() => Target::Current(c),
        Some(_) if read_only_after_end => Target::ReadOnly,
        _ => Target::New,
    }
}

/// A session's new conversation, waiting in the deployment's queue.
pub(super) fn new_conversation(
    session: &GuestSession,
    deployment: &Deployment,
    now: DateTime<Utc>,
) -> Conversation {
    Conversation {
        meta: Meta {
            // Time-ordered, so a visitor's conversations sort by age.
            id: Uuid::now_v7(),
            ..Meta::new(now)
        },
        org_id: session.org_id,
        deployment_id: deployment.meta.id,
        queue_id: deployment.queue_id,
        session_id: session.meta.id,
        visitor: session.identity.clone(),
        state: ConversationState::Waiting { since: now },
        declined: Vec::new(),
        declined_at: None,
        agents: Vec::new(),
    }
}

/// A fresh guest session bound to `deployment`.
pub(super) fn new_session(id: Uuid, deployment: &Deployment, now: DateTime<Utc>) -> GuestSession {
    GuestSession {
        meta: Meta {
            id,
            ..Meta::new(now)
        },
        org_id: deployment.org_id,
        deployment_id: deployment.meta.id,
        identity: None,
        visitor_id: None,
        token_family: None,
        conversation_id: None,
        last_active: now,
        cleared: false,
    }
}

/// The authenticated visitor `id` with `conversation` in their history
/// (created when this is their first).
pub(super) fn with_conversation(
    found: Option<Visitor>,
    id: Uuid,
    org: crate::store::types::OrgId,
    conversation: Uuid,
    now: DateTime<Utc>,
) -> Visitor {
    match found {
        Some(mut visitor) => {
            if !visitor.conversations.contains(&conversation) {
                visitor.conversations.push(conversation);
            }
            visitor
        }
        None => Visitor {
            meta: Meta {
                id,
                ..Meta::new(now)
            },
            org_id: org,
            conversations: vec![conversation],
        },
    }
}

#[cfg(test)]
mod tests;
