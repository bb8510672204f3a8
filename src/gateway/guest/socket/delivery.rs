//! The bus and the log: delivering the current conversation in order (the
//! [`Cursor`] decides what is next, what is a duplicate and when the log
//! must be read), and what the session's channel and the revocations say.
//! A bus resync reads the log too.

use chrono::Utc;
use tokio::sync::broadcast;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Conn, Fail, Flow};
use crate::auth::refresh;
use crate::auth::visitor_token::RevokedSession;
use crate::engine::{BusMessage, EntryNotice};
use crate::gateway::conn::{Gone, close_code};
use crate::gateway::cursor::{Cursor, Step};
use crate::gateway::guest::frames::{ConnectionClosed, Empty, GuestError};
use crate::gateway::guest::messages;
use crate::routing::model::{
    EventBody, LogEvent, Notice, ParticipantRole, PresenceKind, SequencedEvent, SessionEndReason,
};

/// Log entries read per round when catching up.
const CATCH_UP_BATCH: usize = 200;

impl Conn {
    /// The conversation the socket shows.
    pub(super) fn following(&self) -> Option<Uuid> {
        self.bound
            .as_ref()
            .and_then(|b| b.following.map(|(conversation, _)| conversation))
    }

    /// The cursor of `conversation`, if the socket shows it.
    fn cursor(&mut self, conversation: Uuid) -> Option<&mut Cursor> {
        match self.bound.as_mut()?.following.as_mut()? {
            (current, cursor) if *current == conversation => Some(cursor),
            _ => None,
        }
    }

    /// Forgets that the followed conversation is live (see
    /// `Bound::posting`): the next message reads the session and the
    /// conversation again.
    pub(super) fn forget_posting(&mut self) {
        if let Some(bound) = &mut self.bound {
            bound.posting = None;
        }
    }

    /// Delivers one logged event of the current conversation if the client
    /// does not have it (the caller made sure nothing lies before it).
    async fn deliver(&mut self, event: &SequencedEvent) -> Result<(), Gone> {
        if changes_posting(event) {
            self.forget_posting();
        }
        let new = self
            .cursor(event.conversation_id)
            .is_some_and(|cursor| cursor.advance(event.seq));
        if !new {
            return Ok(());
        }
        if event.event.from.role == ParticipantRole::Visitor || messages::is_message(event) {
            // The visitor was active in another tab, or someone wrote: the
            // Transport SDK extends the session on every message sent or
            // received, so the server does too.
            self.activity.touch(Instant::now());
        }
        let Some(mut message) = messages::from_log(event, self.read_only_setting()) else {
            return Ok(());
        };
        self.state
            .attachments
            .refresh(self.deployment.org_id, &mut message.content, Utc::now());
        let sent = self.push("StructuredMessage", message).await;
        if messages::is_message(event) {
            match sent {
                Ok(()) => self.state.metrics.messages_delivered("guest", 1),
                Err(Gone) => self.state.metrics.messages_dropped("guest", 1),
            }
        }
        sent
    }

    /// Reads the current conversation's log after the last delivered
    /// sequence and delivers it: everything, or up to `upto`.
    pub(super) async fn catch_up(&mut self, upto: Option<u64>) -> Result<(), Gone> {
        loop {
            let Some((conversation, cursor)) = self.bound.as_ref().and_then(|b| b.following) else {
                return Ok(());
            };
            let Some(limit) = cursor.to_read(upto, CATCH_UP_BATCH) else {
                return Ok(());
            };
            let events = match self
                .state
                .routing
                .events_after(conversation, cursor.last(), limit)
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
            if let Some(cursor) = self.cursor(conversation) {
                cursor.advance(newest);
            }
            if events.len() < limit {
                return Ok(());
            }
        }
    }

    /// Answers the socket's own event (see [`Conn::echo_own`]): earlier
    /// events it has not seen go first, and its live notice is then a
    /// duplicate.
    pub(super) async fn acknowledge(
        &mut self,
        event: &SequencedEvent,
        tracing_id: Option<&str>,
    ) -> Result<(), Fail> {
        let ahead = self
            .cursor(event.conversation_id)
            .is_some_and(|cursor| cursor.step(event.seq) != Step::Duplicate);
        if ahead {
            self.catch_up(Some(event.seq.saturating_sub(1))).await?;
            if let Some(cursor) = self.cursor(event.conversation_id) {
                cursor.advance(event.seq);
            }
        }
        match messages::from_log(event, self.read_only_setting()) {
            Some(mut message) => {
                self.state.attachments.refresh(
                    self.deployment.org_id,
                    &mut message.content,
                    Utc::now(),
                );
                Ok(self.echo_own(message, tracing_id).await?)
            }
            // A visitor's event always has a guest view; were it not so, an
            // error is what a client can decode, not an empty message.
            None => {
                tracing::error!(conversation = %event.conversation_id, seq = event.seq, "a visitor's event has no guest view");
                Err(GuestError::try_again().into())
            }
        }
    }

