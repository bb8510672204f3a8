//! The task behind one agent socket: one `select!` loop over the socket,
//! the bus, the heartbeat and ping timers, and the node's shutdown.
//!
//! The socket shows the agent what routing says it holds: the conversations
//! offered or assigned to it. It subscribes to the agent's channel and to
//! the channel of each conversation it holds; whenever routing announces a
//! change (or the heartbeat sees the agent's record move) it re-reads the
//! agent and its conversations, subscribes and unsubscribes accordingly,
//! and sends a snapshot.
//!
//! Events reach the client in sequence order without gaps or duplicates:
//! per conversation the socket remembers the last sequence it sent. A bus
//! notice with the next sequence is sent as is; one further ahead means
//! something was missed, so the log is read from the last sent sequence; an
//! older one is dropped. A resync from the bus reads the log too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::AgentCaller;
use super::protocol::{
    AgentView, ConversationSnapshot, ConversationView, ErrorBody, EventView, MAX_ID_CHARS,
    MAX_TEXT_CHARS, Outcome, Request, RequestedStatus, ServerFrame,
};
use crate::app::AppState;
use crate::engine::{BusMessage, Channel, Subscription};
use crate::gateway::PING_INTERVAL;
use crate::routing::model::{
    AgentState, AgentStatus, Conversation, ConversationState, EventBody, Notice, Participant,
    ParticipantRole,
};
use crate::routing::{NewEvent, RoutingError, RoutingResult, TransferTarget};
use crate::store::StoreError;
use crate::store::records::Queue;

/// How much history a snapshot carries for a conversation the socket has
/// not shown yet; older events are one `history` request away.
const SNAPSHOT_EVENTS: u64 = 200;
/// Events read from a log at once when catching up.
const CATCH_UP_PAGE: usize = 200;
const DEFAULT_HISTORY_PAGE: usize = 100;
const MAX_HISTORY_PAGE: usize = 500;
/// The longest a heartbeat waits; shorter when the grace period is short,
/// so that a live socket never lets its agent expire.
const MAX_HEARTBEAT: Duration = Duration::from_secs(5);
/// A client that does not take a frame within this long is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bus messages waiting for the socket task. When it falls behind, the
/// forwarders wait, their subscriptions lag, and the socket resyncs from
/// the logs instead of buffering without bound.
const BUS_BUFFER: usize = 64;
/// An agent's typing is announced at most this often per conversation.
const TYPING_EVERY: Duration = Duration::from_secs(1);

const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_INTERNAL: u16 = 1011;

/// Where a bus message came from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Agent,
    Conversation(Uuid),
}

/// Forwards one subscription into the socket's queue until dropped.
#[derive(Debug)]
struct Forwarder(JoinHandle<()>);

