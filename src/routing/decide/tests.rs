//! The decisions, each on hand-made records and explicit times.
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
        decline_cooldown_seconds: 60,
        max_wait_seconds: None,
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
        all_queues: false,
        member: false,
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
        declined_at: None,
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
    assert_eq!(
        (c.declined.clone(), c.declined_at),
        (vec![a.meta.id], Some(t(9)))
    );
    assert!(a.conversations.is_empty());
    assert_eq!(a.idle_since, t(9));
    // Not offered to that agent again, while another one may take it.
    let b = agent(&q, 5);
    let agents = [a.clone(), b.clone()];
    let waiting = std::slice::from_ref(&c);
    assert_eq!(plan_offers(waiting, &agents, &q, t(10)), [planned(&c, &b)]);
    assert!(plan_offers(waiting, &agents[..1], &q, t(10)).is_empty());
    let mut fresh = a.clone();
    assert!(offer_planned(&mut c.clone(), &mut fresh, &q, t(10)).is_err());
}

/// The offer of `c` to `a`, as a plan names it.
fn planned(c: &Conversation, a: &AgentState) -> Planned {
    Planned {
        conversation: c.meta.id,
        agent: a.meta.id,
    }
}

#[test]
fn declines_are_forgotten_after_the_queue_cool_down() {
    let q = queue(2);
    let (mut c, mut a, mut b) = (waiting(&q, 0), agent(&q, 0), agent(&q, 1));
    offered(&mut c, &mut a, &q, 1);
    decline(&mut c, &mut a, t(2)).unwrap();
    offered(&mut c, &mut b, &q, 3);
    expire_offer(&mut c, &mut b, t(40)).unwrap();
    b.status = AgentStatus::Available;
    // Every agent turned it down; the last one at 40.
    assert_eq!(c.declined_at, Some(t(40)));
    let agents = [a.clone(), b.clone()];
    let waiting = std::slice::from_ref(&c);
    assert!(plan_offers(waiting, &agents, &q, t(99)).is_empty());
    // The assigner knows when to look again.
    assert_eq!(next_due(waiting, &q, t(41)), Some(t(100)));
    // A minute after the last decline, both may have it again: the one
    // idle longest first, and the old declines are gone with the offer.
    assert_eq!(plan_offers(waiting, &agents, &q, t(100)), [planned(&c, &a)]);
    offer_planned(&mut c, &mut a, &q, t(100)).unwrap();
    assert_eq!((c.declined.clone(), c.declined_at), (Vec::new(), None));
    assert_eq!(next_due(&[], &q, t(100)), None);
}

