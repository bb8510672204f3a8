//! The frames of the agent protocol, as documented in
//! `docs/agent-protocol.md`: requests parsed at the edge into typed values,
//! and what the server sends back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::types::OrgId;

use crate::routing::model::{
    AgentState, AgentStatus, Conversation, ConversationState, LogEvent, Participant, SequencedEvent,
};

/// Longest client message id, request id and wrap-up code.
pub const MAX_ID_CHARS: usize = 128;

/// A client request. Unknown fields are ignored, so a client may add its
/// own; `requestId` is read separately, so even a frame that does not parse
/// gets an answer the client can match.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Request {
    #[serde(rename_all = "camelCase")]
    SetPresence {
        status: RequestedStatus,
        #[serde(default)]
        queue_ids: Option<Vec<Uuid>>,
    },
    #[serde(rename_all = "camelCase")]
    Accept {
        conversation_id: Uuid,
    },
    #[serde(rename_all = "camelCase")]
    Decline {
        conversation_id: Uuid,
    },
    /// A message: text, structured content (quick replies, a card, a
    /// carousel; validated by the handler), or both.
    #[serde(rename_all = "camelCase")]
    Send {
        conversation_id: Uuid,
        #[serde(default)]
        text: Option<String>,
        /// Genesys content items; raw here so that the handler can say
        /// which item breaks which rule (`invalid_content`).
        #[serde(default)]
        content: Option<Vec<serde_json::Value>>,
        /// The client's message id: a resend with the same id is answered
        /// with the first send's sequence and appends nothing.
        #[serde(default)]
        id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Typing {
        conversation_id: Uuid,
    },
    #[serde(rename_all = "camelCase")]
    Transfer {
        conversation_id: Uuid,
        #[serde(default)]
        queue_id: Option<Uuid>,
        #[serde(default)]
        agent_id: Option<Uuid>,
    },
    #[serde(rename_all = "camelCase")]
    End {
        conversation_id: Uuid,
        #[serde(default)]
        wrap_up: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    History {
        conversation_id: Uuid,
        #[serde(default)]
        after_sequence: Option<u64>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The organization's queues and connected agents: transfer targets.
    Directory,
    /// An upload URL for a file the agent will send in a conversation it
    /// is connected to; `send` then names it by `attachmentId` in an
    /// `Attachment` content item.
    #[serde(rename_all = "camelCase")]
    AttachmentUrl {
        conversation_id: Uuid,
        /// The agent's id for the file; one is made when absent.
        #[serde(default)]
        attachment_id: Option<String>,
        file_name: String,
        file_type: String,
        file_size: u64,
    },
    Ping,
}

impl Request {
    /// The request's `type`, as the client spelled it: the name of its span.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::SetPresence { .. } => "setPresence",
            Request::Accept { .. } => "accept",
            Request::Decline { .. } => "decline",
            Request::Send { .. } => "send",
            Request::Typing { .. } => "typing",
            Request::Transfer { .. } => "transfer",
            Request::End { .. } => "end",
            Request::History { .. } => "history",
            Request::Directory => "directory",
            Request::AttachmentUrl { .. } => "attachmentUrl",
            Request::Ping => "ping",
        }
    }
}

/// What an agent may set itself to; offline is what the server decides when
/// every socket is gone.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RequestedStatus {
    Available,
    Away,
}

impl From<RequestedStatus> for AgentStatus {
    fn from(status: RequestedStatus) -> Self {
        match status {
            RequestedStatus::Available => AgentStatus::Available,
            RequestedStatus::Away => AgentStatus::Away,
        }
    }
}

