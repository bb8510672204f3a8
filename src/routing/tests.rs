//! Routing's transitions end to end on the embedded engine, in a temporary
//! directory: the records they commit, the offers they make and the events
//! they log. The decisions themselves are tested purely in `decide`.

use std::cell::Cell;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::assigner::LeaseKeeper;
use super::assignment::{MAX_WAIT_TEXT, PassOutcome};
use super::decide::MAX_WAIT_WRAP_UP;
use super::model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, GuestSession,
    ParticipantRole, PresenceKind,
};
use super::{AgentIdentity, NewEvent, Routing, RoutingConfig, RoutingError, TransferTarget};
use crate::engine::{BusMessage, Channel, EmbeddedEngine, Engine, Lease, Space};
use crate::store::Store;
use crate::store::records::{
    ConfigurationContent, ConfigurationRef, Deployment, Meta, Organization, Queue,
};
use crate::store::types::{DeploymentStatus, OrgId};

/// One organization with routing on a fresh embedded engine.
struct Center {
    routing: Routing,
    store: Store,
    org: OrgId,
    /// Dropped last: the engine's files live in it.
    _dir: tempfile::TempDir,
}

impl Center {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).await.unwrap();
        let store = Store::new(Engine::Embedded(engine));
        // The sweeps walk the organizations' lists.
        let mut org = Organization {
            meta: Meta::new(Utc::now()),
            name: "Center".into(),
            is_default: false,
            staff_integration_id: None,
            retention_days: None,
            limits: crate::limits::OrgLimits::default(),
        };
        store.create(&mut org).await.unwrap();
        Self {
            routing: Routing::new(store.clone(), RoutingConfig::default()),
            store,
            org: OrgId(org.meta.id),
            _dir: dir,
        }
    }

    async fn queue(&self, capacity: u32) -> Queue {
        self.queue_with(capacity, |_| {}).await
    }

    /// A queue with `capacity`, as `change` sets it up.
    async fn queue_with(&self, capacity: u32, change: impl FnOnce(&mut Queue)) -> Queue {
        let mut queue = Queue {
            meta: Meta::new(Utc::now()),
            org_id: self.org,
            name: "Support".into(),
            offer_timeout_seconds: 30,
            agent_capacity: capacity,
            member_ids: Vec::new(),
            decline_cooldown_seconds: 60,
            max_wait_seconds: None,
        };
        change(&mut queue);
        self.store.create(&mut queue).await.unwrap();
        queue
    }

    /// An agent connected (its first heartbeat) but away: only an offer
    /// addressed to it reaches it.
    async fn away_agent(&self, at: DateTime<Utc>) -> AgentIdentity {
        let agent = AgentIdentity {
            id: Uuid::new_v4(),
            org: self.org,
            name: "Agent".into(),
            is_member: false,
        };
        let state = self.routing.heartbeat(&agent, at).await.unwrap();
        assert_eq!(state.status, AgentStatus::Away);
        agent
    }

    /// An agent connected (its first heartbeat) and available for `queue`
    /// since `at`.
    async fn agent(&self, queue: &Queue, at: DateTime<Utc>) -> AgentIdentity {
        let agent = self.away_agent(at).await;
        self.routing
            .set_status(&agent, AgentStatus::Available, vec![queue.meta.id], at)
            .await
            .unwrap();
        self.routing.settled().await;
        agent
    }

    /// A guest's first message in a deployment of `queue`: opens its
    /// session and a conversation, answered once logged; the conversation
    /// is offered by the queue's assigner, which this waits for.
    async fn visitor_writes(&self, queue: &Queue, now: DateTime<Utc>) -> Conversation {
        let deployment = deployment(self.org, queue.meta.id);
        let (session, created) = self
            .routing
            .open_session(Uuid::new_v4(), &deployment, now)
            .await
            .unwrap();
        assert!(created);
        let (conversation, event, duplicate) = self
            .routing
            .visitor_post(session.meta.id, &deployment, &content(), text("hello"), now)
            .await
            .unwrap();
        assert_eq!((event.seq, duplicate), (1, false));
        // Answered waiting: routing comes after.
        assert!(matches!(
            conversation.state,
            ConversationState::Waiting { .. }
        ));
        self.routing.settled().await;
        conversation
    }

    /// `count` first messages in a row, a millisecond apart from `now`.
    async fn arrivals(&self, queue: &Queue, count: i64, now: DateTime<Utc>) -> Vec<Conversation> {
        let mut conversations = Vec::new();
        for i in 0..count {
            let at = now + Duration::milliseconds(i);
            conversations.push(self.visitor_writes(queue, at).await);
        }
        conversations
    }

    async fn conversation(&self, id: Uuid) -> Conversation {
        self.routing
            .conversation(self.org, id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn agent_state(&self, agent: &AgentIdentity) -> AgentState {
        self.routing
            .agent_state(self.org, agent.id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The bodies of a conversation's log, in order.
    async fn log(&self, conversation: Uuid) -> Vec<EventBody> {
        let events = self
            .routing
            .events_after(conversation, 0, 100)
            .await
            .unwrap();
        events.into_iter().map(|e| e.event.body).collect()
    }
}

/// A deployment of `org` sending to `queue`. Nothing reads it from storage,
/// so it is not stored.
fn deployment(org: OrgId, queue: Uuid) -> Deployment {
    Deployment {
        meta: Meta::new(Utc::now()),
        org_id: org,
        name: "Web".into(),
        description: String::new(),
        configuration: ConfigurationRef {
            id: Uuid::new_v4(),
            version: "1".into(),
        },
        allowed_domains: Vec::new(),
        allow_all_domains: true,
        allowed_app_hosts: Vec::new(),
        allowed_app_redirect_schemes: Vec::new(),
        status: DeploymentStatus::Active,
        queue_id: queue,
        retention_days: None,
    }
}

fn content() -> ConfigurationContent {
    serde_json::from_value(serde_json::json!({ "name": "Messenger" })).unwrap()
}

fn text(text: &str) -> NewEvent {
    NewEvent {
        body: EventBody::text(text, None),
        dedup: None,
    }
}

fn presence(presence: PresenceKind) -> EventBody {
    EventBody::presence(presence)
}

/// To whom a conversation is offered, if it is.
fn offered_to(c: &Conversation) -> Option<Uuid> {
    match c.state {
        ConversationState::Offered { agent_id, .. } => Some(agent_id),
        _ => None,
    }
}

#[tokio::test]
async fn a_first_message_is_offered_to_the_longest_idle_agent() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let later = center.agent(&queue, now).await;
    let longest_idle = center.agent(&queue, now - Duration::seconds(60)).await;
    let c = center.visitor_writes(&queue, now).await;
    let c = center.conversation(c.meta.id).await;
    assert_eq!(offered_to(&c), Some(longest_idle.id));
    assert_eq!(
        center.agent_state(&longest_idle).await.conversations,
        [c.meta.id]
    );
    assert!(center.agent_state(&later).await.conversations.is_empty());
    assert!(matches!(
        center.log(c.meta.id).await[..],
        [EventBody::Message { .. }]
    ));
}

#[tokio::test]
async fn accept_connects_and_logs_the_join() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let agent = center.agent(&queue, now).await;
    let c = center.visitor_writes(&queue, now).await;
    let stranger = center.agent(&queue, now).await;
    let refused = center.routing.accept(&stranger, c.meta.id, now).await;
    assert!(matches!(refused, Err(RoutingError::NotAllowed(_))));

    let c = center.routing.accept(&agent, c.meta.id, now).await.unwrap();
    assert!(
        matches!(c.state, ConversationState::Connected { agent_id, .. } if agent_id == agent.id)
    );
    assert_eq!(
        c,
        center.conversation(c.meta.id).await,
        "answered as stored"
    );
    assert_eq!(center.log(c.meta.id).await[1], presence(PresenceKind::Join));
}

#[tokio::test]
async fn decline_requeues_and_offers_the_next_agent() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let first = center.agent(&queue, now - Duration::seconds(60)).await;
    let c = center.visitor_writes(&queue, now).await;
    let second = center.agent(&queue, now).await;
    assert_eq!(
        offered_to(&center.conversation(c.meta.id).await),
        Some(first.id)
    );

    center
        .routing
        .decline(&first, c.meta.id, now)
        .await
        .unwrap();
    center.routing.settled().await;
    let c = center.conversation(c.meta.id).await;
    assert_eq!(offered_to(&c), Some(second.id));
    assert_eq!(c.declined, [first.id]);
    assert!(center.agent_state(&first).await.conversations.is_empty());
    // The first agent is not asked again, even once the second declines.
    center
        .routing
        .decline(&second, c.meta.id, now)
        .await
        .unwrap();
    center.routing.settled().await;
    let c = center.conversation(c.meta.id).await;
    assert!(matches!(c.state, ConversationState::Waiting { since } if since == now));
}

