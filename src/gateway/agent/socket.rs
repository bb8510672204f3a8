//! The task behind one agent socket: one `select!` loop over the socket,
//! its bus subscriptions (one [`Feeds`]: the agent's channel and one per
//! conversation it holds), the heartbeat and ping timers, and the node's
//! shutdown.
//!
//! The socket shows the agent what routing says it holds: the conversations
//! offered or assigned to it. It sends one snapshot when it opens; then,
//! whenever routing announces a change (or the heartbeat sees the agent's
//! record move), it re-reads the agent and only the conversations that are
//! new or were announced as changed, subscribes and unsubscribes
//! accordingly, and sends what changed: a `conversation` for each one
//! added or changed, `removed` (or `offerRevoked`) for each one gone,
//! `offer`s and the agent's `presence`. A change costs the same whether
//! the agent holds one conversation or fifty.
//!
//! Events reach the client in sequence order without gaps or duplicates:
//! per conversation a [`Cursor`] remembers the last sequence sent and
//! decides what a bus notice means (send it, drop it, or read the log). A
//! resync from the bus reads the log too.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use chrono::Utc;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::AgentCaller;
use super::protocol::{
    AgentView, ConversationSnapshot, ConversationView, ErrorBody, EventView, ServerFrame,
};
use crate::app::AppState;
use crate::engine::{BusMessage, Channel, EntryNotice};
use crate::gateway::conn::{self, Feeds, Gone, ReadError, close_code};
use crate::gateway::cursor::{Cursor, Step};
use crate::routing::RoutingResult;
use crate::routing::model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, LogEvent, Notice,
    PresenceKind, SequencedEvent,
};
use crate::store::StoreError;
use crate::store::types::OrgId;
use crate::telemetry::traces::MESSAGE_TARGET;

/// How much history a snapshot carries for a conversation the socket has
/// not shown yet; older events are one `history` request away.
const SNAPSHOT_EVENTS: u64 = 200;
/// Events read from a log at once when catching up.
const CATCH_UP_PAGE: usize = 200;
/// The longest a heartbeat waits; shorter when the grace period is short,
/// so that a live socket never lets its agent expire.
const MAX_HEARTBEAT: Duration = Duration::from_secs(5);
/// Bus messages taken at once: a burst of notices makes one snapshot, and
/// the socket still gets to its client between bursts. A subscription the
/// socket falls behind on lags and resyncs from the logs instead of
/// buffering without bound.
const BUS_BURST: usize = 64;

/// Which subscription a bus message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Agent,
    Conversation(Uuid),
}

/// A conversation this socket shows.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) conversation: Conversation,
    /// What of its log the client has.
    cursor: Cursor,
    pub(super) last_typing: Option<Instant>,
}

/// What one socket knows.
pub(super) struct Agent {
    pub(super) state: AppState,
    pub(super) caller: AgentCaller,
    /// The agent's channel and one per held conversation; dropping one
    /// unsubscribes.
    feeds: Feeds<Source>,
    pub(super) held: HashMap<Uuid, Held>,
    /// The agent's record as last shown: its version tells the heartbeat
    /// whether something changed that a lost notice did not announce.
    shown: Option<AgentState>,
    /// Something changed: re-read the agent and send what changed.
    dirty: bool,
    /// Held conversations announced as changed: re-read at the next
    /// refresh (the others are as last read).
    stale: HashSet<Uuid>,
    /// Re-read every held conversation at the next refresh: a notice may
    /// have been lost, or the last refresh failed.
    all_stale: bool,
    /// The first snapshot is out: from now on, deltas.
    snapshot_sent: bool,
    /// The status and queues the client was last shown (kept when a
    /// refresh fails, unlike `shown`), so a change is never left unsaid.
    shown_presence: Option<(AgentStatus, Vec<Uuid>)>,
    /// Frames to send, in order.
    out: Vec<ServerFrame>,
}

