//! Guest sessions and what a visitor's messages open: the session a token
//! names, the conversation a message goes to, the visitor's history.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide::{self, Target};
use super::model::Notice;
use super::model::{
    Conversation, GuestSession, Participant, SequencedEvent, Visitor, VisitorIdentity,
};
use super::{NewEvent, Routing, RoutingError, RoutingResult};
use crate::engine::Channel;
use crate::store::records::{
    ConfigurationContent, ConversationDisconnect, Deployment, DisconnectType,
};
use crate::store::types::OrgId;

impl Routing {
    pub async fn session(&self, org: OrgId, id: Uuid) -> RoutingResult<Option<GuestSession>> {
        Ok(self.store.find::<GuestSession>(org, id).await?)
    }

    /// Loads or creates the session a token names, bound to `deployment`.
    /// Answers the session and whether it was created now.
    pub async fn open_session(
        &self,
        id: Uuid,
        deployment: &Deployment,
        now: DateTime<Utc>,
    ) -> RoutingResult<(GuestSession, bool)> {
        self.read_modify_commit(
            move || async move {
                Ok(self
                    .store
                    .find::<GuestSession>(deployment.org_id, id)
                    .await?)
            },
            |found, writes| match found {
                // Cleared: the session starts afresh, as Genesys's would.
                Some(mut session) if session.cleared => {
                    session.cleared = false;
                    writes.put(&mut session, now)?;
                    Ok((session, true))
                }
                // A visitor who comes back keeps a session without a
                // conversation from expiring; refreshed at most hourly, so
                // reconnects cost no write.
                Some(mut session) if now - session.last_active > chrono::Duration::hours(1) => {
                    session.last_active = now;
                    writes.put(&mut session, now)?;
                    Ok((session, false))
                }
                Some(session) => Ok((session, false)),
                None => {
                    let mut session = decide::new_session(id, deployment, now);
                    writes.put(&mut session, now)?;
                    Ok((session, true))
                }
            },
        )
        .await
    }

    /// Applies `change` to a session, again on fresh reads while another
    /// node changes it first.
    pub async fn update_session(
        &self,
        org: OrgId,
        id: Uuid,
        mut change: impl FnMut(&mut GuestSession) -> RoutingResult<()>,
    ) -> RoutingResult<GuestSession> {
        self.read_modify_commit(
            move || async move {
                self.store
                    .find::<GuestSession>(org, id)
                    .await?
                    .ok_or(RoutingError::UnknownSession)
            },
            |mut session, writes| {
                change(&mut session)?;
                writes.put(&mut session, Utc::now())?;
                Ok(session)
            },
        )
        .await
    }

    /// Marks the session's current conversation as finished for the
    /// visitor, so the next message starts a new one (`startNew`). The
    /// session's sockets are told, so none goes on posting to the old one.
    pub async fn start_new(&self, org: OrgId, session: Uuid) -> RoutingResult<GuestSession> {
        let mut left = None;
        let updated = self
            .update_session(org, session, |s| {
                left = s.conversation_id.take();
                Ok(())
            })
            .await?;
        if let Some(conversation_id) = left {
            self.notify(
                &Channel::Session(session),
                &Notice::Left { conversation_id },
            )
            .await;
        }
        Ok(updated)
    }

    /// Clears a session: its conversation is left behind and its next
    /// configure answers a new session.
    pub(super) async fn clear_session(
        &self,
        org: OrgId,
        session: Uuid,
    ) -> RoutingResult<GuestSession> {
        self.update_session(org, session, |s| {
            s.conversation_id = None;
            s.cleared = true;
            Ok(())
        })
        .await
    }

    /// The conversations an authenticated visitor had, oldest first.
    pub async fn visitor_conversations(
        &self,
        org: OrgId,
        visitor: Uuid,
    ) -> RoutingResult<Vec<Uuid>> {
        Ok(self
            .store
            .find::<Visitor>(org, visitor)
            .await?
            .map(|v| v.conversations)
            .unwrap_or_default())
    }

    pub async fn conversation(&self, org: OrgId, id: Uuid) -> RoutingResult<Option<Conversation>> {
        Ok(self.store.find::<Conversation>(org, id).await?)
    }

    /// A conversation that must exist.
    pub(super) async fn existing_conversation(
        &self,
        org: OrgId,
        id: Uuid,
    ) -> RoutingResult<Conversation> {
        self.conversation(org, id)
            .await?
            .ok_or(RoutingError::UnknownConversation)
    }

    /// Whether a visitor whose conversation ended may still send: per the
    /// configuration's `conversationDisconnect`.
    pub fn read_only_after_end(settings: &ConversationDisconnect) -> bool {
        settings.enabled && settings.kind == DisconnectType::ReadOnly
    }

