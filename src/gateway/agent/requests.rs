//! The agent's requests: validated here, decided by routing, answered with
//! an outcome or an error body.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;

use super::protocol::{
    ConversationView, ErrorBody, EventView, MAX_ID_CHARS, Outcome, Request, RequestedStatus,
};
use super::socket::Agent;
use crate::attachments::{AttachmentError, Owner, UploadRequest};
use crate::limits::{Key, MessageLimits};
use crate::routing::content::{self, Sender};
use crate::routing::model::{
    ContentItem, Conversation, ConversationState, EventBody, MessageMetadata, MessageType,
};
use crate::routing::{NewEvent, RoutingError, RoutingResult, TransferTarget};
use crate::store::StoreError;
use crate::store::records::Queue;

const DEFAULT_HISTORY_PAGE: usize = 100;
/// An agent's typing is announced at most this often per conversation.
const TYPING_EVERY: Duration = Duration::from_secs(1);

impl From<RoutingError> for ErrorBody {
    fn from(e: RoutingError) -> Self {
        match e {
            RoutingError::UnknownConversation | RoutingError::UnknownSession => {
                ErrorBody::not_found()
            }
            RoutingError::NotAllowed(message) => ErrorBody::new("not_allowed", message),
            RoutingError::ReadOnly => ErrorBody::new("not_allowed", "the conversation has ended"),
            RoutingError::Contended => ErrorBody::new("busy", "too much contention, try again"),
            RoutingError::Limited { what, .. } => {
                ErrorBody::new("rate_limited", format!("too many {what}; try again later"))
            }
            RoutingError::Store(e) => {
                tracing::error!(error = %e, "agent request failed in storage");
                ErrorBody::new("unavailable", "storage is unavailable, try again")
            }
        }
    }
}