/// A frame from the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame {
    /// Answers one request.
    #[serde(rename_all = "camelCase")]
    Response {
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Outcome>,
    },
    /// Everything the agent holds, once, when the socket opens; what
    /// changes after that comes as deltas (`conversation`, `removed`,
    /// `offer`, `offerRevoked`, `presence`, `event`).
    Snapshot {
        agent: AgentView,
        conversations: Vec<ConversationSnapshot>,
    },
    /// A conversation the agent now holds, or one it holds whose state
    /// changed (accepted, offered anew, its visitor signed in): as in a
    /// snapshot, with the events this socket had not sent yet.
    Conversation { conversation: ConversationSnapshot },
    /// A conversation the agent no longer holds (ended, transferred, taken
    /// back). An offer that is gone is `offerRevoked` instead.
    #[serde(rename_all = "camelCase")]
    Removed { conversation_id: Uuid },
    /// A conversation is offered to the agent.
    Offer { conversation: ConversationView },
    /// An offer is gone: declined, timed out, or taken back.
    #[serde(rename_all = "camelCase")]
    OfferRevoked { conversation_id: Uuid },
    /// A new event of a conversation the agent holds.
    Event(EventView),
    /// The visitor is typing.
    #[serde(rename_all = "camelCase")]
    Typing {
        conversation_id: Uuid,
        from: Participant,
    },
    /// The agent's own status changed (here or on another socket, or the
    /// server set it away after an offer timed out).
    Presence {
        status: AgentStatus,
        queues: Vec<Uuid>,
    },
}

impl ServerFrame {
    pub fn ok(request_id: Option<String>, result: Option<Outcome>) -> Self {
        ServerFrame::Response {
            request_id,
            ok: true,
            error: None,
            result,
        }
    }

    pub fn error(request_id: Option<String>, error: ErrorBody) -> Self {
        ServerFrame::Response {
            request_id,
            ok: false,
            error: Some(error),
            result: None,
        }
    }
}

/// Why a request failed. `code` is one of `bad_request`,
/// `invalid_content`, `not_found`, `not_allowed`, `busy`, `unavailable`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }

    pub fn not_found() -> Self {
        Self::new("not_found", "no such conversation")
    }
}

/// The result a successful request carries, if any.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// `setPresence`.
    Presence {
        status: AgentStatus,
        queues: Vec<Uuid>,
    },
    /// `send`.
    Sent { sequence: u64, duplicate: bool },
    /// `accept`, `decline`, `transfer`, `end`.
    Conversation { conversation: Box<ConversationView> },
    /// `history`.
    #[serde(rename_all = "camelCase")]
    History {
        conversation_id: Uuid,
        events: Vec<EventView>,
        /// More events follow the last one returned.
        more: bool,
    },
    /// `directory`.
    Directory(crate::routing::Directory),
    /// `attachmentUrl`: PUT the bytes to `url` with `headers`.
    #[serde(rename_all = "camelCase")]
    Upload {
        attachment_id: String,
        url: String,
        headers: std::collections::BTreeMap<String, String>,
    },
}