#[tokio::test]
async fn an_unanswered_offer_times_out() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let agent = center.agent(&queue, now).await;
    let c = center.visitor_writes(&queue, now).await;

    center
        .routing
        .expire_offers(now + Duration::seconds(29))
        .await
        .unwrap();
    assert_eq!(
        offered_to(&center.conversation(c.meta.id).await),
        Some(agent.id)
    );
    center
        .routing
        .expire_offers(now + Duration::seconds(31))
        .await
        .unwrap();
    let c = center.conversation(c.meta.id).await;
    assert!(matches!(c.state, ConversationState::Waiting { .. }));
    let state = center.agent_state(&agent).await;
    assert_eq!(state.status, AgentStatus::Away);
    assert!(state.conversations.is_empty());
}

#[tokio::test]
async fn a_lost_agent_goes_offline_and_its_conversation_to_another() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let lost = center.agent(&queue, now - Duration::seconds(60)).await;
    let c = center.visitor_writes(&queue, now).await;
    center.routing.accept(&lost, c.meta.id, now).await.unwrap();
    let other = center.agent(&queue, now).await;

    // The lost agent's sockets stop beating; the other's go on.
    center
        .store
        .engine()
        .discard(Space::AgentAlive, &lost.id.to_string())
        .await
        .unwrap();
    center.routing.sweep_agents(now).await.unwrap();
    center.routing.settled().await;
    let state = center.agent_state(&lost).await;
    assert_eq!(state.status, AgentStatus::Offline);
    assert!(state.conversations.is_empty());
    assert_eq!(
        center.agent_state(&other).await.status,
        AgentStatus::Available
    );
    let c = center.conversation(c.meta.id).await;
    assert_eq!(offered_to(&c), Some(other.id));
    assert_eq!(
        center.log(c.meta.id).await.last(),
        Some(&presence(PresenceKind::Leave))
    );
}

