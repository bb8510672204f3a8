//! `onMessage` (and `echo`): the message, its content and its custom
//! attributes, from wherever clients put them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::request::too_long;
use super::{GuestError, MAX_CLIENT_ID_CHARS};
use crate::gateway::guest::messages::GuestPresence;
use crate::limits::MessageLimits;
use crate::routing::content::{self, Sender};
use crate::routing::model::{ContentItem, CustomAttributes, MessageMetadata, MessageType};

/// An `onMessage` request.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestMessage {
    pub kind: MessageKind,
    /// The client's id for idempotent resends.
    pub client_id: Option<String>,
    /// The custom attributes (from wherever the client put them, within
    /// the limit) and the string metadata of `message.metadata`.
    pub metadata: MessageMetadata,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    /// A message that is logged: text, or structured content (the
    /// visitor's button responses) with optional text.
    Message {
        message_type: MessageType,
        text: Option<String>,
        content: Vec<ContentItem>,
    },
    Event(GuestEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEvent {
    Typing,
    Presence(GuestPresence),
}

pub(super) fn guest_message(
    raw: RawOnMessage,
    limits: &MessageLimits,
) -> Result<GuestMessage, GuestError> {
    let RawOnMessage {
        message,
        message_id: top_level_id,
        channel: top_level_channel,
        custom_attributes: top_level_attributes,
        ..
    } = raw;
    let raw = message.ok_or_else(|| GuestError::missing("message"))?;
    let kind = raw
        .kind
        .as_deref()
        .ok_or_else(|| GuestError::missing("message.type"))?;
    let content = raw.content.unwrap_or_default();
    if let Some(text) = &raw.text
        && text.chars().count() > limits.text_chars
    {
        return Err(too_long(limits.text_chars));
    }
    let kind = match kind {
        "Text" | "Structured" => {
            let content = content::parse(&content, Sender::Visitor, limits)
                .map_err(|e| GuestError::bad_request(format!("message.{e}")))?;
            let text = raw.text.filter(|t| !t.is_empty());
            let message_type = if kind == "Text" {
                MessageType::Text
            } else {
                MessageType::Structured
            };
            // A quick reply or time slot comes as Text with empty text and
            // the answer as content: what agents read is the answer.
            let text = text.or_else(|| {
                content
                    .iter()
                    .find_map(ContentItem::answer_text)
                    .map(str::to_owned)
            });
            // A file sent alone comes as Text with empty text.
            let files = content
                .iter()
                .any(|c| matches!(c, ContentItem::Attachment { .. }));
            match message_type {
                MessageType::Text if text.is_none() && !files => {
                    return Err(GuestError::missing("message.text"));
                }
                MessageType::Structured if text.is_none() && content.is_empty() => {
                    return Err(GuestError::missing("message.content"));
                }
                _ => {}
            }
            MessageKind::Message {
                message_type,
                text,
                content,
            }
        }
        "Event" => MessageKind::Event(guest_event(raw.events.unwrap_or_default())?),
        _ => return Err(GuestError::bad_request("unknown message type")),
    };
    let metadata = message_metadata(
        limits.custom_data_bytes,
        raw.metadata,
        [
            (
                "message.channel.metadata.customAttributes",
                raw.channel
                    .and_then(|c| c.metadata)
                    .and_then(|m| m.custom_attributes),
            ),
            (
                "channel.metadata.customAttributes",
                top_level_channel
                    .and_then(|c| c.metadata)
                    .and_then(|m| m.custom_attributes),
            ),
            ("customAttributes", top_level_attributes),
        ],
    )?;
    let client_id = raw
        .id
        .or(raw.message_id)
        .or(top_level_id)
        .filter(|id| !id.is_empty());
    if client_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_CLIENT_ID_CHARS)
    {
        return Err(GuestError::bad_request(format!(
            "message.id is longer than {MAX_CLIENT_ID_CHARS} characters"
        )));
    }
    Ok(GuestMessage {
        kind,
        client_id,
        metadata,
    })
}

