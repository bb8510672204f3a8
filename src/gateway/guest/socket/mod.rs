//! One guest socket: a task running one `select!` loop over the socket, its
//! bus subscriptions (the session's channel, the session JWT's family once
//! authenticated, the current conversation), this node's revocations, the
//! ping and session-expiry timers, and the node's shutdown.
//!
//! - this file: the loop, the client's frames, and sending;
//! - `binding`: configuring a session and binding the socket to it;
//! - `delivery`: the bus, and delivering the current conversation's log
//!   in order by its [`Cursor`];
//! - `requests`: the other requests.
//!
//! Every new subscription is made before the log is read, so nothing falls
//! between the two.

mod attachments;
mod binding;
mod delivery;
mod requests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::store::types::OrgId;

use self::binding::Activity;
use super::frames::{self, GuestError, Request};
use crate::app::AppState;
use crate::auth::visitor_token::RevokedSession;
use crate::gateway::PING_INTERVAL;
use crate::gateway::conn::{self, Feeds, Gone, ReadError, close_code};
use crate::gateway::cursor::Cursor;
use crate::routing::RoutingError;
use crate::routing::model::Participant;
use crate::routing::visitor::{VisitorError, VisitorSocket};
use crate::store::Admitted;
use crate::store::records::{ConfigurationContent, Deployment};
use crate::telemetry::traces::MESSAGE_TARGET;
use secrecy::ExposeSecret;

/// Audience of the `getJwt` token, which only the history endpoint takes.
pub const HISTORY_AUDIENCE: &str = "switchboard:history";

/// The subject of a history token: the organization and guest session,
/// and for a signed-in session the sign-in it was issued under
/// (`<org>.<session>/<sid>`). The organization says where the session
/// lives.
pub fn history_subject(org: OrgId, session: Uuid, family: Option<Uuid>) -> String {
    match family {
        Some(family) => format!("{org}.{session}/{family}"),
        None => format!("{org}.{session}"),
    }
}

/// The organization, guest session and sign-in a history token's subject
/// names; `None` for a subject that is neither form (a token from before
/// organizations were named in it: the client asks for a new one).
pub fn parse_history_subject(subject: &str) -> Option<(OrgId, Uuid, Option<Uuid>)> {
    let (org, rest) = subject.split_once('.')?;
    let org = OrgId(Uuid::parse_str(org).ok()?);
    match rest.split_once('/') {
        Some((session, family)) => Some((
            org,
            Uuid::parse_str(session).ok()?,
            Some(Uuid::parse_str(family).ok()?),
        )),
        None => Some((org, Uuid::parse_str(rest).ok()?, None)),
    }
}
pub const HISTORY_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// What the loop does after one event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Send a close frame with this code and reason, then end.
    Close(u16, &'static str),
    /// The client is gone (or unresponsive): end without ceremony.
    Gone,
}

impl From<Result<(), Gone>> for Flow {
    fn from(sent: Result<(), Gone>) -> Self {
        match sent {
            Ok(()) => Flow::Continue,
            Err(Gone) => Flow::Gone,
        }
    }
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

impl From<RoutingError> for Fail {
    fn from(e: RoutingError) -> Self {
        Fail::Guest(routing_error(e))
    }
}

/// The bus subscriptions of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Feed {
    /// The session's channel.
    Session,
    /// The session JWT's family, for an authenticated socket.
    Family,
    /// The current conversation's channel.
    Conversation,
}

/// What the socket is bound to once configured.
#[derive(Debug)]
struct Bound {
    session: Uuid,
    /// The session JWT's family (`sid`), for an authenticated socket.
    family: Option<Uuid>,
    /// The visitor the socket speaks for: what agents call them, and
    /// whether (and as whom) they signed in.
    visitor: Participant,
    /// The current conversation, and what of it the client has.
    following: Option<(Uuid, Cursor)>,
    /// The posting cache: `Some` while the followed conversation is known
    /// to be the session's and live, with the visitor as the conversation
    /// knows them. A message then goes straight to its log, one engine step
    /// (see [`Routing::visitor_post_live`]), instead of reading the session
    /// and the conversation first.
    ///
    /// Why it stays correct: it is filled only from a read made while the
    /// socket was subscribed to the session's and the conversation's
    /// channels, and emptied by anything on them that could change what
    /// was read: any notice on the session's channel (another socket opened
    /// a conversation, started a new chat, signed in or cleared), a
    /// routing change of the conversation (its end first of all), an event
    /// in its log other than a message or an agent's join (a sign-in, a
    /// disconnect, the end marker: seen live or when the log is read), and
    /// any resync (a notice may have been lost). It is emptied whenever the
    /// socket follows another conversation or none. What it does not cover
    /// is what the reads never covered either: a message racing with a
    /// change made elsewhere (then as now it lands before the change's
    /// notice reaches the socket).
    ///
    /// [`Routing::visitor_post_live`]: crate::routing::Routing::visitor_post_live
    posting: Option<Participant>,
}

