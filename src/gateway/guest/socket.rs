//! One guest socket: a task running one `select!` loop over the socket, its
//! bus subscriptions (the session's channel, the session JWT's family once
//! authenticated, the current conversation), this node's revocations, the
//! ping and session-expiry timers, and the node's shutdown.
//!
//! Delivery keeps one number per socket: the last sequence of the current
//! conversation it delivered. A notice with the next sequence is delivered;
//! one further ahead means something was missed, so the log is read from
//! the next expected sequence; one at or below it is a duplicate and
//! dropped. A bus resync reads the log too. Every new subscription is made
//! before the log is read, so nothing falls between the two.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chrono::Utc;
use prometheus_client::metrics::gauge::Gauge;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::frames::{
    self, AllowedMedia, BLOCKED_EXTENSIONS, ConfigurationResponse, Configure, ConnectionClosed,
    Empty, GuestError, GuestEvent, GuestMessage, JwtResponse, MAX_CUSTOM_DATA_BYTES,
    MAX_TEXT_CHARS, MessageKind, Request, SessionResponse,
};
use super::messages;
use crate::app::AppState;
use crate::auth::refresh;
use crate::auth::visitor_token::RevokedSession;
use crate::engine::{BusMessage, Channel, Space, Subscription};
use crate::gateway::{MAX_CLIENT_MESSAGE_BYTES, PING_INTERVAL};
use crate::routing::model::{
    self, EventBody, GuestSession, Notice, Participant, ParticipantRole, PresenceKind,
    SequencedEvent, SessionEndReason, VisitorIdentity,
};
use crate::routing::{NewEvent, Routing, RoutingError};
use crate::store::records::{ConfigurationContent, Deployment};
use crate::store::{Admitted, Refused};

/// Messages a session may send per [`RATE_WINDOW`], across its sockets and
/// nodes.
pub const MESSAGES_PER_WINDOW: u64 = 2;
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Audience of the `getJwt` token, which only the history endpoint takes.
pub const HISTORY_AUDIENCE: &str = "switchboard:history";
pub const HISTORY_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
/// A client that reads nothing for this long is dropped: one stalled socket
/// must not pin memory or its task.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Log entries read per round when catching up.
const CATCH_UP_BATCH: usize = 200;

/// When a session expires for lack of visitor activity. Time is a
/// parameter, so the decision is testable without sleeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    last: Instant,
    duration: Duration,
}

impl Activity {
    pub fn new(now: Instant, duration: Duration) -> Self {
        Self {
            last: now,
            duration,
        }
    }

    /// The visitor did something at `now`.
    pub fn touch(&mut self, now: Instant) {
        if now > self.last {
            self.last = now;
        }
    }

    pub fn set_duration(&mut self, duration: Duration) {
        self.duration = duration;
    }