/// The custom attributes of a message from every place clients put them,
/// the SDK's (`message.channel.metadata.customAttributes`) first: an earlier
/// place wins a key set twice. Then `message.metadata`, strings only, which
/// may hold custom attributes too. The attributes' limit is the SDK's:
/// the UTF-8 bytes of keys and values.
fn message_metadata(
    max_bytes: usize,
    metadata: Option<Value>,
    placements: [(&str, Option<Value>); 3],
) -> Result<MessageMetadata, GuestError> {
    let mut attributes = CustomAttributes::default();
    for (at, value) in placements {
        attributes.fill_from(custom_attributes(value, at)?);
    }
    let mut extra = match metadata {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(GuestError::bad_request(
                "message.metadata must be an object",
            ));
        }
    };
    if let Some(nested) = extra.remove("customAttributes") {
        attributes.fill_from(custom_attributes(
            Some(nested),
            "message.metadata.customAttributes",
        )?);
    }
    if attributes.data_bytes() > max_bytes {
        return Err(GuestError::new(
            4013,
            format!("Custom Attributes in channel metadata is larger than {max_bytes} bytes"),
        ));
    }
    let extra = string_metadata(Some(&Value::Object(extra)), max_bytes)?;
    Ok(MessageMetadata {
        custom_attributes: attributes,
        extra,
    })
}

fn custom_attributes(value: Option<Value>, at: &str) -> Result<CustomAttributes, GuestError> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(CustomAttributes::default()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(GuestError::bad_request(format!("{at} must be an object"))),
    };
    fields
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key, value)),
            _ => Err(GuestError::bad_request(format!(
                "{at} values must be strings"
            ))),
        })
        .collect::<Result<_, _>>()
        .map(CustomAttributes)
}

/// `message.metadata`: string values, as Genesys's `Map<String, String>`,
/// within the size custom attributes have.
pub(super) fn string_metadata(
    value: Option<&Value>,
    max_bytes: usize,
) -> Result<BTreeMap<String, String>, GuestError> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(GuestError::bad_request(
                "message.metadata must be an object",
            ));
        }
    };
    let mut metadata = BTreeMap::new();
    let mut bytes = 0usize;
    for (key, value) in fields {
        let Value::String(value) = value else {
            return Err(GuestError::bad_request(
                "message.metadata values must be strings",
            ));
        };
        bytes = bytes.saturating_add(key.len() + value.len());
        metadata.insert(key.clone(), value.clone());
    }
    if bytes > max_bytes {
        return Err(GuestError::bad_request(format!(
            "message.metadata is larger than {max_bytes} bytes"
        )));
    }
    Ok(metadata)
}

