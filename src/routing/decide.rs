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
        visitor: session.identity.clone(),
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
mod tests {
    use super::*;
    use crate::store::types::OrgId;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn queue(capacity: u32) -> Queue {
        Queue {
            meta: Meta::new(t(0)),
            org_id: OrgId(Uuid::from_u128(1)),
            name: "Support".into(),
            offer_timeout_seconds: 30,
            agent_capacity: capacity,
            member_ids: Vec::new(),
        }
    }

    /// An available agent of `queue`, idle since `idle`.
    fn agent(queue: &Queue, idle: i64) -> AgentState {
        AgentState {
            meta: Meta::new(t(0)),
            org_id: queue.org_id,
            display_name: "Agent".into(),
            status: AgentStatus::Available,
            queues: vec![queue.meta.id],
            conversations: Vec::new(),
            idle_since: t(idle),
        }
    }

    /// A conversation waiting in `queue` since `since`.
    fn waiting(queue: &Queue, since: i64) -> Conversation {
        Conversation {
            meta: Meta::new(t(since)),
            org_id: queue.org_id,
            deployment_id: Uuid::new_v4(),
            queue_id: queue.meta.id,
            session_id: Uuid::new_v4(),
            visitor: None,
            state: ConversationState::Waiting { since: t(since) },
            declined: Vec::new(),
            agents: Vec::new(),
        }
    }

    /// `c` offered to `a` at `at`.
    fn offered(c: &mut Conversation, a: &mut AgentState, q: &Queue, at: i64) {
        offer(c, a, q, t(at)).unwrap();
    }

    /// `c` offered to and accepted by `a` at `at`.
    fn connected(c: &mut Conversation, a: &mut AgentState, q: &Queue, at: i64) {
        offered(c, a, q, at);
        accept(c, a, t(at)).unwrap();
    }

    #[test]
    fn an_offer_holds_capacity_until_the_queue_timeout() {
        let q = queue(2);
        let (mut c, mut a) = (waiting(&q, 5), agent(&q, 0));
        offer(&mut c, &mut a, &q, t(10)).unwrap();
        assert_eq!(
            c.state,
            ConversationState::Offered {
                agent_id: a.meta.id,
                deadline: t(40),
                waiting_since: t(5),
            }
        );
        assert_eq!(a.conversations, [c.meta.id]);
        // Only a waiting conversation can be offered.
        let mut other = agent(&q, 0);
        assert!(offer(&mut c, &mut other, &q, t(11)).is_err());
        assert!(other.conversations.is_empty());
    }

    #[test]
    fn only_the_offered_agent_accepts() {
        let q = queue(2);
        let (mut c, mut a, mut b) = (waiting(&q, 0), agent(&q, 0), agent(&q, 0));
        offered(&mut c, &mut a, &q, 1);
        assert!(matches!(
            accept(&mut c, &mut b, t(2)),
            Err(RoutingError::NotAllowed(_))
        ));
        accept(&mut c, &mut a, t(2)).unwrap();
        assert_eq!(
            c.state,
            ConversationState::Connected {
                agent_id: a.meta.id,
                since: t(2),
            }
        );
        assert_eq!(c.agents, [a.meta.id]);
        // Accepting twice is refused: the offer is gone.
        assert!(accept(&mut c, &mut a, t(3)).is_err());
    }

    #[test]
    fn decline_requeues_in_the_old_place_and_skips_the_agent() {
        let q = queue(2);
        let (mut c, mut a) = (waiting(&q, 7), agent(&q, 0));
        offered(&mut c, &mut a, &q, 8);
        assert!(decline(&mut c, &mut agent(&q, 0), t(9)).is_err());
        decline(&mut c, &mut a, t(9)).unwrap();
        assert_eq!(c.state, ConversationState::Waiting { since: t(7) });
        assert_eq!(c.declined, [a.meta.id]);
        assert!(a.conversations.is_empty());
        assert_eq!(a.idle_since, t(9));
        // Not offered to that agent again, while another one may take it.
        let b = agent(&q, 5);
        let agents = [a.clone(), b.clone()];
        let (chosen_c, chosen_a) = next_offer(std::slice::from_ref(&c), &agents, &q).unwrap();
        assert_eq!((chosen_c.meta.id, chosen_a.meta.id), (c.meta.id, b.meta.id));
        assert!(next_offer(std::slice::from_ref(&c), &agents[..1], &q).is_none());
    }

