//! The SDK's receive models, as far as these tests need them: unknown keys
//! ignored, fields without a default required, enums closed, and (as
//! kotlinx without input coercion) `null` refused for a field that has a
//! default but is not nullable, so only nullable fields are `Option`s.
#![expect(
    dead_code,
    reason = "fields are here to be required (or typed) by decoding, as the SDK requires them, whether or not a test reads them"
)]

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeploymentConfig {
    pub id: String,
    pub version: String,
    pub languages: Vec<String>,
    pub default_language: String,
    pub api_endpoint: String,
    pub messenger: Messenger,
    pub journey_events: Toggle,
    pub status: Status,
    pub auth: Auth,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) enum Status {
    Active,
    Inactive,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Auth {
    pub enabled: bool,
    #[serde(default)]
    pub allow_session_upgrade: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Messenger {
    pub enabled: bool,
    pub apps: Apps,
    pub styles: Styles,
    pub launcher_button: LauncherButton,
    pub file_upload: FileUpload,
}

#[derive(Debug, Deserialize)]
pub(super) struct Apps {
    pub conversations: Conversations,
}

/// Optional fields default, but (as kotlinx without coercion) a `null`
/// for them fails: none is an `Option`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Conversations {
    pub messaging_endpoint: String,
    #[serde(default)]
    pub show_agent_typing_indicator: bool,
    #[serde(default)]
    pub show_user_typing_indicator: bool,
    #[serde(default)]
    pub auto_start: Toggle,
    #[serde(default)]
    pub conversation_disconnect: ConversationDisconnect,
    #[serde(default)]
    pub conversation_clear: Toggle,
    #[serde(default)]
    pub notifications: Notifications,
    #[serde(default)]
    pub markdown: Toggle,
    #[serde(default)]
    pub humanize: Toggle,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Toggle {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ConversationDisconnect {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, rename = "type")]
    pub kind: DisconnectType,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) enum DisconnectType {
    ReadOnly,
    #[default]
    Send,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Notifications {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub notification_content_type: NotificationContentType,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) enum NotificationContentType {
    IncludeMessagesContent,
    #[default]
    ExcludeMessagesContent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Styles {
    pub primary_color: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct LauncherButton {
    pub visibility: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileUpload {
    pub enable_attachments: Option<bool>,
    #[serde(default)]
    pub modes: Vec<Mode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Mode {
    #[serde(default)]
    pub file_types: Vec<String>,
    #[serde(rename = "maxFileSizeKB")]
    pub max_file_size_kb: i64,
}

/// The exchange's and refresh's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuthJwt {
    pub jwt: String,
    pub refresh_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PushErrorResponse {
    pub message: String,
    pub code: String,
    pub status: i32,
    pub context_id: Option<String>,
    #[serde(default)]
    pub details: Vec<String>,
}

/// History's page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MessageEntityList {
    #[serde(default)]
    pub entities: Vec<StructuredMessage>,
    pub page_size: i32,
    pub page_number: i32,
    pub total: i32,
    pub page_count: i32,
}

/// `StructuredMessage`: `id`, `type` (a closed enum) and `direction`
/// required; `content`, `metadata` (strings only) and `events` default to
/// empty but may not be `null`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StructuredMessage {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub text: Option<String>,
    /// Compared with "Inbound" and "Outbound".
    pub direction: String,
    pub channel: Option<Channel>,
    #[serde(default)]
    pub content: Vec<Content>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub events: Vec<Event>,
    pub originating_entity: Option<String>,
    pub originating_message_id: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) enum MessageType {
    Text,
    Event,
    Structured,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Channel {
    /// ISO-8601, read with `Instant.parse` (null when it does not parse).
    pub time: Option<String>,
    pub message_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub to: Option<Participant>,
    pub from: Option<Participant>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Participant {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub nickname: Option<String>,
    pub image: Option<String>,
}

/// Content, dispatched on `contentType`: a known type must carry its
/// required fields (or the whole frame fails), an unknown one is ignored.
#[derive(Debug)]
pub(super) enum Content {
    Attachment(AttachmentContent),
    QuickReply(QuickReplyContent),
    ButtonResponse(ButtonResponseContent),
    Card(CardContent),
    Carousel(CarouselContent),
    DatePicker(DatePickerContent),
    Unknown,
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        let kind = value
            .get("contentType")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::custom("content without contentType"))?
            .to_owned();
        fn typed<T: serde::de::DeserializeOwned, E: Error>(value: Value) -> Result<T, E> {
            serde_json::from_value(value).map_err(E::custom)
        }
        Ok(match kind.as_str() {
            "Attachment" => Content::Attachment(typed(value)?),
            "QuickReply" => Content::QuickReply(typed(value)?),
            "ButtonResponse" => Content::ButtonResponse(typed(value)?),
            "Card" => Content::Card(typed(value)?),
            "Carousel" => Content::Carousel(typed(value)?),
            "DatePicker" => Content::DatePicker(typed(value)?),
            _ => Content::Unknown,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AttachmentContent {
    pub attachment: Attachment,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Attachment {
    pub id: String,
    pub url: String,
    pub filename: String,
    pub media_type: String,
    pub file_size: Option<i64>,
    pub mime: Option<String>,
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QuickReplyContent {
    pub quick_reply: QuickReply,
}

#[derive(Debug, Deserialize)]
pub(super) struct QuickReply {
    pub text: String,
    pub payload: String,
    pub action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ButtonResponseContent {
    pub button_response: ButtonResponse,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ButtonResponse {
    pub text: String,
    pub payload: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub originating_message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CardContent {
    pub card: Card,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Card {
    pub title: String,
    pub description: String,
    pub image: Option<String>,
    pub default_action: Option<Action>,
    pub actions: Vec<Action>,
}

/// `type` is compared case-insensitively: Link, Postback or Button.
#[derive(Debug, Deserialize)]
pub(super) struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub url: Option<String>,
    pub payload: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CarouselContent {
    pub carousel: Carousel,
}

#[derive(Debug, Deserialize)]
pub(super) struct Carousel {
    pub cards: Vec<Card>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DatePickerContent {
    pub date_picker: DatePicker,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DatePicker {
    pub title: String,
    pub subtitle: Option<String>,
    pub image_url: Option<String>,
    #[serde(default)]
    pub available_times: Vec<AvailableTime>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AvailableTime {
    pub duration: i64,
    pub date_time: String,
}

/// An event, dispatched on `eventType`: presence types are a closed enum,
/// so an unknown one fails the whole frame; an unknown event type is
/// ignored.
#[derive(Debug, PartialEq)]
pub(super) enum Event {
    Typing { kind: String, duration: Option<i64> },
    Presence(PresenceType),
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub(super) enum PresenceType {
    Disconnect,
    Join,
    Clear,
    SignIn,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct Typing {
            typing: TypingBody,
        }
        #[derive(Deserialize)]
        struct TypingBody {
            #[serde(rename = "type")]
            kind: String,
            duration: Option<i64>,
        }
        #[derive(Deserialize)]
        struct Presence {
            presence: PresenceBody,
        }
        #[derive(Deserialize)]
        struct PresenceBody {
            #[serde(rename = "type")]
            kind: PresenceType,
        }
        let value = Value::deserialize(deserializer)?;
        let kind = value
            .get("eventType")
            .and_then(Value::as_str)
            .ok_or_else(|| D::Error::custom("event without eventType"))?
            .to_owned();
        Ok(match kind.as_str() {
            "Typing" => {
                let t: Typing = serde_json::from_value(value).map_err(D::Error::custom)?;
                Event::Typing {
                    kind: t.typing.kind,
                    duration: t.typing.duration,
                }
            }
            "Presence" => {
                let p: Presence = serde_json::from_value(value).map_err(D::Error::custom)?;
                Event::Presence(p.presence.kind)
            }
            _ => Event::Unknown,
        })
    }
}

impl StructuredMessage {
    /// The presence the message carries, if any.
    pub(super) fn presence(&self) -> Option<PresenceType> {
        self.events.iter().find_map(|e| match e {
            Event::Presence(p) => Some(*p),
            _ => None,
        })
    }

    /// `channel.time` as the SDK reads it: `Instant.parse`, epoch ms.
    pub(super) fn timestamp(&self) -> Option<i64> {
        let time = self.channel.as_ref()?.time.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(time)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

/// The envelope of a socket frame: `type`, `code` and `class` are what the
/// SDK pre-identifies a frame by; `body` is required.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Frame<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub class: String,
    pub code: i32,
    pub body: T,
    pub tracing_id: Option<String>,
}

impl Frame<StructuredMessage> {
    /// The id of the app's `Message`: the tracing id, or the body's.
    pub(super) fn message_id(&self) -> &str {
        self.tracing_id.as_deref().unwrap_or(&self.body.id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionResponse {
    pub connected: bool,
    #[serde(default)]
    pub new_session: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default = "unset")]
    pub max_custom_data_bytes: i32,
    pub allowed_media: Option<AllowedMedia>,
    #[serde(default)]
    pub blocked_extensions: Vec<String>,
    #[serde(default)]
    pub cleared_existing_session: bool,
    pub duration_seconds: Option<i64>,
    pub expiration_date: Option<i64>,
}

fn unset() -> i32 {
    -1
}

#[derive(Debug, Deserialize)]
pub(super) struct AllowedMedia {
    pub inbound: Option<InboundMedia>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct InboundMedia {
    #[serde(default)]
    pub file_types: Vec<FileType>,
    #[serde(rename = "maxFileSizeKB")]
    pub max_file_size_kb: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FileType {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct JwtResponse {
    #[serde(default)]
    pub jwt: String,
    #[serde(default)]
    pub exp: i64,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConnectionClosedEvent {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TooManyRequests {
    pub retry_after: i32,
    pub error_code: i32,
    pub error_message: String,
}

/// The classes the SDK decodes with an empty body.
#[derive(Debug, Deserialize)]
pub(super) struct EmptyBody {}

/// `PresignedUrlResponse`: `fileSize` is a Kotlin `Int`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PresignedUrlResponse {
    pub attachment_id: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub url: String,
    pub file_name: Option<String>,
    pub file_size: Option<i32>,
    pub file_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadSuccessEvent {
    pub attachment_id: String,
    pub download_url: String,
    pub timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadFailureEvent {
    pub attachment_id: String,
    pub error_code: i32,
    pub error_message: String,
    pub timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateUrlError {
    pub attachment_id: String,
    pub error_code: i32,
    pub error_message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AttachmentDeletedResponse {
    pub attachment_id: String,
}

/// Decodes a frame as the SDK's socket listener does: pre-identification
/// (`type`, `code`, `class`), then the body by class. A frame that fails
/// is one the SDK would drop silently; this fails the test instead.
#[track_caller]
pub(super) fn check_frame(frame: &Value) {
    fn decode<T: serde::de::DeserializeOwned>(frame: &Value) -> Result<(), String> {
        serde_json::from_value::<Frame<T>>(frame.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    let class = frame["class"].as_str().unwrap_or_default();
    let decoded = match class {
        "string" => decode::<String>(frame),
        "SessionResponse" => decode::<SessionResponse>(frame),
        "StructuredMessage" => decode::<StructuredMessage>(frame),
        "JwtResponse" => decode::<JwtResponse>(frame),
        "ConnectionClosedEvent" => decode::<ConnectionClosedEvent>(frame),
        "TooManyRequestsErrorMessage" => decode::<TooManyRequests>(frame),
        "SessionExpiredEvent" | "LogoutEvent" | "SessionClearedEvent" => decode::<EmptyBody>(frame),
        "PresignedUrlResponse" => decode::<PresignedUrlResponse>(frame),
        "UploadSuccessEvent" => decode::<UploadSuccessEvent>(frame),
        "UploadFailureEvent" => decode::<UploadFailureEvent>(frame),
        "GenerateUrlError" => decode::<GenerateUrlError>(frame),
        "AttachmentDeletedResponse" => decode::<AttachmentDeletedResponse>(frame),
        other => Err(format!("a class the SDK does not know: {other}")),
    };
    if let Err(e) = decoded {
        panic!("the SDK cannot decode {frame}: {e}");
    }
}