    pub fn deadline(&self) -> Instant {
        self.last
            .checked_add(self.duration)
            .unwrap_or_else(|| self.last + Duration::from_secs(365 * 24 * 3600))
    }

    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

/// What the loop does after one event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Send a close frame with this code and reason, then end.
    Close(u16, &'static str),
    /// The client is gone (or unresponsive): end without ceremony.
    Gone,
}

/// Why a request handler stopped.
#[derive(Debug)]
enum Fail {
    /// Answer with this error frame; the socket stays usable.
    Guest(GuestError),
    Gone,
}

impl From<GuestError> for Fail {
    fn from(e: GuestError) -> Self {
        Fail::Guest(e)
    }
}

impl From<Gone> for Fail {
    fn from(_: Gone) -> Self {
        Fail::Gone
    }
}

#[derive(Debug)]
struct Gone;

/// What the socket is bound to once configured.
#[derive(Debug)]
struct Bound {
    session: Uuid,
    /// The session JWT's family (`sid`), for an authenticated socket.
    family: Option<Uuid>,
    /// What agents call the visitor.
    name: String,
    conversation: Option<Uuid>,
    /// The last sequence of `conversation` delivered to the client.
    last: u64,
}

/// Decrements the socket gauge however the task ends.
struct Counted(Gauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Conn {
    state: AppState,
    ws: WebSocket,
    /// This socket, so a notice can spare its sender.
    id: Uuid,
    deployment: Deployment,
    content: ConfigurationContent,
    config_version: String,
    bound: Option<Bound>,
    session_sub: Option<Subscription>,
    family_sub: Option<Subscription>,
    conversation_sub: Option<Subscription>,
    revocations: Option<broadcast::Receiver<RevokedSession>>,
    activity: Activity,
    /// When the client last sent anything (a pong included).
    last_seen: Instant,
}

pub(super) async fn run(state: AppState, ws: WebSocket, admitted: Admitted) {
    let _open = state.shutdown.guard();
    let gauge = state.metrics.sockets("guest");
    gauge.inc();
    let _counted = Counted(gauge);
    let now = Instant::now();
    let duration = session_duration(&admitted.content);
    let revocations = Some(state.visitor_tokens.subscribe());
    let mut conn = Conn {
        id: Uuid::new_v4(),
        ws,
        deployment: admitted.deployment,
        content: admitted.content,
        config_version: admitted.version,
        bound: None,
        session_sub: None,
        family_sub: None,
        conversation_sub: None,
        revocations,
        activity: Activity::new(now, duration),
        last_seen: now,
        state,
    };
    Box::pin(conn.serve()).await;
}

fn session_duration(content: &ConfigurationContent) -> Duration {
    Duration::from_secs(u64::from(
        content
            .messenger
            .apps
            .conversations
            .session_duration_seconds
            .max(60),
    ))
}

async fn recv_bus(sub: &mut Option<Subscription>) -> Option<BusMessage> {
    match sub {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_revocation(
    rx: &mut Option<broadcast::Receiver<RevokedSession>>,
) -> Result<RevokedSession, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The close code for a socket error, when the client should get one:
/// tungstenite reports an oversized frame as a capacity error and invalid
/// text as a UTF-8 error (axum hides the type, so its text is matched).
fn close_for(error: &axum::Error) -> Option<(u16, &'static str)> {
    let text = error.to_string();
    if text.starts_with("Space limit exceeded") {
        Some((1009, "frame too large"))
    } else if text.starts_with("UTF-8 encoding error") {
        Some((1007, "invalid UTF-8"))
    } else {
        None
    }
}

fn routing_error(e: RoutingError) -> GuestError {
    match e {
        RoutingError::ReadOnly => GuestError::forbidden("conversation is read only"),
        RoutingError::UnknownSession => GuestError::not_configured(),
        RoutingError::UnknownConversation => GuestError::new(4007, "conversation not found"),
        RoutingError::NotAllowed(message) => GuestError::forbidden(message),
        e @ (RoutingError::Contended | RoutingError::Store(_)) => {
            tracing::warn!(error = %e, "guest request failed");
            GuestError::unexpected()
        }
    }
}

fn visitor(name: &str) -> Participant {
    Participant {
        role: ParticipantRole::Visitor,
        id: None,
        name: name.to_owned(),
    }
}

impl Conn {
    async fn serve(&mut self) {
        let shutdown = self.state.shutdown.clone().signalled();
        tokio::pin!(shutdown);
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = self.activity.deadline();
            let bound = self.bound.is_some();
            let flow = tokio::select! {
                () = &mut shutdown => Flow::Close(1001, "going away"),
                frame = self.ws.recv() => self.on_frame(frame).await,
                message = recv_bus(&mut self.session_sub) => {
                    if message.is_none() {
                        self.session_sub = None;
                    }
                    self.on_session_bus(message).await
                }
                message = recv_bus(&mut self.family_sub) => {
                    if message.is_none() {
                        self.family_sub = None;
                    }
                    self.on_session_bus(message).await
                }
                message = recv_bus(&mut self.conversation_sub) => {
                    if message.is_none() {
                        self.conversation_sub = None;
                    }
                    self.on_conversation_bus(message).await
                }
                revoked = recv_revocation(&mut self.revocations) => self.on_revocation(revoked).await,
                _ = ping.tick() => self.on_ping().await,
                () = tokio::time::sleep_until(deadline), if bound => self.on_expiry().await,
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => {
                    self.close(code, reason).await;
                    break;
                }
                Flow::Gone => break,
            }
        }
    }

    // ---- sending --------------------------------------------------------

    async fn send(&mut self, text: String) -> Result<(), Gone> {
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    async fn respond<B: Serialize>(
        &mut self,
        class: &str,
        body: B,
        tracing_id: Option<&str>,
    ) -> Result<(), Gone> {
        self.send(frames::response(class, body, tracing_id)).await
    }

    async fn push<B: Serialize>(&mut self, class: &str, body: B) -> Result<(), Gone> {
        self.send(frames::push(class, body)).await
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.send(frame)).await;
    }

    // ---- the client's frames ---------------------------------------------

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Flow {
        let message = match frame {
            None => return Flow::Gone,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                return match close_for(&e) {
                    Some((code, reason)) => {
                        tracing::info!(code, error = %e, "guest socket refused a frame");
                        Flow::Close(code, reason)
                    }
                    None => Flow::Gone,
                };
            }
        };
        self.last_seen = Instant::now();
        match message {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(bytes) => match std::str::from_utf8(&bytes) {
                // Lenient: JSON in a binary frame is still JSON.
                Ok(text) => self.on_text(text).await,
                Err(_) => {
                    let error = GuestError::bad_request("frames are JSON text");
                    self.answer_error(&error, None).await
                }
            },
            Message::Ping(_) | Message::Pong(_) => Flow::Continue,
            Message::Close(_) => Flow::Gone,
        }
    }

    async fn answer_error(&mut self, error: &GuestError, tracing_id: Option<&str>) -> Flow {
        match self.send(frames::error(error, tracing_id)).await {
            Ok(()) => Flow::Continue,
            Err(Gone) => Flow::Gone,
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        if text.len() > MAX_CLIENT_MESSAGE_BYTES {
            return Flow::Close(1009, "frame too large");
        }
        let parsed = match frames::parse(text) {
            Ok(parsed) => parsed,
            Err(rejected) => {
                return self
                    .answer_error(&rejected.error, rejected.tracing_id.as_deref())
                    .await;
            }
        };
        let tracing_id = parsed.tracing_id.as_deref();
        let action = parsed.request.action();
        let result = match parsed.request {
            Request::ConfigureSession(configure) => {
                self.configure_session(
                    parsed.token.as_deref().unwrap_or_default(),
                    configure,
                    tracing_id,
                )
                .await
            }
            Request::ConfigureAuthenticatedSession { configure, code } => {
                self.configure_authenticated(
                    parsed.token.as_deref().unwrap_or_default(),
                    configure,
                    &code,
                    tracing_id,
                )
                .await
            }
            Request::OnMessage(message) => {
                self.on_message(
                    parsed.token.as_deref().unwrap_or_default(),
                    *message,
                    tracing_id,
                )
                .await
            }
            Request::Echo { text } => {
                let echo = messages::echo(text, Utc::now());
                self.respond("StructuredMessage", echo, tracing_id)
                    .await
                    .map(|()| Flow::Continue)
                    .map_err(Fail::from)
            }
            Request::GetJwt => {
                self.get_jwt(parsed.token.as_deref().unwrap_or_default(), tracing_id)
                    .await
            }
            Request::GetConfiguration { deployment_id } => {
                self.get_configuration(deployment_id.as_deref(), tracing_id)
                    .await
            }
            Request::CloseSession { close_all } => {
                self.close_session(
                    parsed.token.as_deref().unwrap_or_default(),
                    close_all,
                    tracing_id,
                )
                .await
            }
        };
        match result {
            Ok(flow) => flow,
            Err(Fail::Gone) => Flow::Gone,
            Err(Fail::Guest(error)) => {
                tracing::debug!(action, code = error.code, "guest request refused");
                self.answer_error(&error, tracing_id).await
            }
        }
    }

    // ---- configuration ---------------------------------------------------

    /// The frame's deployment must be the one this socket was admitted for;
    /// its configuration is read again, so a newly published version counts.
    async fn check_deployment(&mut self, deployment_id: &str) -> Result<(), GuestError> {
        if Uuid::parse_str(deployment_id).ok() != Some(self.deployment.meta.id) {
            return Err(GuestError::forbidden(
                "this connection is for another deployment",
            ));
        }
        match self
            .state
            .store
            .admit_deployment(self.deployment.meta.id)
            .await
        {
            Ok(admitted) => {
                self.activity
                    .set_duration(session_duration(&admitted.content));
                self.deployment = admitted.deployment;
                self.content = admitted.content;
                self.config_version = admitted.version;
                Ok(())
            }
            Err(Refused::Store(_)) => Err(GuestError::unexpected()),
            Err(_) => Err(GuestError::forbidden("the deployment is not active")),
        }
    }

    async fn configure_session(
        &mut self,
        token: &str,
        configure: Configure,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        self.check_deployment(&configure.deployment_id).await?;
        let id = model::session_id(token);
        let routing = self.state.routing.clone();
        let existing = routing.session(id).await.map_err(routing_error)?;
        if let Some(existing) = &existing {
            if existing.deployment_id != self.deployment.meta.id {
                return Err(
                    GuestError::forbidden("this session belongs to another deployment").into(),
                );
            }
            if existing.identity.as_ref().is_some_and(|i| i.authenticated) {
                return Err(GuestError::new(
                    4017,
                    "cannot downgrade an authenticated session to a guest one",
                )
                .into());
            }
        }
        if self.content.authentication_settings.enabled {
            return Err(GuestError::auth_required().into());
        }
        let (session, new) = routing
            .open_session(id, &self.deployment, Utc::now())
            .await
            .map_err(routing_error)?;
        self.bind(session, None, new, false, &configure, tracing_id)
            .await
    }

    async fn configure_authenticated(
        &mut self,
        token: &str,
        configure: Configure,
        code: &str,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        self.check_deployment(&configure.deployment_id).await?;
        let now = Utc::now();
        let claims = match self
            .state
            .visitor_tokens
            .verify(code, self.deployment.meta.id, now)
            .await
        {
            Ok(claims) if claims.org == self.deployment.org_id => claims,
            Ok(_) => return Err(GuestError::auth_failed().into()),
            Err(e) => {
                tracing::info!(deployment = %self.deployment.meta.id, code = e.code(), "guest session authentication failed");
                return Err(GuestError::auth_failed().into());
            }
        };
        let identity = VisitorIdentity {
            authenticated: true,
            issuer: Some(claims.identity.iss.clone()),
            subject: Some(claims.identity.sub.clone()),
            email: claims.identity.email.clone(),
            name: claims.identity.name.clone(),
            given_name: claims.identity.given_name.clone(),
            family_name: claims.identity.family_name.clone(),
        };
        let id = model::session_id(token);
        let routing = self.state.routing.clone();
        let (existing, new) = routing
            .open_session(id, &self.deployment, now)
            .await
            .map_err(routing_error)?;
        if existing.deployment_id != self.deployment.meta.id {
            return Err(GuestError::forbidden("this session belongs to another deployment").into());
        }
        if existing.visitor_id.is_some_and(|v| v != claims.sub) {
            return Err(GuestError::auth_failed().into());
        }
        let was_guest = !existing.identity.as_ref().is_some_and(|i| i.authenticated);
        let upgrade = self.content.authentication_settings.allow_session_upgrade;
        // A guest session that may not be upgraded starts over signed in:
        // its guest conversation is not carried into the signed-in one.
        let drop_conversation = was_guest && !upgrade && existing.conversation_id.is_some();
        let sid = claims.sid;
        let visitor_id = claims.sub;
        let session = routing
            .update_session(id, |s| {
                if s.visitor_id.is_some_and(|v| v != visitor_id) {
                    return Err(RoutingError::NotAllowed("Session authentication failed"));
                }
                s.identity = Some(identity.clone());
                s.visitor_id = Some(visitor_id);
                s.token_family = Some(sid.to_string());
                if drop_conversation {
                    s.conversation_id = None;
                }
                s.last_active = now;
                Ok(())
            })
            .await
            .map_err(|e| match e {
                RoutingError::NotAllowed(_) => GuestError::auth_failed(),
                e => routing_error(e),
            })?;
        if was_guest && !new {
            if upgrade {
                if let Some(conversation) = session.conversation_id {
                    self.sign_in(conversation, &identity, visitor_id).await;
                }
            } else {
                // Other sockets of the guest session must sign in too.
                self.state
                    .routing
                    .notify(
                        &Channel::Session(id.to_string()),
                        &Notice::SessionEnded {
                            reason: SessionEndReason::SignedIn,
                            except_socket: Some(self.id),
                        },
                    )
                    .await;
            }
        }
        self.bind(
            session,
            Some(sid),
            new,
            drop_conversation,
            &configure,
            tracing_id,
        )
        .await
    }

    /// Marks the live conversation of an upgraded session as signed in, with
    /// a `SignIn` presence event in its transcript.
    async fn sign_in(&mut self, conversation: Uuid, identity: &VisitorIdentity, visitor_id: Uuid) {
        let routing = &self.state.routing;
        let now = Utc::now();
        match routing.conversation(conversation).await {
            Ok(Some(c)) if !c.is_ended() => {}
            _ => return,
        }
        if let Err(e) = routing
            .sign_in_conversation(conversation, identity, visitor_id, now)
            .await
        {
            tracing::warn!(%conversation, error = %e, "cannot record the sign-in on the conversation");
        }
        let event = NewEvent {
            body: EventBody::Presence {
                presence: PresenceKind::SignIn,
            },
            dedup: None,
        };
        if let Err(e) = routing
            .append(conversation, visitor(&identity.display_name()), event, now)
            .await
        {
            tracing::warn!(%conversation, error = %e, "cannot log the sign-in");
        }
    }

    /// Binds the socket to a session: subscriptions, the current
    /// conversation, the answer, then (on resume) the replay.
    async fn bind(
        &mut self,
        mut session: GuestSession,
        family: Option<Uuid>,
        new: bool,
        mut cleared: bool,
        configure: &Configure,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let routing = self.state.routing.clone();
        let id = session.meta.id;
        if configure.start_new && session.conversation_id.is_some() {
            session = routing.start_new(id).await.map_err(routing_error)?;
            cleared = true;
        }
        // Subscribe before reading, so nothing falls in between.
        let same_session = self.bound.as_ref().is_some_and(|b| b.session == id);
        if !same_session || self.session_sub.is_none() {
            self.session_sub = Some(self.subscribe(Channel::Session(id.to_string())).await?);
        }
        self.family_sub = match family {
            Some(sid) => Some(self.subscribe(Channel::Session(sid.to_string())).await?),
            None => None,
        };
        let name = session.identity.clone().unwrap_or_default().display_name();
        self.bound = Some(Bound {
            session: id,
            family,
            name,
            conversation: None,
            last: 0,
        });
        self.conversation_sub = None;
        // Re-read: another socket may have opened a conversation meanwhile.
        let session = routing
            .session(id)
            .await
            .map_err(routing_error)?
            .unwrap_or(session);
        let mut read_only = false;
        let mut last_sequence = None;
        if let Some(conversation) = session.conversation_id {
            let top = self.follow(conversation).await?;
            let last = match (configure.conversation_id, configure.last_sequence) {
                (Some(c), _) if c != conversation => 0,
                (_, Some(seen)) => seen.min(top),
                (_, None) => top,
            };
            if let Some(bound) = &mut self.bound {
                bound.last = last;
            }
            last_sequence = Some(top);
            read_only = match routing.conversation(conversation).await {
                Ok(Some(c)) => {
                    c.is_ended()
                        && Routing::read_only_after_end(
                            &self
                                .content
                                .messenger
                                .apps
                                .conversations
                                .conversation_disconnect,
                        )
                }
                _ => false,
            };
        }
        self.activity.touch(Instant::now());
        let duration = session_duration(&self.content);
        let expires = Utc::now()
            + chrono::Duration::seconds(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2));
        let answer = SessionResponse {
            connected: true,
            new_session: new,
            read_only,
            cleared_existing_session: cleared,
            max_custom_data_bytes: MAX_CUSTOM_DATA_BYTES,
            allowed_media: Some(AllowedMedia::none()),
            blocked_extensions: BLOCKED_EXTENSIONS,
            duration_seconds: Some(duration.as_secs()),
            expiration_date: Some(expires.timestamp()),
            conversation_id: session.conversation_id,
            last_sequence,
        };
        self.respond("SessionResponse", answer, tracing_id).await?;
        // Resume: everything after the client's last sequence, before any
        // live event.
        self.catch_up(None).await?;
        Ok(Flow::Continue)
    }

    async fn subscribe(&mut self, channel: Channel) -> Result<Subscription, GuestError> {
        self.state
            .store
            .engine()
            .subscribe(channel)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot subscribe a guest socket");
                GuestError::unexpected()
            })
    }

