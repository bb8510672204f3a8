//! What a visitor's socket asks of routing: binding a session (as a guest
//! or signed in), posting, typing, presence, clearing and closing. The rules
//! live here, not in the socket; the socket answers the client. The notices
//! a visitor causes are published from here (typing: `typing.rs`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{
    EventBody, GuestSession, MessageMetadata, Notice, Participant, PresenceKind, SequencedEvent,
    SessionEndReason, VisitorIdentity,
};
use super::{NewEvent, Routing, RoutingError, RoutingResult};
use crate::engine::Channel;
use crate::store::records::{ConfigurationContent, Deployment};
use crate::store::types::OrgId;

/// A guest socket acting for its session.
#[derive(Clone, Copy, Debug)]
pub struct VisitorSocket<'a> {
    pub session: Uuid,
    /// The socket itself: the notices it causes spare it, since it answers
    /// its own client.
    pub socket: Uuid,
    /// The visitor as the socket speaks for them (a guest, or signed in).
    pub visitor: &'a Participant,
    /// The conversation the socket shows, if any.
    pub following: Option<Uuid>,
    pub deployment: &'a Deployment,
    pub content: &'a ConfigurationContent,
    /// The visitor's address, which limits on new conversations count.
    pub client: Option<std::net::IpAddr>,
}

/// Why a visitor's request is refused.
#[derive(Debug, thiserror::Error)]
pub enum VisitorError {
    #[error("this session belongs to another deployment")]
    OtherDeployment,
    /// A signed-in session never becomes a guest one again.
    #[error("cannot downgrade an authenticated session to a guest one")]
    Downgrade,
    /// The deployment takes signed-in visitors only.
    #[error("authentication required")]
    AuthenticationRequired,
    /// The session is another visitor's.
    #[error("the session is signed in as another visitor")]
    OtherVisitor,
    #[error("conversation clear is not enabled")]
    ClearDisabled,
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// A session a socket binds to.
#[derive(Debug)]
pub struct Opened {
    pub session: GuestSession,
    /// Created now.
    pub new: bool,
    /// Its conversation was dropped: a guest session signed in where the
    /// configuration does not carry the guest conversation over (its other
    /// sockets were closed).
    pub cleared: bool,
    /// A guest session signed in in place (step-up): the `SignIn` the
    /// signing-in socket shows before its answer.
    pub step_up: Option<StepUp>,
}

/// A guest session signed in in place.
#[derive(Debug)]
pub struct StepUp {
    /// The visitor, signed in, with the IdP's names.
    pub visitor: Participant,
    /// The `SignIn` logged in the live conversation, if there was one.
    pub logged: Option<SequencedEvent>,
}

/// A visitor's event in the log.
#[derive(Debug)]
pub struct Posted {
    pub conversation: Uuid,
    pub event: SequencedEvent,
    /// The conversation is not the one the socket was showing (it opened
    /// now, or another socket opened it): the socket must follow it. The
    /// session's other sockets were told to.
    pub switched: bool,
    /// A resend of an event logged before: `event` is as first logged.
    pub duplicate: bool,
}

/// What became of a visitor's presence event.
#[derive(Debug)]
pub enum PresenceOutcome {
    /// Posted like a message: `Join` with autoStart starts the conversation.
    Posted(Posted),
    /// Logged in the live conversation.
    Logged(SequencedEvent),
    /// The session starts over; its other sockets were told.
    Cleared,
    /// Nothing to record: the client's event is only acknowledged.
    Ignored,
}

impl Routing {
    /// Opens (or creates) an unauthenticated session for `deployment`;
    /// `authentication_required` when the configuration takes signed-in
    /// visitors only (sign-in on, no step-up).
    pub async fn open_guest_session(
        &self,
        id: Uuid,
        deployment: &Deployment,
        authentication_required: bool,
        now: DateTime<Utc>,
    ) -> Result<Opened, VisitorError> {
        if let Some(existing) = self.session(deployment.org_id, id).await? {
            if existing.deployment_id != deployment.meta.id {
                return Err(VisitorError::OtherDeployment);
            }
            if existing.identity.is_some() {
                return Err(VisitorError::Downgrade);
            }
        }
        if authentication_required {
            return Err(VisitorError::AuthenticationRequired);
        }
        let (session, new) = self.open_session(id, deployment, now).await?;
        Ok(Opened {
            session,
            new,
            cleared: false,
            step_up: None,
        })
    }