impl Forwarder {
    fn start(
        mut subscription: Subscription,
        source: Source,
        tx: mpsc::Sender<(Source, BusMessage)>,
    ) -> Self {
        Self(tokio::spawn(async move {
            while let Some(message) = subscription.recv().await {
                if tx.send((source, message)).await.is_err() {
                    break;
                }
            }
        }))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decrements the open-sockets gauge when the socket ends, however it ends.
struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A conversation this socket shows.
#[derive(Debug)]
struct Held {
    conversation: Conversation,
    /// The sequence of the last event sent for it.
    delivered: u64,
    _watch: Forwarder,
    last_typing: Option<Instant>,
}

/// What one socket knows.
struct Session {
    state: AppState,
    caller: AgentCaller,
    bus: mpsc::Sender<(Source, BusMessage)>,
    _agent_watch: Option<Forwarder>,
    held: HashMap<Uuid, Held>,
    /// The agent's record as last shown: its version tells the heartbeat
    /// whether something changed that a lost notice did not announce.
    shown: Option<AgentState>,
    /// Something changed: re-read and send a snapshot.
    dirty: bool,
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

pub(super) async fn run(socket: WebSocket, state: AppState, caller: AgentCaller) {
    let _open = state.shutdown.guard();
    let gauge = state.metrics.sockets("agent");
    gauge.inc();
    let _gauge = GaugeGuard(gauge);
    let span = tracing::info_span!("agent_socket", agent = %caller.identity.id, org = %caller.identity.org);
    serve(socket, state, caller).instrument(span).await;
}

async fn serve(mut socket: WebSocket, state: AppState, caller: AgentCaller) {
    let (tx, mut rx) = mpsc::channel(BUS_BUFFER);
    let shutdown = state.shutdown.clone().signalled();
    tokio::pin!(shutdown);
    let heartbeat_every =
        (state.routing.config().agent_grace / 3).clamp(Duration::from_millis(100), MAX_HEARTBEAT);
    let mut session = Session {
        state,
        caller,
        bus: tx,
        _agent_watch: None,
        held: HashMap::new(),
        shown: None,
        dirty: false,
        out: Vec::new(),
    };
    tracing::info!("agent socket open");
    if let Err(e) = session.start().await {
        tracing::warn!(error = %e, "agent socket could not start");
        close(&mut socket, CLOSE_INTERNAL, "try again").await;
        return;
    }
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let end = loop {
        if let Err(end) = flush(&mut socket, &mut session.out).await {
            break end;
        }
        tokio::select! {
            () = &mut shutdown => break End::Close(CLOSE_GOING_AWAY, "server shutting down; reconnect"),
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    None | Some(Ok(Message::Close(_))) => break End::Gone,
                    Some(Ok(Message::Text(text))) => session.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => session.out.push(ServerFrame::error(
                        None,
                        ErrorBody::bad_request("frames are JSON text"),
                    )),
                    // axum answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(e)) if too_big(&e) => break End::Close(CLOSE_TOO_BIG, "frame too large"),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "agent socket read failed");
                        break End::Gone;
                    }
                }
            }
            Some((source, message)) = rx.recv() => {
                session.on_bus(source, message).await;
                // Take whatever else is already waiting, so a burst of
                // notices makes one snapshot.
                for _ in 0..BUS_BUFFER {
                    let Ok((source, message)) = rx.try_recv() else { break };
                    session.on_bus(source, message).await;
                }
            }
            _ = heartbeat.tick() => session.heartbeat().await,
            _ = ping.tick() => {
                if last_heard.elapsed() > PING_INTERVAL * 2 {
                    tracing::info!("agent socket silent; closing");
                    break End::Gone;
                }
                if send(&mut socket, Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break End::Gone;
                }
            }
        }
        if session.dirty
            && let Err(e) = session.refresh().await
        {
            tracing::warn!(error = %e, "agent socket could not refresh; retrying with the heartbeat");
        }
    };
    if let End::Close(code, reason) = end {
        close(&mut socket, code, reason).await;
    }
    tracing::info!("agent socket closed");
}

/// tungstenite reports a frame or message over the limit as a capacity
/// error; axum does not expose its type, only its text.
fn too_big(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded") || text.contains("too long")
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Gone),
    }
}

async fn flush(socket: &mut WebSocket, out: &mut Vec<ServerFrame>) -> Result<(), End> {
    for frame in out.drain(..) {
        match serde_json::to_string(&frame) {
            Ok(text) => send(socket, Message::Text(Utf8Bytes::from(text))).await?,
            Err(e) => tracing::error!(error = %e, "cannot encode an agent frame"),
        }
    }
    Ok(())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(socket, Message::Close(Some(frame))).await;
}

impl From<RoutingError> for ErrorBody {
    fn from(e: RoutingError) -> Self {
        match e {
            RoutingError::UnknownConversation | RoutingError::UnknownSession => {
                ErrorBody::not_found()
            }
            RoutingError::NotAllowed(message) => ErrorBody::new("not_allowed", message),
            RoutingError::ReadOnly => ErrorBody::new("not_allowed", "the conversation has ended"),
            RoutingError::Contended => ErrorBody::new("busy", "too much contention, try again"),
            RoutingError::Store(e) => {
                tracing::error!(error = %e, "agent request failed in storage");
                ErrorBody::new("unavailable", "storage is unavailable, try again")
            }
        }
    }
}

impl Session {
    fn me(&self) -> Uuid {
        self.caller.identity.id
    }