    /// Makes `conversation` the socket's current one: subscribes, then
    /// answers its newest sequence. Delivery starts after `last` (0).
    async fn follow(&mut self, conversation: Uuid) -> Result<u64, GuestError> {
        let sub = self.subscribe(Channel::Conversation(conversation)).await?;
        self.conversation_sub = Some(sub);
        if let Some(bound) = &mut self.bound {
            bound.conversation = Some(conversation);
            bound.last = 0;
        }
        self.state
            .routing
            .last_seq(conversation)
            .await
            .map_err(routing_error)
    }

    fn unfollow(&mut self) {
        self.conversation_sub = None;
        if let Some(bound) = &mut self.bound {
            bound.conversation = None;
            bound.last = 0;
        }
    }

    fn unbind(&mut self) {
        self.unfollow();
        self.bound = None;
        self.session_sub = None;
        self.family_sub = None;
    }

    /// The bound session, when the frame's token names it.
    fn session_for(&self, token: &str) -> Result<Uuid, GuestError> {
        let Some(bound) = &self.bound else {
            return Err(if self.content.authentication_settings.enabled {
                GuestError::auth_required()
            } else {
                GuestError::not_configured()
            });
        };
        if model::session_id(token) != bound.session {
            return Err(GuestError::forbidden(
                "the token does not match this connection's session",
            ));
        }
        Ok(bound.session)
    }