    /// Opens (or creates) a session signed in as `identity`, the session
    /// JWT's `sub` and `sid`. A guest session is upgraded in place when the
    /// configuration allows it (its live conversation gets a `SignIn`
    /// event); otherwise it starts over signed in, without its guest
    /// conversation, and its other sockets are told to sign in too.
    ///
    /// `guest` is the guest session the socket was bound to. The Transport
    /// SDK mints a new session token when the visitor signs in and steps up
    /// with it on that socket: with step-up allowed, the new session takes
    /// the guest session over (its conversation, and its other sockets are
    /// closed as signed in elsewhere).
    pub async fn sign_in_session(
        &self,
        at: &VisitorSocket<'_>,
        guest: Option<Uuid>,
        identity: &VisitorIdentity,
        visitor_id: Uuid,
        family: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Opened, VisitorError> {
        let (existing, new) = self.open_session(at.session, at.deployment, now).await?;
        if existing.deployment_id != at.deployment.meta.id {
            return Err(VisitorError::OtherDeployment);
        }
        if existing.visitor_id.is_some_and(|v| v != visitor_id) {
            return Err(VisitorError::OtherVisitor);
        }
        let was_guest = existing.identity.is_none();
        let upgrade = at.content.authentication_settings.allow_session_upgrade;
        let taken_over = match guest {
            Some(guest)
                if upgrade
                    && was_guest
                    && guest != at.session
                    && existing.conversation_id.is_none() =>
            {
                self.take_over_guest(guest, at).await?
            }
            _ => None,
        };
        let stepped_up = upgrade && was_guest && (!new || taken_over.is_some());
        let carried = taken_over.flatten();
        let cleared = was_guest && !upgrade && existing.conversation_id.is_some();
        let session = self
            .update_session(at.deployment.org_id, at.session, |s| {
                if s.visitor_id.is_some_and(|v| v != visitor_id) {
                    return Err(RoutingError::NotAllowed("Session authentication failed"));
                }
                s.identity = Some(identity.clone());
                s.visitor_id = Some(visitor_id);
                s.token_family = Some(family);
                if cleared {
                    s.conversation_id = None;
                }
                if s.conversation_id.is_none() {
                    s.conversation_id = carried;
                }
                s.last_active = now;
                Ok(())
            })
            .await
            .map_err(|e| match e {
                RoutingError::NotAllowed(_) => VisitorError::OtherVisitor,
                e => e.into(),
            })?;
        self.index_visitor_session(at.deployment.org_id, visitor_id, session.meta.id)
            .await?;
        let mut step_up = None;
        if stepped_up {
            let logged = match session.conversation_id {
                Some(conversation) => {
                    self.sign_in_live(
                        at.deployment.org_id,
                        conversation,
                        identity,
                        visitor_id,
                        now,
                    )
                    .await
                }
                None => None,
            };
            step_up = Some(StepUp {
                visitor: Participant::visitor(Some(identity)),
                logged,
            });
        } else if was_guest && !new && !upgrade {
            self.end_session_sockets(at, SessionEndReason::SignedIn)
                .await;
        }
        Ok(Opened {
            session,
            // A session that takes a guest's over is no new one to the
            // client: it must not autostart again.
            new: new && !stepped_up,
            cleared,
            step_up,
        })
    }

    /// Takes the guest session `guest` over for the session `at` signs in:
    /// answers its conversation (now no longer the guest's), or `None`
    /// when `guest` is not a guest session of this deployment. Its other
    /// sockets are closed as signed in elsewhere (`signedIn`).
    async fn take_over_guest(
        &self,
        guest: Uuid,
        at: &VisitorSocket<'_>,
    ) -> RoutingResult<Option<Option<Uuid>>> {
        let Some(found) = self.session(at.deployment.org_id, guest).await? else {
            return Ok(None);
        };
        let authenticated = found.identity.is_some();
        if found.deployment_id != at.deployment.meta.id || authenticated {
            return Ok(None);
        }
        let mut taken = None;
        self.update_session(at.deployment.org_id, guest, |s| {
            taken = s.conversation_id.take();
            Ok(())
        })
        .await?;
        self.notify(
            &Channel::Session(guest),
            &Notice::SessionEnded {
                reason: SessionEndReason::SignedIn,
                except_socket: Some(at.socket),
            },
        )
        .await;
        Ok(Some(taken))
    }

    /// Marks a live conversation as signed in, with a `SignIn` event in its
    /// log, which it answers. Best effort: the session is signed in
    /// whatever happens here.
    async fn sign_in_live(
        &self,
        org: OrgId,
        conversation: Uuid,
        identity: &VisitorIdentity,
        visitor_id: Uuid,
        now: DateTime<Utc>,
    ) -> Option<SequencedEvent> {
        match self.conversation(org, conversation).await {
            Ok(Some(c)) if !c.is_ended() => {}
            _ => return None,
        }
        if let Err(e) = self
            .sign_in_conversation(org, conversation, identity, visitor_id, now)
            .await
        {
            tracing::warn!(%conversation, error = %e, "cannot record the sign-in on the conversation");
        }
        let event = NewEvent {
            body: EventBody::presence(PresenceKind::SignIn),
            dedup: None,
        };
        match self
            .append(
                conversation,
                Participant::visitor(Some(identity)),
                event,
                now,
            )
            .await
        {
            Ok((event, _)) => Some(event),
            Err(e) => {
                tracing::warn!(%conversation, error = %e, "cannot log the sign-in");
                None
            }
        }
    }

    /// Posts a visitor's event, opening a conversation when the session
    /// needs one (see [`Routing::visitor_post`]). When it lands in another
    /// conversation than the socket shows, the session's sockets are told
    /// to follow it.
    pub async fn visitor_send(
        &self,
        at: &VisitorSocket<'_>,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<Posted> {
        let (conversation, event, duplicate) = self
            .visitor_post_from(at.client, at.session, at.deployment, at.content, event, now)
            .await?;
        let conversation = conversation.meta.id;
        let switched = at.following != Some(conversation);
        if switched {
            self.notify(
                &Channel::Session(at.session),
                &Notice::Changed {
                    conversation_id: conversation,
                },
            )
            .await;
        }
        Ok(Posted {
            conversation,
            event,
            switched,
            duplicate,
        })
    }

    /// A presence event from the visitor: `Join` starts the conversation
    /// when the configuration auto-starts one, `Disconnect` is logged in a
    /// live conversation, `Clear` (when enabled) ends the visitor's part in
    /// it and clears the session. The server's own kinds are ignored.
    /// Custom attributes (`metadata`) ride on what is logged: the
    /// Transport SDK sends them once, with the autostart `Join`.
    pub async fn visitor_presence(
        &self,
        at: &VisitorSocket<'_>,
        presence: PresenceKind,
        metadata: MessageMetadata,
        dedup: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<PresenceOutcome, VisitorError> {
        let conversations = &at.content.messenger.apps.conversations;
        let carries_attributes = !metadata.is_empty();
        let body = EventBody::Presence { presence, metadata };
        match presence {
            PresenceKind::Join => {
                let live = self
                    .live_conversation(at.deployment.org_id, at.following)
                    .await?;
                match live {
                    None if conversations.auto_start.enabled => {
                        let posted = self.visitor_send(at, NewEvent { body, dedup }, now).await?;
                        return Ok(PresenceOutcome::Posted(posted));
                    }
                    // Joining a live conversation changes nothing, but
                    // attributes the client counts as sent must reach the
                    // agent.
                    Some(conversation) if carries_attributes => {
                        let (event, _) = self
                            .append(
                                conversation,
                                at.visitor.clone(),
                                NewEvent { body, dedup },
                                now,
                            )
                            .await?;
                        return Ok(PresenceOutcome::Logged(event));
                    }
                    _ => {}
                }
            }
            PresenceKind::Disconnect => {
                if let Some(conversation) = self
                    .live_conversation(at.deployment.org_id, at.following)
                    .await?
                {
                    let (event, _) = self
                        .append(
                            conversation,
                            at.visitor.clone(),
                            NewEvent { body, dedup },
                            now,
                        )
                        .await?;
                    return Ok(PresenceOutcome::Logged(event));
                }
            }
            PresenceKind::Clear => {
                if !conversations.conversation_clear.enabled {
                    return Err(VisitorError::ClearDisabled);
                }
                self.clear(at, now).await?;
                return Ok(PresenceOutcome::Cleared);
            }
            // Server-generated; a client's is acknowledged and ignored.
            PresenceKind::SignIn | PresenceKind::Leave => {}
        }
        Ok(PresenceOutcome::Ignored)
    }

    /// Clears the session: a `Clear` event in its live conversation (best
    /// effort), no current conversation, a new session to the next
    /// configure, and its other sockets told.
    async fn clear(&self, at: &VisitorSocket<'_>, now: DateTime<Utc>) -> RoutingResult<()> {
        if let Some(conversation) = self
            .live_conversation(at.deployment.org_id, at.following)
            .await?
        {
            let event = NewEvent {
                body: EventBody::presence(PresenceKind::Clear),
                dedup: None,
            };
            if let Err(e) = self
                .append(conversation, at.visitor.clone(), event, now)
                .await
            {
                tracing::warn!(%conversation, error = %e, "cannot log the clear");
            }
        }
        self.clear_session(at.deployment.org_id, at.session).await?;
        self.end_session_sockets(at, SessionEndReason::Cleared)
            .await;
        Ok(())
    }

    /// `closeSession` with `closeAllConnections`: the session's other
    /// sockets close.
    pub async fn close_visitor_sockets(&self, at: &VisitorSocket<'_>) {
        self.end_session_sockets(at, SessionEndReason::Closed).await;
    }

    /// Tells the session's sockets but `at` that the session ended for them.
    async fn end_session_sockets(&self, at: &VisitorSocket<'_>, reason: SessionEndReason) {
        self.notify(
            &Channel::Session(at.session),
            &Notice::SessionEnded {
                reason,
                except_socket: Some(at.socket),
            },
        )
        .await;
    }

    /// `conversation`, if there is one and it has not ended.
    async fn live_conversation(
        &self,
        org: OrgId,
        conversation: Option<Uuid>,
    ) -> RoutingResult<Option<Uuid>> {
        let Some(conversation) = conversation else {
            return Ok(None);
        };
        let found = self.conversation(org, conversation).await?;
        Ok(found.filter(|c| !c.is_ended()).map(|c| c.meta.id))
    }
}
