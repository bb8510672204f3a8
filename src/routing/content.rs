//! What a message carries besides its text: structured content (quick
//! replies, cards and carousels agents send; the button responses visitors
//! answer with) and custom attributes.
//!
//! The shapes are Genesys's (`StructuredMessage.content`), because the
//! Messenger Transport SDK decodes them strictly: a known `contentType`
//! missing a required field fails the whole frame, or a whole history page.
//! So content is parsed and validated once, where it enters (the agent's
//! `send`, the visitor's `onMessage`), stored typed, and serialised as is
//! afterwards: nothing stored can be something a client cannot decode.

use std::collections::BTreeMap;

use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::MessageLimits;

/// Longest label: a quick reply's or a button's text, a card's title.
pub const MAX_LABEL_CHARS: usize = 256;
/// Longest card description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest payload a button or quick reply carries back.
pub const MAX_PAYLOAD_CHARS: usize = 2000;
/// Longest URL (links, images).
pub const MAX_URL_CHARS: usize = 2048;
/// Longest id of the message a visitor's button response answers, and of a
/// quick reply's `action`.
pub const MAX_REFERENCE_CHARS: usize = 256;

/// One item of a message's `content`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "contentType")]
pub enum ContentItem {
    /// A suggested answer the visitor taps once.
    #[serde(rename_all = "camelCase")]
    QuickReply {
        quick_reply: QuickReply,
    },
    Card {
        card: Card,
    },
    Carousel {
        carousel: Carousel,
    },
    /// The visitor's answer to a quick reply, a card button or a time slot.
    #[serde(rename_all = "camelCase")]
    ButtonResponse {
        button_response: ButtonResponse,
    },
    /// A file: the sender names one it uploaded by its id; what is stored
    /// and shown is filled in from switchboard's record of the upload
    /// (see [`crate::attachments`]), never taken from the sender.
    Attachment {
        attachment: AttachmentContent,
    },
}

/// Longest attachment id a client may choose (the SDK's are UUIDs).
pub const MAX_ATTACHMENT_ID_CHARS: usize = 64;
/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

/// A file in a message, in the shape the Transport SDK decodes strictly
/// (`url`, `filename` and `mediaType` required).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentContent {
    /// The sender's id of the attachment (the SDK matches its pending
    /// upload by it).
    pub id: String,
    /// A download URL, minted fresh whenever the message is shown; what is
    /// stored is stale and never served as is.
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub filename: String,
    /// `Image` or `File`, by the verified type.
    #[serde(default = "file_media_type")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    /// A small preview of an image, when one was made; fresh like `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// switchboard's record of the upload; set once the sender's id was
    /// resolved against its own uploads.
    #[serde(
        default,
        rename = "attachmentRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub reference: Option<uuid::Uuid>,
}

fn file_media_type() -> String {
    "File".to_owned()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    pub text: String,
    pub payload: String,
    /// Genesys's hint of what tapping does (`Message`); passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub title: String,
    /// Required by the SDK, so always sent (possibly empty).
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What tapping the card itself does: a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<CardAction>,
    /// Required by the SDK, so always sent (possibly empty).
    #[serde(default)]
    pub actions: Vec<CardAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardAction {
    #[serde(rename = "type")]
    pub kind: ActionType,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// A card button opens a link (the app does it; nothing is sent back) or
/// posts its payload back as the visitor's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    Link,
    Postback,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carousel {
    pub cards: Vec<Card>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ButtonResponse {
    pub text: String,
    pub payload: String,
    #[serde(rename = "type")]
    pub kind: ButtonResponseType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_message_id: Option<String>,
}

/// What the visitor answered: a quick reply, a card's postback button, or a
/// time slot of a date picker (its payload the ISO date-time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ButtonResponseType {
    QuickReply,
    Button,
    DatePicker,
}

/// Who sends content: each side sends its own kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// Quick replies, one card, or one carousel.
    Agent,
    /// Button responses (and, as web clients always could, quick replies).
    Visitor,
}

/// Content that is not valid, with where and why (for the error answer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContentError(pub String);

fn refuse<T>(at: &str, rule: impl std::fmt::Display) -> Result<T, ContentError> {
    Err(ContentError(format!("{at} {rule}")))
}

/// Parses and validates the `content` of a message sent by `sender`, within
/// the node's `limits` (how many quick replies, cards and buttons; the
/// lengths of labels, payloads and URLs are the protocol's own).
pub fn parse(
    values: &[Value],
    sender: Sender,
    limits: &MessageLimits,
) -> Result<Vec<ContentItem>, ContentError> {
    let mut items = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let at = format!("content[{i}]");
        let item: ContentItem = serde_json::from_value(value.clone())
            .map_err(|e| ContentError(format!("{at}: {e}")))?;
        item.validate(&at, limits)?;
        items.push(item);
    }
    check_combination(&items, sender, limits.quick_replies)?;
    Ok(items)
}