impl ServerFrame {
    /// Fills fresh download URLs into the attachments of every event the
    /// frame carries: stored messages never hold a usable one.
    pub fn refresh_attachments(
        &mut self,
        attachments: &crate::attachments::Attachments,
        org: OrgId,
        now: DateTime<Utc>,
    ) {
        let events: Vec<&mut EventView> = match self {
            ServerFrame::Event(view) => vec![view],
            ServerFrame::Snapshot { conversations, .. } => conversations
                .iter_mut()
                .flat_map(|c| c.events.iter_mut())
                .collect(),
            ServerFrame::Conversation { conversation } => conversation.events.iter_mut().collect(),
            ServerFrame::Response {
                result: Some(Outcome::History { events, .. }),
                ..
            } => events.iter_mut().collect(),
            _ => Vec::new(),
        };
        for view in events {
            if let crate::routing::model::EventBody::Message { content, .. } = &mut view.event.body
            {
                attachments.refresh(org, content, now);
            }
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub id: Uuid,
    pub name: String,
    pub status: AgentStatus,
    pub queues: Vec<Uuid>,
    /// May read the history of every conversation of its queues.
    pub supervisor: bool,
}

impl AgentView {
    pub fn new(state: &AgentState, supervisor: bool) -> Self {
        Self {
            id: state.meta.id,
            name: state.display_name.clone(),
            status: state.status,
            queues: state.queues.clone(),
            supervisor,
        }
    }
}

/// A conversation as an agent sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub id: Uuid,
    /// `waiting`, `offered`, `connected` or `ended`.
    pub state: &'static str,
    pub queue_id: Uuid,
    pub deployment_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub visitor: VisitorView,
    /// While offered: when the offer lapses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_deadline: Option<DateTime<Utc>>,
    /// While waiting or offered: since when the visitor waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap_up: Option<String>,
}

/// The visitor's verified identity (or `authenticated: false` and nothing
/// else for a guest), and what to call them. `issuer` and `subject` are
/// what the IdP proved; `email` appears only when the IdP verified it
/// (`emailVerified: true`); an address the IdP did not verify is
/// `unverifiedEmail`, so no client can take it for a verified one. Names
/// are what the IdP's profile says, never verified.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorView {
    /// The visitor proved who they are at the deployment's IdP.
    pub authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Verified by the IdP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the IdP verified the visitor's email: present for a
    /// signed-in visitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// An email the IdP sent without verifying it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    pub display_name: String,
}

impl From<&Conversation> for VisitorView {
    fn from(c: &Conversation) -> Self {
        let identity = c.visitor.clone();
        Self {
            authenticated: identity.is_some(),
            display_name: c.visitor_name(),
            issuer: identity.as_ref().map(|i| i.issuer.clone()),
            subject: identity.as_ref().map(|i| i.subject.clone()),
            email: identity
                .as_ref()
                .and_then(|i| i.verified_email().map(str::to_owned)),
            email_verified: identity.as_ref().map(|i| i.verified_email().is_some()),
            unverified_email: identity
                .as_ref()
                .filter(|i| i.verified_email().is_none())
                .and_then(|i| i.email.clone()),
            name: identity.as_ref().and_then(|i| i.name.clone()),
            given_name: identity.as_ref().and_then(|i| i.given_name.clone()),
            family_name: identity.and_then(|i| i.family_name),
        }
    }
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        let mut view = ConversationView {
            id: c.meta.id,
            state: "waiting",
            queue_id: c.queue_id,
            deployment_id: c.deployment_id,
            created_at: c.meta.date_created,
            visitor: VisitorView::from(c),
            offer_deadline: None,
            waiting_since: None,
            connected_since: None,
            ended_at: None,
            wrap_up: None,
        };
        match &c.state {
            ConversationState::Waiting { since } => view.waiting_since = Some(*since),
            ConversationState::Offered {
                deadline,
                waiting_since,
                ..
            } => {
                view.state = "offered";
                view.offer_deadline = Some(*deadline);
                view.waiting_since = Some(*waiting_since);
            }
            ConversationState::Connected { since, .. } => {
                view.state = "connected";
                view.connected_since = Some(*since);
            }
            ConversationState::Ended { at, wrap_up } => {
                view.state = "ended";
                view.ended_at = Some(*at);
                view.wrap_up.clone_from(wrap_up);
            }
        }
        view
    }
}

/// One conversation of a snapshot, with the events this socket had not
/// sent yet (on connect: the newest history).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationSnapshot {
    #[serde(flatten)]
    pub conversation: ConversationView,
    pub events: Vec<EventView>,
    /// The sequence of the newest event sent on this socket so far.
    pub last_sequence: u64,
}

/// A log event with its sequence.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub conversation_id: Uuid,
    pub sequence: u64,
    #[serde(flatten)]
    pub event: LogEvent,
}

impl From<SequencedEvent> for EventView {
    fn from(e: SequencedEvent) -> Self {
        Self {
            conversation_id: e.conversation_id,
            sequence: e.seq,
            event: e.event,
        }
    }
}