fn guest_event(events: Vec<RawEvent>) -> Result<GuestEvent, GuestError> {
    let event = events
        .into_iter()
        .next()
        .ok_or_else(|| GuestError::missing("message.events"))?;
    match event.event_type.as_deref() {
        None => Err(GuestError::missing("message.events.eventType")),
        Some("Typing") => Ok(GuestEvent::Typing),
        Some("Presence") => {
            let kind = event
                .presence
                .and_then(|p| p.kind)
                .ok_or_else(|| GuestError::missing("message.events.presence.type"))?;
            let presence = match kind.as_str() {
                "Join" => GuestPresence::Join,
                "Disconnect" => GuestPresence::Disconnect,
                "Clear" => GuestPresence::Clear,
                "SignIn" => GuestPresence::SignIn,
                _ => return Err(GuestError::bad_request("unknown presence type")),
            };
            Ok(GuestEvent::Presence(presence))
        }
        Some(_) => Err(GuestError::bad_request("unknown event type")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawOnMessage {
    pub(super) token: Option<String>,
    pub(super) message: Option<RawMessage>,
    message_id: Option<String>,
    /// Custom attributes some clients send beside `message`, not in it.
    channel: Option<RawChannel>,
    custom_attributes: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    pub(super) text: Option<String>,
    content: Option<Vec<Value>>,
    pub(super) metadata: Option<Value>,
    events: Option<Vec<RawEvent>>,
    channel: Option<RawChannel>,
    id: Option<String>,
    message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    event_type: Option<String>,
    presence: Option<RawPresence>,
}

#[derive(Deserialize)]
struct RawPresence {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawChannel {
    metadata: Option<RawChannelMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChannelMetadata {
    custom_attributes: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::super::defaults::{MAX_CUSTOM_DATA_BYTES, parse};
    use super::super::request::{Parsed, Rejected, Request};
    use super::*;

    fn err(text: &str) -> Rejected {
        match parse(text) {
            Err(r) => r,
            Ok(p) => panic!("expected a refusal, got {p:?}"),
        }
    }

    fn message(frame: Value) -> GuestMessage {
        match parse(&frame.to_string()) {
            Ok(Parsed {
                request: Request::OnMessage(m),
                ..
            }) => *m,
            other => panic!("{frame}: {other:?}"),
        }
    }

    #[test]
    fn quick_replies_and_time_slots_are_answers() {
        // The Transport SDK's quick reply: Text, empty text, one answer.
        for kind in ["QuickReply", "DatePicker"] {
            let m = message(
                serde_json::json!({"action":"onMessage","token":"t","message":{
                "text":"","type":"Text","content":[{"contentType":"ButtonResponse","buttonResponse":
                {"text":"Yes","payload":"yes","type":kind,"originatingMessageId":"m-1"}}]}}),
            );
            let MessageKind::Message {
                message_type,
                text,
                content,
            } = m.kind
            else {
                panic!()
            };
            assert_eq!(message_type, MessageType::Text);
            assert_eq!(text.as_deref(), Some("Yes"));
            assert_eq!(content.len(), 1);
        }
        // A card button: Structured with the button's text.
        let m = message(
            serde_json::json!({"action":"onMessage","token":"t","message":{
            "text":"Book Now","type":"Structured","content":[{"contentType":"ButtonResponse",
            "buttonResponse":{"text":"Book Now","payload":"I want it","type":"Button"}}]}}),
        );
        assert!(
            matches!(m.kind, MessageKind::Message { text: Some(ref t), .. } if t == "Book Now")
        );
        // A malformed answer, or empty text without one, is refused.
        let bad = r#"{"action":"onMessage","token":"t","message":{"text":"","type":"Text","content":[{"contentType":"ButtonResponse","buttonResponse":{"text":"Yes"}}]}}"#;
        assert_eq!(err(bad).error.code, 400);
        let empty = r#"{"action":"onMessage","token":"t","message":{"text":"","type":"Text"}}"#;
        assert_eq!(err(empty).error.code, 4020);
        let card = r#"{"action":"onMessage","token":"t","message":{"type":"Structured","content":[{"contentType":"Card","card":{"title":"x"}}]}}"#;
        assert_eq!(err(card).error.code, 400);
    }

    #[test]
    fn custom_attributes_from_every_placement_within_the_sdk_limit() {
        let m = message(serde_json::json!({"action":"onMessage","token":"t",
            "channel":{"metadata":{"customAttributes":{"b":"top-channel","a":"ignored"}}},
            "customAttributes":{"c":"top","a":"ignored too"},
            "message":{"type":"Text","text":"hi","metadata":{"customMessageId":"m-1"},
                "channel":{"metadata":{"customAttributes":{"a":"sdk"}}}}}));
        let attributes = &m.metadata.custom_attributes.0;
        assert_eq!(attributes.get("a").map(String::as_str), Some("sdk"));
        assert_eq!(attributes.get("b").map(String::as_str), Some("top-channel"));
        assert_eq!(attributes.get("c").map(String::as_str), Some("top"));
        assert_eq!(
            m.metadata.extra.get("customMessageId").map(String::as_str),
            Some("m-1")
        );
        // On the autostart Join too.
        let m = message(
            serde_json::json!({"action":"onMessage","token":"t","message":{"type":"Event",
            "events":[{"eventType":"Presence","presence":{"type":"Join"}}],
            "channel":{"metadata":{"customAttributes":{"A":"B"}}}}}),
        );
        assert_eq!(m.metadata.custom_attributes.0.len(), 1);

        // Measured as the SDK does: 100 pairs of 5 + 10 bytes are 1500
        // bytes (2101 as JSON), within the limit; a byte over it is 4013.
        let within: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("k{i:03}x"), Value::String("v".repeat(10))))
            .collect();
        let frame = |attributes: &serde_json::Map<String, Value>| {
            serde_json::json!({"action":"onMessage","token":"t","message":{"type":"Text","text":"hi",
                "channel":{"metadata":{"customAttributes":attributes}}}})
        };
        assert_eq!(
            message(frame(&within))
                .metadata
                .custom_attributes
                .data_bytes(),
            1500
        );
        let mut over = serde_json::Map::new();
        over.insert(
            "k".to_owned(),
            Value::String("v".repeat(MAX_CUSTOM_DATA_BYTES)),
        );
        let r = err(&frame(&over).to_string());
        assert_eq!(r.error.code, 4013);
        assert_eq!(
            r.error.message,
            "Custom Attributes in channel metadata is larger than 2048 bytes"
        );
        let mut numbers = serde_json::Map::new();
        numbers.insert("n".to_owned(), serde_json::json!(1));
        assert_eq!(err(&frame(&numbers).to_string()).error.code, 400);
        let metadata = r#"{"action":"onMessage","token":"t","message":{"type":"Text","text":"x","metadata":{"n":1}}}"#;
        assert_eq!(err(metadata).error.code, 400);
    }
}
