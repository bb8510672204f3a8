//! The frames the load tool sends and reads: the subset of the guest and
//! agent protocols it needs (docs/guest-protocol.md,
//! docs/agent-protocol.md).
//!
//! Incoming frames are parsed once into structs that borrow from the frame
//! (no `serde_json::Value` tree); fields the tool does not need are skipped
//! without allocating. Outgoing frames are written with one `format!`:
//! every value in them is an integer, a UUID or a fixed word, so there is
//! nothing to escape, and a conversation id from the server is checked to
//! be plain before it is copied into a frame.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The text of visitor message `k`: what agents recognise and echo.
const VISITOR_TAG: &str = "lt v ";
/// The text of the agent's echo of message `k`.
const AGENT_TAG: &str = "lt a ";

/// The message index in a visitor's text, if it is one of the tool's.
pub(super) fn visitor_tag(text: &str) -> Option<usize> {
    text.strip_prefix(VISITOR_TAG)?.parse().ok()
}

/// The message index in an agent's echo, if it is one of the tool's.
pub(super) fn agent_tag(text: &str) -> Option<usize> {
    text.strip_prefix(AGENT_TAG)?.parse().ok()
}

/// Whether a server-given id can go into a frame as is (UUIDs can).
pub(super) fn plain(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(super) fn configure_session(token: &str, deployment: &str) -> String {
    format!(
        r#"{{"action":"configureSession","token":"{token}","deploymentId":"{deployment}","tracingId":"configure"}}"#
    )
}

/// Visitor message `k`, with a client id so a resend is logged once.
pub(super) fn on_message(token: &str, k: usize) -> String {
    format!(
        r#"{{"action":"onMessage","token":"{token}","tracingId":"{k}","message":{{"type":"Text","text":"{VISITOR_TAG}{k}","id":"lt-v-{k}"}}}}"#
    )
}

/// The steady scenario's opening message: starts the conversation, is not
/// measured.
pub(super) fn opening_message(token: &str) -> String {
    format!(
        r#"{{"action":"onMessage","token":"{token}","tracingId":"open","message":{{"type":"Text","text":"lt open","id":"lt-open"}}}}"#
    )
}

/// Available for offers from `queue` only when given (an API client's
/// queues are every queue of its organization, earlier runs' included).
pub(super) fn set_available(queue: Option<&str>) -> String {
    match queue {
        Some(queue) => format!(
            r#"{{"type":"setPresence","requestId":"presence","status":"available","queueIds":["{queue}"]}}"#
        ),
        None => r#"{"type":"setPresence","requestId":"presence","status":"available"}"#.to_owned(),
    }
}

pub(super) fn accept(conversation: &str) -> String {
    format!(r#"{{"type":"accept","requestId":"accept","conversationId":"{conversation}"}}"#)
}

/// The agent's echo of message `k`; its request id is `k`.
pub(super) fn agent_send(conversation: &str, k: usize) -> String {
    format!(
        r#"{{"type":"send","requestId":"{k}","conversationId":"{conversation}","text":"{AGENT_TAG}{k}","id":"lt-a-{k}"}}"#
    )
}

pub(super) fn end(conversation: &str) -> String {
    format!(
        r#"{{"type":"end","requestId":"end","conversationId":"{conversation}","wrapUp":"loadtest"}}"#
    )
}

/// A guest frame from the server.
#[derive(Debug, Deserialize)]
pub(super) struct GuestFrame<'a> {
    /// `response` or `message`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub class: Cow<'a, str>,
    #[serde(default)]
    pub code: u16,
    #[serde(rename = "tracingId", default, borrow)]
    pub tracing_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub body: GuestBody<'a>,
}

/// A guest frame's body: a text (errors) or an object.
#[derive(Debug, Default)]
pub(super) enum GuestBody<'a> {
    #[default]
    None,
    Text(Cow<'a, str>),
    Object(Box<BodyObject<'a>>),
}

impl<'a> GuestBody<'a> {
    pub(super) fn object(&self) -> Option<&BodyObject<'a>> {
        match self {
            GuestBody::Object(object) => Some(object),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            GuestBody::None => String::new(),
            GuestBody::Text(text) => text.to_string(),
            GuestBody::Object(object) => object
                .error_message
                .as_deref()
                .unwrap_or("(an object)")
                .to_owned(),
        }
    }
}

/// The fields of an object body the tool reads.
#[derive(Debug, Default, Deserialize)]
pub(super) struct BodyObject<'a> {
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    /// `Inbound` (the visitor's) or `Outbound` (the agent's).
    #[serde(default, borrow)]
    pub direction: Option<Cow<'a, str>>,
    #[serde(rename = "conversationId", default, borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub events: Vec<GuestEvent<'a>>,
    #[serde(default)]
    pub connected: Option<bool>,
    #[serde(rename = "retryAfter", default)]
    pub retry_after: Option<u64>,
    #[serde(rename = "errorMessage", default, borrow)]
    pub error_message: Option<Cow<'a, str>>,
}

impl BodyObject<'_> {
    /// Whether this is an agent's `Join` presence: the visitor has an agent.
    pub(super) fn agent_joined(&self) -> bool {
        self.direction.as_deref() == Some("Outbound")
            && self.events.iter().any(|e| {
                e.event_type == "Presence" && e.presence.as_ref().is_some_and(|p| p.kind == "Join")
            })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct GuestEvent<'a> {
    #[serde(rename = "eventType", default, borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    pub presence: Option<PresenceEvent<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PresenceEvent<'a> {
    #[serde(rename = "type", default, borrow)]
    pub kind: Cow<'a, str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for GuestBody<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for BodyVisitor<'a> {
            type Value = GuestBody<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(GuestBody::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(GuestBody::Text(Cow::Owned(v.to_owned())))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(GuestBody::None)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                BodyObject::deserialize(MapAccessDeserializer::new(map))
                    .map(|object| GuestBody::Object(Box::new(object)))
            }
        }

        deserializer.deserialize_any(BodyVisitor(PhantomData))
    }
}

/// An agent frame from the server: the union of the fields of the frames
/// the tool reads (`response`, `offer`, `event`, `snapshot`,
/// `conversation`, `removed`).
#[derive(Debug, Deserialize)]
pub(super) struct AgentFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "requestId", default, borrow)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default, borrow)]
    pub error: Option<AgentError<'a>>,
    /// `offer`: the conversation offered; `conversation`: one added or
    /// changed, with events not sent before.
    #[serde(default, borrow)]
    pub conversation: Option<SnapshotConversation<'a>>,
    /// `snapshot`: every conversation held, with events not sent before.
    #[serde(default, borrow)]
    pub conversations: Vec<SnapshotConversation<'a>>,
    /// `event` (and `offerRevoked`, `removed`): its conversation. Fields, not a
    /// flattened struct: `flatten` would buffer every frame.
    #[serde(rename = "conversationId", default, borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    /// `event`: a message's text.
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AgentError<'a> {
    #[serde(default, borrow)]
    pub code: Cow<'a, str>,
    #[serde(default, borrow)]
    pub message: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SnapshotConversation<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub state: Cow<'a, str>,
    #[serde(default, borrow)]
    pub events: Vec<AgentEvent<'a>>,
}

/// A conversation event in a snapshot.
#[derive(Debug, Deserialize)]
pub(super) struct AgentEvent<'a> {
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
}