/// Which items may travel together: what the SDK turns into one kind of
/// message (quick replies, cards, a button response) without ambiguity.
fn check_combination(
    items: &[ContentItem],
    sender: Sender,
    max_quick_replies: usize,
) -> Result<(), ContentError> {
    let count = |f: fn(&ContentItem) -> bool| items.iter().filter(|i| f(i)).count();
    let quick = count(|i| matches!(i, ContentItem::QuickReply { .. }));
    let cards = count(|i| matches!(i, ContentItem::Card { .. } | ContentItem::Carousel { .. }));
    let answers = count(|i| matches!(i, ContentItem::ButtonResponse { .. }));
    if count(|i| matches!(i, ContentItem::Attachment { .. })) > MAX_ATTACHMENTS {
        return refuse(
            "content",
            format!("holds at most {MAX_ATTACHMENTS} attachments"),
        );
    }
    match sender {
        Sender::Agent => {
            if answers > 0 {
                return refuse(
                    "content",
                    "may not hold a ButtonResponse: visitors answer with it",
                );
            }
            if cards > 0 && (quick > 0 || cards > 1) {
                return refuse(
                    "content",
                    "holds quick replies, one Card or one Carousel, not a mix",
                );
            }
        }
        Sender::Visitor => {
            if cards > 0 {
                return refuse("content", "may not hold a Card or Carousel from a visitor");
            }
            if answers > 1 {
                return refuse("content", "holds at most one ButtonResponse");
            }
        }
    }
    if quick > max_quick_replies {
        return refuse(
            "content",
            format!("holds at most {max_quick_replies} quick replies"),
        );
    }
    Ok(())
}

fn check_text(at: &str, text: &str, min: usize, max: usize) -> Result<(), ContentError> {
    let chars = text.chars().count();
    if chars < min || chars > max || (min > 0 && text.trim().is_empty()) {
        return refuse(at, format!("must be {min} to {max} characters"));
    }
    Ok(())
}

/// Links and images: absolute http(s) URLs only, so a client never opens a
/// `javascript:` or `file:` URL an agent (or a bot) sent.
fn check_url(at: &str, url: &str) -> Result<(), ContentError> {
    if url.len() > MAX_URL_CHARS {
        return refuse(at, format!("is longer than {MAX_URL_CHARS} characters"));
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => refuse(at, "must be an absolute http(s) URL"),
    }
}

impl ContentItem {
    fn validate(&self, at: &str, limits: &MessageLimits) -> Result<(), ContentError> {
        match self {
            ContentItem::QuickReply { quick_reply } => {
                check_text(
                    &format!("{at}.quickReply.text"),
                    &quick_reply.text,
                    1,
                    MAX_LABEL_CHARS,
                )?;
                check_text(
                    &format!("{at}.quickReply.payload"),
                    &quick_reply.payload,
                    1,
                    MAX_PAYLOAD_CHARS,
                )?;
                if let Some(action) = &quick_reply.action {
                    check_text(
                        &format!("{at}.quickReply.action"),
                        action,
                        1,
                        MAX_REFERENCE_CHARS,
                    )?;
                }
                Ok(())
            }
            ContentItem::Card { card } => card.validate(&format!("{at}.card"), limits.card_actions),
            ContentItem::Carousel { carousel } => {
                let n = carousel.cards.len();
                if n == 0 || n > limits.carousel_cards {
                    return refuse(
                        &format!("{at}.carousel.cards"),
                        format!("must hold 1 to {} cards", limits.carousel_cards),
                    );
                }
                for (i, card) in carousel.cards.iter().enumerate() {
                    card.validate(&format!("{at}.carousel.cards[{i}]"), limits.card_actions)?;
                }
                Ok(())
            }
            ContentItem::ButtonResponse { button_response } => {
                let at = format!("{at}.buttonResponse");
                // May be empty: an app builds a time slot's answer itself.
                check_text(
                    &format!("{at}.text"),
                    &button_response.text,
                    0,
                    MAX_LABEL_CHARS,
                )?;
                check_text(
                    &format!("{at}.payload"),
                    &button_response.payload,
                    0,
                    MAX_PAYLOAD_CHARS,
                )?;
                if let Some(id) = &button_response.originating_message_id {
                    check_text(
                        &format!("{at}.originatingMessageId"),
                        id,
                        1,
                        MAX_REFERENCE_CHARS,
                    )?;
                }
                Ok(())
            }
            ContentItem::Attachment { attachment } => check_text(
                &format!("{at}.attachment.id"),
                &attachment.id,
                1,
                MAX_ATTACHMENT_ID_CHARS,
            ),
        }
    }

