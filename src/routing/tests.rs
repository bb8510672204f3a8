//! Routing's transitions end to end on the embedded engine, in a temporary
//! directory: the records they commit, the offers they make and the events
//! they log. The decisions themselves are tested purely in `decide`.

use std::cell::Cell;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, GuestSession, PresenceKind,
};
use super::{AgentIdentity, NewEvent, Routing, RoutingConfig, RoutingError, TransferTarget};
use crate::engine::{EmbeddedEngine, Engine, Space};
use crate::store::Store;
use crate::store::records::{ConfigurationContent, ConfigurationRef, Deployment, Meta, Queue};
use crate::store::types::{DeploymentStatus, OrgId};
use crate::telemetry::Metrics;

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
        let store = Store::new(Engine::Embedded(engine), Metrics::new());
        Self {
            routing: Routing::new(store.clone(), RoutingConfig::default()),
            store,
            org: OrgId(Uuid::new_v4()),
            _dir: dir,
        }
    }

    async fn queue(&self, capacity: u32) -> Queue {
        let mut queue = Queue {
            meta: Meta::new(Utc::now()),
            org_id: self.org,
            name: "Support".into(),
            offer_timeout_seconds: 30,
            agent_capacity: capacity,
            member_ids: Vec::new(),
        };
        self.store.create(&mut queue).await.unwrap();
        queue
    }

    /// An agent connected (its first heartbeat) and available for `queue`
    /// since `at`.
    async fn agent(&self, queue: &Queue, at: DateTime<Utc>) -> AgentIdentity {
        let agent = AgentIdentity {
            id: Uuid::new_v4(),
            org: self.org,
            name: "Agent".into(),
            is_member: false,
        };
        let state = self.routing.heartbeat(&agent, at).await.unwrap();
        assert_eq!(state.status, AgentStatus::Away);
        self.routing
            .set_status(&agent, AgentStatus::Available, vec![queue.meta.id], at)
            .await
            .unwrap();
        agent
    }

    /// A guest's first message in a deployment of `queue`: opens its
    /// session and a conversation, which is routed at once.
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
        conversation
    }

    async fn conversation(&self, id: Uuid) -> Conversation {
        self.routing.conversation(id).await.unwrap().unwrap()
    }

    async fn agent_state(&self, agent: &AgentIdentity) -> AgentState {
        self.routing.agent_state(agent.id).await.unwrap().unwrap()
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
                let read = center.store.find::<GuestSession>(session).await?.unwrap();
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
    let stored = center.routing.session(session).await.unwrap().unwrap();
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
                let read = center.store.find::<GuestSession>(session).await?.unwrap();
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

    let before = center.routing.session(session).await.unwrap().unwrap();
    let kept = center
        .routing
        .read_modify_commit(
            || async { Ok(center.store.find::<GuestSession>(session).await?.unwrap()) },
            |s, _| Ok(s),
        )
        .await
        .unwrap();
    assert_eq!(kept, before);
    assert_eq!(
        center.routing.session(session).await.unwrap().unwrap(),
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
        .find::<GuestSession>(session)
        .await
        .unwrap()
        .unwrap();
    let read = s.meta.version;
    center.store.update(&mut s, read).await.unwrap();
}