    #[test]
    fn an_offer_times_out_only_after_its_deadline() {
        let q = queue(2);
        let (mut c, mut a) = (waiting(&q, 3), agent(&q, 0));
        offered(&mut c, &mut a, &q, 10);
        let before = (c.clone(), a.clone());
        assert!(expire_offer(&mut c, &mut a, t(39)).is_err());
        assert_eq!((c.clone(), a.clone()), before);
        expire_offer(&mut c, &mut a, t(40)).unwrap();
        assert_eq!(c.state, ConversationState::Waiting { since: t(3) });
        assert_eq!(c.declined, [a.meta.id]);
        // The agent who let it lapse is evidently not there.
        assert_eq!(a.status, AgentStatus::Away);
        assert!(a.conversations.is_empty());
    }

    #[test]
    fn a_lost_agent_releases_offers_and_conversations() {
        let q = queue(3);
        let mut a = agent(&q, 0);
        let (mut offer_c, mut talk_c, mut gone_c) =
            (waiting(&q, 1), waiting(&q, 2), waiting(&q, 3));
        offered(&mut offer_c, &mut a, &q, 10);
        connected(&mut talk_c, &mut a, &q, 11);
        // One the agent no longer holds (ended elsewhere, say).
        a.conversations.push(gone_c.meta.id);
        let untouched = gone_c.clone();

        release_lost(&mut offer_c, &mut a, t(20));
        assert_eq!(offer_c.state, ConversationState::Waiting { since: t(1) });
        release_lost(&mut talk_c, &mut a, t(21));
        // A conversation in progress waits again from now.
        assert_eq!(talk_c.state, ConversationState::Waiting { since: t(21) });
        release_lost(&mut gone_c, &mut a, t(22));
        assert_eq!(gone_c, untouched);
        assert!(a.conversations.is_empty());

        go_offline(&mut a);
        assert_eq!(a.status, AgentStatus::Offline);
    }

    #[test]
    fn transfer_requeues_without_counting_as_a_decline() {
        let q = queue(2);
        let (mut c, mut a) = (waiting(&q, 0), agent(&q, 0));
        // Declined once earlier, then taken.
        offered(&mut c, &mut a, &q, 1);
        decline(&mut c, &mut a, t(2)).unwrap();
        connected(&mut c, &mut a, &q, 3);
        let other = Uuid::new_v4();
        transfer(&mut c, &mut a, TransferTarget::Queue(other), t(4)).unwrap();
        assert_eq!(c.state, ConversationState::Waiting { since: t(4) });
        assert_eq!(c.queue_id, other);
        assert!(c.declined.is_empty());
        assert!(a.conversations.is_empty());
        // To an agent: it waits in its own queue meanwhile.
        let mut c = waiting(&q, 0);
        connected(&mut c, &mut a, &q, 5);
        transfer(&mut c, &mut a, TransferTarget::Agent(other), t(6)).unwrap();
        assert_eq!(c.queue_id, q.meta.id);
        // Only the connected agent may transfer.
        assert!(transfer(&mut c, &mut a, TransferTarget::Agent(other), t(7)).is_err());
    }

    #[test]
    fn end_frees_the_agent() {
        let q = queue(2);
        let mut a = agent(&q, 0);
        let (mut one, mut two) = (waiting(&q, 0), waiting(&q, 1));
        connected(&mut one, &mut a, &q, 2);
        connected(&mut two, &mut a, &q, 3);
        assert!(end(&mut one, &mut agent(&q, 0), None, t(4)).is_err());
        end(&mut one, &mut a, Some("solved".into()), t(4)).unwrap();
        assert_eq!(
            one.state,
            ConversationState::Ended {
                at: t(4),
                wrap_up: Some("solved".into()),
            }
        );
        // Still busy with the other one: not idle yet.
        assert_eq!(
            (a.conversations.clone(), a.idle_since),
            (vec![two.meta.id], t(0))
        );
        end(&mut two, &mut a, None, t(5)).unwrap();
        assert_eq!(a.idle_since, t(5));
        assert!(end(&mut two, &mut a, None, t(6)).is_err());
    }

    #[test]
    fn capacity_is_respected() {
        let q = queue(1);
        let mut a = agent(&q, 0);
        assert!(takes_offers(&a, &q));
        let mut c = waiting(&q, 0);
        offered(&mut c, &mut a, &q, 1);
        assert!(!has_capacity(&a, &q));
        assert!(!takes_offers(&a, &q));
        let next = [waiting(&q, 2)];
        assert!(next_offer(&next, std::slice::from_ref(&a), &q).is_none());
        // Nor may a direct transfer push past it.
        let mut direct = waiting(&q, 3);
        assert!(offer_directly(&mut direct, &mut a, &q, t(4)).is_err());
        assert_eq!(a.conversations.len(), 1);
    }