/// Why the loop ends.
enum End {
    /// The client went away or the connection broke.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

impl From<Gone> for End {
    fn from(_: Gone) -> Self {
        End::Gone
    }
}

pub(super) async fn run(socket: WebSocket, state: AppState, caller: AgentCaller) {
    let mut open = conn::Open::new(&state, "agent");
    let span = tracing::info_span!("agent_socket", agent = %caller.identity.id, org = %caller.identity.org);
    let code = serve(socket, state, caller).instrument(span).await;
    open.ended(code);
}

/// Serves the socket until it ends; answers the close code sent, if any.
async fn serve(mut socket: WebSocket, state: AppState, caller: AgentCaller) -> Option<u16> {
    let shutdown = state.shutdown.clone().signalled();
    tokio::pin!(shutdown);
    let heartbeat_every =
        (state.routing.config().agent_grace / 3).clamp(Duration::from_millis(100), MAX_HEARTBEAT);
    let mut agent = Agent {
        state,
        caller,
        feeds: Feeds::default(),
        held: HashMap::new(),
        shown: None,
        dirty: false,
        stale: HashSet::new(),
        all_stale: false,
        snapshot_sent: false,
        shown_presence: None,
        out: Vec::new(),
    };
    tracing::info!("agent socket open");
    if let Err(e) = agent.start().await {
        tracing::warn!(error = %e, "agent socket could not start");
        conn::close(&mut socket, close_code::INTERNAL, "try again").await;
        return Some(close_code::INTERNAL);
    }
    let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = conn::ping_timer();
    let mut last_heard = Instant::now();

    let end = loop {
        if let Err(end) = flush(
            &mut socket,
            &mut agent.out,
            &agent.state,
            agent.caller.identity.org,
        )
        .await
        {
            break end;
        }
        tokio::select! {
            () = &mut shutdown => break End::Close(close_code::GOING_AWAY, "server shutting down; reconnect"),
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    None => break End::Gone,
                    // Answered with a close frame (RFC 6455 5.5.1), so the
                    // client's close completes cleanly.
                    Some(Ok(Message::Close(frame))) => break End::Close(
                        frame.map_or(close_code::NORMAL, |f| f.code),
                        "closed by the client",
                    ),
                    Some(Ok(Message::Text(text))) => agent.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => agent.out.push(ServerFrame::error(
                        None,
                        ErrorBody::bad_request("frames are JSON text"),
                    )),
                    // axum answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(e)) => match ReadError::of(&e) {
                        ReadError::TooBig => break End::Close(close_code::TOO_BIG, "frame too large"),
                        ReadError::InvalidUtf8 | ReadError::Broken => {
                            tracing::debug!(error = %e, "agent socket read failed");
                            break End::Gone;
                        }
                    },
                }
            }
            Some((source, message)) = agent.feeds.next() => {
                agent.on_bus(source, message).await;
                // Take whatever else is already waiting, so a burst of
                // notices makes one snapshot.
                for _ in 0..BUS_BURST {
                    let Some((source, message)) = agent.feeds.ready() else {
                        break;
                    };
                    agent.on_bus(source, message).await;
                }
            }
            _ = heartbeat.tick() => agent.heartbeat().await,
            _ = ping.tick() => {
                if conn::silent(last_heard) {
                    tracing::info!("agent socket silent; closing");
                    break End::Gone;
                }
                if let Err(gone) = conn::ping(&mut socket).await {
                    break gone.into();
                }
            }
        }
        if agent.dirty
            && let Err(e) = agent.refresh().await
        {
            tracing::warn!(error = %e, "agent socket could not refresh; retrying with the heartbeat");
        }
    };
    tracing::info!("agent socket closed");
    match end {
        End::Close(code, reason) => {
            conn::close(&mut socket, code, reason).await;
            Some(code)
        }
        End::Gone => None,
    }
}

/// Sends the frames waiting in `out`, counting the conversation messages
/// among them as delivered, or, once the socket is gone, as dropped.
async fn flush(
    socket: &mut WebSocket,
    out: &mut Vec<ServerFrame>,
    state: &AppState,
    org: OrgId,
) -> Result<(), End> {
    let metrics = &state.metrics;
    let is_message = |frame: &ServerFrame| matches!(frame, ServerFrame::Event(view) if matches!(view.event.body, EventBody::Message { .. }));
    let mut frames = out.drain(..);
    while let Some(mut frame) = frames.next() {
        let message = is_message(&frame);
        frame.refresh_attachments(&state.attachments, org, Utc::now());
        let sent = match serde_json::to_string(&frame) {
            Ok(text) => conn::send_text(socket, text).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an agent frame");
                continue;
            }
        };
        match sent {
            Ok(()) if message => metrics.messages_delivered("agent", 1),
            Ok(()) => {}
            Err(gone) => {
                let lost = u64::from(message) + frames.filter(|f| is_message(f)).count() as u64;
                metrics.messages_dropped("agent", lost);
                return Err(gone.into());
            }
        }
    }
    Ok(())
}

