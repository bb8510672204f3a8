//! The runtime records of routing and the events of a conversation's log.
//!
//! Runtime state is kept as engine records, like the admin records: versioned,
//! so that every transition (offer, accept, decline, transfer, end) is a
//! compare-and-set commit of the records it touches, atomic on both engines.
//! Where a record is listed says what state it is in: a waiting conversation
//! sits in its queue's waiting list, ordered by when it started waiting; an
//! offered one in the offers list, ordered by its deadline, which is what the
//! sweeper walks to time offers out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::content::{ContentItem, CustomAttributes, MessageMetadata};
use crate::auth::visitor_token::GUEST_NAME;
pub use crate::auth::visitor_token::VisitorIdentity;
use crate::engine::{Collection, Home, Kind, RecordKey};
use crate::store::Record;
use crate::store::records::Meta;
use crate::store::types::OrgId;

/// The id of a guest session: derived from the client-minted session token,
/// so the token itself is never stored.
pub fn session_id(token: &str) -> Uuid {
    let digest = Sha256::digest(token.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// What a visitor's session token is bound to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestSession {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    pub deployment_id: Uuid,
    /// Set once the session is authenticated; never removed (no downgrade).
    pub identity: Option<VisitorIdentity>,
    /// The authenticated visitor's stable id (the session JWT's `sub`).
    pub visitor_id: Option<Uuid>,
    /// The session JWT's `sid`: revoking it logs every socket out.
    pub token_family: Option<Uuid>,
    /// The current (or last) conversation.
    pub conversation_id: Option<Uuid>,
    pub last_active: DateTime<Utc>,
    /// The visitor cleared the conversation: as Genesys clears the whole
    /// session, the next configure answers it as a new one (`newSession`,
    /// so the Transport SDK starts afresh).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleared: bool,
}

impl Record for GuestSession {
    const KIND: Kind = Kind::GuestSession;
    crate::store::record_basics!();
    fn collection(&self) -> Collection {
        Collection::DeploymentSessions {
            org: self.org_id.0,
            deployment: self.deployment_id,
        }
    }
    /// By last activity, so the retention sweep finds the sessions past it
    /// at the front. (Sessions written before were listed by creation,
    /// which is never later than their last activity.)
    fn order(&self) -> i64 {
        self.last_active.timestamp_millis()
    }
}

/// An authenticated visitor across sessions and devices: the conversations
/// they had, so their history follows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Visitor {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    /// Oldest first.
    pub conversations: Vec<Uuid>,
}

impl Record for Visitor {
    const KIND: Kind = Kind::Visitor;
    crate::store::record_basics!();
    fn collection(&self) -> Collection {
        Collection::Visitors(self.org_id.0)
    }
}

/// Where a conversation stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ConversationState {
    /// In its queue, waiting for an agent since `since`.
    Waiting { since: DateTime<Utc> },
    /// Offered to one agent, who must accept by `deadline`.
    #[serde(rename_all = "camelCase")]
    Offered {
        agent_id: Uuid,
        deadline: DateTime<Utc>,
        /// When it started waiting, kept so a re-queue keeps its place.
        waiting_since: DateTime<Utc>,
    },
    /// An agent is answering.
    #[serde(rename_all = "camelCase")]
    Connected {
        agent_id: Uuid,
        since: DateTime<Utc>,
    },
    /// Over.
    #[serde(rename_all = "camelCase")]
    Ended {
        at: DateTime<Utc>,
        wrap_up: Option<String>,
    },
}

/// A conversation's routing record. Its events are in the log named by its
/// id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    pub deployment_id: Uuid,
    pub queue_id: Uuid,
    pub session_id: Uuid,
    /// The signed-in visitor; `None` for a guest.
    pub visitor: Option<VisitorIdentity>,
    #[serde(flatten)]
    pub state: ConversationState,
    /// Agents who declined or let the offer time out; skipped when offering
    /// again until the queue's cool-down after `declined_at` has passed.
    #[serde(default)]
    pub declined: Vec<Uuid>,
    /// When the last agent declined or let the offer time out. Declines
    /// older than the queue's cool-down are forgotten, so a conversation
    /// every agent turned down is offered again rather than waiting forever.
    /// Records from before this field have none: their declines count as
    /// forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined_at: Option<DateTime<Utc>>,
    /// Every agent who was connected, for supervisors and history.
    #[serde(default)]
    pub agents: Vec<Uuid>,
}