#[tokio::test]
async fn transfer_to_a_queue_offers_it_there() {
    let center = Center::new().await;
    let (first, second) = (center.queue(2).await, center.queue(2).await);
    let now = Utc::now();
    let agent = center.agent(&first, now).await;
    let specialist = center.agent(&second, now).await;
    let c = center.visitor_writes(&first, now).await;
    center.routing.accept(&agent, c.meta.id, now).await.unwrap();

    let target = TransferTarget::Queue(second.meta.id);
    let c = center
        .routing
        .transfer(&agent, c.meta.id, target, now)
        .await
        .unwrap();
    center.routing.settled().await;
    assert_eq!(c.queue_id, second.meta.id);
    let c = center.conversation(c.meta.id).await;
    assert_eq!(offered_to(&c), Some(specialist.id));
    assert!(center.agent_state(&agent).await.conversations.is_empty());
    let log = center.log(c.meta.id).await;
    assert_eq!(log[log.len() - 2], presence(PresenceKind::Leave));
    assert_eq!(
        log[log.len() - 1],
        EventBody::Transfer {
            queue_id: Some(second.meta.id),
            agent_id: None,
        }
    );
    // Once it is gone, the agent may not transfer it again.
    let refused = center
        .routing
        .transfer(&agent, c.meta.id, target, now)
        .await;
    assert!(matches!(refused, Err(RoutingError::NotAllowed(_))));
}