#[test]
fn a_conversation_waiting_past_the_limit_ends() {
    let mut q = queue(1);
    let mut c = waiting(&q, 10);
    // Without a limit it may wait as long as it takes.
    assert!(!overdue(&c, &q, t(1_000_000)));
    assert_eq!(next_due(std::slice::from_ref(&c), &q, t(11)), None);
    q.max_wait_seconds = Some(120);
    assert_eq!(next_due(std::slice::from_ref(&c), &q, t(11)), Some(t(130)));
    assert!(give_up(&mut c, &q, t(129)).is_err());
    assert!(matches!(c.state, ConversationState::Waiting { .. }));
    give_up(&mut c, &q, t(130)).unwrap();
    assert_eq!(
        c.state,
        ConversationState::Ended {
            at: t(130),
            wrap_up: Some(MAX_WAIT_WRAP_UP.to_owned()),
        }
    );
    // Only a waiting conversation gives up: one offered is being answered.
    let (mut offered_c, mut a) = (waiting(&q, 0), agent(&q, 0));
    offered(&mut offered_c, &mut a, &q, 1);
    assert!(!overdue(&offered_c, &q, t(500)));
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
    let (mut offer_c, mut talk_c, mut gone_c) = (waiting(&q, 1), waiting(&q, 2), waiting(&q, 3));
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
fn a_transfer_to_an_agent_offers_it_at_once_when_there_is_room() {
    let q = queue(1);
    let (mut c, mut from) = (waiting(&q, 0), agent(&q, 0));
    connected(&mut c, &mut from, &q, 1);
    // Away is no obstacle to a transfer addressed to that agent.
    let mut to = agent(&q, 0);
    to.status = AgentStatus::Away;
    assert!(transfer_to_agent(&mut c, &mut from, &mut to, Some(&q), t(2)).unwrap());
    assert!(matches!(c.state,
        ConversationState::Offered { agent_id, deadline, .. }
            if agent_id == to.meta.id && deadline == t(32)));
    assert!(from.conversations.is_empty());
    assert_eq!(to.conversations, [c.meta.id]);

    // A target with no room: it waits in its queue for anyone.
    let mut busy = agent(&q, 0);
    let mut other = waiting(&q, 0);
    connected(&mut other, &mut busy, &q, 3);
    let mut c = waiting(&q, 0);
    let mut from = agent(&q, 0);
    connected(&mut c, &mut from, &q, 4);
    assert!(!transfer_to_agent(&mut c, &mut from, &mut busy, Some(&q), t(5)).unwrap());
    assert_eq!(c.state, ConversationState::Waiting { since: t(5) });
    assert_eq!(busy.conversations, [other.meta.id]);
    assert!(from.conversations.is_empty());

    // Its queue gone: it waits too (for the sweeper to settle it).
    let mut c = waiting(&q, 0);
    let mut from = agent(&q, 0);
    connected(&mut c, &mut from, &q, 6);
    let mut to = agent(&q, 0);
    assert!(!transfer_to_agent(&mut c, &mut from, &mut to, None, t(7)).unwrap());
    assert!(to.conversations.is_empty());

    // Not to oneself, and only by the connected agent.
    let mut c = waiting(&q, 0);
    let mut from = agent(&q, 0);
    connected(&mut c, &mut from, &q, 8);
    let mut same = from.clone();
    assert!(transfer_to_agent(&mut c, &mut from, &mut same, Some(&q), t(9)).is_err());
    let mut stranger = agent(&q, 0);
    let mut to = agent(&q, 0);
    assert!(transfer_to_agent(&mut c, &mut stranger, &mut to, Some(&q), t(9)).is_err());
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
    assert!(plan_offers(&next, std::slice::from_ref(&a), &q, t(2)).is_empty());
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
    let plan = plan_offers(&queue_order, &agents, &q, t(10));
    assert_eq!(plan[0], planned(&first, &idle_long));
    // The second goes to the other idle one, not the busy one.
    assert_eq!(plan[1].agent, agents[0].meta.id);
    // When every candidate declined the first lately, the second goes first.
    let mut declined = first;
    declined.declined = agents.iter().map(|a| a.meta.id).collect();
    declined.declined_at = Some(t(9));
    let queue_order = [declined, second.clone()];
    let plan = plan_offers(&queue_order, &agents, &q, t(10));
    assert_eq!(plan, [planned(&second, &idle_long)]);
    assert!(plan_offers(&[], &agents, &q, t(10)).is_empty());
}

#[test]
fn a_batch_fills_every_agent_to_capacity_and_no_further() {
    let q = queue(2);
    let mut busy = agent(&q, 0);
    busy.conversations.push(Uuid::new_v4());
    let (idle, later) = (agent(&q, 3), agent(&q, 7));
    let mut away = agent(&q, 0);
    away.status = AgentStatus::Away;
    let agents = [later.clone(), busy.clone(), away, idle.clone()];
    let waiting: Vec<Conversation> = (0..10).map(|i| waiting(&q, i)).collect();
    let plan = plan_offers(&waiting, &agents, &q, t(20));
    // Two free places each for the idle agents, one for the busy one.
    assert_eq!(plan.len(), 5);
    let offers_to = |a: &AgentState| plan.iter().filter(|p| p.agent == a.meta.id).count();
    assert_eq!(
        (offers_to(&idle), offers_to(&later), offers_to(&busy)),
        (2, 2, 1)
    );
    // Longest waiting first, each to the least loaded, then longest idle.
    let order: Vec<Uuid> = plan.iter().map(|p| p.conversation).collect();
    let expected: Vec<Uuid> = waiting[..5].iter().map(|c| c.meta.id).collect();
    assert_eq!(order, expected);
    // At equal load, the one idle since longest: the busy agent's
    // `idle_since` is from before it got busy.
    assert_eq!(
        plan.iter().map(|p| p.agent).collect::<Vec<_>>(),
        [
            idle.meta.id,
            later.meta.id,
            busy.meta.id,
            idle.meta.id,
            later.meta.id
        ]
    );
    // Made one by one on the planned records, no agent passes its capacity.
    let mut by_id: std::collections::HashMap<Uuid, AgentState> =
        agents.iter().map(|a| (a.meta.id, a.clone())).collect();
    for (p, mut c) in plan.iter().zip(waiting.iter().cloned()) {
        let a = by_id.get_mut(&p.agent).unwrap();
        offer_planned(&mut c, a, &q, t(20)).unwrap();
    }
    assert!(by_id.values().all(|a| a.conversations.len() <= 2));
    // A conversation of another queue, or no longer waiting, is no part of it.
    let mut elsewhere = waiting[0].clone();
    elsewhere.queue_id = Uuid::new_v4();
    assert!(plan_offers(&[elsewhere], &agents, &q, t(20)).is_empty());
}

#[test]
fn an_agent_following_all_its_queues_serves_new_ones() {
    let q = queue(1);
    let mut later = queue(1);
    later.org_id = q.org_id;
    let mut client = agent(&q, 0);
    client.all_queues = true;
    // An API client: every queue of its organization, old or new.
    assert!(takes_offers(&client, &later));
    let mut named = client.clone();
    named.all_queues = false;
    assert!(!takes_offers(&named, &later));
    // A member: the queues that list it, when they do.
    let mut member = client;
    member.member = true;
    assert!(!takes_offers(&member, &later));
    later.member_ids.push(member.meta.id);
    assert!(takes_offers(&member, &later));
    let mut foreign = later.clone();
    foreign.org_id = OrgId(Uuid::new_v4());
    assert!(!takes_offers(&member, &foreign));
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
    let me = AgentIdentity {
        id: a.meta.id,
        org: q.org_id,
        name: "Agent".into(),
        is_member: true,
    };
    let queues = [Uuid::new_v4()];
    set_status(&mut a, &me, AgentStatus::Available, &queues, true, t(8));
    assert_eq!((a.queues.clone(), a.idle_since), (queues.to_vec(), t(8)));
    assert!(a.all_queues && a.member);
    // Going away keeps the queues for next time.
    set_status(&mut a, &me, AgentStatus::Away, &[], false, t(9));
    assert_eq!(
        (a.status, a.queues.clone(), a.all_queues),
        (AgentStatus::Away, queues.to_vec(), true)
    );
    // Naming queues stops following all of them.
    set_status(&mut a, &me, AgentStatus::Available, &queues, false, t(10));
    assert!(!a.all_queues);
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
