//! Conversation events as the guest sees them: `StructuredMessage` bodies.
//!
//! Agent messages are `Outbound` from a `Human` with `channel.from`; the
//! visitor's own are `Inbound`. Presence and typing are messages of type
//! `Event`. Every logged event carries its sequence and conversation, both
//! in `metadata` (strings, as Genesys metadata maps are) and as top-level
//! additive fields.
//!
//! Everything here is typed so that a frame or history entity can only be
//! what Genesys clients decode: the message type, the presence types they
//! know ([`GuestPresence`]: an agent's `Leave` has no guest view), content
//! validated when it was sent, and metadata of strings only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::routing::model::{
    ContentItem, CustomAttributes, EventBody, MessageType, Participant, ParticipantRole,
    PresenceKind, SequencedEvent,
};

/// How long a typing indicator shows, in milliseconds.
pub const TYPING_DURATION_MS: u64 = 5000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// `StructuredMessage.type`: a closed enum in the SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    Text,
    Structured,
    Event,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OriginatingEntity {
    Human,
    Bot,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StructuredMessage {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub direction: Direction,
    pub originating_entity: OriginatingEntity,
    pub channel: MessageChannel,
    pub content: Vec<ContentItem>,
    pub events: Vec<StructuredEvent>,
    /// Strings only: the SDK decodes a `Map<String, String>`.
    pub metadata: BTreeMap<String, String>,
    /// Additive: the event's place in its conversation's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// Additive: the client's id of an idempotent message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageChannel {
    pub time: DateTime<Utc>,
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<From>,
    /// Where Genesys clients put custom attributes (the SDK ignores it on
    /// receipt; web clients show it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ChannelMetadata>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelMetadata {
    pub custom_attributes: CustomAttributes,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct From {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// One of `StructuredMessage.events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "eventType")]
pub enum StructuredEvent {
    Presence { presence: PresenceView },
    Typing { typing: TypingView },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PresenceView {
    #[serde(rename = "type")]
    pub kind: GuestPresence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TypingView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

/// The presence types Genesys clients know. The SDK decodes presence into a
/// closed enum: any other value fails the whole frame, and in history the
/// whole page, so no other value can be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum GuestPresence {
    Join,
    Disconnect,
    Clear,
    SignIn,
}

impl GuestPresence {
    /// The guest's view of a presence change: none for an agent's `Leave`
    /// (a transfer, a lost agent), which Genesys does not show guests and
    /// which is no `Disconnect` (that would end the chat in the app).
    pub fn of(kind: PresenceKind) -> Option<Self> {
        match kind {
            PresenceKind::Join => Some(Self::Join),
            PresenceKind::Disconnect => Some(Self::Disconnect),
            PresenceKind::Clear => Some(Self::Clear),
            PresenceKind::SignIn => Some(Self::SignIn),
            PresenceKind::Leave => None,
        }
    }
}

impl std::convert::From<GuestPresence> for PresenceKind {
    fn from(presence: GuestPresence) -> Self {
        match presence {
            GuestPresence::Join => PresenceKind::Join,
            GuestPresence::Disconnect => PresenceKind::Disconnect,
            GuestPresence::Clear => PresenceKind::Clear,
            GuestPresence::SignIn => PresenceKind::SignIn,
        }
    }
}

impl StructuredEvent {
    fn presence(kind: GuestPresence) -> Self {
        StructuredEvent::Presence {
            presence: PresenceView { kind },
        }
    }
}

/// Metadata keys the server sets; a client's own metadata never overrides
/// them.
const RESERVED_METADATA: [&str; 4] = ["sequence", "conversationId", "readOnly", "authenticated"];

fn direction(from: &Participant) -> Direction {
    match from.role {
        ParticipantRole::Visitor => Direction::Inbound,
        ParticipantRole::Agent | ParticipantRole::System => Direction::Outbound,
    }
}

fn originating_entity(from: &Participant) -> OriginatingEntity {
    match from.role {
        ParticipantRole::System => OriginatingEntity::Bot,
        ParticipantRole::Visitor | ParticipantRole::Agent => OriginatingEntity::Human,
    }
}

/// A message from `from` with nothing in it yet.
fn base(id: Uuid, time: DateTime<Utc>, from: &Participant, kind: Kind) -> StructuredMessage {
    let outbound = direction(from) == Direction::Outbound;
    let mut metadata = BTreeMap::new();
    if from.authenticated && !outbound {
        // `Message.authenticated` in the SDK.
        metadata.insert("authenticated".to_owned(), "true".to_owned());
    }
    StructuredMessage {
        id: id.to_string(),
        kind,
        text: None,
        direction: direction(from),
        originating_entity: originating_entity(from),
        channel: MessageChannel {
            time,
            message_id: id.to_string(),
            kind: "Private",
            from: outbound.then(|| From {
                nickname: Some(from.name.clone()),
                ..From::default()
            }),
            metadata: None,
        },
        content: Vec::new(),
        events: Vec::new(),
        metadata,
        sequence: None,
        conversation_id: None,
        client_message_id: None,
    }
}

fn with_attributes(message: &mut StructuredMessage, attributes: &CustomAttributes) {
    if !attributes.is_empty() {
        message.channel.metadata = Some(ChannelMetadata {
            custom_attributes: attributes.clone(),
        });
    }
}

/// A presence of `from`. A visitor's `SignIn` names them as the IdP did:
/// the SDK raises `SignedIn(firstName, lastName)` from `channel.from`.
fn presence_message(
    id: Uuid,
    time: DateTime<Utc>,
    from: &Participant,
    presence: GuestPresence,
) -> StructuredMessage {
    let mut message = base(id, time, from, Kind::Event);
    message.events.push(StructuredEvent::presence(presence));
    if presence == GuestPresence::SignIn && from.role == ParticipantRole::Visitor {
        message.channel.from = Some(From {
            nickname: Some(from.name.clone()),
            first_name: from.first_name.clone(),
            last_name: from.last_name.clone(),
        });
    }
    message
}

/// The guest's view of a logged event, or `None` for events guests do not
/// see (an agent's `Leave`, transfers, the end marker: the agent's
/// `Disconnect` presence says it). `read_only` marks a `Disconnect` after
/// which the visitor cannot send (`metadata.readOnly`).
pub fn from_log(event: &SequencedEvent, read_only: bool) -> Option<StructuredMessage> {
    let logged = &event.event;
    let mut message = match &logged.body {
        EventBody::Message {
            message_type,
            text,
            content,
            metadata,
            client_message_id,
        } => {
            let kind = match message_type {
                MessageType::Text => Kind::Text,
                MessageType::Structured => Kind::Structured,
            };
            let mut message = base(logged.id, logged.time, &logged.from, kind);
            message.text.clone_from(text);
            message.content.clone_from(content);
            message.client_message_id.clone_from(client_message_id);
            with_attributes(&mut message, &metadata.custom_attributes);
            // The client's own metadata comes back with its message (older
            // SDKs match their echo by `customMessageId` in it).
            for (key, value) in &metadata.extra {
                if !RESERVED_METADATA.contains(&key.as_str()) {
                    message.metadata.insert(key.clone(), value.clone());
                }
            }
            message
        }
        EventBody::Presence { presence, metadata } => {
            let presence = GuestPresence::of(*presence)?;
            let mut message = presence_message(logged.id, logged.time, &logged.from, presence);
            with_attributes(&mut message, &metadata.custom_attributes);
            if presence == GuestPresence::Disconnect
                && read_only
                && logged.from.role != ParticipantRole::Visitor
            {
                message
                    .metadata
                    .insert("readOnly".to_owned(), "true".to_owned());
            }
            message
        }
        EventBody::Transfer { .. } | EventBody::Ended { .. } => return None,
    };
    message
        .metadata
        .insert("sequence".to_owned(), event.seq.to_string());
    message.metadata.insert(
        "conversationId".to_owned(),
        event.conversation_id.to_string(),
    );
    message.sequence = Some(event.seq);
    message.conversation_id = Some(event.conversation_id);
    Some(message)
}

/// Whether a logged event is a message someone wrote (not presence or
/// routing): what keeps a Genesys client's session alive on both sides.
pub fn is_message(event: &SequencedEvent) -> bool {
    matches!(event.event.body, EventBody::Message { .. })
}

/// A typing indicator from `from` (not logged, so without a sequence), in
/// `conversation` when there is one.
pub fn typing(
    conversation: Option<Uuid>,
    from: &Participant,
    now: DateTime<Utc>,
) -> StructuredMessage {
    let mut message = base(Uuid::new_v4(), now, from, Kind::Event);
    message.events.push(StructuredEvent::Typing {
        typing: TypingView {
            kind: "On",
            duration: Some(TYPING_DURATION_MS),
        },
    });
    if let Some(conversation) = conversation {
        message
            .metadata
            .insert("conversationId".to_owned(), conversation.to_string());
        message.conversation_id = Some(conversation);
    }
    message
}

/// A visitor's presence that was not logged, as its answer.
pub fn presence(
    presence: GuestPresence,
    from: &Participant,
    now: DateTime<Utc>,
) -> StructuredMessage {
    presence_message(Uuid::new_v4(), now, from, presence)
}

/// The answer to `echo`: the text and string metadata as sent (a health
/// check adds the session's duration and expiry).
pub fn echo(
    text: Option<String>,
    metadata: BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> StructuredMessage {
    let id = Uuid::new_v4().to_string();
    StructuredMessage {
        id: id.clone(),
        kind: Kind::Text,
        text,
        direction: Direction::Inbound,
        originating_entity: OriginatingEntity::Human,
        channel: MessageChannel {
            time: now,
            message_id: id,
            kind: "Private",
            from: None,
            metadata: None,
        },
        content: Vec::new(),
        events: Vec::new(),
        metadata,
        sequence: None,
        conversation_id: None,
        client_message_id: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::routing::model::{LogEvent, VisitorIdentity};

    fn logged(from: Participant, body: EventBody) -> SequencedEvent {
        SequencedEvent {
            conversation_id: Uuid::nil(),
            seq: 7,
            event: LogEvent {
                id: Uuid::new_v4(),
                time: Utc::now(),
                from,
                body,
            },
        }
    }

    fn ada() -> Participant {
        Participant::agent(Uuid::new_v4(), "Ada")
    }

    fn grace() -> Participant {
        Participant::visitor(Some(&VisitorIdentity {
            issuer: "https://idp.example.com".to_owned(),
            subject: "grace".to_owned(),
            email: None,
            email_verified: None,
            name: None,
            given_name: Some("Grace".to_owned()),
            family_name: Some("Hopper".to_owned()),
        }))
    }

    #[test]
    fn agent_text_is_outbound_with_sequence() {
        let e = logged(ada(), EventBody::text("hello", None));
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert_eq!(v["direction"], "Outbound");
        assert_eq!(v["originatingEntity"], "Human");
        assert_eq!(v["channel"]["from"], json!({"nickname": "Ada"}));
        assert_eq!(v["metadata"]["sequence"], "7");
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["conversationId"], Uuid::nil().to_string());
        assert_eq!(v["content"], json!([]));
        assert_eq!(v["events"], json!([]));
    }

    #[test]
    fn presence_and_hidden_events() {
        let e = logged(ada(), EventBody::presence(PresenceKind::Disconnect));
        let v = serde_json::to_value(from_log(&e, true).unwrap()).unwrap();
        assert_eq!(v["type"], "Event");
        assert_eq!(v["events"][0]["eventType"], "Presence");
        assert_eq!(v["events"][0]["presence"]["type"], "Disconnect");
        assert_eq!(v["metadata"]["readOnly"], "true");
        for hidden in [
            EventBody::Ended { wrap_up: None },
            EventBody::presence(PresenceKind::Leave),
        ] {
            assert!(from_log(&logged(ada(), hidden), true).is_none());
        }
    }

    #[test]
    fn a_signed_in_visitor_is_named_and_flagged() {
        let e = logged(grace(), EventBody::presence(PresenceKind::SignIn));
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert_eq!(v["direction"], "Inbound");
        assert_eq!(v["channel"]["from"]["firstName"], "Grace");
        assert_eq!(v["channel"]["from"]["lastName"], "Hopper");
        assert_eq!(v["metadata"]["authenticated"], "true");
        // Their messages are flagged, without names.
        let e = logged(grace(), EventBody::text("hi", None));
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert_eq!(v["metadata"]["authenticated"], "true");
        assert!(v["channel"].get("from").is_none());
        // A guest is neither.
        let guest = Participant::visitor(None);
        let e = logged(guest, EventBody::text("hi", None));
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert!(v["metadata"].get("authenticated").is_none());
    }

    #[test]
    fn metadata_is_strings_and_the_servers_keys_win() {
        let mut metadata = crate::routing::model::MessageMetadata::default();
        metadata
            .extra
            .insert("customMessageId".to_owned(), "m-1".to_owned());
        metadata
            .extra
            .insert("sequence".to_owned(), "999".to_owned());
        metadata
            .custom_attributes
            .0
            .insert("orderId".to_owned(), "42".to_owned());
        let body = EventBody::Message {
            message_type: MessageType::Text,
            text: Some("hi".to_owned()),
            content: Vec::new(),
            metadata,
            client_message_id: None,
        };
        let v = serde_json::to_value(from_log(&logged(grace(), body), false).unwrap()).unwrap();
        assert_eq!(v["metadata"]["customMessageId"], "m-1");
        assert_eq!(v["metadata"]["sequence"], "7");
        assert_eq!(
            v["channel"]["metadata"]["customAttributes"]["orderId"],
            "42"
        );
        assert!(
            v["metadata"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| v.is_string())
        );
    }
}
