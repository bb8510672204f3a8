//! The requests of a bound socket: messages and events, the history token,
//! the configuration, and closing the session. What they mean for the
//! session and its conversation is routing's to decide (see
//! [`crate::routing::visitor::VisitorSocket`]); here they are answered.

use std::collections::BTreeMap;

use chrono::Utc;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Conn, Fail, Flow, HISTORY_AUDIENCE, HISTORY_TOKEN_TTL, history_subject};
use crate::engine::Meter;
use crate::gateway::conn::close_code;
use crate::gateway::guest::frames::{
    AllowedMedia, BLOCKED_EXTENSIONS, ConfigurationResponse, ConnectionClosed, Empty, GuestError,
    GuestEvent, GuestMessage, JwtResponse, MessageKind, SessionResponse,
};
use crate::gateway::guest::messages::{self, GuestPresence};
use crate::limits::{Key, Limiter};
use crate::routing::content::ContentItem;
use crate::routing::model::{EventBody, MessageMetadata, Participant};
use crate::routing::visitor::{Posted, PresenceOutcome};
use crate::routing::{NewEvent, RoutingError};

/// The `tracingId` of the Transport SDK's health check (base64 of
/// "HealthCheckMessageId"), for the logs.
const HEALTH_CHECK_ID: &str = "SGVhbHRoQ2hlY2tNZXNzYWdlSWQ=";

impl Conn {
    pub(super) async fn on_message(
        &mut self,
        token: &str,
        message: GuestMessage,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let is_message = matches!(message.kind, MessageKind::Message { .. });
        let session = self.session_for(token)?;
        // A message naming attachments takes the full path, which checks
        // them against the session's own uploads.
        let plain = matches!(&message.kind, MessageKind::Message { content, .. }
            if !content.iter().any(|item| matches!(item, ContentItem::Attachment { .. })));
        if plain && let Some(from) = self.posting() {
            return self.post_live(session, from, message, tracing_id).await;
        }
        if let Err(refused) = self.rate_limit(session).await {
            if is_message {
                self.state.metrics.message_refused("guest");
            }
            return Err(refused.into());
        }
        self.activity.touch(Instant::now());
        let GuestMessage {
            kind,
            client_id,
            metadata,
        } = message;
        let (body, files) = match kind {
            MessageKind::Message {
                message_type,
                text,
                mut content,
            } => {
                let files = self.resolve_attachments(token, &mut content).await?;
                let body = EventBody::Message {
                    message_type,
                    text,
                    content,
                    metadata,
                    client_message_id: client_id.clone(),
                };
                (body, files)
            }
            MessageKind::Event(GuestEvent::Typing) => return self.typing(tracing_id).await,
            MessageKind::Event(GuestEvent::Presence(presence)) => {
                return self
                    .presence(presence, metadata, client_id, tracing_id)
                    .await;
            }
        };
        self.post(body, client_id, tracing_id, files).await
    }

    /// One event from the session's bucket (across its sockets and nodes),
    /// at its organization's guest rate. The bucket is kept beside the
    /// conversation the socket follows, where a message's append takes
    /// from it in the same step (see [`Conn::post_live`]); a socket that
    /// follows none counts in the session's own.
    async fn rate_limit(&mut self, session: Uuid) -> Result<(), GuestError> {
        let limiter = &self.state.limits;
        let rate = limiter.org(self.deployment.org_id).await.guest_messages;
        let key = Key::GuestMessages { session };
        let admitted = match self.following() {
            Some(conversation) => limiter.admit_beside(conversation, key, rate).await,
            None => limiter.admit(key, rate).await,
        };
        admitted.map_err(|refused| rate_refusal(refused.retry_after))
    }

    /// Counts a posted event once more, in the bucket beside the
    /// conversation it landed in, when that is not where it was counted
    /// (the session's own bucket, or the one beside the conversation the
    /// socket followed): the session's rate goes on from what it spent
    /// instead of starting afresh with the new conversation. Never refuses
    /// what is already logged.
    ///
    /// The charge holds nothing of the socket, so it runs beside whatever
    /// the socket does next.
    fn charge_moved(&self, conversation: Uuid) -> impl Future<Output = ()> + use<> {
        let session = self.bound.as_ref().map(|b| b.session);
        let limiter = self.state.limits.clone();
        let org = self.deployment.org_id;
        async move {
            let Some(session) = session else { return };
            let rate = limiter.org(org).await.guest_messages;
            let _spent = limiter
                .admit_beside(conversation, Key::GuestMessages { session }, rate)
                .await;
        }
    }

    /// The visitor as the followed conversation knows them, while the
    /// socket knows that conversation is live (see `Bound::posting`).
    fn posting(&self) -> Option<Participant> {
        self.bound.as_ref()?.posting.clone()
    }