    /// A guest session upgraded in place: the conversation's visitor becomes
    /// the signed-in identity (agents see who they talk to), and the
    /// conversation joins the visitor's history.
    pub async fn sign_in_conversation(
        &self,
        org: OrgId,
        conversation: Uuid,
        identity: &VisitorIdentity,
        visitor_id: Uuid,
        now: DateTime<Utc>,
    ) -> RoutingResult<()> {
        self.read_modify_commit(
            move || async move {
                let c = self.existing_conversation(org, conversation).await?;
                let visitor = self.store.find::<Visitor>(org, visitor_id).await?;
                Ok((c, visitor))
            },
            |(mut c, visitor), writes| {
                c.visitor = Some(identity.clone());
                let mut visitor =
                    decide::with_conversation(visitor, visitor_id, c.org_id, conversation, now);
                writes.put(&mut c, now)?;
                writes.put(&mut visitor, now)?;
                Ok(())
            },
        )
        .await
    }

    /// Posts a visitor's event. Opens a conversation in the deployment's
    /// queue when the session has none (or its last one ended and the
    /// configuration lets a new one start): it waits there, and its queue's
    /// assigner is woken; the answer does not wait for an offer. Answers the
    /// conversation, the event and whether it was a resend of one already
    /// logged.
    pub async fn visitor_post(
        &self,
        session_id: Uuid,
        deployment: &Deployment,
        content: &ConfigurationContent,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(Conversation, SequencedEvent, bool)> {
        self.visitor_post_from(None, session_id, deployment, content, event, now)
            .await
    }

    /// [`Routing::visitor_post`] from a visitor at `client`: a conversation
    /// it would open must be admitted first (see `admission`), counted
    /// against the address when known and the deployment always.
    pub async fn visitor_post_from(
        &self,
        client: Option<IpAddr>,
        session_id: Uuid,
        deployment: &Deployment,
        content: &ConfigurationContent,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(Conversation, SequencedEvent, bool)> {
        let read_only = Self::read_only_after_end(
            &content.messenger.apps.conversations.conversation_disconnect,
        );
        let (conversation, opened) = self
            .read_modify_commit(
                move || async move {
                    let read = self
                        .read_posting(deployment.org_id, session_id, read_only)
                        .await?;
                    // Admitted before it is decided, on what was read: a
                    // post that only adds to a live conversation costs
                    // nothing here.
                    if matches!(decide::target(read.1.as_ref(), read_only), Target::New) {
                        self.admit_conversation(client, deployment).await?;
                    }
                    Ok::<_, RoutingError>(read)
                },
                |(mut session, current, visitor), writes| {
                    match decide::target(current.as_ref(), read_only) {
                        Target::Current(c) => return Ok((c.clone(), false)),
                        Target::ReadOnly => return Err(RoutingError::ReadOnly),
                        Target::New => {}
                    }
                    let mut c = decide::new_conversation(&session, deployment, now);
                    session.conversation_id = Some(c.meta.id);
                    session.last_active = now;
                    writes.put(&mut c, now)?;
                    writes.put(&mut session, now)?;
                    if let Some(visitor_id) = session.visitor_id {
                        let mut visitor = decide::with_conversation(
                            visitor,
                            visitor_id,
                            session.org_id,
                            c.meta.id,
                            now,
                        );
                        writes.put(&mut visitor, now)?;
                    }
                    Ok((c, true))
                },
            )
            .await?;
        // As the conversation knows the visitor: signed in (with names) once
        // the session stepped up, whichever socket sends.
        let from = Participant::visitor(conversation.visitor.as_ref());
        let append = self.append(conversation.meta.id, from, event, now);
        let appended = if opened {
            // Counted against its address beside the append, not after it:
            // the answer waits for one engine round trip, not two.
            let counted = self.record_queued(client, deployment, conversation.meta.id);
            let (appended, ()) = tokio::join!(append, counted);
            // Woken once the message is logged, so the agent's offer shows
            // it; assigned in the background, never before the answer.
            tracing::info!(conversation = %conversation.meta.id, queue = %conversation.queue_id, "conversation opened");
            self.wake_queue(conversation.org_id, conversation.queue_id);
            appended
        } else {
            append.await
        };
        let (event, duplicate) = appended?;
        Ok((conversation, event, duplicate))
    }

    /// What a visitor's post decides on: the session, its current
    /// conversation, and (only when a new conversation must be opened) the
    /// authenticated visitor whose history it joins.
    async fn read_posting(
        &self,
        org: OrgId,
        session_id: Uuid,
        read_only: bool,
    ) -> RoutingResult<(GuestSession, Option<Conversation>, Option<Visitor>)> {
        let session = self
            .store
            .find::<GuestSession>(org, session_id)
            .await?
            .ok_or(RoutingError::UnknownSession)?;
        let current = match session.conversation_id {
            Some(id) => self.store.find::<Conversation>(org, id).await?,
            None => None,
        };
        let visitor = match (
            decide::target(current.as_ref(), read_only),
            session.visitor_id,
        ) {
            (Target::New, Some(id)) => self.store.find::<Visitor>(org, id).await?,
            _ => None,
        };
        Ok((session, current, visitor))
    }
}
