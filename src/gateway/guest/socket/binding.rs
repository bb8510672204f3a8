//! Configuring a session and binding the socket to it: which session a
//! token names, whether it may be used as a guest or signed in (routing
//! decides), the subscriptions, the answer, and the replay on resume.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Bound, Conn, Fail, Feed, Flow, routing_error};
use crate::auth::visitor_token::SessionError;
use crate::engine::Channel;
use crate::gateway::cursor::Cursor;
use crate::gateway::guest::frames::{
    AllowedMedia, BLOCKED_EXTENSIONS, Configure, GuestError, SessionResponse,
};
use crate::gateway::guest::messages::{self, GuestPresence};
use crate::limits::{self, Key};
use crate::routing::Routing;
use crate::routing::model::{self, GuestSession, Participant};
use crate::routing::visitor::{Opened, StepUp, VisitorSocket};
use crate::store::Refused;
use crate::store::records::ConfigurationContent;

/// When a session expires for lack of visitor activity. Time is a
/// parameter, so the decision is testable without sleeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Activity {
    last: Instant,
    duration: Duration,
}

impl Activity {
    pub(super) fn new(now: Instant, duration: Duration) -> Self {
        Self {
            last: now,
            duration,
        }
    }

    /// The visitor did something at `now`.
    pub(super) fn touch(&mut self, now: Instant) {
        if now > self.last {
            self.last = now;
        }
    }

    pub(super) fn set_duration(&mut self, duration: Duration) {
        self.duration = duration;
    }

    pub(super) fn deadline(&self) -> Instant {
        self.last
            .checked_add(self.duration)
            .unwrap_or_else(|| self.last + Duration::from_secs(365 * 24 * 3600))
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// How long until the session expires, from `now`.
    pub(super) fn remaining(&self, now: Instant) -> Duration {
        self.deadline().saturating_duration_since(now)
    }
}

pub(super) fn session_duration(content: &ConfigurationContent) -> Duration {
    Duration::from_secs(u64::from(
        content
            .messenger
            .apps
            .conversations
            .session_duration_seconds
            .max(60),
    ))
}

impl Conn {
    /// The frame's deployment must be the one this socket was admitted for;
    /// its configuration is read again, so a newly published version counts.
    pub(super) async fn check_deployment(&mut self, deployment_id: &str) -> Result<(), GuestError> {
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
            Err(Refused::Store(_)) => Err(GuestError::try_again()),
            Err(_) => Err(GuestError::forbidden("the deployment is not active")),
        }
    }

    pub(super) async fn configure_session(
        &mut self,
        token: &str,
        configure: Configure,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        self.check_deployment(&configure.deployment_id).await?;
        // With step-up allowed, a visitor starts as a guest and signs in on
        // the same session later.
        let settings = &self.content.authentication_settings;
        let required = settings.enabled && !settings.allow_session_upgrade;
        if !required {
            self.admit_session(model::session_id(token)).await?;
        }
        let opened = self
            .state
            .routing
            .open_guest_session(
                model::session_id(token),
                &self.deployment,
                required,
                Utc::now(),
            )
            .await?;
        self.bind(opened, None, &configure, tracing_id).await
    }

    /// A session this configure would create (or start afresh) must be
    /// admitted: per client address and per deployment, guest or signed in
    /// alike. One that exists costs nothing, so reconnects and resumes are
    /// never refused.
    async fn admit_session(&mut self, session: Uuid) -> Result<(), GuestError> {
        let routing = self.state.routing.clone();
        match routing.session(self.deployment.org_id, session).await {
            Ok(Some(existing)) if !existing.cleared => return Ok(()),
            Ok(_) => {}
            // The configure itself will say what storage does.
            Err(_) => return Ok(()),
        }
        let limiter = &self.state.limits;
        let rates = limiter.org(self.deployment.org_id).await;
        let deployment = self.deployment.meta.id;
        let refused = |what: &str, refused: limits::Refused| {
            tracing::info!(%deployment, what, "new guest session refused by a rate limit");
            GuestError::too_many_for(format!("Too many {what}"), refused.retry_after)
        };
        limiter
            .admit(
                Key::SessionsPerAddress {
                    address: self.client,
                    deployment,
                },
                rates.sessions_per_address,
            )
            .await
            .map_err(|r| refused("new sessions from this address", r))?;
        limiter
            .admit(
                Key::SessionsPerDeployment { deployment },
                rates.sessions_per_deployment,
            )
            .await
            .map_err(|r| refused("new sessions in this deployment", r))
    }

