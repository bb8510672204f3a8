//! Conversations between visitors and agents: sessions, queues, offers,
//! assignment, presence.
//!
//! Every transition is a compare-and-set commit of the records it touches
//! (see [`model`]), so any number of nodes may act on the same conversation
//! or agent at once: one commit wins, the others see a stale version and
//! re-read. Events go to the conversation's log first and are announced on
//! the bus second; a message counts as sent once it is in the log.
//!
//! A sweeper runs on every node: it times offers out, notices agents whose
//! sockets are gone (their heartbeat expired), and retries routing queues
//! with waiting conversations. Its work is idempotent, so it needs no leader.

pub mod model;
mod revoked;
mod typing;
pub mod visitor;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::engine::{Appended, Channel, Commit, Engine, Expect, Space, StashMode};
use crate::store::records::{
    ConfigurationContent, ConversationDisconnect, Deployment, DisconnectType, Meta, Organization,
    Queue,
};
use crate::store::types::OrgId;
use crate::store::{PageRequest, Record, Store, StoreError, collection_of};
use model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, GuestSession, LogEvent,
    Notice, OFFERED_COLLECTION, ONLINE_AGENTS_COLLECTION, Participant, ParticipantRole,
    PresenceKind, SequencedEvent, Visitor, VisitorIdentity, waiting_collection,
};

/// How often a transition is retried when another node changed the same
/// records first.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("no such conversation")]
    UnknownConversation,
    #[error("no such session")]
    UnknownSession,
    /// The caller may not act on this conversation in its current state.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The conversation ended and the configuration makes it read-only.
    #[error("the conversation has ended and is read-only")]
    ReadOnly,
    #[error("too much contention, try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type RoutingResult<T> = Result<T, RoutingError>;

/// Timings of routing.
#[derive(Clone, Copy, Debug)]
pub struct RoutingConfig {
    /// How long an agent without a socket keeps its conversations.
    pub agent_grace: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            agent_grace: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// Who an agent is, as the agent socket authenticated them.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub id: Uuid,
    pub org: OrgId,
    pub name: String,
    /// A staff member (queues from queue membership) or an API client
    /// (queues it names itself, within its organization).
    pub is_member: bool,
}

/// Where an agent sends a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    Queue(Uuid),
    Agent(Uuid),
}

/// Where an agent may transfer to: see [`Routing::directory`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Directory {
    pub queues: Vec<DirectoryQueue>,
    pub agents: Vec<DirectoryAgent>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectoryQueue {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectoryAgent {
    pub id: Uuid,
    pub name: String,
    pub status: AgentStatus,
}

/// A new event from a visitor or an agent, before it has a sequence.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub body: EventBody,
    pub dedup: Option<String>,
}

/// The routing service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Routing {
    store: Store,
    config: RoutingConfig,
}

impl Routing {
    pub fn new(store: Store, config: RoutingConfig) -> Self {
        Self { store, config }
    }

    fn engine(&self) -> &Engine {
        self.store.engine()
    }

    pub fn config(&self) -> RoutingConfig {
        self.config
    }

    // ---- sessions -------------------------------------------------------

    pub async fn session(&self, id: Uuid) -> RoutingResult<Option<GuestSession>> {
        Ok(self.store.find::<GuestSession>(id).await?)
    }

