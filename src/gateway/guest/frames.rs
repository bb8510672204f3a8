//! The guest protocol's frames: requests parsed at the edge into
//! [`Request`], and the server's `response`/`message` frames.
//!
//! Parsing never panics and never gives up on the socket: malformed JSON or
//! an unknown action is a 400 error frame, a missing required field 4020, a
//! field of the wrong type 400 naming it, and the limits of the protocol
//! (text length, custom attributes, attachments) their own codes. The
//! `tracingId` of a request is echoed on its answer even when the rest of
//! the request is refused.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::routing::model::PresenceKind;

/// Longest session token a client may present.
pub const MAX_TOKEN_CHARS: usize = 2048;
/// Longest text of one message, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Largest `channel.metadata.customAttributes`, as JSON bytes.
pub const MAX_CUSTOM_DATA_BYTES: usize = 2048;
/// Longest client message id (it becomes a dedup key).
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// Longest `tracingId` echoed back; a longer one is not echoed.
pub const MAX_TRACING_ID_CHARS: usize = 256;

/// An error answered on the socket, which stays usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestError {
    pub code: u16,
    pub message: Cow<'static, str>,
}

impl GuestError {
    pub fn new(code: u16, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, message)
    }

    pub fn missing(field: &str) -> Self {
        Self::new(4020, format!("missing parameter: {field}"))
    }

    pub fn auth_failed() -> Self {
        Self::new(401, "Session authentication failed")
    }

    pub fn auth_required() -> Self {
        Self::new(401, "authentication required")
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(403, message)
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(4000, message)
    }

    pub fn not_configured() -> Self {
        Self::new(4007, "session not found: send configureSession first")
    }

    pub fn too_many() -> Self {
        Self::new(4029, "Message rate too high for this session")
    }

    pub fn unexpected() -> Self {
        Self::new(5000, "unexpected error, try again")
    }
}

/// A request frame, parsed.
#[derive(Debug)]
pub struct Parsed {
    pub tracing_id: Option<String>,
    /// The session token; present on every action but `getConfiguration`.
    pub token: Option<String>,
    pub request: Request,
}

/// A refused frame: the error and the tracing id to echo.
#[derive(Debug)]
pub struct Rejected {
    pub tracing_id: Option<String>,
    pub error: GuestError,
}

#[derive(Debug)]
pub enum Request {
    ConfigureSession(Configure),
    ConfigureAuthenticatedSession { configure: Configure, code: String },
    OnMessage(Box<GuestMessage>),
    Echo { text: Option<String> },
    GetJwt,
    GetConfiguration { deployment_id: Option<String> },
    CloseSession { close_all: bool },
}

impl Request {
    pub fn action(&self) -> &'static str {
        match self {
            Request::ConfigureSession(_) => "configureSession",
            Request::ConfigureAuthenticatedSession { .. } => "configureAuthenticatedSession",
            Request::OnMessage(_) => "onMessage",
            Request::Echo { .. } => "echo",
            Request::GetJwt => "getJwt",
            Request::GetConfiguration { .. } => "getConfiguration",
            Request::CloseSession { .. } => "closeSession",
        }
    }
}

/// `configureSession` and `configureAuthenticatedSession`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configure {
    pub deployment_id: String,
    pub start_new: bool,
    /// Resume: the last sequence the client saw of its current conversation.
    pub last_sequence: Option<u64>,
    /// Resume: the conversation `last_sequence` belongs to, if the client
    /// knows it. Another conversation than the session's current one is
    /// replayed from its start.
    pub conversation_id: Option<Uuid>,
}