    /// Subscribes to the agent's channel (before reading anything, so no
    /// change falls between the read and the subscription), records the
    /// socket's heartbeat and sends the first snapshot.
    async fn start(&mut self) -> RoutingResult<()> {
        let subscription = self
            .state
            .store
            .engine()
            .subscribe(Channel::Agent(self.me()))
            .await
            .map_err(StoreError::from)?;
        self._agent_watch = Some(Forwarder::start(
            subscription,
            Source::Agent,
            self.bus.clone(),
        ));
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
                    self.dirty = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, "agent heartbeat failed"),
        }
    }

    async fn on_text(&mut self, text: &str) {
        let (request_id, request) = match parse(text) {
            Ok(parsed) => parsed,
            Err((request_id, error)) => {
                self.out.push(ServerFrame::error(request_id, error));
                return;
            }
        };
        let frame = match self.handle(request).await {
            Ok(result) => ServerFrame::ok(request_id, result),
            Err(error) => ServerFrame::error(request_id, error),
        };
        self.out.push(frame);
    }

    async fn handle(&mut self, request: Request) -> Result<Option<Outcome>, ErrorBody> {
        let routing = self.state.routing.clone();
        let me = self.caller.identity.clone();
        let now = Utc::now();
        match request {
            Request::Ping => Ok(None),
            Request::Directory => Ok(Some(Outcome::Directory(routing.directory(&me).await?))),
            Request::SetPresence { status, queue_ids } => {
                let requested = queue_ids.unwrap_or_default();
                let queues = match status {
                    RequestedStatus::Available => {
                        let queues = routing.agent_queues(&me, &requested).await?;
                        if requested.iter().any(|q| !queues.contains(q)) {
                            return Err(ErrorBody::new(
                                "not_found",
                                "no such queue, or not one of yours",
                            ));
                        }
                        queues
                    }
                    RequestedStatus::Away => Vec::new(),
                };
                let agent = routing.set_status(&me, status.into(), queues, now).await?;
                Ok(Some(Outcome::Presence {
                    status: agent.status,
                    queues: agent.queues,
                }))
            }
            Request::Accept { conversation_id } => {
                let c = routing.accept(&me, conversation_id, now).await?;
                Ok(Some(conversation_outcome(&c)))
            }
            Request::Decline { conversation_id } => {
                let c = routing.decline(&me, conversation_id, now).await?;
                Ok(Some(conversation_outcome(&c)))
            }
            Request::Send {
                conversation_id,
                text,
                id,
            } => {
                if text.trim().is_empty() {
                    return Err(ErrorBody::bad_request("text is empty"));
                }
                if text.chars().count() > MAX_TEXT_CHARS {
                    return Err(ErrorBody::bad_request(format!(
                        "text is longer than {MAX_TEXT_CHARS} characters"
                    )));
                }
                if let Some(id) = &id
                    && (id.is_empty() || id.chars().count() > MAX_ID_CHARS)
                {
                    return Err(ErrorBody::bad_request(format!(
                        "id must be 1 to {MAX_ID_CHARS} characters"
                    )));
                }
                // Client ids are the agent's own: they never collide with
                // the visitor's or another agent's.
                let dedup = id.as_ref().map(|id| format!("agent:{}:{id}", me.id));
                let event = NewEvent {
                    body: EventBody::Message {
                        message_type: "Text".to_owned(),
                        text: Some(text),
                        content: Vec::new(),
                        metadata: Value::Null,
                        client_message_id: id,
                    },
                    dedup,
                };
                let (event, duplicate) =
                    routing.agent_post(&me, conversation_id, event, now).await?;
                if !duplicate {
                    self.state.metrics.messages("agent").inc();
                }
                Ok(Some(Outcome::Sent {
                    sequence: event.seq,
                    duplicate,
                }))
            }
            Request::Typing { conversation_id } => {
                let held = self
                    .held
                    .get_mut(&conversation_id)
                    .filter(|h| matches!(h.conversation.state, ConversationState::Connected { .. }))
                    .ok_or_else(|| {
                        ErrorBody::new("not_allowed", "you are not connected to this conversation")
                    })?;
                if held
                    .last_typing
                    .is_some_and(|at| at.elapsed() < TYPING_EVERY)
                {
                    return Ok(None);
                }
                held.last_typing = Some(Instant::now());
                let notice = Notice::Typing {
                    conversation_id,
                    from: Participant {
                        role: ParticipantRole::Agent,
                        id: Some(me.id),
                        name: me.name.clone(),
                    },
                };
                routing
                    .notify(&Channel::Conversation(conversation_id), &notice)
                    .await;
                Ok(None)
            }
            Request::Transfer {
                conversation_id,
                queue_id,
                agent_id,
            } => {
                let target = match (queue_id, agent_id) {
                    (Some(queue), None) => {
                        // An unknown queue is not found, as in setPresence
                        // (routing would call it not allowed).
                        match self.state.store.get::<Queue>(me.org, queue).await {
                            Ok(_) => {}
                            Err(StoreError::NotFound) => {
                                return Err(ErrorBody::new("not_found", "no such queue"));
                            }
                            Err(e) => return Err(RoutingError::from(e).into()),
                        }
                        TransferTarget::Queue(queue)
                    }
                    (None, Some(agent)) if agent == me.id => {
                        return Err(ErrorBody::bad_request("you cannot transfer to yourself"));
                    }
                    (None, Some(agent)) => TransferTarget::Agent(agent),
                    _ => {
                        return Err(ErrorBody::bad_request(
                            "name exactly one of queueId and agentId",
                        ));
                    }
                };
                let c = routing.transfer(&me, conversation_id, target, now).await?;
                Ok(Some(conversation_outcome(&c)))
            }
            Request::End {
                conversation_id,
                wrap_up,
            } => {
                if let Some(code) = &wrap_up
                    && (code.trim().is_empty() || code.chars().count() > MAX_ID_CHARS)
                {
                    return Err(ErrorBody::bad_request(format!(
                        "wrapUp must be 1 to {MAX_ID_CHARS} characters"
                    )));
                }
                let c = routing.end(&me, conversation_id, wrap_up, now).await?;
                Ok(Some(conversation_outcome(&c)))
            }
            Request::History {
                conversation_id,
                after_sequence,
                limit,
            } => {
                let c = routing
                    .conversation(conversation_id)
                    .await?
                    .filter(|c| c.org_id == me.org)
                    .ok_or_else(ErrorBody::not_found)?;
                if !self.may_read(&c).await? {
                    // The same answer as for a conversation that does not
                    // exist: nothing tells one from the other.
                    return Err(ErrorBody::not_found());
                }
                let limit = limit
                    .unwrap_or(DEFAULT_HISTORY_PAGE)
                    .clamp(1, MAX_HISTORY_PAGE);
                let mut events = routing
                    .events_after(
                        conversation_id,
                        after_sequence.unwrap_or(0),
                        limit.saturating_add(1),
                    )
                    .await?;
                let more = events.len() > limit;
                events.truncate(limit);
                Ok(Some(Outcome::History {
                    conversation_id,
                    events: events.into_iter().map(EventView::from).collect(),
                    more,
                }))
            }
        }
    }

    /// An agent reads the conversations it holds or held; a supervisor also
    /// those of its queues.
    async fn may_read(&self, c: &Conversation) -> RoutingResult<bool> {
        let me = self.me();
        if c.agent() == Some(me) || c.agents.contains(&me) {
            return Ok(true);
        }
        if self.caller.supervisor {
            let queues = self
                .state
                .routing
                .agent_queues(&self.caller.identity, &[])
                .await?;
            return Ok(queues.contains(&c.queue_id));
        }
        Ok(false)
    }

    async fn on_bus(&mut self, source: Source, message: BusMessage) {
        let id = match source {
            Source::Agent => {
                // Whatever the agent's channel says (or a resync after a
                // lost connection), the answer is to re-read.
                match &message {
                    BusMessage::Resync => self.dirty = true,
                    BusMessage::Payload(payload) => {
                        if matches!(
                            decode(payload),
                            Some(Notice::Changed { .. } | Notice::AgentChanged)
                        ) {
                            self.dirty = true;
                        }
                    }
                }
                return;
            }
            Source::Conversation(id) => id,
        };
        // A forwarder stopped after its message was queued.
        if !self.held.contains_key(&id) {
            return;
        }
        let payload = match message {
            BusMessage::Resync => return self.catch_up(id).await,
            BusMessage::Payload(payload) => payload,
        };
        match decode(&payload) {
            Some(Notice::Event(event)) if event.conversation_id == id => {
                let Some(held) = self.held.get_mut(&id) else {
                    return;
                };
                if event.seq <= held.delivered {
                    return;
                }
                if event.seq == held.delivered.saturating_add(1) {
                    held.delivered = event.seq;
                    self.out.push(ServerFrame::Event(event.into()));
                } else {
                    self.catch_up(id).await;
                }
            }
            Some(Notice::Typing {
                conversation_id,
                from,
            }) if conversation_id == id && from.id != Some(self.me()) => {
                self.out.push(ServerFrame::Typing {
                    conversation_id,
                    from,
                });
            }
            Some(Notice::Changed { .. }) => self.dirty = true,
            _ => {}
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
                .events_after(id, held.delivered, CATCH_UP_PAGE)
                .await?;
            let full = page.len() >= CATCH_UP_PAGE;
            for event in page {
                if event.seq > held.delivered {
                    held.delivered = event.seq;
                    events.push(EventView::from(event));
                }
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
            // whether or not the agent's record moved meanwhile.
            self.shown = None;
        }
        result
    }

    async fn reload(&mut self) -> RoutingResult<()> {
        let routing = self.state.routing.clone();
        let me = self.me();
        let agent = routing.agent_state(me).await?;
        let mut current = Vec::new();
        for id in agent.iter().flat_map(|a| a.conversations.iter()) {
            if let Some(c) = routing.conversation(*id).await?
                && c.org_id == self.caller.identity.org
                && c.agent() == Some(me)
            {
                current.push(c);
            }
        }

        let gone: Vec<Uuid> = self
            .held
            .keys()
            .filter(|id| !current.iter().any(|c| c.meta.id == **id))
            .copied()
            .collect();
        for id in gone {
            if let Some(held) = self.held.remove(&id)
                && matches!(held.conversation.state, ConversationState::Offered { .. })
            {
                self.out.push(ServerFrame::OfferRevoked {
                    conversation_id: id,
                });
            }
        }

        let mut offers = Vec::new();
        for c in current {
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
                held.conversation = c;
                continue;
            }
            // Subscribe first, then read: nothing falls in between.
            let subscription = self
                .state
                .store
                .engine()
                .subscribe(Channel::Conversation(id))
                .await
                .map_err(StoreError::from)?;
            let last = routing.last_seq(id).await?;
            if matches!(c.state, ConversationState::Offered { .. }) {
                offers.push(ConversationView::from(&c));
            }
            self.held.insert(
                id,
                Held {
                    conversation: c,
                    delivered: last.saturating_sub(SNAPSHOT_EVENTS),
                    _watch: Forwarder::start(
                        subscription,
                        Source::Conversation(id),
                        self.bus.clone(),
                    ),
                    last_typing: None,
                },
            );
        }

        let mut ids: Vec<(chrono::DateTime<Utc>, Uuid)> = self
            .held
            .values()
            .map(|h| (h.conversation.meta.date_created, h.conversation.meta.id))
            .collect();
        ids.sort();
        let mut conversations = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            let events = self.unsent(id).await?;
            if let Some(held) = self.held.get(&id) {
                conversations.push(ConversationSnapshot {
                    conversation: ConversationView::from(&held.conversation),
                    events,
                    last_sequence: held.delivered,
                });
            }
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
        if let Some(shown) = &self.shown
            && (shown.status != view.status || shown.queues != view.queues)
        {
            self.out.push(ServerFrame::Presence {
                status: view.status,
                queues: view.queues.clone(),
            });
        }
        self.out.push(ServerFrame::Snapshot {
            agent: view,
            conversations,
        });
        self.shown = agent;
        Ok(())
    }
}

fn conversation_outcome(c: &Conversation) -> Outcome {
    Outcome::Conversation {
        conversation: Box::new(ConversationView::from(c)),
    }
}

fn decode(payload: &[u8]) -> Option<Notice> {
    serde_json::from_slice(payload)
        .map_err(|e| tracing::warn!(error = %e, "unreadable notice on the bus"))
        .ok()
}

/// Parses a request. A frame that does not parse is answered with the
/// `requestId` it carried, when it carried a usable one.
fn parse(text: &str) -> Result<(Option<String>, Request), (Option<String>, ErrorBody)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ErrorBody::bad_request(format!("the frame is not JSON: {e}")),
        )
    })?;
    let request_id = match value.get("requestId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_ID_CHARS => {
            Some(id.clone())
        }
        Some(_) => {
            return Err((
                None,
                ErrorBody::bad_request(format!(
                    "requestId must be a string of 1 to {MAX_ID_CHARS} characters"
                )),
            ));
        }
    };
    match serde_json::from_value::<Request>(value) {
        Ok(request) => Ok((request_id, request)),
        Err(e) => Err((request_id, ErrorBody::bad_request(e.to_string()))),
    }
}
