//! The decisions of routing, as pure functions over the records a transition
//! read: what an offer, an answer, a transfer, a timeout or a lost agent does
//! to a conversation and its agent, who gets the next offer, and where a
//! visitor's message goes. A refusal is an error before anything is written.
//! The other files read the records, call these, and commit.

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

/// Whether `a` takes offers from `queue` right now.
pub(super) fn takes_offers(a: &AgentState, queue: &Queue) -> bool {
    a.org_id == queue.org_id
        && a.status == AgentStatus::Available
        && a.queues.contains(&queue.meta.id)
        && has_capacity(a, queue)
}

/// The next offer to make in `queue`: the longest-waiting conversation that
/// some agent taking offers has not declined, to the agent with the fewest
/// conversations, then the longest idle. `waiting` is in queue order.
pub(super) fn next_offer<'a>(
    waiting: &'a [Conversation],
    agents: &'a [AgentState],
    queue: &Queue,
) -> Option<(&'a Conversation, &'a AgentState)> {
    let candidates: Vec<&AgentState> = agents.iter().filter(|a| takes_offers(a, queue)).collect();
    waiting.iter().find_map(|c| {
        candidates
            .iter()
            .filter(|a| !c.declined.contains(&a.meta.id))
            // An agent with nothing to do before a busy one (whose
            // `idle_since` is from before it got busy), then longest idle.
            .min_by_key(|a| (a.conversations.len(), a.idle_since, a.meta.id))
            .map(|a| (c, *a))
    })
}

/// Offers a waiting conversation to `a`, who must accept by the queue's
/// offer timeout. The offer counts against the agent's capacity at once.
pub(super) fn offer(
    c: &mut Conversation,
    a: &mut AgentState,
    queue: &Queue,
    now: DateTime<Utc>,
) -> RoutingResult<()> {
    let ConversationState::Waiting { since } = c.state else {
        return Err(RoutingError::NotAllowed("the conversation is not waiting"));
    };
    c.state = ConversationState::Offered {
        agent_id: a.meta.id,
        deadline: now + chrono::Duration::seconds(i64::from(queue.offer_timeout_seconds)),
        waiting_since: since,
    };
    a.conversations.push(c.meta.id);
    Ok(())
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
            // A transfer is not a decline.
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
            requeue(c, a, waiting_since, now);
            true
        }
        _ => false,
    }
}

/// Puts a conversation back to waiting (keeping its place from `since`) and
/// frees the agent's capacity. The agent is not offered it again.
fn requeue(c: &mut Conversation, a: &mut AgentState, since: DateTime<Utc>, now: DateTime<Utc>) {
    if !c.declined.contains(&a.meta.id) {
        c.declined.push(a.meta.id);
    }
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
                conversations: Vec::new(),
                idle_since: now,
            };
            (state, true)
        }
    }
}

/// An agent sets itself available (for `queues`) or away.
pub(super) fn set_status(
    a: &mut AgentState,
    status: AgentStatus,
    queues: &[Uuid],
    now: DateTime<Utc>,
) {
    a.status = status;
    if status == AgentStatus::Available {
        a.queues = queues.to_vec();
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
        visitor: session.identity.clone().unwrap_or_default(),
        state: ConversationState::Waiting { since: now },
        declined: Vec::new(),
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