#[tokio::test]
async fn a_transfer_to_an_agent_is_offered_to_them_in_the_same_commit() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let agent = center.agent(&queue, now).await;
    let c = center.visitor_writes(&queue, now).await;
    center.routing.accept(&agent, c.meta.id, now).await.unwrap();
    let target = center.away_agent(now).await;

    let before = center.conversation(c.meta.id).await.meta.version;
    let moved = center
        .routing
        .transfer(&agent, c.meta.id, TransferTarget::Agent(target.id), now)
        .await
        .unwrap();
    assert_eq!(offered_to(&moved), Some(target.id));
    center.routing.settled().await;
    // One commit: the conversation never waited in its queue, where the
    // queue's assigner could have offered it to someone else (the sender,
    // who has room there again) before the target.
    let c = center.conversation(c.meta.id).await;
    assert_eq!(c.meta.version, before + 1);
    assert_eq!(offered_to(&c), Some(target.id));
    assert_eq!(center.agent_state(&target).await.conversations, [c.meta.id]);
    assert!(center.agent_state(&agent).await.conversations.is_empty());
    assert_eq!(
        center.log(c.meta.id).await.last(),
        Some(&EventBody::Transfer {
            queue_id: None,
            agent_id: Some(target.id),
        })
    );
}

#[tokio::test]
async fn capacity_holds_the_next_conversation_until_one_ends() {
    let center = Center::new().await;
    let queue = center.queue(1).await;
    let now = Utc::now();
    let agent = center.agent(&queue, now).await;
    let one = center.visitor_writes(&queue, now).await;
    center
        .routing
        .accept(&agent, one.meta.id, now)
        .await
        .unwrap();
    let two = center
        .visitor_writes(&queue, now + Duration::seconds(1))
        .await;
    assert!(matches!(
        center.conversation(two.meta.id).await.state,
        ConversationState::Waiting { .. }
    ));

    let wrap_up = Some("solved".to_owned());
    let ended = center
        .routing
        .end(&agent, one.meta.id, wrap_up.clone(), now)
        .await
        .unwrap();
    center.routing.settled().await;
    assert!(matches!(ended.state, ConversationState::Ended { .. }));
    assert_eq!(
        center.log(one.meta.id).await[2..],
        [
            presence(PresenceKind::Disconnect),
            EventBody::Ended { wrap_up }
        ]
    );
    // Ending freed the agent, and the queue was routed again.
    assert_eq!(
        offered_to(&center.conversation(two.meta.id).await),
        Some(agent.id)
    );
}