impl Record for Conversation {
    const KIND: Kind = Kind::Conversation;
    crate::store::record_basics!();
    fn collection(&self) -> Collection {
        match &self.state {
            ConversationState::Waiting { .. } => Collection::Waiting {
                org: self.org_id.0,
                queue: self.queue_id,
            },
            ConversationState::Offered { .. } => Collection::Offered(self.org_id.0),
            ConversationState::Connected { .. } => Collection::Connected(self.org_id.0),
            ConversationState::Ended { .. } => Collection::Ended(self.org_id.0),
        }
    }
    fn order(&self) -> i64 {
        match &self.state {
            ConversationState::Waiting { since } => since.timestamp_millis(),
            ConversationState::Offered { deadline, .. } => deadline.timestamp_millis(),
            ConversationState::Connected { since, .. } => since.timestamp_millis(),
            ConversationState::Ended { at, .. } => at.timestamp_millis(),
        }
    }
}

impl Conversation {
    pub fn key_of(org: OrgId, id: Uuid) -> RecordKey {
        RecordKey::new(Home::Org(org.0), Kind::Conversation, id.to_string())
    }

    /// What agents call the visitor.
    pub fn visitor_name(&self) -> String {
        self.visitor
            .as_ref()
            .map_or_else(|| GUEST_NAME.to_owned(), VisitorIdentity::display_name)
    }