struct Conn {
    state: AppState,
    ws: WebSocket,
    /// This socket, so a notice can spare its sender.
    id: Uuid,
    deployment: Arc<Deployment>,
    content: Arc<ConfigurationContent>,
    config_version: String,
    bound: Option<Bound>,
    feeds: Feeds<Feed>,
    revocations: Option<broadcast::Receiver<RevokedSession>>,
    activity: Activity,
    /// When the client last sent anything (a pong included).
    last_seen: Instant,
    /// The client's address, which limits on new sessions and
    /// conversations count.
    client: IpAddr,
}

/// What a socket starts from, boxed while the upgrade completes: the
/// upgrade's callback holds it for as long as the socket lives, so it holds
/// one pointer rather than the whole application state.
pub(super) struct Start {
    pub state: AppState,
    pub admitted: Admitted,
    pub client: IpAddr,
}

/// The socket's task. Not an `async fn`: its arguments would stay in the
/// task beside the [`Conn`] they are moved into (an async fn keeps its
/// arguments for its whole life), so the `Conn` is built first and the
/// future holds it alone; with tens of thousands of idle visitors, every
/// byte of it counts that many times.
pub(super) fn run(start: Box<Start>, ws: WebSocket) -> impl Future<Output = ()> + Send {
    let Start {
        state,
        admitted,
        client,
    } = *start;
    let mut open = conn::Open::new(&state, "guest");
    let now = Instant::now();
    let duration = binding::session_duration(&admitted.content);
    let revocations = Some(state.visitor_tokens.subscribe());
    let mut conn = Conn {
        id: Uuid::new_v4(),
        ws,
        deployment: admitted.deployment,
        content: admitted.content,
        config_version: admitted.version,
        bound: None,
        feeds: Feeds::default(),
        revocations,
        activity: Activity::new(now, duration),
        last_seen: now,
        client,
        state,
    };
    async move {
        let code = Box::pin(conn.serve()).await;
        if let Some(session) = conn.watched_session() {
            conn.state.push.offline(session).await;
        }
        open.ended(code);
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

/// 4007 only when the session itself is gone: the SDK takes it as the end
/// of the session. Anything transient is 503 (see [`GuestError::try_again`]).
fn routing_error(e: RoutingError) -> GuestError {
    match e {
        RoutingError::ReadOnly => GuestError::forbidden("conversation is read only"),
        RoutingError::UnknownSession => GuestError::not_configured(),
        RoutingError::NotAllowed(message) => GuestError::forbidden(message),
        RoutingError::Limited { what, retry_after } => {
            GuestError::too_many_for(format!("Too many {what}"), retry_after)
        }
        e @ (RoutingError::UnknownConversation
        | RoutingError::Contended
        | RoutingError::Store(_)) => {
            tracing::warn!(error = %e, "guest request failed");
            GuestError::try_again()
        }
    }
}

/// The refusal of `action`: a transient failure of a message is answered
/// so that the SDK fails the message (the app may resend) rather than
/// leave it pending.
fn refusal(action: &str, error: GuestError) -> GuestError {
    if error.code == GuestError::try_again().code && action == "onMessage" {
        GuestError::message_try_again()
    } else {
        error
    }
}

impl From<VisitorError> for Fail {
    fn from(e: VisitorError) -> Self {
        Fail::Guest(match e {
            VisitorError::OtherDeployment => {
                GuestError::forbidden("this session belongs to another deployment")
            }
            VisitorError::Downgrade => GuestError::new(
                4017,
                "cannot downgrade an authenticated session to a guest one",
            ),
            VisitorError::AuthenticationRequired => GuestError::auth_required(),
            e @ VisitorError::OtherVisitor => GuestError::auth_failed(&e.to_string()),
            VisitorError::ClearDisabled => GuestError::clear_disabled(),
            VisitorError::Routing(e) => routing_error(e),
        })
    }
}

impl Conn {
    /// Serves the socket until it ends; answers the close code sent, if any.
    async fn serve(&mut self) -> Option<u16> {
        let shutdown = self.state.shutdown.clone().signalled();
        tokio::pin!(shutdown);
        // One timer for the server's pings and the session's expiry, set to
        // whichever comes first: every idle visitor holds it.
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let timer = tokio::time::sleep_until(next_ping);
        tokio::pin!(timer);
        loop {
            let expiry = self.bound.is_some().then(|| self.activity.deadline());
            let wake = expiry.map_or(next_ping, |expiry| expiry.min(next_ping));
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            // The handlers run boxed: an idle socket spends its life parked
            // in this `select!`, and an unboxed handler would make every
            // idle socket's task as large as the deepest request it might
            // ever serve (about 5 KiB), instead of a box that exists only
            // while a frame or notice is being handled.
            let flow = tokio::select! {
                () = &mut shutdown => Flow::Close(close_code::GOING_AWAY, "going away"),
                frame = self.ws.recv() => Box::pin(self.on_frame(frame)).await,
                Some((feed, message)) = self.feeds.next() => match feed {
                    Feed::Session | Feed::Family => Box::pin(self.on_session_bus(message)).await,
                    Feed::Conversation => Box::pin(self.on_conversation_bus(message)).await.into(),
                },
                revoked = recv_revocation(&mut self.revocations) => {
                    Box::pin(self.on_revocation(revoked)).await
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if expiry.is_some_and(|expiry| now >= expiry) {
                        Box::pin(self.on_expiry()).await
                    } else {
                        // Late wake-ups push the next ping back rather than
                        // sending a burst of them.
                        next_ping = now + PING_INTERVAL;
                        Box::pin(self.on_ping()).await
                    }
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => {
                    conn::close(&mut self.ws, code, reason).await;
                    return Some(code);
                }
                Flow::Gone => return None,
            }
        }
    }

    /// The bound socket as routing's visitor rules see it.
    fn visitor(&self) -> Result<VisitorSocket<'_>, GuestError> {
        let bound = self.bound.as_ref().ok_or_else(GuestError::not_configured)?;
        Ok(VisitorSocket {
            session: bound.session,
            socket: self.id,
            visitor: &bound.visitor,
            following: self.following(),
            deployment: &self.deployment,
            content: &self.content,
            client: Some(self.client),
        })
    }

    // ---- sending --------------------------------------------------------

    async fn respond<B: Serialize>(
        &mut self,
        class: &str,
        body: B,
        tracing_id: Option<&str>,
    ) -> Result<(), Gone> {
        conn::send_text(&mut self.ws, frames::response(class, body, tracing_id)).await
    }

    async fn push<B: Serialize>(&mut self, class: &str, body: B) -> Result<(), Gone> {
        conn::send_text(&mut self.ws, frames::push(class, body)).await
    }

    /// Echoes the visitor's own `onMessage` (see [`frames::own_message`]).
    async fn echo_own<B: Serialize>(
        &mut self,
        body: B,
        tracing_id: Option<&str>,
    ) -> Result<(), Gone> {
        let frame = frames::own_message("StructuredMessage", body, tracing_id);
        conn::send_text(&mut self.ws, frame).await
    }

    async fn answer_error(&mut self, error: &GuestError, tracing_id: Option<&str>) -> Flow {
        conn::send_text(&mut self.ws, frames::error(error, tracing_id))
            .await
            .into()
    }

    // ---- the client's frames ---------------------------------------------

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Flow {
        let message = match frame {
            None => return Flow::Gone,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                let (code, reason) = match ReadError::of(&e) {
                    ReadError::TooBig => (close_code::TOO_BIG, "frame too large"),
                    ReadError::InvalidUtf8 => (close_code::INVALID_DATA, "invalid UTF-8"),
                    ReadError::Broken => return Flow::Gone,
                };
                tracing::info!(code, error = %e, "guest socket refused a frame");
                return Flow::Close(code, reason);
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
            // Answered with a close frame (RFC 6455 5.5.1): the Transport
            // SDK on Android waits for it to close cleanly.
            Message::Close(frame) => Flow::Close(
                frame.map_or(close_code::NORMAL, |f| f.code),
                "closed by the client",
            ),
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let limits = self.state.limits.current();
        if text.len() > limits.max_frame_bytes {
            return Flow::Close(close_code::TOO_BIG, "frame too large");
        }
        let parsed = match frames::parse(text, &limits.message) {
            Ok(parsed) => parsed,
            Err(rejected) => {
                return self
                    .answer_error(&rejected.error, rejected.tracing_id.as_deref())
                    .await;
            }
        };
        let tracing_id = parsed.tracing_id.as_deref();
        let token = parsed
            .token
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .unwrap_or_default();
        let action = parsed.request.action();
        let span = tracing::debug_span!(
            target: MESSAGE_TARGET,
            "guest message",
            otel.name = %format_args!("guest {action}"),
            action,
        );
        let result = async {
            match parsed.request {
                Request::ConfigureSession(configure) => {
                    self.configure_session(token, configure, tracing_id).await
                }
                Request::ConfigureAuthenticatedSession { configure, code } => {
                    self.configure_authenticated(token, configure, code.expose_secret(), tracing_id)
                        .await
                }
                Request::OnMessage(message) => self.on_message(token, *message, tracing_id).await,
                Request::Echo { text, metadata } => self.echo(text, metadata, tracing_id).await,
                Request::GetJwt => self.get_jwt(token, tracing_id).await,
                Request::GetConfiguration { deployment_id } => {
                    self.get_configuration(deployment_id.as_deref(), tracing_id)
                        .await
                }
                Request::CloseSession { close_all } => {
                    self.close_session(token, close_all, tracing_id).await
                }
                Request::OnAttachment(upload) => {
                    self.on_attachment(token, upload, tracing_id).await
                }
                Request::GetAttachment { attachment_id } => {
                    self.get_attachment(token, attachment_id, tracing_id).await
                }
                Request::DeleteAttachment { attachment_id } => {
                    self.delete_attachment(token, attachment_id, tracing_id)
                        .await
                }
            }
        }
        .instrument(span)
        .await;
        match result {
            Ok(flow) => flow,
            Err(Fail::Gone) => Flow::Gone,
            Err(Fail::Guest(error)) => {
                tracing::debug!(action, code = error.code, "guest request refused");
                self.answer_error(&refusal(action, error), tracing_id).await
            }
        }
    }

    // ---- timers ------------------------------------------------------------

    async fn on_ping(&mut self) -> Flow {
        if conn::silent(self.last_seen) {
            tracing::debug!("guest socket silent for two ping intervals");
            return Flow::Gone;
        }
        // A revocation on another node reaches this socket at the latest
        // here.
        let flow = self.check_revoked().await;
        if flow != Flow::Continue {
            return flow;
        }
        if let Some(session) = self.watched_session() {
            self.state.push.online(session).await;
        }
        conn::ping(&mut self.ws).await.into()
    }

    /// The bound session, when its presence matters: the node sends push
    /// notifications and the deployment's apps receive them. Such a
    /// session is marked online while this socket lives, so its visitor is
    /// not pushed what the socket shows.
    fn watched_session(&self) -> Option<Uuid> {
        let notifications = self.content.messenger.apps.conversations.notifications;
        let bound = self.bound.as_ref()?;
        (self.state.push.enabled() && notifications.enabled).then_some(bound.session)
    }

    async fn on_expiry(&mut self) -> Flow {
        if !self.activity.expired(Instant::now()) {
            return Flow::Continue;
        }
        match self.push("SessionExpiredEvent", frames::Empty {}).await {
            Ok(()) => Flow::Close(close_code::NORMAL, "session expired"),
            Err(Gone) => Flow::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn transient_failures_are_codes_the_sdk_acts_on() {
        // Never 5000, which the SDK ignores (a configure would hang).
        for e in [
            RoutingError::Contended,
            RoutingError::UnknownConversation,
            RoutingError::Store(StoreError::NotFound),
        ] {
            assert_eq!(routing_error(e).code, 503);
        }
        assert_eq!(routing_error(RoutingError::UnknownSession).code, 4007);
        let configure = refusal("configureSession", GuestError::try_again());
        assert_eq!(configure.code, 503);
        let message = refusal("onMessage", GuestError::try_again());
        assert_eq!(message.code, 4029);
        let other = refusal("onMessage", GuestError::new(4011, "message too long"));
        assert_eq!(other.code, 4011);
    }
}