    pub(super) async fn configure_authenticated(
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
            Ok(_) => {
                return Err(GuestError::auth_failed(
                    "the session token is of another organization",
                )
                .into());
            }
            Err(e) => {
                tracing::info!(deployment = %self.deployment.meta.id, code = e.code(), "guest session authentication failed");
                return Err(session_refused(&e).into());
            }
        };
        // A signed-in session is stored like a guest one: a new one counts
        // against the same limits (a valid session JWT is no proof the
        // caller is not making sessions by the thousand with it).
        self.admit_session(model::session_id(token)).await?;
        let identity = claims.identity.clone();
        let visitor = Participant::visitor(Some(&identity));
        let at = VisitorSocket {
            session: model::session_id(token),
            socket: self.id,
            visitor: &visitor,
            following: self.following(),
            deployment: &self.deployment,
            content: &self.content,
            client: Some(self.client),
        };
        // The guest session this socket was bound to: the Transport SDK
        // steps up with a new token, on the same socket.
        let guest = self
            .bound
            .as_ref()
            .filter(|b| b.family.is_none())
            .map(|b| b.session);
        let routing = self.state.routing.clone();
        let opened = routing
            .sign_in_session(&at, guest, &identity, claims.sub, claims.sid, now)
            .await?;
        self.bind(opened, Some(claims.sid), &configure, tracing_id)
            .await
    }

    /// Binds the socket to a session: subscriptions, the current
    /// conversation, the answer, then (on resume) the replay.
    async fn bind(
        &mut self,
        opened: Opened,
        family: Option<Uuid>,
        configure: &Configure,
        tracing_id: Option<&str>,
    ) -> Result<Flow, Fail> {
        let Opened {
            mut session,
            mut new,
            cleared,
            step_up,
        } = opened;
        let routing = self.state.routing.clone();
        let id = session.meta.id;
        if configure.start_new {
            // A new chat (the SDK's `startNewChat`): a new session as the
            // client sees it, so it autostarts; nothing else was cleared.
            if session.conversation_id.is_some() {
                session = routing.start_new(self.deployment.org_id, id).await?;
            }
            new = true;
        }
        // Subscribe before reading, so nothing falls in between.
        let same_session = self.bound.as_ref().is_some_and(|b| b.session == id);
        if !same_session || !self.feeds.contains(&Feed::Session) {
            self.subscribe(Feed::Session, Channel::Session(id)).await?;
        }
        match family {
            Some(sid) => {
                self.subscribe(Feed::Family, Channel::TokenFamily(sid))
                    .await?;
            }
            None => {
                self.feeds.remove(&Feed::Family);
            }
        }
        let visitor = Participant::visitor(session.identity.as_ref());
        self.bound = Some(Bound {
            session: id,
            family,
            visitor,
            following: None,
            posting: None,
        });
        self.feeds.remove(&Feed::Conversation);
        if let Some(session) = self.watched_session() {
            self.state.push.online(session).await;
        }
        // Re-read: another socket may have opened a conversation meanwhile.
        let session: GuestSession = routing
            .session(self.deployment.org_id, id)
            .await?
            .unwrap_or(session);
        let mut read_only = false;
        let mut last_sequence = None;
        if let Some(conversation) = session.conversation_id {
            let top = self.follow(conversation).await?;
            let cursor = Cursor::resume(
                conversation,
                top,
                configure.conversation_id,
                configure.last_sequence,
            );
            if let Some(bound) = &mut self.bound {
                bound.following = Some((conversation, cursor));
            }
            last_sequence = Some(top);
            read_only = match routing
                .conversation(self.deployment.org_id, conversation)
                .await
            {
                Ok(Some(c)) => {
                    // Read after subscribing to both channels: the posting
                    // cache may start from it (see `Bound::posting`).
                    if !c.is_ended()
                        && let Some(bound) = &mut self.bound
                    {
                        bound.posting = Some(Participant::visitor(c.visitor.as_ref()));
                    }
                    c.is_ended() && self.read_only_setting()
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
            max_custom_data_bytes: self.state.limits.current().message.custom_data_bytes,
            allowed_media: Some(AllowedMedia::of(
                &self.content.messenger.file_upload,
                self.state.attachments.available(),
            )),
            blocked_extensions: BLOCKED_EXTENSIONS,
            duration_seconds: Some(duration.as_secs()),
            expiration_date: Some(expires.timestamp()),
            conversation_id: session.conversation_id,
            last_sequence,
        };
        if let Some(step_up) = step_up {
            self.show_sign_in(step_up).await?;
        }
        self.respond("SessionResponse", answer, tracing_id).await?;
        // Resume: everything after the client's last sequence, before any
        // live event.
        self.catch_up(None).await?;
        Ok(Flow::Continue)
    }

    /// Step-up: the signing-in socket sees the visitor's `SignIn` before its
    /// answer, with the IdP's names, as Genesys sends it (the SDK raises
    /// `SignedIn(firstName, lastName)`). The logged one when the live
    /// conversation has it (its sequence is then within what the answer's
    /// `lastSequence` covers), otherwise one made for this socket.
    async fn show_sign_in(&mut self, step_up: StepUp) -> Result<(), Fail> {
        let logged = step_up
            .logged
            .as_ref()
            .and_then(|event| messages::from_log(event, false));
        let sign_in = logged.unwrap_or_else(|| {
            messages::presence(GuestPresence::SignIn, &step_up.visitor, Utc::now())
        });
        self.push("StructuredMessage", sign_in).await?;
        Ok(())
    }

    async fn subscribe(&mut self, feed: Feed, channel: Channel) -> Result<(), GuestError> {
        let engine = self.state.store.engine();
        self.feeds
            .subscribe(engine, feed, channel)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot subscribe a guest socket");
                GuestError::try_again()
            })
    }

    /// Makes `conversation` the socket's current one: subscribes, then
    /// answers its newest sequence. Delivery starts from its beginning.
    pub(super) async fn follow(&mut self, conversation: Uuid) -> Result<u64, GuestError> {
        self.follow_from_start(conversation).await?;
        self.state
            .routing
            .last_seq(conversation)
            .await
            .map_err(routing_error)
    }

    /// Makes `conversation` the socket's current one, subscribed, for a
    /// catch-up from its beginning (which reads the log anyway).
    pub(super) async fn follow_from_start(&mut self, conversation: Uuid) -> Result<(), GuestError> {
        self.subscribe(Feed::Conversation, Channel::Conversation(conversation))
            .await?;
        if let Some(bound) = &mut self.bound {
            bound.following = Some((conversation, Cursor::default()));
            bound.posting = None;
        }
        Ok(())
    }

    pub(super) fn unfollow(&mut self) {
        self.feeds.remove(&Feed::Conversation);
        if let Some(bound) = &mut self.bound {
            bound.following = None;
            bound.posting = None;
        }
    }

    pub(super) fn unbind(&mut self) {
        self.unfollow();
        self.bound = None;
        self.feeds.remove(&Feed::Session);
        self.feeds.remove(&Feed::Family);
    }

    /// The bound session, when the frame's token names it.
    pub(super) fn session_for(&self, token: &str) -> Result<Uuid, GuestError> {
        let Some(bound) = &self.bound else {
            let settings = &self.content.authentication_settings;
            return Err(if settings.enabled && !settings.allow_session_upgrade {
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

    /// Whether the socket's session is read-only now: its conversation
    /// ended and the configuration keeps ended conversations read-only.
    pub(super) async fn read_only_now(&mut self) -> bool {
        let Some(conversation) = self.following() else {
            return false;
        };
        match self
            .state
            .routing
            .conversation(self.deployment.org_id, conversation)
            .await
        {
            Ok(Some(c)) => c.is_ended() && self.read_only_setting(),
            _ => false,
        }
    }

    /// Whether an ended conversation stays readable but takes no messages.
    pub(super) fn read_only_setting(&self) -> bool {
        Routing::read_only_after_end(
            &self
                .content
                .messenger
                .apps
                .conversations
                .conversation_disconnect,
        )
    }
}

/// How a refused session JWT is answered: 401 only when it merely expired
/// (the SDK refreshes it and configures again); 403 "Session
/// authentication failed…" when no refresh can help (the SDK asks the user
/// to sign in again); 503 when it could not be checked.
fn session_refused(e: &SessionError) -> GuestError {
    match e {
        SessionError::Expired => GuestError::auth_expired(),
        SessionError::Unavailable(_) | SessionError::Corrupt(_) => GuestError::try_again(),
        e => GuestError::auth_failed(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            activity.remaining(start + Duration::from_secs(80)),
            Duration::from_secs(10)
        );
        assert_eq!(
            activity.remaining(start + Duration::from_secs(99)),
            Duration::ZERO
        );
    }

    #[test]
    fn only_a_plain_expiry_is_refreshable() {
        assert_eq!(session_refused(&SessionError::Expired).code, 401);
        for e in [
            SessionError::Malformed,
            SessionError::Signature,
            SessionError::Audience,
            SessionError::Revoked,
            SessionError::NotYetValid,
        ] {
            let refused = session_refused(&e);
            assert_eq!(refused.code, 403, "{e}");
            assert!(refused.message.starts_with("Session authentication failed"));
        }
        assert_eq!(
            session_refused(&SessionError::Unavailable("down".to_owned())).code,
            503
        );
    }
}