    /// Posts a message to the followed conversation, known live: the
    /// session's rate, the append and its notice in one engine step, no
    /// read before it. Only the session's current conversation gets here,
    /// so nothing opens and nothing is switched; should the append fail,
    /// the next message reads everything again.
    async fn post_live(
        &mut self,
        session: Uuid,
        from: Participant,
        message: GuestMessage,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let Some(conversation) = self.following() else {
            return Err(GuestError::try_again().into());
        };
        let GuestMessage {
            kind,
            client_id,
            metadata,
        } = message;
        let MessageKind::Message {
            message_type,
            text,
            content,
        } = kind
        else {
            return Err(GuestError::try_again().into());
        };
        let body = EventBody::Message {
            message_type,
            text,
            content,
            metadata,
            client_message_id: client_id.clone(),
        };
        let limiter = &self.state.limits;
        let rate = limiter.org(self.deployment.org_id).await.guest_messages;
        let (id, bucket) = Limiter::bucket_of(&Key::GuestMessages { session }, rate);
        let event = NewEvent {
            body,
            dedup: client_id,
        };
        let posted = self
            .state
            .routing
            .visitor_post_live(
                conversation,
                from,
                event,
                Meter { id: &id, bucket },
                Utc::now(),
            )
            .await;
        let event = match posted {
            Ok((event, _)) => event,
            Err(RoutingError::Limited { retry_after, .. }) => {
                self.state.metrics.message_refused("guest");
                return Err(rate_refusal(retry_after).into());
            }
            Err(e) => {
                self.state.metrics.message_refused("guest");
                self.forget_posting();
                return Err(e.into());
            }
        };
        self.state.metrics.message_accepted("guest");
        self.activity.touch(Instant::now());
        self.acknowledge(&event, tracing_id).await?;
        Ok(Flow::Continue)
    }

    /// Posts a visitor event and answers it with its sequence.
    async fn post(
        &mut self,
        body: EventBody,
        dedup: Option<String>,
        tracing_id: Option<&str>,
        files: Vec<crate::attachments::AttachmentRecord>,
    ) -> Result<Flow, Fail> {
        let routing = self.state.routing.clone();
        let posted = routing
            .visitor_send(&self.visitor()?, NewEvent { body, dedup }, Utc::now())
            .await;
        match &posted {
            Ok(_) => self.state.metrics.message_accepted("guest"),
            Err(_) => self.state.metrics.message_refused("guest"),
        }
        let posted = posted?;
        if !files.is_empty() {
            self.state
                .attachments
                .mark_sent(files, posted.conversation)
                .await;
        }
        // What routing read is where the session's messages now go (a
        // resend answers an older event, which says nothing of now).
        let live = (!posted.duplicate).then(|| posted.event.event.from.clone());
        self.answer_posted(posted, live, tracing_id).await
    }

    /// Answers a posted event, after delivering whatever came before it
    /// that this socket had not seen: a conversation new to the socket is
    /// followed, and sent from its start after the answer. `live` fills
    /// the posting cache (see `Bound::posting`): before the answer's
    /// catch-ups, so that anything they find that ends it empties it.
    async fn answer_posted(
        &mut self,
        posted: Posted,
        live: Option<Participant>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        if posted.switched {
            // Followed from its start: the catch-up after the answer sends
            // it whole, so its newest sequence is not read here.
            let charged = self.charge_moved(posted.conversation);
            let (followed, ()) = tokio::join!(self.follow_from_start(posted.conversation), charged);
            followed?;
        }
        if let Some(bound) = &mut self.bound
            && bound
                .following
                .is_some_and(|(c, _)| c == posted.conversation)
        {
            bound.posting = live;
        }
        self.acknowledge(&posted.event, tracing_id).await?;
        if posted.switched {
            self.catch_up(None).await?;
        }
        Ok(Flow::Continue)
    }

    async fn typing(&mut self, tracing_id: Option<&str>) -> Result<Flow, Fail> {
        let conversation = self.following();
        let visitor = self.visitor()?.visitor.clone();
        if let Some(conversation) = conversation {
            self.state
                .routing
                .visitor_typing(conversation, &visitor)
                .await;
        }
        let echo = messages::typing(conversation, &visitor, Utc::now());
        self.echo_own(echo, tracing_id).await?;
        Ok(Flow::Continue)
    }

