//! The requests of a bound socket: messages and events, the history token,
//! the configuration, and closing the session. What they mean for the
//! session and its conversation is routing's to decide (see
//! [`crate::routing::visitor::VisitorSocket`]); here they are answered.

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    Conn, Fail, Flow, HISTORY_AUDIENCE, HISTORY_TOKEN_TTL, MESSAGES_PER_WINDOW, RATE_WINDOW,
};
use crate::engine::Space;
use crate::gateway::MAX_CLIENT_MESSAGE_BYTES;
use crate::gateway::guest::frames::{
    AllowedMedia, BLOCKED_EXTENSIONS, ConfigurationResponse, Empty, GuestError, GuestEvent,
    GuestMessage, JwtResponse, MAX_CUSTOM_DATA_BYTES, MAX_TEXT_CHARS, MessageKind, SessionResponse,
};
use crate::gateway::guest::messages;
use crate::routing::NewEvent;
use crate::routing::model::{EventBody, PresenceKind};
use crate::routing::visitor::{Posted, PresenceOutcome, visitor_participant};

impl Conn {
    pub(super) async fn on_message(
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
        let (message_type, text, content) = match kind {
            MessageKind::Text { text } => ("Text", Some(text), Vec::new()),
            MessageKind::Structured { text, content } => ("Structured", text, content),
            MessageKind::Event(GuestEvent::Typing) => return self.typing(tracing_id).await,
            MessageKind::Event(GuestEvent::Presence(presence)) => {
                return self.presence(presence, client_id, tracing_id).await;
            }
        };
        let body = message_body(
            message_type,
            text,
            content,
            metadata,
            custom_attributes,
            client_id.clone(),
        );
        self.post(body, client_id, tracing_id).await
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

    /// Posts a visitor event and answers it with its sequence.
    async fn post(
        &mut self,
        body: EventBody,
        dedup: Option<String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let routing = self.state.routing.clone();
        let posted = routing
            .visitor_send(&self.visitor()?, NewEvent { body, dedup }, Utc::now())
            .await?;
        self.answer_posted(posted, tracing_id).await
    }

    /// Answers a posted event, after delivering whatever came before it
    /// that this socket had not seen: a conversation new to the socket is
    /// followed, and sent from its start after the answer.
    async fn answer_posted(
        &mut self,
        posted: Posted,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        if posted.switched {
            self.follow(posted.conversation).await?;
        }
        self.acknowledge(&posted.event, tracing_id).await?;
        if posted.switched {
            self.catch_up(None).await?;
        }
        Ok(Flow::Continue)
    }

    async fn typing(&mut self, tracing_id: Option<&str>) -> Result<Flow, Fail> {
        let conversation = self.following();
        let name = self
            .bound
            .as_ref()
            .map(|b| b.name.clone())
            .unwrap_or_default();
        if let Some(conversation) = conversation {
            self.state.routing.visitor_typing(conversation, &name).await;
        }
        let from = visitor_participant(&name);
        let mut echo = messages::typing(conversation.unwrap_or_default(), &from, Utc::now());
        if conversation.is_none() {
            echo.conversation_id = None;
            echo.metadata.clear();
        }
        self.respond("StructuredMessage", echo, tracing_id).await?;
        Ok(Flow::Continue)
    }

    async fn presence(
        &mut self,
        presence: PresenceKind,
        client_id: Option<String>,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let routing = self.state.routing.clone();
        let outcome = routing
            .visitor_presence(&self.visitor()?, presence, client_id, Utc::now())
            .await?;
        match outcome {
            PresenceOutcome::Posted(posted) => return self.answer_posted(posted, tracing_id).await,
            PresenceOutcome::Logged(event) => {
                self.acknowledge(&event, tracing_id).await?;
                return Ok(Flow::Continue);
            }
            PresenceOutcome::Cleared => {
                self.respond("StructuredMessage", presence_echo(presence), tracing_id)
                    .await?;
                self.unfollow();
                self.push("SessionClearedEvent", Empty {}).await?;
                return Ok(Flow::Continue);
            }
            PresenceOutcome::Ignored => {}
        }
        self.respond("StructuredMessage", presence_echo(presence), tracing_id)
            .await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn get_jwt(
        &mut self,
        token: &str,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
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

    pub(super) async fn get_configuration(
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