    /// The agent holding the conversation (offered or connected).
    pub fn agent(&self) -> Option<Uuid> {
        match &self.state {
            ConversationState::Offered { agent_id, .. }
            | ConversationState::Connected { agent_id, .. } => Some(*agent_id),
            _ => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, ConversationState::Ended { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum AgentStatus {
    /// Takes offers from the agent's queues.
    Available,
    /// Connected, but takes no new offers.
    Away,
    /// No socket for longer than the grace period.
    Offline,
}

/// An agent's presence and load. The id is the member's or API client's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    pub display_name: String,
    pub status: AgentStatus,
    /// Queues the agent takes offers from (with `all_queues`, those that
    /// were its queues when it went available).
    pub queues: Vec<Uuid>,
    /// The agent went available without naming queues: it takes offers
    /// from every queue that is its own when the offer is made, including
    /// queues created (or listing it) afterwards.
    #[serde(default)]
    pub all_queues: bool,
    /// A staff member, whose queues are those listing it; an API client's
    /// are every queue of its organization. Only read with `all_queues`.
    #[serde(default)]
    pub member: bool,
    /// Offered and connected conversations: the agent's load.
    pub conversations: Vec<Uuid>,
    /// Since when the agent has had nothing to do: longest idle first.
    pub idle_since: DateTime<Utc>,
}

impl Record for AgentState {
    const KIND: Kind = Kind::AgentState;
    crate::store::record_basics!();
    fn collection(&self) -> Collection {
        match self.status {
            AgentStatus::Offline => Collection::OfflineAgents(self.org_id.0),
            _ => Collection::OnlineAgents(self.org_id.0),
        }
    }
}

impl AgentState {
    pub fn key_of(org: OrgId, id: Uuid) -> RecordKey {
        RecordKey::new(Home::Org(org.0), Kind::AgentState, id.to_string())
    }
}

/// Who said or did something in a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub role: ParticipantRole,
    /// The agent's id; absent for the visitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    /// A visitor signed in at the deployment's IdP when they said it:
    /// Genesys clients show it (`metadata.authenticated`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authenticated: bool,
    /// A signed-in visitor's names from the IdP, which a Genesys client
    /// shows when the visitor signs in (`SignIn` presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

impl Participant {
    /// An agent (or bot) by its id and name.
    pub fn agent(id: Uuid, name: &str) -> Self {
        Self {
            role: ParticipantRole::Agent,
            id: Some(id),
            name: name.to_owned(),
            authenticated: false,
            first_name: None,
            last_name: None,
        }
    }

    /// The visitor: a guest (`None`), or signed in, with the IdP's names.
    pub fn visitor(identity: Option<&VisitorIdentity>) -> Self {
        Self {
            role: ParticipantRole::Visitor,
            id: None,
            name: identity.map_or_else(|| GUEST_NAME.to_owned(), VisitorIdentity::display_name),
            authenticated: identity.is_some(),
            first_name: identity.and_then(|i| i.given_name.clone()),
            last_name: identity.and_then(|i| i.family_name.clone()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParticipantRole {
    Visitor,
    Agent,
    System,
}

/// Presence changes. Guests see all but `Leave` (Genesys clients know no
/// such presence, see the guest view); agents see every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceKind {
    Join,
    /// An agent left without ending the conversation: transferred away, or
    /// lost.
    Leave,
    Disconnect,
    Clear,
    SignIn,
}

/// One entry of a conversation's log. The sequence is the log's, not part of
/// the body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub from: Participant,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EventBody {
    /// A text or structured message.
    #[serde(rename_all = "camelCase")]
    Message {
        message_type: MessageType,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Structured content (quick replies, cards, carousels, the
        /// visitor's button responses), validated where it entered.
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            deserialize_with = "super::content::lenient"
        )]
        content: Vec<ContentItem>,
        #[serde(default, skip_serializing_if = "MessageMetadata::is_empty")]
        metadata: MessageMetadata,
        /// The client's id for idempotent resends.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_message_id: Option<String>,
    },
    /// Someone joined, left, or the visitor signed in. The visitor's
    /// custom attributes ride on the `Join` that starts a conversation.
    Presence {
        presence: PresenceKind,
        #[serde(default, skip_serializing_if = "MessageMetadata::is_empty")]
        metadata: MessageMetadata,
    },
    /// The conversation moved to another queue or agent.
    #[serde(rename_all = "camelCase")]
    Transfer {
        #[serde(skip_serializing_if = "Option::is_none")]
        queue_id: Option<Uuid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_id: Option<Uuid>,
    },
    /// The agent ended the conversation.
    #[serde(rename_all = "camelCase")]
    Ended { wrap_up: Option<String> },
}

impl EventBody {
    /// A presence change without metadata.
    pub fn presence(presence: PresenceKind) -> Self {
        EventBody::Presence {
            presence,
            metadata: MessageMetadata::default(),
        }
    }

    /// A text message, as the terminal clients and tests send one.
    pub fn text(text: &str, client_message_id: Option<String>) -> Self {
        EventBody::Message {
            message_type: MessageType::Text,
            text: Some(text.to_owned()),
            content: Vec::new(),
            metadata: MessageMetadata::default(),
            client_message_id,
        }
    }
}

/// The kind of a message, as Genesys names it: text alone, or structured
/// content with optional text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    Text,
    Structured,
}

/// A log event with its sequence, as delivered to sockets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SequencedEvent {
    pub conversation_id: Uuid,
    pub seq: u64,
    #[serde(flatten)]
    pub event: LogEvent,
}

/// Notices on the bus, beside the entries the logs announce themselves (an
/// [`crate::engine::EntryNotice`] on a conversation's channel, carrying its
/// sequence so that a receiver can drop what it has or spot a gap and read
/// the log); these are wake-ups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "camelCase")]
pub enum Notice {
    /// Someone is typing (not logged).
    #[serde(rename_all = "camelCase")]
    Typing {
        conversation_id: Uuid,
        from: Participant,
    },
    /// The conversation's routing state changed (on the agent's and the
    /// conversation's channel).
    #[serde(rename_all = "camelCase")]
    Changed { conversation_id: Uuid },
    /// The agent's own state changed (status, load).
    AgentChanged,
    /// The guest session left its conversation for a new chat (on the
    /// session's channel): its sockets stop posting to the old one.
    #[serde(rename_all = "camelCase")]
    Left { conversation_id: Uuid },
    /// The guest session was revoked (logout) or closed elsewhere.
    #[serde(rename_all = "camelCase")]
    SessionEnded {
        reason: SessionEndReason,
        except_socket: Option<Uuid>,
    },
    /// An upload of the session finished (on the session's channel): its
    /// sockets tell the client `UploadSuccessEvent` or
    /// `UploadFailureEvent`.
    Upload(UploadOutcome),
}

/// How an upload ended, for the uploader's sockets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadOutcome {
    /// The client's id of the attachment.
    pub attachment_id: String,
    /// switchboard's record, for a fresh download URL on success.
    pub reference: Uuid,
    /// The refusal's code and message; `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(u16, String)>,
    /// A preview was made (an image): the event carries its URL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thumbnail: bool,
    pub time: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionEndReason {
    /// The session's tokens were revoked: `LogoutEvent`.
    Logout,
    /// `closeSession` on another socket: `ConnectionClosedEvent`.
    Closed,
    /// The session moved to an authenticated one elsewhere.
    SignedIn,
    /// The conversation was cleared.
    Cleared,
}