    /// The text a person would read for a button response (its text, or
    /// else its payload: a time slot's date-time): what an agent sees for
    /// a visitor's quick reply sent without text.
    pub fn answer_text(&self) -> Option<&str> {
        match self {
            ContentItem::ButtonResponse { button_response } => [
                button_response.text.as_str(),
                button_response.payload.as_str(),
            ]
            .into_iter()
            .find(|t| !t.trim().is_empty()),
            _ => None,
        }
    }
}

impl Card {
    fn validate(&self, at: &str, max_actions: usize) -> Result<(), ContentError> {
        check_text(&format!("{at}.title"), &self.title, 1, MAX_LABEL_CHARS)?;
        check_text(
            &format!("{at}.description"),
            &self.description,
            0,
            MAX_DESCRIPTION_CHARS,
        )?;
        if let Some(image) = &self.image {
            check_url(&format!("{at}.image"), image)?;
        }
        if let Some(action) = &self.default_action {
            let at = format!("{at}.defaultAction");
            if action.kind != ActionType::Link {
                return refuse(&format!("{at}.type"), "must be Link");
            }
            action.validate(&at)?;
        }
        if self.actions.len() > max_actions {
            return refuse(
                &format!("{at}.actions"),
                format!("holds at most {max_actions} actions"),
            );
        }
        for (i, action) in self.actions.iter().enumerate() {
            action.validate(&format!("{at}.actions[{i}]"))?;
        }
        Ok(())
    }
}

impl CardAction {
    fn validate(&self, at: &str) -> Result<(), ContentError> {
        check_text(&format!("{at}.text"), &self.text, 1, MAX_LABEL_CHARS)?;
        if let Some(url) = &self.url {
            check_url(&format!("{at}.url"), url)?;
        }
        if let Some(payload) = &self.payload {
            check_text(&format!("{at}.payload"), payload, 1, MAX_PAYLOAD_CHARS)?;
        }
        match self.kind {
            ActionType::Link if self.url.is_none() => {
                refuse(&format!("{at}.url"), "is required for a Link")
            }
            ActionType::Postback if self.payload.is_none() => {
                refuse(&format!("{at}.payload"), "is required for a Postback")
            }
            _ => Ok(()),
        }
    }
}

/// Reads stored content, dropping any item that does not decode: content
/// logged before it was validated must not make a whole event unreadable.
pub fn lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ContentItem>, D::Error> {
    let values = Option::<Vec<Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// Custom attributes: string keys and values, as Genesys clients send them
/// (`channel.metadata.customAttributes`), for agents to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomAttributes(pub BTreeMap<String, String>);

impl CustomAttributes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The size the limit is about: the UTF-8 bytes of every key and
    /// value, as the SDK measures before it sends.
    pub fn data_bytes(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Adds `other`'s attributes that are not set yet.
    pub fn fill_from(&mut self, other: CustomAttributes) {
        for (key, value) in other.0 {
            self.0.entry(key).or_insert(value);
        }
    }
}

/// A message's or event's metadata, as agents see it: `customAttributes`
/// beside the string metadata the client sent with the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMetadata {
    pub custom_attributes: CustomAttributes,
    /// `message.metadata` of the visitor's request (strings only).
    pub extra: BTreeMap<String, String>,
}

const CUSTOM_ATTRIBUTES_KEY: &str = "customAttributes";

impl MessageMetadata {
    pub fn is_empty(&self) -> bool {
        self.custom_attributes.is_empty() && self.extra.is_empty()
    }
}