/// An `onMessage` request.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestMessage {
    pub kind: MessageKind,
    /// The client's id for idempotent resends.
    pub client_id: Option<String>,
    /// `message.metadata` as sent, an object or null.
    pub metadata: Value,
    /// `channel.metadata.customAttributes`, within the limit.
    pub custom_attributes: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    Text {
        text: String,
    },
    Structured {
        text: Option<String>,
        content: Vec<Value>,
    },
    Event(GuestEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEvent {
    Typing,
    Presence(PresenceKind),
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Parsed, Rejected> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejected {
        tracing_id: None,
        error: GuestError::bad_request(format!("malformed JSON: {e}")),
    })?;
    let Value::Object(object) = value else {
        return Err(Rejected {
            tracing_id: None,
            error: GuestError::bad_request("a request is a JSON object"),
        });
    };
    let tracing_id = object
        .get("tracingId")
        .and_then(Value::as_str)
        .filter(|t| t.chars().count() <= MAX_TRACING_ID_CHARS)
        .map(str::to_owned);
    let reject = |error: GuestError| Rejected {
        tracing_id: tracing_id.clone(),
        error,
    };
    let action = match object.get("action") {
        None | Some(Value::Null) => return Err(reject(GuestError::missing("action"))),
        Some(Value::String(action)) => action.clone(),
        Some(_) => return Err(reject(GuestError::bad_request("action must be a string"))),
    };
    let object = Value::Object(object);
    let (token, request) = parse_action(&action, object).map_err(reject)?;
    Ok(Parsed {
        tracing_id,
        token,
        request,
    })
}

fn parse_action(action: &str, object: Value) -> Result<(Option<String>, Request), GuestError> {
    match action {
        "configureSession" => {
            let raw: RawConfigure = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            Ok((Some(token), Request::ConfigureSession(configure(&raw)?)))
        }
        "configureAuthenticatedSession" => {
            let raw: RawConfigure = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let configure = configure(&raw)?;
            let code = raw
                .data
                .and_then(|d| d.code)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| GuestError::missing("data.code"))?;
            Ok((
                Some(token),
                Request::ConfigureAuthenticatedSession { configure, code },
            ))
        }
        "onMessage" => {
            let raw: RawOnMessage = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let message = raw.message.ok_or_else(|| GuestError::missing("message"))?;
            let message = guest_message(message, raw.message_id)?;
            Ok((Some(token), Request::OnMessage(Box::new(message))))
        }
        "echo" => {
            let raw: RawOnMessage = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let message = raw.message.ok_or_else(|| GuestError::missing("message"))?;
            if let Some(text) = &message.text
                && text.chars().count() > MAX_TEXT_CHARS
            {
                return Err(too_long());
            }
            Ok((Some(token), Request::Echo { text: message.text }))
        }
        "getJwt" => {
            let raw: RawTokenOnly = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            Ok((Some(token), Request::GetJwt))
        }
        "getConfiguration" => {
            let raw: RawGetConfiguration = shape(object)?;
            let token = match raw.token.as_deref() {
                None | Some("") => None,
                Some(t) => Some(required_token(Some(t))?),
            };
            Ok((
                token,
                Request::GetConfiguration {
                    deployment_id: raw.deployment_id,
                },
            ))
        }
        "closeSession" => {
            let raw: RawCloseSession = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            Ok((
                Some(token),
                Request::CloseSession {
                    close_all: raw.close_all_connections.unwrap_or(false),
                },
            ))
        }
        _ => Err(GuestError::bad_request("unknown action")),
    }
}

/// Deserializes the frame into an action's shape; a field of the wrong type
/// is a 400 naming what was expected.
fn shape<T: DeserializeOwned>(object: Value) -> Result<T, GuestError> {
    serde_json::from_value(object)
        .map_err(|e| GuestError::bad_request(format!("invalid request: {e}")))
}

fn required_token(token: Option<&str>) -> Result<String, GuestError> {
    match token {
        None | Some("") => Err(GuestError::missing("token")),
        Some(t) if t.chars().count() > MAX_TOKEN_CHARS => Err(GuestError::bad_request(format!(
            "token is longer than {MAX_TOKEN_CHARS} characters"
        ))),
        Some(t) => Ok(t.to_owned()),
    }
}

fn too_long() -> GuestError {
    GuestError::new(
        4011,
        format!("message too long: at most {MAX_TEXT_CHARS} characters"),
    )
}

fn configure(raw: &RawConfigure) -> Result<Configure, GuestError> {
    let deployment_id = raw
        .deployment_id
        .clone()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| GuestError::missing("deploymentId"))?;
    let conversation_id = match &raw.conversation_id {
        None => None,
        Some(id) => Some(
            Uuid::parse_str(id)
                .map_err(|_| GuestError::bad_request("conversationId is not a UUID"))?,
        ),
    };
    Ok(Configure {
        deployment_id,
        start_new: raw.start_new.unwrap_or(false),
        last_sequence: raw.last_sequence,
        conversation_id,
    })
}