    /// Loads or creates the session a token names, bound to `deployment`.
    /// Answers the session and whether it was created now.
    pub async fn open_session(
        &self,
        id: Uuid,
        deployment: &Deployment,
        now: DateTime<Utc>,
    ) -> RoutingResult<(GuestSession, bool)> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(session) = self.store.find::<GuestSession>(id).await? {
                return Ok((session, false));
            }
            let mut session = GuestSession {
                meta: Meta {
                    id,
                    version: 0,
                    date_created: now,
                    date_modified: now,
                },
                org_id: deployment.org_id,
                deployment_id: deployment.meta.id,
                identity: None,
                visitor_id: None,
                token_family: None,
                conversation_id: None,
                last_active: now,
            };
            match self.store.create(&mut session).await {
                Ok(()) => return Ok((session, true)),
                // Another socket of the same token created it first.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    /// Applies `change` to a session with compare-and-set, retrying on
    /// contention.
    pub async fn update_session(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut GuestSession) -> RoutingResult<()>,
    ) -> RoutingResult<GuestSession> {
        for _ in 0..MAX_ATTEMPTS {
            let mut session = self
                .store
                .find::<GuestSession>(id)
                .await?
                .ok_or(RoutingError::UnknownSession)?;
            let read = session.meta.version;
            change(&mut session)?;
            session.meta.date_modified = Utc::now();
            match self.store.update(&mut session, read).await {
                Ok(()) => return Ok(session),
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    /// Marks the session's current conversation as finished for the
    /// visitor, so the next message starts a new one (`startNew`).
    pub async fn start_new(&self, session: Uuid) -> RoutingResult<GuestSession> {
        self.update_session(session, |s| {
            s.conversation_id = None;
            Ok(())
        })
        .await
    }

    /// The conversations an authenticated visitor had, oldest first.
    pub async fn visitor_conversations(&self, visitor: Uuid) -> RoutingResult<Vec<Uuid>> {
        Ok(self
            .store
            .find::<Visitor>(visitor)
            .await?
            .map(|v| v.conversations)
            .unwrap_or_default())
    }

    pub async fn conversation(&self, id: Uuid) -> RoutingResult<Option<Conversation>> {
        Ok(self.store.find::<Conversation>(id).await?)
    }

    /// Whether a visitor whose conversation ended may still send: per the
    /// configuration's `conversationDisconnect`.
    pub fn read_only_after_end(settings: &ConversationDisconnect) -> bool {
        settings.enabled && settings.kind == DisconnectType::ReadOnly
    }

    /// A guest session upgraded in place: the conversation's visitor becomes
    /// the signed-in identity (agents see who they talk to), and the
    /// conversation joins the visitor's history. (Added for the guest
    /// gateway.)
    pub async fn sign_in_conversation(
        &self,
        conversation: Uuid,
        identity: &VisitorIdentity,
        visitor_id: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        for _ in 0..MAX_ATTEMPTS {
            let mut c = self
                .store
                .find::<Conversation>(conversation)
                .await?
                .ok_or(RoutingError::UnknownConversation)?;
            let read = c.meta.version;
            c.visitor = identity.clone();
            c.meta.date_modified = now;
            let (visitor, expect) = match self.store.find::<Visitor>(visitor_id).await? {
                Some(mut v) => {
                    let read = v.meta.version;
                    if !v.conversations.contains(&conversation) {
                        v.conversations.push(conversation);
                    }
                    (v, Expect::Version(read))
                }
                None => (
                    Visitor {
                        meta: Meta {
                            id: visitor_id,
                            ..Meta::new(now)
                        },
                        org_id: c.org_id,
                        conversations: vec![conversation],
                    },
                    Expect::Absent,
                ),
            };
            let commit = Commit::new()
                .put(self.store.prepare(&c, Expect::Version(read)).await?)
                .put(self.store.prepare(&visitor, expect).await?);
            match self.store.commit(commit).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Stale { .. } | StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    /// Posts a visitor's event. Opens a conversation in the deployment's
    /// queue when the session has none (or its last one ended and the
    /// configuration lets a new one start).
    pub async fn visitor_post(
        &self,
        session_id: Uuid,
        deployment: &Deployment,
        content: &ConfigurationContent,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(Conversation, SequencedEvent, bool)> {
        let session = self
            .store
            .find::<GuestSession>(session_id)
            .await?
            .ok_or(RoutingError::UnknownSession)?;
        let conversation = match session.conversation_id {
            Some(id) => self.store.find::<Conversation>(id).await?,
            None => None,
        };
        let conversation = match conversation {
            Some(c) if !c.is_ended() => c,
            Some(_)
                if Self::read_only_after_end(
                    &content.messenger.apps.conversations.conversation_disconnect,
                ) =>
            {
                return Err(RoutingError::ReadOnly);
            }
            _ => self.open_conversation(&session, deployment, now).await?,
        };
        let from = Participant {
            role: ParticipantRole::Visitor,
            id: None,
            name: conversation.visitor.display_name(),
        };
        let (event, duplicate) = self.append(conversation.meta.id, from, event, now).await?;
        Ok((conversation, event, duplicate))
    }

    async fn open_conversation(
        &self,
        session: &GuestSession,
        deployment: &Deployment,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let mut conversation = Conversation {
            meta: Meta::new(now),
            org_id: session.org_id,
            deployment_id: deployment.meta.id,
            queue_id: deployment.queue_id,
            session_id: session.meta.id,
            visitor: session.identity.clone().unwrap_or_default(),
            state: ConversationState::Waiting { since: now },
            declined: Vec::new(),
            agents: Vec::new(),
        };
        conversation.meta.id = Uuid::now_v7();
        let mut updated_session = session.clone();
        updated_session.conversation_id = Some(conversation.meta.id);
        updated_session.last_active = now;
        let mut commit = Commit::new()
            .put(self.store.prepare(&conversation, Expect::Absent).await?)
            .put(
                self.store
                    .prepare(&updated_session, Expect::Version(session.meta.version))
                    .await?,
            );
        if let Some(visitor_id) = session.visitor_id {
            let (visitor, expect) = match self.store.find::<Visitor>(visitor_id).await? {
                Some(mut v) => {
                    let read = v.meta.version;
                    v.conversations.push(conversation.meta.id);
                    (v, Expect::Version(read))
                }
                None => (
                    Visitor {
                        meta: Meta {
                            id: visitor_id,
                            ..Meta::new(now)
                        },
                        org_id: session.org_id,
                        conversations: vec![conversation.meta.id],
                    },
                    Expect::Absent,
                ),
            };
            commit = commit.put(self.store.prepare(&visitor, expect).await?);
        }
        match self.store.commit(commit).await {
            Ok(()) => {}
            // Another socket of the session opened one first: use it.
            Err(StoreError::Stale { .. } | StoreError::Conflict(_)) => {
                let fresh = self
                    .store
                    .find::<GuestSession>(session.meta.id)
                    .await?
                    .ok_or(RoutingError::UnknownSession)?;
                return match fresh.conversation_id {
                    Some(id) => self
                        .store
                        .find::<Conversation>(id)
                        .await?
                        .ok_or(RoutingError::Contended),
                    None => Err(RoutingError::Contended),
                };
            }
            Err(e) => return Err(e.into()),
        }
        conversation.meta.version = 1;
        tracing::info!(conversation = %conversation.meta.id, queue = %conversation.queue_id, "conversation opened");
        self.wake_queue(conversation.queue_id).await;
        Ok(conversation)
    }

    /// Appends an event to a conversation's log and announces it. Answers
    /// the sequenced event and whether it was a resend of one already
    /// logged (then nothing was appended).
    pub async fn append(
        &self,
        conversation: Uuid,
        from: Participant,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        let logged = LogEvent {
            id: Uuid::now_v7(),
            time: now,
            from,
            body: event.body,
        };
        let body = crate::store::encode(&logged)?;
        let Appended { seq, duplicate } = self
            .engine()
            .append(conversation, &body, event.dedup.as_deref())
            .await
            .map_err(StoreError::from)?;
        if duplicate {
            // Answer with the event as first logged.
            let first = self
                .engine()
                .read_log(conversation, seq.saturating_sub(1), 1)
                .await
                .map_err(StoreError::from)?;
            let event = first
                .into_iter()
                .next()
                .and_then(|entry| serde_json::from_slice::<LogEvent>(&entry.body).ok())
                .unwrap_or(logged);
            return Ok((
                SequencedEvent {
                    conversation_id: conversation,
                    seq,
                    event,
                },
                true,
            ));
        }
        let sequenced = SequencedEvent {
            conversation_id: conversation,
            seq,
            event: logged,
        };
        self.notify(
            &Channel::Conversation(conversation),
            &Notice::Event(sequenced.clone()),
        )
        .await;
        Ok((sequenced, false))
    }

    /// Log entries of a conversation after `after`, decoded.
    pub async fn events_after(
        &self,
        conversation: Uuid,
        after: u64,
        limit: usize,
    ) -> RoutingResult<Vec<SequencedEvent>> {
        let entries = self
            .engine()
            .read_log(conversation, after, limit)
            .await
            .map_err(StoreError::from)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let event = serde_json::from_slice::<LogEvent>(&entry.body)
                    .map_err(|e| tracing::error!(%conversation, seq = entry.seq, error = %e, "unreadable log entry"))
                    .ok()?;
                Some(SequencedEvent {
                    conversation_id: conversation,
                    seq: entry.seq,
                    event,
                })
            })
            .collect())
    }

    pub async fn last_seq(&self, conversation: Uuid) -> RoutingResult<u64> {
        Ok(self
            .engine()
            .last_seq(conversation)
            .await
            .map_err(StoreError::from)?)
    }

    /// Announces a notice. The bus is a hint (the logs are the truth), so a
    /// failed publish is logged, not returned.
    pub async fn notify(&self, channel: &Channel, notice: &Notice) {
        match serde_json::to_vec(notice) {
            Ok(payload) => {
                if let Err(e) = self.engine().publish(channel, &payload).await {
                    tracing::warn!(channel = %channel.name(), error = %e, "publish failed; subscribers catch up from the log");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a notice"),
        }
    }

    // ---- agents ---------------------------------------------------------

    pub async fn agent_state(&self, agent: Uuid) -> RoutingResult<Option<AgentState>> {
        Ok(self.store.find::<AgentState>(agent).await?)
    }

    /// Records that one of the agent's sockets is alive. Called when a
    /// socket opens and then periodically while it lives.
    pub async fn heartbeat(
        &self,
        agent: &AgentIdentity,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        self.engine()
            .stash(
                Space::AgentAlive,
                &agent.id.to_string(),
                b"1",
                self.config.agent_grace,
                StashMode::Replace,
            )
            .await
            .map_err(StoreError::from)?;
        for _ in 0..MAX_ATTEMPTS {
            match self.store.find::<AgentState>(agent.id).await? {
                Some(state) if state.status != AgentStatus::Offline => return Ok(state),
                Some(mut state) => {
                    // Back after being offline: connected, not yet taking offers.
                    let read = state.meta.version;
                    state.status = AgentStatus::Away;
                    state.display_name.clone_from(&agent.name);
                    state.meta.date_modified = now;
                    match self.store.update(&mut state, read).await {
                        Ok(()) => return Ok(state),
                        Err(StoreError::Stale { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    let mut state = AgentState {
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
                    match self.store.create(&mut state).await {
                        Ok(()) => return Ok(state),
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(RoutingError::Contended)
    }

    /// The queues an agent takes offers from: a member's are those listing
    /// them; an API client names its own within its organization (all of
    /// them when it names none).
    pub async fn agent_queues(
        &self,
        agent: &AgentIdentity,
        requested: &[Uuid],
    ) -> RoutingResult<Vec<Uuid>> {
        let queues = self
            .store
            .list_all::<Queue>(&collection_of(Queue::KIND, agent.org))
            .await?;
        let queues = queues
            .into_iter()
            .filter(|queue| !agent.is_member || queue.member_ids.contains(&agent.id))
            .filter(|queue| requested.is_empty() || requested.contains(&queue.meta.id))
            .map(|queue| queue.meta.id)
            .collect();
        Ok(queues)
    }

    /// Where an agent may transfer a conversation: every queue of its
    /// organization, and the organization's other agents that are
    /// connected (available or away), by name.
    pub async fn directory(&self, agent: &AgentIdentity) -> RoutingResult<Directory> {
        let mut queues: Vec<DirectoryQueue> = self
            .store
            .list_all::<Queue>(&collection_of(Queue::KIND, agent.org))
            .await?
            .into_iter()
            .map(|q| DirectoryQueue {
                id: q.meta.id,
                name: q.name,
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        // Online agents of every organization share one collection (the
        // sweeper's); this organization's are picked out of it.
        let mut agents: Vec<DirectoryAgent> = self
            .store
            .list_all::<AgentState>(ONLINE_AGENTS_COLLECTION)
            .await?
            .into_iter()
            .filter(|a| a.org_id == agent.org && a.meta.id != agent.id)
            .filter(|a| a.status != AgentStatus::Offline)
            .map(|a| DirectoryAgent {
                id: a.meta.id,
                name: a.display_name,
                status: a.status,
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Directory { queues, agents })
    }

    /// Sets an agent available (for `queues`) or away.
    pub async fn set_status(
        &self,
        agent: &AgentIdentity,
        status: AgentStatus,
        queues: Vec<Uuid>,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        let state = self
            .update_agent(agent.id, |state| {
                state.status = status;
                if status == AgentStatus::Available {
                    state.queues.clone_from(&queues);
                    if state.conversations.is_empty() {
                        state.idle_since = now;
                    }
                }
                Ok(())
            })
            .await?;
        self.notify(&Channel::Agent(agent.id), &Notice::AgentChanged)
            .await;
        if status == AgentStatus::Available {
            for queue in &state.queues {
                self.route(*queue, now).await;
            }
        }
        Ok(state)
    }

    async fn update_agent(
        &self,
        id: Uuid,
        mut change: impl FnMut(&mut AgentState) -> RoutingResult<()>,
    ) -> RoutingResult<AgentState> {
        for _ in 0..MAX_ATTEMPTS {
            let mut state = self
                .store
                .find::<AgentState>(id)
                .await?
                .ok_or(RoutingError::NotAllowed("the agent is not connected"))?;
            let read = state.meta.version;
            change(&mut state)?;
            state.meta.date_modified = Utc::now();
            match self.store.update(&mut state, read).await {
                Ok(()) => return Ok(state),
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    /// Changes a conversation and its agent's record together. `change`
    /// sees both and may refuse; the commit checks both versions.
    async fn transition(
        &self,
        conversation: Uuid,
        agent: Uuid,
        mut change: impl FnMut(&mut Conversation, &mut AgentState) -> RoutingResult<()>,
    ) -> RoutingResult<(Conversation, AgentState)> {
        for _ in 0..MAX_ATTEMPTS {
            let mut c = self
                .store
                .find::<Conversation>(conversation)
                .await?
                .ok_or(RoutingError::UnknownConversation)?;
            let mut a = self
                .store
                .find::<AgentState>(agent)
                .await?
                .ok_or(RoutingError::NotAllowed("the agent is not connected"))?;
            if c.org_id != a.org_id {
                return Err(RoutingError::UnknownConversation);
            }
            let (read_c, read_a) = (c.meta.version, a.meta.version);
            change(&mut c, &mut a)?;
            let now = Utc::now();
            c.meta.date_modified = now;
            a.meta.date_modified = now;
            let commit = Commit::new()
                .put(self.store.prepare(&c, Expect::Version(read_c)).await?)
                .put(self.store.prepare(&a, Expect::Version(read_a)).await?);
            match self.store.commit(commit).await {
                Ok(()) => {
                    c.meta.version = read_c + 1;
                    a.meta.version = read_a + 1;
                    self.notify(
                        &Channel::Agent(agent),
                        &Notice::Changed {
                            conversation_id: conversation,
                        },
                    )
                    .await;
                    self.notify(
                        &Channel::Conversation(conversation),
                        &Notice::Changed {
                            conversation_id: conversation,
                        },
                    )
                    .await;
                    return Ok((c, a));
                }
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    /// Accepts an offer.
    pub async fn accept(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<Conversation> {
        let (c, _) = self
            .transition(conversation, agent.id, |c, _| match c.state {
                ConversationState::Offered { agent_id, .. } if agent_id == agent.id => {
                    c.state = ConversationState::Connected {
                        agent_id: agent.id,
                        since: now,
                    };
                    if !c.agents.contains(&agent.id) {
                        c.agents.push(agent.id);
                    }
                    Ok(())
                }
                _ => Err(RoutingError::NotAllowed(
                    "there is no offer of this conversation to you",
                )),
            })
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
        let (c, _) = self
            .transition(conversation, agent.id, |c, a| match c.state {
                ConversationState::Offered {
                    agent_id,
                    waiting_since,
                    ..
                } if agent_id == agent.id => {
                    requeue(c, a, waiting_since, now);
                    Ok(())
                }
                _ => Err(RoutingError::NotAllowed(
                    "there is no offer of this conversation to you",
                )),
            })
            .await?;
        self.wake_queue(c.queue_id).await;
        Ok(c)
    }

    /// Posts an agent's event to a conversation the agent is connected to.
    pub async fn agent_post(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        let c = self
            .store
            .find::<Conversation>(conversation)
            .await?
            .filter(|c| c.org_id == agent.org)
            .ok_or(RoutingError::UnknownConversation)?;
        match c.state {
            ConversationState::Connected { agent_id, .. } if agent_id == agent.id => {}
            _ => {
                return Err(RoutingError::NotAllowed(
                    "you are not connected to this conversation",
                ));
            }
        }
        self.append(conversation, agent_participant(agent), event, now)
            .await
    }

    async fn append_presence(
        &self,
        conversation: Uuid,
        agent: &AgentIdentity,
        presence: PresenceKind,
        now: DateTime<Utc>,
    ) -> RoutingResult<SequencedEvent> {
        let (event, _) = self
            .append(
                conversation,
                agent_participant(agent),
                NewEvent {
                    body: EventBody::Presence { presence },
                    dedup: None,
                },
                now,
            )
            .await?;
        Ok(event)
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
        let (c, _) = self
            .transition(conversation, agent.id, |c, a| match c.state {
                ConversationState::Connected { agent_id, .. } if agent_id == agent.id => {
                    requeue(c, a, now, now);
                    // A transfer is not a decline: the agent may get it back.
                    c.declined.retain(|d| *d != agent.id);
                    if let TransferTarget::Queue(queue) = target {
                        c.queue_id = queue;
                    }
                    Ok(())
                }
                _ => Err(RoutingError::NotAllowed(
                    "you are not connected to this conversation",
                )),
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
        let (c, _) = self
            .transition(conversation, agent.id, |c, a| match c.state {
                ConversationState::Connected { agent_id, .. } if agent_id == agent.id => {
                    c.state = ConversationState::Ended {
                        at: now,
                        wrap_up: wrap_up.clone(),
                    };
                    release(a, c.meta.id, now);
                    Ok(())
                }
                _ => Err(RoutingError::NotAllowed(
                    "you are not connected to this conversation",
                )),
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

    // ---- assignment -----------------------------------------------------

    /// Asks every node to route a queue now; routes it here too.
    async fn wake_queue(&self, queue: Uuid) {
        self.route(queue, Utc::now()).await;
    }

    /// Offers waiting conversations of a queue to available agents with
    /// capacity, longest idle first, until one of the two runs out.
    pub async fn route(&self, queue: Uuid, now: DateTime<Utc>) {
        for _ in 0..64 {
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
        let waiting = self
            .store
            .list::<Conversation>(
                &waiting_collection(queue_id),
                PageRequest {
                    number: 1,
                    size: 16,
                },
            )
            .await?;
        if waiting.entities.is_empty() {
            return Ok(false);
        }
        let Some(queue) = self.store.find::<Queue>(queue_id).await? else {
            return Ok(false);
        };
        let agents = self.candidates(&queue).await?;
        for conversation in waiting.entities {
            let best = agents
                .iter()
                .filter(|a| !conversation.declined.contains(&a.meta.id))
                // An agent with nothing to do before a busy one (whose
                // `idle_since` is from before it got busy), then longest idle.
                .min_by_key(|a| (a.conversations.len(), a.idle_since, a.meta.id));
            let Some(best) = best else { continue };
            return match self.offer(&conversation, best, &queue, now).await {
                Ok(()) => Ok(true),
                // Someone else moved the conversation or the agent: look again.
                Err(StoreError::Stale { .. } | StoreError::NotFound) => Ok(true),
                Err(e) => Err(e.into()),
            };
        }
        Ok(false)
    }

    /// Agents who could take an offer from `queue` right now.
    async fn candidates(&self, queue: &Queue) -> RoutingResult<Vec<AgentState>> {
        let online = self
            .store
            .list_all::<AgentState>(ONLINE_AGENTS_COLLECTION)
            .await?;
        let agents = online
            .into_iter()
            .filter(|a| {
                a.org_id == queue.org_id
                    && a.status == AgentStatus::Available
                    && a.queues.contains(&queue.meta.id)
                    && a.conversations.len() < queue.agent_capacity as usize
            })
            .collect();
        Ok(agents)
    }

    async fn offer(
        &self,
        conversation: &Conversation,
        agent: &AgentState,
        queue: &Queue,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ConversationState::Waiting { since } = conversation.state else {
            return Err(StoreError::Stale {
                expected: conversation.meta.version,
                actual: conversation.meta.version,
            });
        };
        let mut c = conversation.clone();
        let mut a = agent.clone();
        c.state = ConversationState::Offered {
            agent_id: a.meta.id,
            deadline: now + chrono::Duration::seconds(i64::from(queue.offer_timeout_seconds)),
            waiting_since: since,
        };
        c.meta.date_modified = now;
        a.conversations.push(c.meta.id);
        a.meta.date_modified = now;
        let commit = Commit::new()
            .put(
                self.store
                    .prepare(&c, Expect::Version(conversation.meta.version))
                    .await?,
            )
            .put(
                self.store
                    .prepare(&a, Expect::Version(agent.meta.version))
                    .await?,
            );
        self.store.commit(commit).await?;
        tracing::info!(conversation = %c.meta.id, agent = %a.meta.id, "offered");
        self.notify(
            &Channel::Agent(a.meta.id),
            &Notice::Changed {
                conversation_id: c.meta.id,
            },
        )
        .await;
        Ok(())
    }

    /// Offers a conversation waiting in its queue to one agent directly (a
    /// transfer to an agent), if they have capacity.
    async fn offer_to(
        &self,
        conversation: Uuid,
        agent: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        for _ in 0..MAX_ATTEMPTS {
            let c = self
                .store
                .find::<Conversation>(conversation)
                .await?
                .ok_or(RoutingError::UnknownConversation)?;
            let a = self
                .store
                .find::<AgentState>(agent)
                .await?
                .ok_or(RoutingError::NotAllowed("that agent is not connected"))?;
            let queue = self
                .store
                .find::<Queue>(c.queue_id)
                .await?
                .ok_or(RoutingError::NotAllowed("no such queue"))?;
            if a.conversations.len() >= queue.agent_capacity as usize
                || a.status == AgentStatus::Offline
            {
                return Err(RoutingError::NotAllowed("that agent has no capacity"));
            }
            match self.offer(&c, &a, &queue, now).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Stale { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoutingError::Contended)
    }

    // ---- the sweeper ----------------------------------------------------

    /// Runs the sweeper until `shutdown` resolves.
    pub async fn sweep_until(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
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
            // A safety net for wake-ups lost with a node: every so often,
            // route every queue.
            if rounds.is_multiple_of(15)
                && let Err(e) = self.route_all(now).await
            {
                tracing::warn!(error = %e, "routing all queues failed");
            }
        }
    }

    /// Times out offers whose deadline passed: back to the queue, and the
    /// agent who let it lapse goes away (they are evidently not there).
    pub async fn expire_offers(&self, now: DateTime<Utc>) -> RoutingResult<()> {
        let offered = self
            .store
            .list::<Conversation>(
                OFFERED_COLLECTION,
                PageRequest {
                    number: 1,
                    size: 50,
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
            if deadline > now {
                break;
            }
            let result = self
                .transition(c.meta.id, agent_id, |c, a| match c.state {
                    ConversationState::Offered {
                        agent_id: current,
                        deadline,
                        waiting_since,
                    } if current == agent_id && deadline <= now => {
                        requeue(c, a, waiting_since, now);
                        a.status = AgentStatus::Away;
                        Ok(())
                    }
                    _ => Err(RoutingError::NotAllowed("no longer offered")),
                })
                .await;
            match result {
                Ok((c, _)) => {
                    tracing::info!(conversation = %c.meta.id, agent = %agent_id, "offer timed out");
                    self.notify(&Channel::Agent(agent_id), &Notice::AgentChanged)
                        .await;
                    self.wake_queue(c.queue_id).await;
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
        let online = self
            .store
            .list_all::<AgentState>(ONLINE_AGENTS_COLLECTION)
            .await?;
        for agent in online {
            let alive = self
                .engine()
                .peek(Space::AgentAlive, &agent.meta.id.to_string())
                .await
                .map_err(StoreError::from)?;
            if alive.is_none() {
                self.agent_gone(agent.meta.id, now).await?;
            }
        }
        Ok(())
    }

    /// Takes an agent offline and re-queues everything it held.
    pub async fn agent_gone(&self, agent: Uuid, now: DateTime<Utc>) -> RoutingResult<()> {
        let Some(state) = self.store.find::<AgentState>(agent).await? else {
            return Ok(());
        };
        let identity = AgentIdentity {
            id: agent,
            org: state.org_id,
            name: state.display_name.clone(),
            is_member: true,
        };
        for conversation in state.conversations.clone() {
            let result = self
                .transition(conversation, agent, |c, a| match c.state {
                    ConversationState::Offered {
                        agent_id,
                        waiting_since,
                        ..
                    } if agent_id == agent => {
                        requeue(c, a, waiting_since, now);
                        Ok(())
                    }
                    ConversationState::Connected { agent_id, .. } if agent_id == agent => {
                        requeue(c, a, now, now);
                        Ok(())
                    }
                    _ => {
                        // Not held any more: drop it from the agent's load.
                        a.conversations.retain(|id| *id != c.meta.id);
                        Ok(())
                    }
                })
                .await;
            match result {
                Ok((c, _)) => {
                    if c.agents.contains(&agent)
                        && matches!(c.state, ConversationState::Waiting { .. })
                    {
                        let _ = self
                            .append_presence(conversation, &identity, PresenceKind::Leave, now)
                            .await;
                    }
                    self.wake_queue(c.queue_id).await;
                }
                Err(RoutingError::UnknownConversation) => {}
                Err(e) => return Err(e),
            }
        }
        // Offline only if the agent did not come back meanwhile.
        let alive = self
            .engine()
            .peek(Space::AgentAlive, &agent.to_string())
            .await
            .map_err(StoreError::from)?;
        if alive.is_none() {
            self.update_agent(agent, |a| {
                a.status = AgentStatus::Offline;
                a.conversations.clear();
                Ok(())
            })
            .await?;
            tracing::info!(%agent, "agent offline; conversations re-queued");
        }
        Ok(())
    }

    async fn route_all(&self, now: DateTime<Utc>) -> RoutingResult<()> {
        for org in self.store.list_all::<Organization>("orgs").await? {
            let collection = collection_of(Queue::KIND, OrgId(org.meta.id));
            for queue in self.store.list_all::<Queue>(&collection).await? {
                self.route(queue.meta.id, now).await;
            }
        }
        Ok(())
    }
}

fn agent_participant(agent: &AgentIdentity) -> Participant {
    Participant {
        role: ParticipantRole::Agent,
        id: Some(agent.id),
        name: agent.name.clone(),
    }
}

/// Puts a conversation back to waiting (keeping its place from `since`)
/// and frees the agent's capacity. A declining agent is remembered.
fn requeue(c: &mut Conversation, a: &mut AgentState, since: DateTime<Utc>, now: DateTime<Utc>) {
    if !c.declined.contains(&a.meta.id) {
        c.declined.push(a.meta.id);
    }
    c.state = ConversationState::Waiting { since };
    release(a, c.meta.id, now);
}

fn release(a: &mut AgentState, conversation: Uuid, now: DateTime<Utc>) {
    a.conversations.retain(|id| *id != conversation);
    if a.conversations.is_empty() {
        a.idle_since = now;
    }
}

/// The visitor identity of a session, for agents.
pub fn identity_of(session: &GuestSession) -> VisitorIdentity {
    session.identity.clone().unwrap_or_default()
}