#[tokio::test]
async fn two_sockets_of_one_token_open_one_session() {
    let center = Center::new().await;
    let queue = center.queue(1).await;
    let deployment = deployment(center.org, queue.meta.id);
    let id = Uuid::new_v4();
    let now = Utc::now();
    let (a, b) = tokio::join!(
        center.routing.open_session(id, &deployment, now),
        center.routing.open_session(id, &deployment, now),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(u8::from(a.1) + u8::from(b.1), 1, "created exactly once");
    assert_eq!((a.0.meta.version, b.0.meta.version), (1, 1));
}

/// A read that another writer overtakes is decided again on fresh records,
/// and the decision's writes land on the fresh version.
#[tokio::test]
async fn a_stale_read_is_decided_again() {
    let center = Center::new().await;
    let session = guest_session(&center).await;
    let reads = Cell::new(0);
    let decisions = Cell::new(0);
    let updated = center
        .routing
        .read_modify_commit(
            || async {
                reads.set(reads.get() + 1);
                let read = center
                    .store
                    .find::<GuestSession>(center.org, session)
                    .await?
                    .unwrap();
                if reads.get() == 1 {
                    // Another node writes between this read and its commit.
                    touch(&center, session).await;
                }
                Ok(read)
            },
            |mut s, writes| {
                decisions.set(decisions.get() + 1);
                s.last_active += Duration::seconds(1);
                writes.put(&mut s, Utc::now())?;
                Ok(s)
            },
        )
        .await
        .unwrap();
    assert_eq!((reads.get(), decisions.get()), (2, 2));
    // Created (1), touched (2), then this change (3).
    assert_eq!(updated.meta.version, 3);
    let stored = center
        .routing
        .session(center.org, session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, updated);
}

/// Under endless contention the helper gives up instead of spinning, and a
/// decision that writes nothing commits nothing.
#[tokio::test]
async fn endless_contention_gives_up() {
    let center = Center::new().await;
    let session = guest_session(&center).await;
    let reads = Cell::new(0);
    let result = center
        .routing
        .read_modify_commit(
            || async {
                reads.set(reads.get() + 1);
                let read = center
                    .store
                    .find::<GuestSession>(center.org, session)
                    .await?
                    .unwrap();
                touch(&center, session).await;
                Ok(read)
            },
            |mut s, writes| {
                writes.put(&mut s, Utc::now())?;
                Ok(())
            },
        )
        .await;
    assert!(matches!(result, Err(RoutingError::Contended)));
    assert_eq!(reads.get(), 8);

    let before = center
        .routing
        .session(center.org, session)
        .await
        .unwrap()
        .unwrap();
    let kept = center
        .routing
        .read_modify_commit(
            || async {
                Ok(center
                    .store
                    .find::<GuestSession>(center.org, session)
                    .await?
                    .unwrap())
            },
            |s, _| Ok(s),
        )
        .await
        .unwrap();
    assert_eq!(kept, before);
    assert_eq!(
        center
            .routing
            .session(center.org, session)
            .await
            .unwrap()
            .unwrap(),
        before
    );
}

/// A stored guest session, bound to a deployment that need not exist.
async fn guest_session(center: &Center) -> Uuid {
    let deployment = deployment(center.org, Uuid::new_v4());
    let id = Uuid::new_v4();
    center
        .routing
        .open_session(id, &deployment, Utc::now())
        .await
        .unwrap();
    id
}

/// Another writer's change to a session, bypassing routing.
async fn touch(center: &Center, session: Uuid) {
    let mut s = center
        .store
        .find::<GuestSession>(center.org, session)
        .await
        .unwrap()
        .unwrap();
    let read = s.meta.version;
    center.store.update(&mut s, read).await.unwrap();
}

/// Conversations in a queue, by state: (waiting, offered).
async fn states(center: &Center, conversations: &[Conversation]) -> (usize, usize) {
    let mut counts = (0, 0);
    for c in conversations {
        match center.conversation(c.meta.id).await.state {
            ConversationState::Waiting { .. } => counts.0 += 1,
            ConversationState::Offered { .. } => counts.1 += 1,
            other => panic!("unexpected state {other:?}"),
        }
    }
    counts
}

/// A burst of first messages with nobody assigning: every one is answered
/// from the log, waiting; then one assigner fills every agent to its
/// capacity in one batch, longest waiting first, and no further.
#[tokio::test]
async fn a_burst_waits_answered_and_is_assigned_in_one_batch() {
    let center = Center::new().await;
    let queue = center.queue(2).await;
    let now = Utc::now();
    let burst = center.arrivals(&queue, 10, now).await;
    assert_eq!(states(&center, &burst).await, (10, 0));
    let agents = [
        center.agent(&queue, now - Duration::seconds(30)).await,
        center.agent(&queue, now - Duration::seconds(20)).await,
        center.agent(&queue, now - Duration::seconds(10)).await,
    ];
    assert_eq!(states(&center, &burst).await, (4, 6));
    for agent in &agents {
        assert_eq!(center.agent_state(agent).await.conversations.len(), 2);
    }
    // The six that waited longest.
    for c in &burst[..6] {
        assert!(offered_to(&center.conversation(c.meta.id).await).is_some());
    }
    // One ends: the next in line goes to the agent who freed up.
    let first = center.conversation(burst[0].meta.id).await;
    let holder = agents
        .iter()
        .find(|a| offered_to(&first) == Some(a.id))
        .unwrap();
    center
        .routing
        .accept(holder, first.meta.id, now)
        .await
        .unwrap();
    center
        .routing
        .end(holder, first.meta.id, None, now)
        .await
        .unwrap();
    center.routing.settled().await;
    assert_eq!(
        offered_to(&center.conversation(burst[6].meta.id).await),
        Some(holder.id)
    );
}

/// An agent who frees up for a queue with several conversations waiting
/// gets the round's offers in one commit of its record: its own `accept` of
/// one of them then races one write, not one per offer (a chain of commits
/// once won every attempt of an accept, which was told `busy`).
#[tokio::test]
async fn an_agents_offers_of_a_round_are_one_commit() {
    let center = Center::new().await;
    let queue = center.queue(3).await;
    let now = Utc::now();
    let waiting = center.arrivals(&queue, 3, now).await;
    let agent = center.away_agent(now).await;
    let available = center
        .routing
        .set_status(&agent, AgentStatus::Available, vec![queue.meta.id], now)
        .await
        .unwrap();
    center.routing.settled().await;
    let state = center.agent_state(&agent).await;
    assert_eq!(state.conversations.len(), 3);
    assert_eq!(state.meta.version, available.meta.version + 1);
    // Each offered to the agent, who accepts them one after another.
    for c in &waiting {
        let accepted = center.routing.accept(&agent, c.meta.id, now).await;
        assert_eq!(accepted.unwrap().agent(), Some(agent.id));
    }
}

/// Declined by every agent, a conversation is not left waiting forever: once
/// the queue's cool-down has passed the assigner offers it again.
#[tokio::test]
async fn declined_by_everyone_it_is_offered_again_after_the_cool_down() {
    let center = Center::new().await;
    let queue = center.queue(1).await;
    let now = Utc::now();
    let agent = center.agent(&queue, now).await;
    let c = center.visitor_writes(&queue, now).await;
    let declined_at = Utc::now();
    center
        .routing
        .decline(&agent, c.meta.id, declined_at)
        .await
        .unwrap();
    center.routing.settled().await;
    let c = center.conversation(c.meta.id).await;
    assert!(matches!(c.state, ConversationState::Waiting { .. }));

    // The assigner's pass knows when to look again...
    let mut lease = LeaseKeeper::none(queue.meta.id);
    let outcome = center
        .routing
        .assign_pass(
            center.org,
            queue.meta.id,
            declined_at + Duration::seconds(1),
            &mut lease,
        )
        .await
        .unwrap();
    let cooled = declined_at + Duration::seconds(60);
    assert_eq!(
        outcome,
        Some(PassOutcome {
            waiting: true,
            next_due: Some(cooled),
        })
    );
    // ...and then the same agent may have it again.
    center
        .routing
        .assign_pass(center.org, queue.meta.id, cooled, &mut lease)
        .await
        .unwrap();
    let c = center.conversation(c.meta.id).await;
    assert_eq!(offered_to(&c), Some(agent.id));
    assert!(c.declined.is_empty());
}

/// A conversation that waits longer than its queue allows ends, and the
/// visitor is told in the log they read: the queue's message, then the
/// `Disconnect` presence.
#[tokio::test]
async fn past_the_wait_limit_the_conversation_ends_and_the_visitor_is_told() {
    let center = Center::new().await;
    let queue = center
        .queue_with(1, |q| q.max_wait_seconds = Some(120))
        .await;
    let now = Utc::now();
    let c = center.visitor_writes(&queue, now).await;
    let mut lease = LeaseKeeper::none(queue.meta.id);
    let outcome = center
        .routing
        .assign_pass(
            center.org,
            queue.meta.id,
            now + Duration::seconds(119),
            &mut lease,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.next_due, Some(now + Duration::seconds(120)));
    assert!(matches!(
        center.conversation(c.meta.id).await.state,
        ConversationState::Waiting { .. }
    ));

    let late = now + Duration::seconds(120);
    let outcome = center
        .routing
        .assign_pass(center.org, queue.meta.id, late, &mut lease)
        .await
        .unwrap();
    assert_eq!(outcome, Some(PassOutcome::default()));
    assert_eq!(
        center.conversation(c.meta.id).await.state,
        ConversationState::Ended {
            at: late,
            wrap_up: Some(MAX_WAIT_WRAP_UP.to_owned()),
        }
    );
    let events = center.routing.events_after(c.meta.id, 1, 10).await.unwrap();
    let told: Vec<(ParticipantRole, EventBody)> = events
        .into_iter()
        .map(|e| (e.event.from.role, e.event.body))
        .collect();
    assert!(matches!(
        &told[..],
        [
            (ParticipantRole::System, EventBody::Message { text: Some(text), .. }),
            (ParticipantRole::System, EventBody::Presence { presence: PresenceKind::Disconnect, .. }),
            (ParticipantRole::System, EventBody::Ended { .. }),
        ] if text == MAX_WAIT_TEXT
    ));
}

/// While another node holds the queue's lease, this one makes no offers;
/// when that holder is gone (its lease runs out unrenewed), this node takes
/// over and assigns what waited.
#[tokio::test]
async fn a_lease_that_runs_out_unrenewed_is_taken_over() {
    let center = Center::new().await;
    let queue = center.queue(1).await;
    let now = Utc::now();
    // Another node's lease, which it will never renew.
    let engine = center.store.engine();
    let id = queue.meta.id.to_string();
    let dead = b"a node that died";
    let ttl = std::time::Duration::from_secs(2);
    assert_eq!(
        engine
            .lease(Space::AssignLease, &id, dead, ttl)
            .await
            .unwrap(),
        Lease::Held
    );
    let agent = center.agent(&queue, now).await;
    let mut offers = engine.subscribe(Channel::Agent(agent.id)).await.unwrap();
    let c = center.visitor_writes(&queue, now).await;
    // Handed over: this node stands by, the conversation waits.
    assert!(matches!(
        center.conversation(c.meta.id).await.state,
        ConversationState::Waiting { .. }
    ));
    assert!(engine.peek(Space::AssignWake, &id).await.unwrap().is_some());

    let offered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(BusMessage::Payload(_)) = offers.recv().await
                && let Some(agent_id) = offered_to(&center.conversation(c.meta.id).await)
            {
                return agent_id;
            }
        }
    })
    .await
    .expect("taken over after the lease ran out");
    assert_eq!(offered, agent.id);
    // The lease is this node's now: the dead holder's renewal is refused.
    assert!(matches!(
        engine
            .lease(Space::AssignLease, &id, dead, ttl)
            .await
            .unwrap(),
        Lease::Busy { .. }
    ));
}