impl Serialize for MessageMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let attributes = !self.custom_attributes.is_empty();
        let mut map = serializer.serialize_map(Some(self.extra.len() + usize::from(attributes)))?;
        if attributes {
            map.serialize_entry(CUSTOM_ATTRIBUTES_KEY, &self.custom_attributes)?;
        }
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Lenient, for the same reason as [`lenient`]: metadata logged before it
/// was typed keeps its strings and loses the rest.
impl<'de> Deserialize<'de> for MessageMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Value::Object(fields) = Value::deserialize(deserializer)? else {
            return Ok(Self::default());
        };
        let mut metadata = Self::default();
        for (key, value) in fields {
            match (key.as_str(), value) {
                (CUSTOM_ATTRIBUTES_KEY, Value::Object(attributes)) => {
                    metadata.custom_attributes = CustomAttributes(
                        attributes
                            .into_iter()
                            .filter_map(|(k, v)| match v {
                                Value::String(v) => Some((k, v)),
                                _ => None,
                            })
                            .collect(),
                    );
                }
                (CUSTOM_ATTRIBUTES_KEY, _) => {}
                (_, Value::String(value)) => {
                    metadata.extra.insert(key, value);
                }
                _ => {}
            }
        }
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent(content: Value) -> Result<Vec<ContentItem>, ContentError> {
        parse(
            content.as_array().unwrap(),
            Sender::Agent,
            &MessageLimits::default(),
        )
    }

    fn visitor(content: Value) -> Result<Vec<ContentItem>, ContentError> {
        parse(
            content.as_array().unwrap(),
            Sender::Visitor,
            &MessageLimits::default(),
        )
    }

    fn card(actions: Value) -> Value {
        json!({"title":"Room","description":"Sea view","image":"https://img.example.com/r.png","actions":actions})
    }

    #[test]
    fn genesys_shapes_round_trip() {
        for item in [
            json!({"contentType":"QuickReply","quickReply":{"text":"Yes","payload":"yes","action":"Message"}}),
            json!({"contentType":"QuickReply","quickReply":{"text":"No","payload":"no"}}),
        ] {
            let parsed = agent(json!([item])).unwrap();
            assert_eq!(serde_json::to_value(&parsed[0]).unwrap(), item);
        }
        let item = json!({"contentType":"Card","card":card(json!([
            {"type":"Link","text":"Open","url":"https://example.com/a"},
            {"type":"Postback","text":"Book","payload":"book-1"}]))});
        let parsed = agent(json!([item])).unwrap();
        assert_eq!(serde_json::to_value(&parsed[0]).unwrap(), item);
        // A card without description or actions still carries both.
        let parsed = agent(json!([{"contentType":"Card","card":{"title":"T"}}])).unwrap();
        let v = serde_json::to_value(&parsed[0]).unwrap();
        assert_eq!(v["card"]["description"], "");
        assert_eq!(v["card"]["actions"], json!([]));
        let item = json!({"contentType":"Carousel","carousel":{"cards":[card(json!([])), card(json!([]))]}});
        assert!(agent(json!([item])).is_ok());
        let answer = json!({"contentType":"ButtonResponse","buttonResponse":
            {"text":"Yes","payload":"yes","type":"QuickReply","originatingMessageId":"m-1"}});
        let parsed = visitor(json!([answer])).unwrap();
        assert_eq!(serde_json::to_value(&parsed[0]).unwrap(), answer);
        assert_eq!(parsed[0].answer_text(), Some("Yes"));
    }

    #[test]
    fn invalid_content_says_where_and_why() {
        let cases = [
            (
                json!([{"contentType":"Attachment","attachment":{}}]),
                "content[0]",
            ),
            (
                json!([{"contentType":"QuickReply","quickReply":{"text":"Yes"}}]),
                "payload",
            ),
            (
                json!([{"contentType":"QuickReply","quickReply":{"text":"","payload":"p"}}]),
                "content[0].quickReply.text",
            ),
            (
                json!([{"contentType":"QuickReply","quickReply":{"text":"x".repeat(MAX_LABEL_CHARS + 1),"payload":"p"}}]),
                "quickReply.text",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([{"type":"Link","text":"Go","url":"javascript:alert(1)"}]))}]),
                "content[0].card.actions[0].url",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([{"type":"Link","text":"Go"}]))}]),
                "actions[0].url is required",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([{"type":"Postback","text":"Go"}]))}]),
                "actions[0].payload is required",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([{"type":"Call","text":"Go"}]))}]),
                "content[0]",
            ),
            (
                json!([{"contentType":"Card","card":{"title":"T","image":"ftp://x/y.png"}}]),
                "card.image",
            ),
            (
                json!([{"contentType":"Card","card":{"title":"T","defaultAction":{"type":"Postback","text":"x","payload":"p"}}}]),
                "defaultAction.type",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([
                {"type":"Postback","text":"1","payload":"1"},{"type":"Postback","text":"2","payload":"2"},
                {"type":"Postback","text":"3","payload":"3"},{"type":"Postback","text":"4","payload":"4"}]))}]),
                "at most 3 actions",
            ),
            (
                json!([{"contentType":"Carousel","carousel":{"cards":[]}}]),
                "carousel.cards",
            ),
            (
                json!([{"contentType":"Card","card":card(json!([]))},{"contentType":"Card","card":card(json!([]))}]),
                "not a mix",
            ),
            (
                json!([{"contentType":"QuickReply","quickReply":{"text":"a","payload":"a"}},{"contentType":"Card","card":card(json!([]))}]),
                "not a mix",
            ),
            (
                json!([{"contentType":"ButtonResponse","buttonResponse":{"text":"a","payload":"a","type":"Button"}}]),
                "visitors answer",
            ),
            (
                json!([{"contentType":"QuickReply","quickReply":null}]),
                "content[0]",
            ),
        ];
        for (content, expected) in cases {
            let error = agent(content.clone()).expect_err(&content.to_string());
            assert!(error.0.contains(expected), "{content}: {error}");
        }
        let quick = |n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"contentType":"QuickReply","quickReply":{"text":format!("{i}"),"payload":"p"}}))
                .collect()
        };
        assert!(agent(Value::Array(quick(11))).is_ok());
        assert!(agent(Value::Array(quick(12))).is_err());
        // The counts are the node's settings.
        let fewer = MessageLimits {
            quick_replies: 2,
            carousel_cards: 1,
            card_actions: 1,
            ..MessageLimits::default()
        };
        assert!(parse(&quick(2), Sender::Agent, &fewer).is_ok());
        assert!(parse(&quick(3), Sender::Agent, &fewer).is_err());
        let two_buttons = json!([{"contentType":"Card","card":card(json!([
            {"type":"Link","text":"a","url":"https://example.com/a"},
            {"type":"Link","text":"b","url":"https://example.com/b"}]))}]);
        assert!(agent(two_buttons.clone()).is_ok());
        let refused = parse(two_buttons.as_array().unwrap(), Sender::Agent, &fewer).unwrap_err();
        assert!(refused.0.contains("at most 1 actions"), "{refused}");
    }

    #[test]
    fn visitors_send_answers_not_cards() {
        assert!(visitor(json!([{"contentType":"Card","card":card(json!([]))}])).is_err());
        let answer = |kind: &str| json!({"contentType":"ButtonResponse","buttonResponse":{"text":"10:00","payload":"2025-01-01T10:00:00Z","type":kind}});
        for kind in ["QuickReply", "Button", "DatePicker"] {
            assert!(visitor(json!([answer(kind)])).is_ok(), "{kind}");
        }
        assert!(visitor(json!([answer("Link")])).is_err());
        assert!(visitor(json!([answer("Button"), answer("Button")])).is_err());
        // An empty payload or text is the visitor's to send; what agents
        // read is whichever is not empty.
        let empty = json!([{"contentType":"ButtonResponse","buttonResponse":{"text":"x","payload":"","type":"Button"}}]);
        assert_eq!(visitor(empty).unwrap()[0].answer_text(), Some("x"));
        let slot = json!([{"contentType":"ButtonResponse","buttonResponse":{"text":"","payload":"2025-01-01T10:00:00Z","type":"DatePicker"}}]);
        assert_eq!(
            visitor(slot).unwrap()[0].answer_text(),
            Some("2025-01-01T10:00:00Z")
        );
    }

    #[test]
    fn stored_content_and_metadata_are_read_leniently() {
        #[derive(Deserialize)]
        struct Stored {
            #[serde(default, deserialize_with = "lenient")]
            content: Vec<ContentItem>,
            #[serde(default)]
            metadata: MessageMetadata,
        }
        let stored: Stored = serde_json::from_value(json!({
            "content": [{"contentType":"QuickReply","quickReply":{"text":"a"}},
                        {"contentType":"QuickReply","quickReply":{"text":"b","payload":"b"}}],
            "metadata": {"customAttributes":{"a":"1","n":2},"orderId":"7","count":3},
        }))
        .unwrap();
        assert_eq!(stored.content.len(), 1);
        assert_eq!(stored.metadata.custom_attributes.0.len(), 1);
        assert_eq!(
            stored.metadata.extra.get("orderId").map(String::as_str),
            Some("7")
        );
        assert_eq!(
            serde_json::to_value(&stored.metadata).unwrap(),
            json!({"customAttributes":{"a":"1"},"orderId":"7"})
        );
    }

    #[test]
    fn custom_attributes_are_measured_as_the_sdk_does() {
        let attributes = CustomAttributes(
            (0..100)
                .map(|i| (format!("k{i:03}x"), "v".repeat(10)))
                .collect(),
        );
        // 100 × (5 + 10): 1500 bytes of data, 2101 of JSON.
        assert_eq!(attributes.data_bytes(), 1500);
        assert!(
            serde_json::to_vec(&attributes).unwrap().len()
                > MessageLimits::default().custom_data_bytes
        );
        let accented = CustomAttributes([("é".to_owned(), "ü".to_owned())].into());
        assert_eq!(accented.data_bytes(), 4);
    }
}