    // ---- delivery --------------------------------------------------------

    fn read_only_setting(&self) -> bool {
        Routing::read_only_after_end(
            &self
                .content
                .messenger
                .apps
                .conversations
                .conversation_disconnect,
        )
    }

    /// Delivers one logged event of the current conversation if it is the
    /// next one (or later: the caller made sure nothing lies between).
    async fn deliver(&mut self, event: &SequencedEvent) -> Result<(), Gone> {
        let Some(bound) = &mut self.bound else {
            return Ok(());
        };
        if bound.conversation != Some(event.conversation_id) || event.seq <= bound.last {
            return Ok(());
        }
        bound.last = event.seq;
        if event.event.from.role == ParticipantRole::Visitor {
            // The visitor was active in another tab.
            self.activity.touch(Instant::now());
        }
        match messages::from_log(event, self.read_only_setting()) {
            Some(message) => self.push("StructuredMessage", message).await,
            None => Ok(()),
        }
    }

    /// Reads the current conversation's log after the last delivered
    /// sequence and delivers it: everything, or up to `upto`.
    async fn catch_up(&mut self, upto: Option<u64>) -> Result<(), Gone> {
        loop {
            let Some((conversation, last)) = self
                .bound
                .as_ref()
                .and_then(|b| b.conversation.map(|c| (c, b.last)))
            else {
                return Ok(());
            };
            let limit = match upto {
                Some(upto) if upto <= last => return Ok(()),
                Some(upto) => usize::try_from(upto - last)
                    .unwrap_or(CATCH_UP_BATCH)
                    .min(CATCH_UP_BATCH),
                None => CATCH_UP_BATCH,
            };
            let events = match self
                .state
                .routing
                .events_after(conversation, last, limit)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    // The next notice or resync tries again.
                    tracing::warn!(%conversation, error = %e, "guest catch-up failed");
                    return Ok(());
                }
            };
            let Some(newest) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            for event in &events {
                self.deliver(event).await?;
            }
            if let Some(bound) = &mut self.bound
                && bound.conversation == Some(conversation)
            {
                bound.last = bound.last.max(newest);
            }
            if events.len() < limit {
                return Ok(());
            }
        }
    }

    async fn on_conversation_bus(&mut self, message: Option<BusMessage>) -> Flow {
        let result = match message {
            None => Ok(()),
            Some(BusMessage::Resync) => self.catch_up(None).await,
            Some(BusMessage::Payload(payload)) => {
                match serde_json::from_slice::<Notice>(&payload) {
                    Ok(Notice::Event(event)) => {
                        let (current, last) = match &self.bound {
                            Some(b) => (b.conversation, b.last),
                            None => (None, 0),
                        };
                        if current != Some(event.conversation_id) || event.seq <= last {
                            Ok(())
                        } else if event.seq == last + 1 {
                            self.deliver(&event).await
                        } else {
                            // A gap: something was missed; the log has it.
                            self.catch_up(None).await
                        }
                    }
                    Ok(Notice::Typing {
                        conversation_id,
                        from,
                    }) => {
                        let current = self.bound.as_ref().and_then(|b| b.conversation);
                        if from.role != ParticipantRole::Visitor && current == Some(conversation_id)
                        {
                            let typing = messages::typing(conversation_id, &from, Utc::now());
                            self.push("StructuredMessage", typing).await
                        } else {
                            Ok(())
                        }
                    }
                    Ok(_) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable conversation notice");
                        Ok(())
                    }
                }
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(Gone) => Flow::Gone,
        }
    }

    async fn on_session_bus(&mut self, message: Option<BusMessage>) -> Flow {
        let notice = match message {
            None => return Flow::Continue,
            Some(BusMessage::Resync) => return self.resync_session().await,
            Some(BusMessage::Payload(payload)) => {
                match serde_json::from_slice::<Notice>(&payload) {
                    Ok(notice) => notice,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable session notice");
                        return Flow::Continue;
                    }
                }
            }
        };
        let result = match notice {
            Notice::SessionEnded {
                reason,
                except_socket,
            } => {
                if except_socket == Some(self.id) {
                    return Flow::Continue;
                }
                match reason {
                    SessionEndReason::Logout => return self.logout().await,
                    SessionEndReason::Closed => {
                        return self.closed(None).await;
                    }
                    SessionEndReason::SignedIn => return self.closed(Some("signedIn")).await,
                    SessionEndReason::Cleared => {
                        self.unfollow();
                        self.push("SessionClearedEvent", Empty {}).await
                    }
                }
            }
            // Another socket of the session opened a conversation.
            Notice::Changed { conversation_id } => self.switch_to(conversation_id).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(Gone) => Flow::Gone,
        }
    }

    /// Follows a conversation another socket of the session opened, from
    /// its start.
    async fn switch_to(&mut self, conversation: Uuid) -> Result<(), Gone> {
        let current = self.bound.as_ref().map(|b| b.conversation);
        match current {
            None => return Ok(()),
            Some(Some(c)) if c == conversation => return Ok(()),
            Some(_) => {}
        }
        if self.follow(conversation).await.is_err() {
            return Ok(());
        }
        self.catch_up(None).await
    }

    /// The session channel may have missed notices: read the session again.
    async fn resync_session(&mut self) -> Flow {
        let Some(bound) = &self.bound else {
            return Flow::Continue;
        };
        let (id, family) = (bound.session, bound.family);
        if let Some(family) = family
            && refresh::family_revoked(self.state.store.engine(), family)
                .await
                .unwrap_or(false)
        {
            return self.logout().await;
        }
        match self.state.routing.session(id).await {
            Ok(Some(session)) => match session.conversation_id {
                Some(conversation) => match self.switch_to(conversation).await {
                    Ok(()) => Flow::Continue,
                    Err(Gone) => Flow::Gone,
                },
                None => Flow::Continue,
            },
            _ => Flow::Continue,
        }
    }

    async fn logout(&mut self) -> Flow {
        match self.push("LogoutEvent", Empty {}).await {
            Ok(()) => Flow::Close(1000, "logged out"),
            Err(Gone) => Flow::Gone,
        }
    }

    async fn closed(&mut self, reason: Option<&'static str>) -> Flow {
        match self
            .push("ConnectionClosedEvent", ConnectionClosed { reason })
            .await
        {
            Ok(()) => Flow::Close(1000, "connection closed"),
            Err(Gone) => Flow::Gone,
        }
    }

    async fn on_revocation(
        &mut self,
        revoked: Result<RevokedSession, broadcast::error::RecvError>,
    ) -> Flow {
        let family = self.bound.as_ref().and_then(|b| b.family);
        match revoked {
            Ok(revoked) => {
                if family == Some(revoked.sid) && revoked.deployment == self.deployment.meta.id {
                    return self.logout().await;
                }
                Flow::Continue
            }
            Err(broadcast::error::RecvError::Lagged(_)) => self.check_revoked().await,
            Err(broadcast::error::RecvError::Closed) => {
                self.revocations = None;
                Flow::Continue
            }
        }
    }

    /// Whether the socket's JWT family was revoked, wherever that happened.
    async fn check_revoked(&mut self) -> Flow {
        let Some(family) = self.bound.as_ref().and_then(|b| b.family) else {
            return Flow::Continue;
        };
        match refresh::family_revoked(self.state.store.engine(), family).await {
            Ok(true) => self.logout().await,
            _ => Flow::Continue,
        }
    }

    async fn on_ping(&mut self) -> Flow {
        if self.last_seen.elapsed() > PING_INTERVAL * 2 {
            tracing::debug!("guest socket silent for two ping intervals");
            return Flow::Gone;
        }
        // A revocation on another node reaches this socket at the latest
        // here.
        let flow = self.check_revoked().await;
        if flow != Flow::Continue {
            return flow;
        }
        match tokio::time::timeout(
            SEND_TIMEOUT,
            self.ws.send(Message::Ping(Default::default())),
        )
        .await
        {
            Ok(Ok(())) => Flow::Continue,
            _ => Flow::Gone,
        }
    }

    async fn on_expiry(&mut self) -> Flow {
        if !self.activity.expired(Instant::now()) {
            return Flow::Continue;
        }
        match self.push("SessionExpiredEvent", Empty {}).await {
            Ok(()) => Flow::Close(1000, "session expired"),
            Err(Gone) => Flow::Gone,
        }
    }

    // ---- requests --------------------------------------------------------

    async fn on_message(
        &mut self,
        token: &str,
        message: GuestMessage,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let session = self.session_for(token)?;
        self.rate_limit(session).await?;
        self.activity.touch(Instant::now());
        self.state.metrics.messages("guest").inc();
        let GuestMessage {
            kind,
            client_id,
            metadata,
            custom_attributes,
        } = message;
        match kind {
            MessageKind::Text { text } => {
                let body = message_body(
                    "Text",
                    Some(text),
                    Vec::new(),
                    metadata,
                    custom_attributes,
                    client_id.clone(),
                );
                self.post(body, client_id, tracing_id).await
            }
            MessageKind::Structured { text, content } => {
                let body = message_body(
                    "Structured",
                    text,
                    content,
                    metadata,
                    custom_attributes,
                    client_id.clone(),
                );
                self.post(body, client_id, tracing_id).await
            }
            MessageKind::Event(GuestEvent::Typing) => self.typing(tracing_id).await,
            MessageKind::Event(GuestEvent::Presence(presence)) => {
                self.presence(session, presence, client_id, tracing_id)
                    .await
            }
        }
    }

    async fn rate_limit(&mut self, session: Uuid) -> Result<(), GuestError> {
        let key = format!("guest-messages:{session}");
        match self
            .state
            .store
            .engine()
            .count(Space::RateLimit, &key, RATE_WINDOW)
            .await
        {
            Ok(count) if count > MESSAGES_PER_WINDOW => Err(GuestError::too_many()),
            Ok(_) => Ok(()),
            // Counting is a guard, not a gate: the post itself will say
            // whether storage is there.
            Err(e) => {
                tracing::warn!(error = %e, "guest rate limit unavailable");
                Ok(())
            }
        }
    }

    /// Posts a visitor event and answers it with its sequence, after
    /// delivering whatever came before it that this socket had not seen.
    async fn post(
        &mut self,
        body: EventBody,
        dedup: Option<String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let Some(session) = self.bound.as_ref().map(|b| b.session) else {
            return Err(GuestError::not_configured().into());
        };
        let routing = self.state.routing.clone();
        let (conversation, event, _duplicate) = routing
            .visitor_post(
                session,
                &self.deployment,
                &self.content,
                NewEvent { body, dedup },
                Utc::now(),
            )
            .await
            .map_err(routing_error)?;
        let current = self.bound.as_ref().and_then(|b| b.conversation);
        let opened = current != Some(conversation.meta.id);
        if opened {
            // A new conversation: follow it, and tell the session's other
            // sockets to follow it too.
            self.follow(conversation.meta.id).await?;
            routing
                .notify(
                    &Channel::Session(session.to_string()),
                    &Notice::Changed {
                        conversation_id: conversation.meta.id,
                    },
                )
                .await;
        }
        self.acknowledge(&event, tracing_id).await?;
        if opened {
            self.catch_up(None).await?;
        }
        Ok(Flow::Continue)
    }

    /// Answers the socket's own event: earlier events it has not seen go
    /// first, and its live notice is then a duplicate.
    async fn acknowledge(
        &mut self,
        event: &SequencedEvent,
        tracing_id: Option<&str>,
    ) -> Result<(), Gone> {
        let ahead = self
            .bound
            .as_ref()
            .is_some_and(|b| b.conversation == Some(event.conversation_id) && event.seq > b.last);
        if ahead {
            self.catch_up(Some(event.seq.saturating_sub(1))).await?;
            if let Some(bound) = &mut self.bound {
                bound.last = bound.last.max(event.seq);
            }
        }
        match messages::from_log(event, self.read_only_setting()) {
            Some(message) => self.respond("StructuredMessage", message, tracing_id).await,
            None => {
                self.respond("StructuredMessage", Empty {}, tracing_id)
                    .await
            }
        }
    }

    async fn typing(&mut self, tracing_id: Option<&str>) -> Result<Flow, Fail> {
        let (conversation, name) = match &self.bound {
            Some(b) => (b.conversation, b.name.clone()),
            None => (None, String::new()),
        };
        let from = visitor(&name);
        if let Some(conversation) = conversation {
            self.state
                .routing
                .notify(
                    &Channel::Conversation(conversation),
                    &Notice::Typing {
                        conversation_id: conversation,
                        from: from.clone(),
                    },
                )
                .await;
        }
        let mut echo = messages::typing(conversation.unwrap_or_default(), &from, Utc::now());
        if conversation.is_none() {
            echo.conversation_id = None;
            echo.metadata.clear();
        }
        self.respond("StructuredMessage", echo, tracing_id).await?;
        Ok(Flow::Continue)
    }

    /// Whether the session has a conversation that has not ended.
    async fn live_conversation(&mut self) -> Result<Option<Uuid>, GuestError> {
        let Some(conversation) = self.bound.as_ref().and_then(|b| b.conversation) else {
            return Ok(None);
        };
        let found = self
            .state
            .routing
            .conversation(conversation)
            .await
            .map_err(routing_error)?;
        Ok(found.filter(|c| !c.is_ended()).map(|c| c.meta.id))
    }

    async fn presence(
        &mut self,
        session: Uuid,
        presence: PresenceKind,
        client_id: Option<String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let conversations = &self.content.messenger.apps.conversations;
        let (auto_start, clear) = (
            conversations.auto_start.enabled,
            conversations.conversation_clear.enabled,
        );
        let body = EventBody::Presence { presence };
        match presence {
            PresenceKind::Join => {
                if self.live_conversation().await?.is_none() && auto_start {
                    // autoStart: the widget opening starts the conversation.
                    return self.post(body, client_id, tracing_id).await;
                }
            }
            PresenceKind::Disconnect => {
                if let Some(conversation) = self.live_conversation().await? {
                    let name = self
                        .bound
                        .as_ref()
                        .map(|b| b.name.clone())
                        .unwrap_or_default();
                    let (event, _) = self
                        .state
                        .routing
                        .append(
                            conversation,
                            visitor(&name),
                            NewEvent {
                                body,
                                dedup: client_id,
                            },
                            Utc::now(),
                        )
                        .await
                        .map_err(routing_error)?;
                    self.acknowledge(&event, tracing_id).await?;
                    return Ok(Flow::Continue);
                }
            }
            PresenceKind::Clear => {
                if !clear {
                    return Err(GuestError::unavailable("conversation clear is not enabled").into());
                }
                if let Some(conversation) = self.live_conversation().await? {
                    let name = self
                        .bound
                        .as_ref()
                        .map(|b| b.name.clone())
                        .unwrap_or_default();
                    if let Err(e) = self
                        .state
                        .routing
                        .append(
                            conversation,
                            visitor(&name),
                            NewEvent {
                                body: body.clone(),
                                dedup: None,
                            },
                            Utc::now(),
                        )
                        .await
                    {
                        tracing::warn!(%conversation, error = %e, "cannot log the clear");
                    }
                }
                self.state
                    .routing
                    .start_new(session)
                    .await
                    .map_err(routing_error)?;
                self.state
                    .routing
                    .notify(
                        &Channel::Session(session.to_string()),
                        &Notice::SessionEnded {
                            reason: SessionEndReason::Cleared,
                            except_socket: Some(self.id),
                        },
                    )
                    .await;
                self.respond("StructuredMessage", presence_echo(presence), tracing_id)
                    .await?;
                self.unfollow();
                self.push("SessionClearedEvent", Empty {}).await?;
                return Ok(Flow::Continue);
            }
            // Server-generated; a client's is acknowledged and ignored.
            PresenceKind::SignIn | PresenceKind::Leave => {}
        }
        self.respond("StructuredMessage", presence_echo(presence), tracing_id)
            .await?;
        Ok(Flow::Continue)
    }

    async fn get_jwt(&mut self, token: &str, tracing_id: Option<&str>) -> Result<Flow, Fail> {
        let session = self.session_for(token)?;
        let (jwt, expires) = self
            .state
            .auth
            .issue_scoped(
                HISTORY_AUDIENCE,
                &session.to_string(),
                HISTORY_TOKEN_TTL,
                Utc::now(),
            )
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot issue a history token");
                GuestError::unexpected()
            })?;
        let answer = JwtResponse {
            jwt: jwt.expose_secret().to_owned(),
            exp: expires.timestamp(),
        };
        self.respond("JwtResponse", answer, tracing_id).await?;
        Ok(Flow::Continue)
    }

    async fn get_configuration(
        &mut self,
        deployment_id: Option<&str>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        if let Some(id) = deployment_id {
            self.check_deployment(id).await?;
        }
        let conversations = &self.content.messenger.apps.conversations;
        let answer = ConfigurationResponse {
            deployment_id: self.deployment.meta.id,
            configuration_version: self.config_version.clone(),
            authentication_required: self.content.authentication_settings.enabled,
            allow_session_upgrade: self.content.authentication_settings.allow_session_upgrade,
            max_custom_data_bytes: MAX_CUSTOM_DATA_BYTES,
            max_text_length: MAX_TEXT_CHARS,
            messages_per_second: MESSAGES_PER_WINDOW,
            max_frame_bytes: MAX_CLIENT_MESSAGE_BYTES,
            allowed_media: AllowedMedia::none(),
            blocked_extensions: BLOCKED_EXTENSIONS,
            session_duration_seconds: conversations.session_duration_seconds,
            auto_start: conversations.auto_start.enabled,
            conversation_clear: conversations.conversation_clear.enabled,
        };
        self.respond("ConfigurationResponse", answer, tracing_id)
            .await?;
        Ok(Flow::Continue)
    }

    async fn close_session(
        &mut self,
        token: &str,
        close_all: bool,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let session = self.session_for(token)?;
        if close_all {
            self.state
                .routing
                .notify(
                    &Channel::Session(session.to_string()),
                    &Notice::SessionEnded {
                        reason: SessionEndReason::Closed,
                        except_socket: Some(self.id),
                    },
                )
                .await;
        }
        self.unbind();
        self.respond(
            "SessionResponse",
            SessionResponse::disconnected(),
            tracing_id,
        )
        .await?;
        Ok(Flow::Continue)
    }
}