impl Agent {
    pub(super) fn me(&self) -> Uuid {
        self.caller.identity.id
    }

    /// Whether the socket knows the agent is connected to conversation
    /// `id` without reading it: its record was read while the socket
    /// followed the conversation, and no change of it has been announced
    /// since (a change is announced on the conversation's channel or the
    /// agent's, and marks it stale; a lost announcement is a resync, which
    /// marks them all). A message then goes straight to the log, as a
    /// visitor's does (see the guest socket's posting cache); what this
    /// does not cover is a message racing with a change made elsewhere,
    /// which a read just before the append would not cover either.
    pub(super) fn connected_to(&self, id: Uuid) -> bool {
        !self.all_stale
            && !self.stale.contains(&id)
            && self.held.get(&id).is_some_and(|held| {
                matches!(held.conversation.state,
                    ConversationState::Connected { agent_id, .. } if agent_id == self.me())
            })
    }

    async fn subscribe(&mut self, source: Source, channel: Channel) -> RoutingResult<()> {
        let engine = self.state.store.engine();
        self.feeds
            .subscribe(engine, source, channel)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Subscribes to the agent's channel (before reading anything, so no
    /// change falls between the read and the subscription), records the
    /// socket's heartbeat and sends the first snapshot.
    async fn start(&mut self) -> RoutingResult<()> {
        self.subscribe(Source::Agent, Channel::Agent(self.me()))
            .await?;
        self.state
            .routing
            .heartbeat(&self.caller.identity, Utc::now())
            .await?;
        self.refresh().await
    }

    async fn heartbeat(&mut self) {
        match self
            .state
            .routing
            .heartbeat(&self.caller.identity, Utc::now())
            .await
        {
            Ok(agent) => {
                if self
                    .shown
                    .as_ref()
                    .is_none_or(|shown| shown.meta.version != agent.meta.version)
                {
                    // Moved without a notice this socket heard: re-read all.
                    self.dirty = true;
                    self.all_stale = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "agent heartbeat failed"),
        }
    }

    async fn on_text(&mut self, text: &str) {
        let frame = match super::requests::parse(text) {
            Ok((request_id, request)) => {
                let kind = request.kind();
                let span = tracing::debug_span!(
                    target: MESSAGE_TARGET,
                    "agent message",
                    otel.name = %format_args!("agent {kind}"),
                    kind,
                );
                match self.handle(request).instrument(span).await {
                    Ok(result) => ServerFrame::ok(request_id, result),
                    Err(error) => ServerFrame::error(request_id, error),
                }
            }
            Err((request_id, error)) => ServerFrame::error(request_id, error),
        };
        self.out.push(frame);
    }

    async fn on_bus(&mut self, source: Source, message: BusMessage) {
        let id = match source {
            Source::Agent => {
                // Whatever the agent's channel says (or a resync after a
                // lost connection), the answer is to re-read.
                match &message {
                    BusMessage::Resync => {
                        self.dirty = true;
                        self.all_stale = true;
                    }
                    BusMessage::Payload(payload) => match decode(payload) {
                        Some(Notice::Changed { conversation_id }) => {
                            self.dirty = true;
                            self.stale.insert(conversation_id);
                        }
                        Some(Notice::AgentChanged) => self.dirty = true,
                        _ => {}
                    },
                }
                return;
            }
            Source::Conversation(id) => id,
        };
        let Some(cursor) = self.held.get(&id).map(|held| held.cursor) else {
            // Subscriptions go with their conversation; nothing to show.
            return;
        };
        let payload = match message {
            BusMessage::Resync => {
                // A change of the conversation may have been lost too.
                self.dirty = true;
                self.stale.insert(id);
                return self.catch_up(id).await;
            }
            BusMessage::Payload(payload) => payload,
        };
        if let Some(entry) = EntryNotice::parse(&payload) {
            // Decided on the sequence alone: what the socket sent already
            // is dropped without decoding.
            match cursor.step(entry.seq) {
                Step::Duplicate => {}
                Step::Deliver => match serde_json::from_slice::<LogEvent>(entry.body) {
                    Ok(event) => {
                        if let Some(held) = self.held.get_mut(&id) {
                            held.cursor.advance(entry.seq);
                        }
                        self.note(id, &event);
                        let event = SequencedEvent {
                            conversation_id: id,
                            seq: entry.seq,
                            event,
                        };
                        self.out.push(ServerFrame::Event(event.into()));
                    }
                    // The log has it as well: reading it logs the error.
                    Err(_) => self.catch_up(id).await,
                },
                Step::CatchUp => self.catch_up(id).await,
            }
            return;
        }
        match decode(&payload) {
            Some(Notice::Typing {
                conversation_id,
                from,
            }) if conversation_id == id && from.id != Some(self.me()) => {
                self.out.push(ServerFrame::Typing {
                    conversation_id,
                    from,
                });
            }
            Some(Notice::Changed { .. }) => {
                self.dirty = true;
                self.stale.insert(id);
            }
            _ => {}
        }
    }

    /// What an event says of its conversation beyond itself: a visitor who
    /// signed in changed the conversation's record (who the visitor is),
    /// which the next refresh reads and sends.
    fn note(&mut self, id: Uuid, event: &LogEvent) {
        if signs_in(event) {
            self.stale.insert(id);
            self.dirty = true;
        }
    }

    /// Sends the events of a conversation this socket has not sent yet.
    async fn catch_up(&mut self, id: Uuid) {
        match self.unsent(id).await {
            Ok(events) => self.out.extend(events.into_iter().map(ServerFrame::Event)),
            Err(e) => {
                tracing::warn!(conversation = %id, error = %e, "cannot read a conversation log; retrying with the heartbeat");
                self.dirty = true;
            }
        }
    }

    /// Reads the events after the last one sent, marking them sent.
    async fn unsent(&mut self, id: Uuid) -> RoutingResult<Vec<EventView>> {
        let routing = self.state.routing.clone();
        let mut events = Vec::new();
        while let Some(held) = self.held.get_mut(&id) {
            let page = routing
                .events_after(id, held.cursor.last(), CATCH_UP_PAGE)
                .await?;
            let full = page.len() >= CATCH_UP_PAGE;
            let mut signed_in = false;
            for event in page {
                if held.cursor.advance(event.seq) {
                    signed_in |= signs_in(&event.event);
                    events.push(EventView::from(event));
                }
            }
            if signed_in {
                self.stale.insert(id);
                self.dirty = true;
            }
            if !full {
                break;
            }
        }
        Ok(events)
    }

    /// Re-reads the agent and the conversations it holds, follows them on
    /// the bus, and sends what changed: revoked and new offers, the agent's
    /// status, and a snapshot.
    async fn refresh(&mut self) -> RoutingResult<()> {
        self.dirty = false;
        let result = self.reload().await;
        if result.is_err() {
            // Forget what was shown, so the next heartbeat tries again
            // whether or not the agent's record moved meanwhile, and reads
            // every conversation again.
            self.shown = None;
            self.all_stale = true;
        }
        result
    }

    async fn reload(&mut self) -> RoutingResult<()> {
        let routing = self.state.routing.clone();
        let me = self.me();
        let org = self.caller.identity.org;
        let agent = routing.agent_state(org, me).await?;
        let ids: Vec<Uuid> = agent
            .iter()
            .flat_map(|a| a.conversations.iter().copied())
            .collect();
        // Only what is new or announced as changed is read; a held
        // conversation the agent still lists is otherwise as last read
        // (every change of it is announced on its channel or the agent's,
        // and a lost announcement means a resync, which reads them all).
        let mut read = Vec::new();
        let mut kept = HashSet::new();
        for id in &ids {
            let known = self.held.contains_key(id);
            if known && !self.all_stale && !self.stale.contains(id) {
                kept.insert(*id);
                continue;
            }
            // Subscribe first, then read: every held record was read while
            // its changes were announced to this socket, which is what lets
            // a message skip reading it again (see `connected_to`).
            let source = Source::Conversation(*id);
            if !self.feeds.contains(&source) {
                self.subscribe(source, Channel::Conversation(*id)).await?;
            }
            if let Some(c) = routing.conversation(org, *id).await?
                && c.agent() == Some(me)
            {
                kept.insert(*id);
                read.push(c);
            } else if !known {
                self.feeds.remove(&source);
            }
        }
        self.stale.clear();
        self.all_stale = false;

        let gone: Vec<Uuid> = self
            .held
            .keys()
            .filter(|id| !kept.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.feeds.remove(&Source::Conversation(id));
            if let Some(held) = self.held.remove(&id) {
                if matches!(held.conversation.state, ConversationState::Offered { .. }) {
                    self.out.push(ServerFrame::OfferRevoked {
                        conversation_id: id,
                    });
                } else if self.snapshot_sent {
                    self.out.push(ServerFrame::Removed {
                        conversation_id: id,
                    });
                }
            }
        }

        let mut offers = Vec::new();
        let mut changed = Vec::new();
        for c in read {
            let id = c.meta.id;
            if let Some(held) = self.held.get_mut(&id) {
                // Offered anew while held (transferred back to this agent,
                // say): announced like any other offer.
                let offered_anew = match (&held.conversation.state, &c.state) {
                    (
                        ConversationState::Offered { deadline: was, .. },
                        ConversationState::Offered { deadline: now, .. },
                    ) => was != now,
                    (_, ConversationState::Offered { .. }) => true,
                    _ => false,
                };
                if offered_anew {
                    offers.push(ConversationView::from(&c));
                }
                if held.conversation.meta.version != c.meta.version {
                    changed.push(id);
                }
                held.conversation = c;
                continue;
            }
            // Subscribed above, before the record and now the log are read:
            // nothing falls in between.
            let last = routing.last_seq(id).await?;
            if matches!(c.state, ConversationState::Offered { .. }) {
                offers.push(ConversationView::from(&c));
            }
            self.held.insert(
                id,
                Held {
                    conversation: c,
                    cursor: Cursor::after(last.saturating_sub(SNAPSHOT_EVENTS)),
                    last_typing: None,
                },
            );
            changed.push(id);
        }

        self.out.extend(
            offers
                .into_iter()
                .map(|conversation| ServerFrame::Offer { conversation }),
        );
        let view = match &agent {
            Some(agent) => AgentView::new(agent, self.caller.supervisor),
            None => AgentView {
                id: me,
                name: self.caller.identity.name.clone(),
                status: AgentStatus::Offline,
                queues: Vec::new(),
                supervisor: self.caller.supervisor,
            },
        };
        let presence = (view.status, view.queues.clone());
        if self
            .shown_presence
            .as_ref()
            .is_some_and(|shown| *shown != presence)
        {
            self.out.push(ServerFrame::Presence {
                status: view.status,
                queues: view.queues.clone(),
            });
        }
        self.shown_presence = Some(presence);
        if self.snapshot_sent {
            // Oldest first, as in a snapshot.
            changed.sort_by_key(|id| {
                self.held
                    .get(id)
                    .map(|h| (h.conversation.meta.date_created, *id))
            });
            for id in changed {
                if let Some(conversation) = self.shown_conversation(id).await? {
                    self.out.push(ServerFrame::Conversation { conversation });
                }
            }
        } else {
            let mut ids: Vec<(chrono::DateTime<Utc>, Uuid)> = self
                .held
                .values()
                .map(|h| (h.conversation.meta.date_created, h.conversation.meta.id))
                .collect();
            ids.sort();
            let mut conversations = Vec::with_capacity(ids.len());
            for (_, id) in ids {
                if let Some(conversation) = self.shown_conversation(id).await? {
                    conversations.push(conversation);
                }
            }
            self.out.push(ServerFrame::Snapshot {
                agent: view,
                conversations,
            });
            self.snapshot_sent = true;
        }
        self.shown = agent;
        Ok(())
    }

    /// A held conversation as a snapshot or a `conversation` frame shows
    /// it, with the events this socket had not sent yet.
    async fn shown_conversation(
        &mut self,
        id: Uuid,
    ) -> RoutingResult<Option<ConversationSnapshot>> {
        let events = self.unsent(id).await?;
        Ok(self.held.get(&id).map(|held| ConversationSnapshot {
            conversation: ConversationView::from(&held.conversation),
            events,
            last_sequence: held.cursor.last(),
        }))
    }
}

/// A visitor's sign-in, logged once the conversation's record names them.
fn signs_in(event: &LogEvent) -> bool {
    matches!(
        event.body,
        EventBody::Presence {
            presence: PresenceKind::SignIn,
            ..
        }
    )
}

fn decode(payload: &[u8]) -> Option<Notice> {
    serde_json::from_slice(payload)
        .map_err(|e| tracing::warn!(error = %e, "unreadable notice on the bus"))
        .ok()
}
