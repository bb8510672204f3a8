//! Conversation events as the guest sees them: `StructuredMessage` bodies.
//!
//! Agent messages are `Outbound` from a `Human` with `channel.from`; the
//! visitor's own are `Inbound`. Presence and typing are messages of type
//! `Event`. Every logged event carries its sequence and conversation, both
//! in `metadata` (strings, as Genesys metadata maps are) and as top-level
//! additive fields.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::routing::model::{
    EventBody, LogEvent, Participant, ParticipantRole, PresenceKind, SequencedEvent,
};

/// How long a typing indicator shows, in milliseconds.
pub const TYPING_DURATION_MS: u64 = 5000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StructuredMessage {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub direction: Direction,
    pub originating_entity: &'static str,
    pub channel: MessageChannel,
    pub content: Vec<Value>,
    pub events: Vec<Value>,
    pub metadata: Map<String, Value>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct From {
    pub nickname: String,
}

fn direction(from: &Participant) -> Direction {
    match from.role {
        ParticipantRole::Visitor => Direction::Inbound,
        ParticipantRole::Agent | ParticipantRole::System => Direction::Outbound,
    }
}

fn originating_entity(from: &Participant) -> &'static str {
    match from.role {
        ParticipantRole::System => "Bot",
        ParticipantRole::Visitor | ParticipantRole::Agent => "Human",
    }
}

fn presence_name(kind: PresenceKind) -> &'static str {
    match kind {
        PresenceKind::Join => "Join",
        PresenceKind::Leave => "Leave",
        PresenceKind::Disconnect => "Disconnect",
        PresenceKind::Clear => "Clear",
        PresenceKind::SignIn => "SignIn",
    }
}

fn base(event: &LogEvent, kind: &'static str) -> StructuredMessage {
    let outbound = direction(&event.from) == Direction::Outbound;
    StructuredMessage {
        id: event.id.to_string(),
        kind,
        text: None,
        direction: direction(&event.from),
        originating_entity: originating_entity(&event.from),
        channel: MessageChannel {
            time: event.time,
            message_id: event.id.to_string(),
            kind: "Private",
            from: outbound.then(|| From {
                nickname: event.from.name.clone(),
            }),
            metadata: None,
        },
        content: Vec::new(),
        events: Vec::new(),
        metadata: Map::new(),
        sequence: None,
        conversation_id: None,
        client_message_id: None,
    }
}

/// The guest's view of a logged event, or `None` for events guests do not
/// see (transfers, the end marker: the agent's `Disconnect` presence says
/// it). `read_only` marks a `Disconnect` after which the visitor cannot
/// send (`metadata.readOnly`).
pub fn from_log(event: &SequencedEvent, read_only: bool) -> Option<StructuredMessage> {
    let mut message = match &event.event.body {
        EventBody::Message {
            message_type,
            text,
            content,
            metadata,
            client_message_id,
        } => {
            let kind = if message_type == "Structured" {
                "Structured"
            } else {
                "Text"
            };
            let mut message = base(&event.event, kind);
            message.text.clone_from(text);
            message.content.clone_from(content);
            message.client_message_id.clone_from(client_message_id);
            if let Some(attributes) = metadata.get("customAttributes") {
                message.channel.metadata = Some(json!({ "customAttributes": attributes }));
            }
            message
        }
        EventBody::Presence { presence } => {
            let mut message = base(&event.event, "Event");
            message.events.push(json!({
                "eventType": "Presence",
                "presence": { "type": presence_name(*presence) },
            }));
            if *presence == PresenceKind::Disconnect
                && read_only
                && event.event.from.role != ParticipantRole::Visitor
            {
                message
                    .metadata
                    .insert("readOnly".to_owned(), Value::String("true".to_owned()));
            }
            message
        }
        EventBody::Transfer { .. } | EventBody::Ended { .. } => return None,
    };
    message
        .metadata
        .insert("sequence".to_owned(), Value::String(event.seq.to_string()));
    message.metadata.insert(
        "conversationId".to_owned(),
        Value::String(event.conversation_id.to_string()),
    );
    message.sequence = Some(event.seq);
    message.conversation_id = Some(event.conversation_id);
    Some(message)
}

/// A typing indicator from `from` (not logged, so without a sequence).
pub fn typing(conversation: Uuid, from: &Participant, now: DateTime<Utc>) -> StructuredMessage {
    let event = LogEvent {
        id: Uuid::new_v4(),
        time: now,
        from: from.clone(),
        body: EventBody::Presence {
            presence: PresenceKind::Join,
        },
    };
    let mut message = base(&event, "Event");
    message.events.push(json!({
        "eventType": "Typing",
        "typing": { "type": "On", "duration": TYPING_DURATION_MS },
    }));
    message.metadata.insert(
        "conversationId".to_owned(),
        Value::String(conversation.to_string()),
    );
    message.conversation_id = Some(conversation);
    message
}

/// The answer to `echo`: the text as sent.
pub fn echo(text: Option<String>, now: DateTime<Utc>) -> StructuredMessage {
    let id = Uuid::new_v4().to_string();
    StructuredMessage {
        id: id.clone(),
        kind: "Text",
        text,
        direction: Direction::Inbound,
        originating_entity: "Human",
        channel: MessageChannel {
            time: now,
            message_id: id,
            kind: "Private",
            from: None,
            metadata: None,
        },
        content: Vec::new(),
        events: Vec::new(),
        metadata: Map::new(),
        sequence: None,
        conversation_id: None,
        client_message_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(role: ParticipantRole, body: EventBody) -> SequencedEvent {
        SequencedEvent {
            conversation_id: Uuid::nil(),
            seq: 7,
            event: LogEvent {
                id: Uuid::new_v4(),
                time: Utc::now(),
                from: Participant {
                    role,
                    id: None,
                    name: "Ada".to_owned(),
                },
                body,
            },
        }
    }

    #[test]
    fn agent_text_is_outbound_with_sequence() {
        let e = logged(
            ParticipantRole::Agent,
            EventBody::Message {
                message_type: "Text".to_owned(),
                text: Some("hello".to_owned()),
                content: Vec::new(),
                metadata: Value::Null,
                client_message_id: None,
            },
        );
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert_eq!(v["direction"], "Outbound");
        assert_eq!(v["originatingEntity"], "Human");
        assert_eq!(v["channel"]["from"]["nickname"], "Ada");
        assert_eq!(v["metadata"]["sequence"], "7");
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["conversationId"], Uuid::nil().to_string());
    }

    #[test]
    fn presence_and_hidden_events() {
        let e = logged(
            ParticipantRole::Agent,
            EventBody::Presence {
                presence: PresenceKind::Disconnect,
            },
        );
        let v = serde_json::to_value(from_log(&e, true).unwrap()).unwrap();
        assert_eq!(v["type"], "Event");
        assert_eq!(v["events"][0]["presence"]["type"], "Disconnect");
        assert_eq!(v["metadata"]["readOnly"], "true");
        let e = logged(ParticipantRole::Agent, EventBody::Ended { wrap_up: None });
        assert!(from_log(&e, true).is_none());
        let e = logged(
            ParticipantRole::Visitor,
            EventBody::Presence {
                presence: PresenceKind::SignIn,
            },
        );
        let v = serde_json::to_value(from_log(&e, false).unwrap()).unwrap();
        assert_eq!(v["direction"], "Inbound");
        assert!(v["channel"].get("from").is_none());
    }
}