    async fn presence(
        &mut self,
        presence: GuestPresence,
        metadata: MessageMetadata,
        client_id: Option<String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let routing = self.state.routing.clone();
        let at = self.visitor()?;
        let visitor = at.visitor.clone();
        let outcome = routing
            .visitor_presence(&at, presence.into(), metadata, client_id, Utc::now())
            .await?;
        let echo = messages::presence(presence, &visitor, Utc::now());
        match outcome {
            PresenceOutcome::Posted(posted) => self.answer_posted(posted, None, tracing_id).await,
            PresenceOutcome::Logged(event) => {
                self.acknowledge(&event, tracing_id).await?;
                Ok(Flow::Continue)
            }
            // Genesys's order: the answer, the session cleared, then the
            // connection closed (the SDK then closes; its next configure
            // gets a new session).
            PresenceOutcome::Cleared => {
                self.echo_own(echo, tracing_id).await?;
                self.unbind();
                self.push("SessionClearedEvent", Empty {}).await?;
                self.push("ConnectionClosedEvent", ConnectionClosed { reason: None })
                    .await?;
                Ok(Flow::Close(close_code::NORMAL, "conversation cleared"))
            }
            PresenceOutcome::Ignored => {
                self.echo_own(echo, tracing_id).await?;
                Ok(Flow::Continue)
            }
        }
    }

    /// A heartbeat. The Transport SDK's health check reads the session's
    /// duration and expiry from the answer's metadata, as strings, to
    /// schedule its expiry notice.
    pub(super) async fn echo(
        &mut self,
        text: Option<String>,
        mut metadata: BTreeMap<String, String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        if self.bound.is_some() {
            let now = Utc::now();
            let remaining = self.activity.remaining(Instant::now());
            let expires = now
                + chrono::Duration::from_std(remaining)
                    .unwrap_or_else(|_| chrono::Duration::zero());
            let duration = super::binding::session_duration(&self.content);
            metadata.insert("durationSeconds".to_owned(), duration.as_secs().to_string());
            metadata.insert("expirationDate".to_owned(), expires.timestamp().to_string());
        }
        if tracing_id == Some(HEALTH_CHECK_ID) {
            tracing::trace!("health check");
        }
        let echo = messages::echo(text, metadata, Utc::now());
        self.respond("StructuredMessage", echo, tracing_id).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn get_jwt(
        &mut self,
        token: &str,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let session = self.session_for(token)?;
        // A signed-in session's history token names its sign-in (the
        // session JWT's `sid`), so it stops working at logout.
        let subject = history_subject(
            self.deployment.org_id,
            session,
            self.bound.as_ref().and_then(|b| b.family),
        );
        let (jwt, expires) = self
            .state
            .auth
            .issue_scoped(HISTORY_AUDIENCE, &subject, HISTORY_TOKEN_TTL, Utc::now())
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot issue a history token");
                GuestError::try_again()
            })?;
        let answer = JwtResponse {
            jwt: jwt.expose_secret().to_owned(),
            exp: expires.timestamp(),
        };
        self.respond("JwtResponse", answer, tracing_id).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn get_configuration(
        &mut self,
        deployment_id: Option<&str>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        if let Some(id) = deployment_id {
            self.check_deployment(id).await?;
        }
        let conversations = &self.content.messenger.apps.conversations;
        let guest_rate = self
            .state
            .limits
            .org(self.deployment.org_id)
            .await
            .guest_messages;
        // Whole messages a second, as the field always was; a rate slower
        // than one a second reads as 1.
        let messages_per_second = (guest_rate.per_second().floor() as u64).max(1);
        let limits = self.state.limits.current();
        let answer = ConfigurationResponse {
            deployment_id: self.deployment.meta.id,
            configuration_version: self.config_version.clone(),
            authentication_required: self.content.authentication_settings.enabled,
            allow_session_upgrade: self.content.authentication_settings.allow_session_upgrade,
            max_custom_data_bytes: limits.message.custom_data_bytes,
            max_text_length: limits.message.text_chars,
            messages_per_second,
            max_frame_bytes: limits.max_frame_bytes,
            allowed_media: AllowedMedia::of(
                &self.content.messenger.file_upload,
                self.state.attachments.available(),
            ),
            blocked_extensions: BLOCKED_EXTENSIONS,
            session_duration_seconds: conversations.session_duration_seconds,
            auto_start: conversations.auto_start.enabled,
            conversation_clear: conversations.conversation_clear.enabled,
        };
        self.respond("ConfigurationResponse", answer, tracing_id)
            .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn close_session(
        &mut self,
        token: &str,
        close_all: bool,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        self.session_for(token)?;
        if close_all {
            self.state
                .routing
                .close_visitor_sockets(&self.visitor()?)
                .await;
        }
        let read_only = self.read_only_now().await;
        self.unbind();
        self.respond(
            "SessionResponse",
            SessionResponse::disconnected(
                read_only,
                self.state.limits.current().message.custom_data_bytes,
            ),
            tracing_id,
        )
        .await?;
        Ok(Flow::Continue)
    }
}

/// The answer to a message over the session's rate.
fn rate_refusal(retry_after: std::time::Duration) -> GuestError {
    GuestError::too_many_for("Message rate too high for this session", retry_after)
}