    pub(super) async fn on_conversation_bus(&mut self, message: BusMessage) -> Result<(), Gone> {
        let payload = match message {
            BusMessage::Resync => {
                self.forget_posting();
                return self.catch_up(None).await;
            }
            BusMessage::Payload(payload) => payload,
        };
        if let Some(entry) = EntryNotice::parse(&payload) {
            // The feed is the followed conversation's channel.
            let Some((conversation, cursor)) = self.bound.as_ref().and_then(|b| b.following) else {
                return Ok(());
            };
            // Decided on the sequence alone: what the socket has (its own
            // message, which it answered) is dropped without decoding.
            return match cursor.step(entry.seq) {
                Step::Duplicate => Ok(()),
                Step::Deliver => match serde_json::from_slice::<LogEvent>(entry.body) {
                    Ok(event) => {
                        let event = SequencedEvent {
                            conversation_id: conversation,
                            seq: entry.seq,
                            event,
                        };
                        self.deliver(&event).await
                    }
                    // The log has it as well: reading it logs the error.
                    Err(_) => self.catch_up(None).await,
                },
                // A gap: something was missed; the log has it.
                Step::CatchUp => self.catch_up(None).await,
            };
        }
        match serde_json::from_slice::<Notice>(&payload) {
            Ok(Notice::Typing {
                conversation_id,
                from,
            }) => {
                if from.role != ParticipantRole::Visitor
                    && self.following() == Some(conversation_id)
                {
                    let typing = messages::typing(Some(conversation_id), &from, Utc::now());
                    self.push("StructuredMessage", typing).await
                } else {
                    Ok(())
                }
            }
            // The conversation's routing changed (it may have ended).
            Ok(Notice::Changed { .. }) => {
                self.forget_posting();
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable conversation notice");
                Ok(())
            }
        }
    }

    pub(super) async fn on_session_bus(&mut self, message: BusMessage) -> Flow {
        let notice = match message {
            BusMessage::Resync => {
                self.forget_posting();
                return self.resync_session().await;
            }
            BusMessage::Payload(payload) => match serde_json::from_slice::<Notice>(&payload) {
                Ok(notice) => notice,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable session notice");
                    self.forget_posting();
                    return Flow::Continue;
                }
            },
        };
        // Whatever it says, the session may no longer post where the
        // socket thought; except that the conversation it follows is the
        // session's (its own first message there says so too).
        if !matches!(notice, Notice::Changed { conversation_id } if self.following() == Some(conversation_id))
        {
            self.forget_posting();
        }
        match notice {
            Notice::SessionEnded {
                reason,
                except_socket,
            } => {
                if except_socket == Some(self.id) {
                    return Flow::Continue;
                }
                match reason {
                    SessionEndReason::Logout => self.logout().await,
                    SessionEndReason::Closed => self.closed(None).await,
                    SessionEndReason::SignedIn => self.closed(Some("signedIn")).await,
                    // As on the socket that cleared: the SDK wipes the
                    // conversation, then closes.
                    SessionEndReason::Cleared => {
                        self.unbind();
                        match self.push("SessionClearedEvent", Empty {}).await {
                            Ok(()) => self.closed(None).await,
                            Err(Gone) => Flow::Gone,
                        }
                    }
                }
            }
            // Another socket of the session opened a conversation.
            Notice::Changed { conversation_id } => self.switch_to(conversation_id).await.into(),
            Notice::Upload(outcome) if self.bound.is_some() => self.on_upload(outcome).await.into(),
            _ => Flow::Continue,
        }
    }

    /// Follows a conversation another socket of the session opened, from
    /// its start. The notice may be older than what this socket did since
    /// (a sign-in that started the session over, a new chat): it is
    /// followed only while it is still the session's conversation.
    async fn switch_to(&mut self, conversation: Uuid) -> Result<(), Gone> {
        let Some(session) = self.bound.as_ref().map(|b| b.session) else {
            return Ok(());
        };
        if self.following() == Some(conversation) {
            return Ok(());
        }
        match self
            .state
            .routing
            .session(self.deployment.org_id, session)
            .await
        {
            Ok(Some(current)) if current.conversation_id == Some(conversation) => {}
            _ => return Ok(()),
        }
        if self.follow_from_start(conversation).await.is_err() {
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
        match self.state.routing.session(self.deployment.org_id, id).await {
            Ok(Some(session)) => match session.conversation_id {
                Some(conversation) => self.switch_to(conversation).await.into(),
                None => Flow::Continue,
            },
            _ => Flow::Continue,
        }
    }

    async fn logout(&mut self) -> Flow {
        match self.push("LogoutEvent", Empty {}).await {
            Ok(()) => Flow::Close(close_code::NORMAL, "logged out"),
            Err(Gone) => Flow::Gone,
        }
    }

    async fn closed(&mut self, reason: Option<&'static str>) -> Flow {
        match self
            .push("ConnectionClosedEvent", ConnectionClosed { reason })
            .await
        {
            Ok(()) => Flow::Close(close_code::NORMAL, "connection closed"),
            Err(Gone) => Flow::Gone,
        }
    }

    pub(super) async fn on_revocation(
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
    pub(super) async fn check_revoked(&mut self) -> Flow {
        let Some(family) = self.bound.as_ref().and_then(|b| b.family) else {
            return Flow::Continue;
        };
        match refresh::family_revoked(self.state.store.engine(), family).await {
            Ok(true) => self.logout().await,
            _ => Flow::Continue,
        }
    }
}

/// Whether a logged event may change where the visitor's next message goes
/// or as whom (see `Bound::posting`): anything but a message or an agent's
/// join (the end marker, a disconnect, a sign-in, a transfer's leave).
fn changes_posting(event: &SequencedEvent) -> bool {
    match &event.event.body {
        EventBody::Message { .. } => false,
        EventBody::Presence { presence, .. } => *presence != PresenceKind::Join,
        EventBody::Transfer { .. } | EventBody::Ended { .. } => true,
    }
}