/// Wakes coalesce: twenty arrivals while another node holds the lease make
/// no pass here, and once this node holds it, one pass offers them all.
#[tokio::test]
async fn many_wakes_make_one_pass_that_drains_the_queue() {
    use std::sync::atomic::Ordering;
    let center = Center::new().await;
    let queue = center.queue(50).await;
    let now = Utc::now();
    let engine = center.store.engine();
    let id = queue.meta.id.to_string();
    let other = b"another node";
    let long = std::time::Duration::from_secs(60);
    assert_eq!(
        engine
            .lease(Space::AssignLease, &id, other, long)
            .await
            .unwrap(),
        Lease::Held
    );
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.push(
            center
                .visitor_writes(&queue, now + Duration::milliseconds(i))
                .await,
        );
    }
    assert_eq!(center.routing.assigners.passes.load(Ordering::Relaxed), 0);
    // The other node lets go; an agent going available wakes the queue.
    assert!(
        engine
            .release(Space::AssignLease, &id, other)
            .await
            .unwrap()
    );
    let agent = center.agent(&queue, now).await;
    assert_eq!(states(&center, &burst).await, (0, 20));
    assert_eq!(center.agent_state(&agent).await.conversations.len(), 20);
    assert_eq!(center.routing.assigners.passes.load(Ordering::Relaxed), 1);
}