    #[test]
    fn only_available_agents_of_the_queue_and_organization_take_offers() {
        let q = queue(1);
        let mut away = agent(&q, 0);
        away.status = AgentStatus::Away;
        let mut elsewhere = agent(&q, 0);
        elsewhere.queues = vec![Uuid::new_v4()];
        let mut foreign = agent(&q, 0);
        foreign.org_id = OrgId(Uuid::new_v4());
        for a in [&away, &elsewhere, &foreign] {
            assert!(!takes_offers(a, &q));
        }
        // A direct offer only needs the agent connected, with room.
        let mut c = waiting(&q, 0);
        offer_directly(&mut c, &mut away, &q, t(1)).unwrap();
        let mut offline = agent(&q, 0);
        offline.status = AgentStatus::Offline;
        assert!(offer_directly(&mut waiting(&q, 0), &mut offline, &q, t(1)).is_err());
    }

    #[test]
    fn offers_go_longest_waiting_first_to_the_least_busy_longest_idle() {
        let q = queue(3);
        let busy = {
            let mut a = agent(&q, 0);
            a.conversations.push(Uuid::new_v4());
            a
        };
        let (idle_long, idle_short) = (agent(&q, 5), agent(&q, 9));
        let agents = [idle_short, busy, idle_long.clone()];
        let (first, second) = (waiting(&q, 1), waiting(&q, 2));
        let queue_order = [first.clone(), second.clone()];
        let (c, a) = next_offer(&queue_order, &agents, &q).unwrap();
        assert_eq!((c.meta.id, a.meta.id), (first.meta.id, idle_long.meta.id));
        // When every candidate declined the first, the second goes.
        let mut declined = first;
        declined.declined = agents.iter().map(|a| a.meta.id).collect();
        let queue_order = [declined, second.clone()];
        let (c, _) = next_offer(&queue_order, &agents, &q).unwrap();
        assert_eq!(c.meta.id, second.meta.id);
        assert!(next_offer(&[], &agents, &q).is_none());
    }

    #[test]
    fn a_message_goes_to_the_open_conversation_or_a_new_one() {
        let q = queue(1);
        let open = waiting(&q, 0);
        assert_eq!(target(Some(&open), true), Target::Current(&open));
        let mut ended = waiting(&q, 0);
        ended.state = ConversationState::Ended {
            at: t(1),
            wrap_up: None,
        };
        assert_eq!(target(Some(&ended), true), Target::ReadOnly);
        assert_eq!(target(Some(&ended), false), Target::New);
        assert_eq!(target(None, true), Target::New);
    }

    #[test]
    fn a_heartbeat_brings_an_agent_back_away() {
        let q = queue(1);
        let me = AgentIdentity {
            id: Uuid::new_v4(),
            org: q.org_id,
            name: "Renamed".into(),
            is_member: true,
        };
        let (new, changed) = arrive(None, &me, t(1));
        assert!(changed);
        assert_eq!((new.meta.id, new.status), (me.id, AgentStatus::Away));
        let online = agent(&q, 0);
        assert_eq!(
            arrive(Some(online.clone()), &me, t(2)),
            (online.clone(), false)
        );
        let mut offline = online;
        offline.status = AgentStatus::Offline;
        let (back, changed) = arrive(Some(offline), &me, t(3));
        assert!(changed);
        assert_eq!(
            (back.status, back.display_name.as_str()),
            (AgentStatus::Away, "Renamed")
        );
    }

    #[test]
    fn going_available_takes_the_queues_and_starts_idling() {
        let q = queue(1);
        let mut a = agent(&q, 0);
        a.status = AgentStatus::Away;
        let queues = [Uuid::new_v4()];
        set_status(&mut a, AgentStatus::Available, &queues, t(8));
        assert_eq!((a.queues.clone(), a.idle_since), (queues.to_vec(), t(8)));
        // Going away keeps the queues for next time.
        set_status(&mut a, AgentStatus::Away, &[], t(9));
        assert_eq!(
            (a.status, a.queues.clone()),
            (AgentStatus::Away, queues.to_vec())
        );
    }

    #[test]
    fn a_visitor_history_gains_each_conversation_once() {
        let (id, org, one, two) = (
            Uuid::new_v4(),
            OrgId(Uuid::new_v4()),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let first = with_conversation(None, id, org, one, t(0));
        assert_eq!(
            (first.meta.id, first.conversations.clone()),
            (id, vec![one])
        );
        let again = with_conversation(Some(first), id, org, one, t(1));
        let more = with_conversation(Some(again), id, org, two, t(2));
        assert_eq!(more.conversations, [one, two]);
    }
}