impl Agent {
    pub(super) async fn handle(&mut self, request: Request) -> Result<Option<Outcome>, ErrorBody> {
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
                let agent = match status {
                    // Named none: every queue of theirs, later ones too.
                    RequestedStatus::Available if requested.is_empty() => {
                        routing.set_available_everywhere(&me, queues, now).await?
                    }
                    _ => routing.set_status(&me, status.into(), queues, now).await?,
                };
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
                content,
                id,
            } => {
                let (message_type, text, mut content) =
                    agent_message(text, content, &self.state.limits.current().message)?;
                let files = self
                    .state
                    .attachments
                    .resolve(me.org, agent_owner(&me), &mut content)
                    .await
                    .map_err(|e| attachment_error(&e))?;
                if let Some(id) = &id
                    && (id.is_empty() || id.chars().count() > MAX_ID_CHARS)
                {
                    return Err(ErrorBody::bad_request(format!(
                        "id must be 1 to {MAX_ID_CHARS} characters"
                    )));
                }
                self.rate_limit().await?;
                // Client ids are the agent's own: they never collide with
                // the visitor's or another agent's.
                let dedup = id.as_ref().map(|id| format!("agent:{}:{id}", me.id));
                let event = NewEvent {
                    body: EventBody::Message {
                        message_type,
                        text,
                        content,
                        metadata: MessageMetadata::default(),
                        client_message_id: id,
                    },
                    dedup,
                };
                let posted = if self.connected_to(conversation_id) {
                    routing
                        .agent_post_connected(&me, conversation_id, event, now)
                        .await
                } else {
                    routing.agent_post(&me, conversation_id, event, now).await
                };
                match &posted {
                    Ok((_, false)) => self.state.metrics.message_accepted("agent"),
                    Ok((_, true)) => {}
                    Err(_) => self.state.metrics.message_refused("agent"),
                }
                let (event, duplicate) = posted?;
                if !files.is_empty() {
                    self.state
                        .attachments
                        .mark_sent(files, conversation_id)
                        .await;
                }
                if !duplicate && self.state.push.enabled() {
                    let conversation = match self.held.get(&conversation_id) {
                        Some(held) => Some(held.conversation.clone()),
                        None => {
                            routing
                                .conversation(self.caller.identity.org, conversation_id)
                                .await?
                        }
                    };
                    if let Some(conversation) = conversation {
                        self.state
                            .push
                            .agent_message(&conversation, event.seq)
                            .await;
                    }
                }
                Ok(Some(Outcome::Sent {
                    sequence: event.seq,
                    duplicate,
                }))
            }
            Request::AttachmentUrl {
                conversation_id,
                attachment_id,
                file_name,
                file_type,
                file_size,
            } => {
                // Read from routing, not this socket's copy, which a
                // snapshot brings a moment after an accept.
                let connected = routing
                    .conversation(me.org, conversation_id)
                    .await?
                    .is_some_and(|c| {
                    matches!(c.state, ConversationState::Connected { agent_id, .. } if agent_id == me.id)
                });
                if !connected {
                    return Err(ErrorBody::new(
                        "not_allowed",
                        "you are not connected to this conversation",
                    ));
                }
                let client_id = attachment_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let request = UploadRequest {
                    client_id: client_id.clone(),
                    filename: file_name,
                    mime: file_type,
                    size: Some(file_size),
                };
                let presigned = self
                    .state
                    .attachments
                    .presign_upload(me.org, agent_owner(&me), None, request, now)
                    .await
                    .map_err(|e| attachment_error(&e))?;
                Ok(Some(Outcome::Upload {
                    attachment_id: client_id,
                    url: presigned.url,
                    headers: presigned.headers,
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
                routing.agent_typing(&me, conversation_id).await;
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
                    .conversation(self.caller.identity.org, conversation_id)
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
                    .clamp(1, self.state.limits.current().agent_history_page);
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
}

impl Agent {
    /// One message from the agent's bucket and one from its
    /// organization's, at the organization's rates: an agent (or a bot
    /// with an agent's credential) cannot flood a conversation, and one
    /// tenant's agents together cannot flood the shared storage. Both are
    /// taken in one engine step (both buckets live in the organization's
    /// home), and neither when one refuses.
    async fn rate_limit(&self) -> Result<(), ErrorBody> {
        let me = &self.caller.identity;
        let limiter = &self.state.limits;
        let rates = limiter.org(me.org).await;
        limiter
            .admit_all(
                me.org,
                &[
                    (Key::AgentMessages { agent: me.id }, rates.agent_messages),
                    (
                        Key::OrgAgentMessages { org: me.org.0 },
                        rates.org_agent_messages,
                    ),
                ],
            )
            .await
            .map_err(|(index, refused)| {
                let what = if index == 0 {
                    "from this agent"
                } else {
                    "from this organization's agents"
                };
                ErrorBody::new(
                    "rate_limited",
                    format!(
                        "too many messages {what}; try again in {} s",
                        refused.retry_after_seconds()
                    ),
                )
            })
    }
}

/// An agent's message, checked: text alone (1 to the node's text limit,
/// the same as visitors'), or content with optional text. Content breaking
/// a rule is `invalid_content`, its message naming the item and the rule.
fn agent_message(
    text: Option<String>,
    content: Option<Vec<Value>>,
    limits: &MessageLimits,
) -> Result<(MessageType, Option<String>, Vec<ContentItem>), ErrorBody> {
    let content = match content.as_deref() {
        None | Some([]) => Vec::new(),
        Some(values) => content::parse(values, Sender::Agent, limits)
            .map_err(|e| ErrorBody::new("invalid_content", e.0))?,
    };
    let text = text.filter(|t| !t.trim().is_empty());
    if let Some(text) = &text
        && text.chars().count() > limits.text_chars
    {
        return Err(ErrorBody::bad_request(format!(
            "text is longer than {} characters",
            limits.text_chars
        )));
    }
    if content.is_empty() {
        let text = text.ok_or_else(|| ErrorBody::bad_request("text is empty"))?;
        return Ok((MessageType::Text, Some(text), content));
    }
    // Files travel as Text, as Genesys sends them: the SDK shows a
    // Structured message's content as quick replies or cards.
    if content
        .iter()
        .all(|c| matches!(c, ContentItem::Attachment { .. }))
    {
        return Ok((MessageType::Text, text, content));
    }
    Ok((MessageType::Structured, text, content))
}

/// An agent uploads as a staff member (or API client), by its id.
fn agent_owner(me: &crate::routing::AgentIdentity) -> Owner {
    Owner::Agent { member: me.id }
}

fn attachment_error(e: &AttachmentError) -> ErrorBody {
    let code = match e {
        AttachmentError::Unavailable => "unavailable",
        AttachmentError::NotFound | AttachmentError::Sent => "not_found",
        AttachmentError::Disabled => "not_allowed",
        AttachmentError::TooMany => "rate_limited",
        _ => "invalid_content",
    };
    ErrorBody::new(code, format!("{e} (code {})", e.code()))
}

fn conversation_outcome(c: &Conversation) -> Outcome {
    Outcome::Conversation {
        conversation: Box::new(ConversationView::from(c)),
    }
}

/// Parses a request. A frame that does not parse is answered with the
/// `requestId` it carried, when it carried a usable one.
pub fn parse(text: &str) -> Result<(Option<String>, Request), (Option<String>, ErrorBody)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ErrorBody::bad_request(format!(
                "the frame is not JSON: {}",
                crate::http::body::redact(&e.to_string())
            )),
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
        Err(e) => Err((
            request_id,
            ErrorBody::bad_request(crate::http::body::redact(&e.to_string())),
        )),
    }
}