fn guest_message(
    raw: RawMessage,
    top_level_id: Option<String>,
) -> Result<GuestMessage, GuestError> {
    let kind = raw
        .kind
        .as_deref()
        .ok_or_else(|| GuestError::missing("message.type"))?;
    let content = raw.content.unwrap_or_default();
    let attachment = kind == "Attachment"
        || content
            .iter()
            .any(|c| c.get("contentType").and_then(Value::as_str) == Some("Attachment"));
    if attachment {
        return Err(GuestError::unavailable("attachments are not supported"));
    }
    if let Some(text) = &raw.text
        && text.chars().count() > MAX_TEXT_CHARS
    {
        return Err(too_long());
    }
    let kind = match kind {
        "Text" => MessageKind::Text {
            text: raw
                .text
                .filter(|t| !t.is_empty())
                .ok_or_else(|| GuestError::missing("message.text"))?,
        },
        "Structured" => {
            if raw.text.as_deref().is_none_or(str::is_empty) && content.is_empty() {
                return Err(GuestError::missing("message.content"));
            }
            MessageKind::Structured {
                text: raw.text.filter(|t| !t.is_empty()),
                content,
            }
        }
        "Event" => MessageKind::Event(guest_event(raw.events.unwrap_or_default())?),
        _ => return Err(GuestError::bad_request("unknown message type")),
    };
    let custom_attributes = raw
        .channel
        .and_then(|c| c.metadata)
        .and_then(|m| m.custom_attributes);
    if let Some(attributes) = &custom_attributes {
        if !attributes.is_object() {
            return Err(GuestError::bad_request(
                "channel.metadata.customAttributes must be an object",
            ));
        }
        let size = serde_json::to_vec(attributes).map_or(usize::MAX, |b| b.len());
        if size > MAX_CUSTOM_DATA_BYTES {
            return Err(GuestError::new(
                4013,
                format!("custom attributes over {MAX_CUSTOM_DATA_BYTES} bytes"),
            ));
        }
    }
    let metadata = match raw.metadata {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(m)) => Value::Object(m),
        Some(_) => {
            return Err(GuestError::bad_request(
                "message.metadata must be an object",
            ));
        }
    };
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
        custom_attributes,
    })
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
                "Join" => PresenceKind::Join,
                "Disconnect" => PresenceKind::Disconnect,
                "Clear" => PresenceKind::Clear,
                "SignIn" => PresenceKind::SignIn,
                _ => return Err(GuestError::bad_request("unknown presence type")),
            };
            Ok(GuestEvent::Presence(presence))
        }
        Some(_) => Err(GuestError::bad_request("unknown event type")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfigure {
    token: Option<String>,
    deployment_id: Option<String>,
    start_new: Option<bool>,
    last_sequence: Option<u64>,
    conversation_id: Option<String>,
    data: Option<RawAuthData>,
}

#[derive(Deserialize)]
struct RawAuthData {
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOnMessage {
    token: Option<String>,
    message: Option<RawMessage>,
    message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    content: Option<Vec<Value>>,
    metadata: Option<Value>,
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

#[derive(Deserialize)]
struct RawTokenOnly {
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGetConfiguration {
    token: Option<String>,
    deployment_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCloseSession {
    token: Option<String>,
    close_all_connections: Option<bool>,
}

// ---- server frames ------------------------------------------------------

#[derive(Serialize)]
struct Frame<'a, B: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    class: &'a str,
    code: u16,
    body: B,
    #[serde(rename = "tracingId", skip_serializing_if = "Option::is_none")]
    tracing_id: Option<&'a str>,
}

fn frame<B: Serialize>(
    kind: &'static str,
    class: &str,
    code: u16,
    body: B,
    tracing_id: Option<&str>,
) -> String {
    let frame = Frame {
        kind,
        class,
        code,
        body,
        tracing_id,
    };
    serde_json::to_string(&frame).unwrap_or_else(|e| {
        tracing::error!(error = %e, class, "cannot encode a guest frame");
        r#"{"type":"response","class":"string","code":5000,"body":"unexpected error"}"#.to_owned()
    })
}

/// A `response` frame answering a request.
pub fn response<B: Serialize>(class: &str, body: B, tracing_id: Option<&str>) -> String {
    frame("response", class, 200, body, tracing_id)
}

/// A pushed `message` frame.
pub fn push<B: Serialize>(class: &str, body: B) -> String {
    frame("message", class, 200, body, None)
}

/// An error answer: class `string` with a text body, or for 4029 the
/// `TooManyRequestsErrorMessage` class with code 429.
pub fn error(error: &GuestError, tracing_id: Option<&str>) -> String {
    if error.code == 4029 {
        return frame(
            "response",
            "TooManyRequestsErrorMessage",
            429,
            TooManyRequests {
                retry_after: RATE_RETRY_AFTER_SECONDS,
                error_code: 4029,
                error_message: &error.message,
            },
            tracing_id,
        );
    }
    frame(
        "response",
        "string",
        error.code,
        error.message.as_ref(),
        tracing_id,
    )
}

/// What a client told 4029 waits, in seconds: the rate window.
pub const RATE_RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TooManyRequests<'a> {
    retry_after: u64,
    error_code: u16,
    error_message: &'a str,
}

/// An empty body, for the events that carry none.
#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize)]
pub struct ConnectionClosed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct JwtResponse {
    pub jwt: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Files a client may attach: none, since switchboard takes no
/// attachments.
#[derive(Clone, Debug, Serialize)]
pub struct AllowedMedia {
    pub inbound: InboundMedia,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundMedia {
    pub file_types: Vec<Value>,
    #[serde(rename = "maxFileSizeKB")]
    pub max_file_size_kb: u64,
}

impl AllowedMedia {
    pub fn none() -> Self {
        Self {
            inbound: InboundMedia {
                file_types: Vec::new(),
                max_file_size_kb: 0,
            },
        }
    }
}

/// File extensions refused whatever the configuration says (Genesys's
/// list of executable and script types).
pub const BLOCKED_EXTENSIONS: &[&str] = &[
    ".ade",
    ".adp",
    ".app",
    ".asp",
    ".aspx",
    ".asx",
    ".bas",
    ".bat",
    ".cer",
    ".chm",
    ".cmd",
    ".com",
    ".cpl",
    ".crt",
    ".csh",
    ".der",
    ".exe",
    ".fxp",
    ".gadget",
    ".hlp",
    ".hta",
    ".inf",
    ".ins",
    ".isp",
    ".its",
    ".jar",
    ".js",
    ".jse",
    ".ksh",
    ".lnk",
    ".mad",
    ".maf",
    ".mag",
    ".mam",
    ".maq",
    ".mar",
    ".mas",
    ".mat",
    ".mau",
    ".mav",
    ".maw",
    ".mda",
    ".mdb",
    ".mde",
    ".mdt",
    ".mdw",
    ".mdz",
    ".msc",
    ".msh",
    ".msi",
    ".msp",
    ".mst",
    ".ops",
    ".pcd",
    ".pif",
    ".plg",
    ".prf",
    ".prg",
    ".ps1",
    ".psc1",
    ".pst",
    ".py",
    ".reg",
    ".scf",
    ".scr",
    ".sct",
    ".shb",
    ".shs",
    ".tmp",
    ".url",
    ".vb",
    ".vbe",
    ".vbs",
    ".vsmacros",
    ".vsw",
    ".ws",
    ".wsc",
    ".wsf",
    ".wsh",
    ".xnk",
];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    pub connected: bool,
    pub new_session: bool,
    pub read_only: bool,
    pub cleared_existing_session: bool,
    pub max_custom_data_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_media: Option<AllowedMedia>,
    pub blocked_extensions: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// When the session expires without activity, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<i64>,
    /// Additive: the session's current conversation and its newest
    /// sequence, so a client can resume by sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<u64>,
}

impl SessionResponse {
    /// The answer to `closeSession`.
    pub fn disconnected() -> Self {
        Self {
            connected: false,
            new_session: false,
            read_only: false,
            cleared_existing_session: false,
            max_custom_data_bytes: MAX_CUSTOM_DATA_BYTES,
            allowed_media: None,
            blocked_extensions: BLOCKED_EXTENSIONS,
            duration_seconds: None,
            expiration_date: None,
            conversation_id: None,
            last_sequence: None,
        }
    }
}

/// The answer to `getConfiguration`: the messaging limits in force.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationResponse {
    pub deployment_id: Uuid,
    pub configuration_version: String,
    pub authentication_required: bool,
    pub allow_session_upgrade: bool,
    pub max_custom_data_bytes: usize,
    pub max_text_length: usize,
    pub messages_per_second: u64,
    pub max_frame_bytes: usize,
    pub allowed_media: AllowedMedia,
    pub blocked_extensions: &'static [&'static str],
    pub session_duration_seconds: u32,
    pub auto_start: bool,
    pub conversation_clear: bool,
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    fn err(text: &str) -> Rejected {
        match parse(text) {
            Err(r) => r,
            Ok(p) => panic!("expected a refusal, got {p:?}"),
        }
    }

    #[test]
    fn malformed_and_unknown_are_400() {
        assert_eq!(err("{").error.code, 400);
        assert_eq!(err("[]").error.code, 400);
        assert_eq!(err("null").error.code, 400);
        assert_eq!(err(r#"{"action":"dance","token":"t"}"#).error.code, 400);
        assert_eq!(err(r#"{"action":5}"#).error.code, 400);
        let r = err(r#"{"action":"onMessage","token":5,"tracingId":"x"}"#);
        assert_eq!((r.error.code, r.tracing_id.as_deref()), (400, Some("x")));
    }

    #[test]
    fn missing_fields_are_4020() {
        assert_eq!(err(r#"{"token":"t"}"#).error.code, 4020);
        assert_eq!(
            err(r#"{"action":"configureSession","deploymentId":"d"}"#)
                .error
                .code,
            4020
        );
        assert_eq!(
            err(r#"{"action":"configureSession","token":"t"}"#)
                .error
                .code,
            4020
        );
        let r = err(
            r#"{"action":"configureAuthenticatedSession","token":"t","deploymentId":"d","tracingId":"z"}"#,
        );
        assert_eq!((r.error.code, r.tracing_id.as_deref()), (4020, Some("z")));
        assert_eq!(
            err(r#"{"action":"onMessage","token":"t"}"#).error.code,
            4020
        );
        assert_eq!(
            err(r#"{"action":"onMessage","token":"t","message":{}}"#)
                .error
                .code,
            4020
        );
        assert_eq!(
            err(r#"{"action":"onMessage","token":"t","message":{"type":"Text"}}"#)
                .error
                .code,
            4020
        );
        assert_eq!(
            err(r#"{"action":"onMessage","token":"t","message":{"type":"Event"}}"#)
                .error
                .code,
            4020
        );
    }

    #[test]
    fn limits_have_their_codes() {
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let frame = serde_json::json!({"action":"onMessage","token":"t","message":{"type":"Text","text":long}});
        assert_eq!(err(&frame.to_string()).error.code, 4011);
        // Characters, not bytes.
        let ok = "é".repeat(MAX_TEXT_CHARS);
        let frame = serde_json::json!({"action":"onMessage","token":"t","message":{"type":"Text","text":ok}});
        assert!(parse(&frame.to_string()).is_ok());

        let attributes: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("key{i}"), Value::String("v".repeat(20))))
            .collect();
        let frame = serde_json::json!({"action":"onMessage","token":"t","message":{"type":"Text","text":"hi",
            "channel":{"metadata":{"customAttributes":attributes}}}});
        assert_eq!(err(&frame.to_string()).error.code, 4013);

        let frame = r#"{"action":"onMessage","token":"t","message":{"type":"Structured","content":[{"contentType":"Attachment","attachment":{}}]}}"#;
        assert_eq!(err(frame).error.code, 4000);
        let frame = r#"{"action":"onMessage","token":"t","message":{"type":"Attachment"}}"#;
        assert_eq!(err(frame).error.code, 4000);

        let token = "t".repeat(MAX_TOKEN_CHARS + 1);
        let frame = serde_json::json!({"action":"getJwt","token":token});
        assert_eq!(err(&frame.to_string()).error.code, 400);
    }

    #[test]
    fn parses_every_action() {
        let p = parse(r#"{"action":"configureSession","token":"t","deploymentId":"d","startNew":true,"lastSequence":4,"tracingId":"a"}"#).unwrap();
        assert_eq!(p.tracing_id.as_deref(), Some("a"));
        assert!(matches!(
            p.request,
            Request::ConfigureSession(Configure {
                start_new: true,
                last_sequence: Some(4),
                ..
            })
        ));
        let p = parse(r#"{"action":"configureAuthenticatedSession","token":"t","deploymentId":"d","data":{"code":"jwt"}}"#).unwrap();
        assert!(
            matches!(p.request, Request::ConfigureAuthenticatedSession { ref code, .. } if code == "jwt")
        );
        let p = parse(
            r#"{"action":"onMessage","token":"t","message":{"type":"Text","text":"hi","id":"c1"}}"#,
        )
        .unwrap();
        let Request::OnMessage(m) = p.request else {
            panic!()
        };
        assert_eq!(m.client_id.as_deref(), Some("c1"));
        let p = parse(r#"{"action":"onMessage","token":"t","messageId":"c2","message":{"type":"Event","events":[{"eventType":"Presence","presence":{"type":"Join"}}]}}"#).unwrap();
        let Request::OnMessage(m) = p.request else {
            panic!()
        };
        assert_eq!(
            m.kind,
            MessageKind::Event(GuestEvent::Presence(PresenceKind::Join))
        );
        assert_eq!(m.client_id.as_deref(), Some("c2"));
        let p = parse(r#"{"action":"onMessage","token":"t","message":{"type":"Event","events":[{"eventType":"Typing","typing":{"type":"On"}}]}}"#).unwrap();
        assert!(
            matches!(p.request, Request::OnMessage(m) if m.kind == MessageKind::Event(GuestEvent::Typing))
        );
        assert!(matches!(
            parse(r#"{"action":"echo","token":"t","message":{"type":"Text","text":"ping"}}"#)
                .unwrap()
                .request,
            Request::Echo { .. }
        ));
        assert!(matches!(
            parse(r#"{"action":"getJwt","token":"t"}"#).unwrap().request,
            Request::GetJwt
        ));
        assert!(matches!(
            parse(r#"{"action":"getConfiguration","deploymentId":"d"}"#)
                .unwrap()
                .request,
            Request::GetConfiguration { .. }
        ));
        assert!(matches!(
            parse(r#"{"action":"closeSession","token":"t","closeAllConnections":true}"#)
                .unwrap()
                .request,
            Request::CloseSession { close_all: true }
        ));
    }

    #[test]
    fn error_frames_have_the_documented_shape() {
        let text = error(&GuestError::new(4011, "message too long"), Some("tr"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"response","class":"string","code":4011,"body":"message too long","tracingId":"tr"})
        );
        let v: Value = serde_json::from_str(&error(&GuestError::too_many(), None)).unwrap();
        assert_eq!(v["class"], "TooManyRequestsErrorMessage");
        assert_eq!(v["code"], 429);
        assert_eq!(v["body"]["errorCode"], 4029);
        assert_eq!(v["body"]["retryAfter"], 1);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let samples = [
            "",
            " ",
            "\"x\"",
            "1",
            "{\"action\":null}",
            "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":[]}",
            "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Event\",\"events\":[{}]}}",
            "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Event\",\"events\":[{\"eventType\":\"Presence\",\"presence\":{\"type\":7}}]}}",
            "{\"action\":\"configureSession\",\"token\":\"t\",\"deploymentId\":\"d\",\"lastSequence\":-1}",
            "{\"action\":\"onMessage\",\"token\":\"t\",\"message\":{\"type\":\"Text\",\"text\":\"x\",\"channel\":{\"metadata\":{\"customAttributes\":[1]}}}}",
        ];
        for sample in samples {
            let _ = parse(sample);
        }
    }
}