fn message_body(
    message_type: &str,
    text: Option<String>,
    content: Vec<Value>,
    metadata: Value,
    custom_attributes: Option<Value>,
    client_message_id: Option<String>,
) -> EventBody {
    let metadata = match custom_attributes {
        None => metadata,
        Some(attributes) => {
            let mut map = match metadata {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            map.insert("customAttributes".to_owned(), attributes);
            Value::Object(map)
        }
    };
    EventBody::Message {
        message_type: message_type.to_owned(),
        text,
        content,
        metadata,
        client_message_id,
    }
}

/// The answer to a presence event that was not logged.
fn presence_echo(presence: PresenceKind) -> messages::StructuredMessage {
    let mut echo = messages::echo(None, Utc::now());
    echo.kind = "Event";
    let name = match presence {
        PresenceKind::Join => "Join",
        PresenceKind::Leave => "Leave",
        PresenceKind::Disconnect => "Disconnect",
        PresenceKind::Clear => "Clear",
        PresenceKind::SignIn => "SignIn",
    };
    echo.events
        .push(serde_json::json!({ "eventType": "Presence", "presence": { "type": name } }));
    echo
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    #[test]
    fn expiry_is_decided_by_the_last_activity() {
        let start = Instant::now();
        let mut activity = Activity::new(start, Duration::from_secs(60));
        assert!(!activity.expired(start + Duration::from_secs(59)));
        assert!(activity.expired(start + Duration::from_secs(60)));
        activity.touch(start + Duration::from_secs(30));
        assert!(!activity.expired(start + Duration::from_secs(60)));
        assert!(activity.expired(start + Duration::from_secs(90)));
        // Time does not run backwards.
        activity.touch(start);
        assert_eq!(activity.deadline(), start + Duration::from_secs(90));
    }

    #[test]
    fn oversized_and_invalid_frames_get_close_codes() {
        let e = axum::Error::new(std::io::Error::other(
            "Space limit exceeded: Message too long: 70000 > 65536",
        ));
        assert_eq!(close_for(&e).map(|c| c.0), Some(1009));
        let e = axum::Error::new(std::io::Error::other("IO error: broken pipe"));
        assert_eq!(close_for(&e), None);
    }
}
