//! Request frames, parsed into typed values or refused with the documented
//! error code.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::message::{GuestMessage, RawOnMessage, guest_message, string_metadata};
use super::{GuestError, MAX_TOKEN_CHARS, MAX_TRACING_ID_CHARS};
use crate::limits::MessageLimits;
use secrecy::SecretString;

/// A request frame, parsed.
#[derive(Debug)]
pub struct Parsed {
    pub tracing_id: Option<String>,
    /// The session token; present on every action but `getConfiguration`.
    /// Whoever holds it speaks for the session, so it is kept as a secret.
    pub token: Option<SecretString>,
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
    /// `code` is the session JWT.
    ConfigureAuthenticatedSession {
        configure: Configure,
        code: SecretString,
    },
    OnMessage(Box<GuestMessage>),
    /// A heartbeat (the Transport SDK's health check): the text and string
    /// metadata come back.
    Echo {
        text: Option<String>,
        metadata: BTreeMap<String, String>,
    },
    GetJwt,
    GetConfiguration {
        deployment_id: Option<String>,
    },
    CloseSession {
        close_all: bool,
    },
    /// An upload URL for a file the client is about to send.
    OnAttachment(AttachmentUpload),
    /// A fresh download URL for one of the session's attachments.
    GetAttachment {
        attachment_id: String,
    },
    /// Removes an upload no message carries yet.
    DeleteAttachment {
        attachment_id: String,
    },
}

/// `onAttachment`: what the client declares about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentUpload {
    pub attachment_id: String,
    pub file_name: String,
    pub file_type: String,
    /// The SDK always sends it; without it the mode's maximum is reserved.
    pub file_size: Option<u64>,
}

impl Request {
    /// The attachment a request is about, for its `GenerateUrlError`.
    pub fn attachment_id(&self) -> Option<&str> {
        match self {
            Request::OnAttachment(upload) => Some(&upload.attachment_id),
            Request::GetAttachment { attachment_id }
            | Request::DeleteAttachment { attachment_id } => Some(attachment_id),
            _ => None,
        }
    }
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
            Request::OnAttachment(_) => "onAttachment",
            Request::GetAttachment { .. } => "getAttachment",
            Request::DeleteAttachment { .. } => "deleteAttachment",
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

/// Parses one text frame, within the node's message `limits`.
pub fn parse(text: &str, limits: &MessageLimits) -> Result<Parsed, Rejected> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejected {
        tracing_id: None,
        error: GuestError::bad_request(format!(
            "malformed JSON: {}",
            crate::http::body::redact(&e.to_string())
        )),
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
    let (token, request) = parse_action(&action, object, limits).map_err(reject)?;
    Ok(Parsed {
        tracing_id,
        token,
        request,
    })
}

fn parse_action(
    action: &str,
    object: Value,
    limits: &MessageLimits,
) -> Result<(Option<SecretString>, Request), GuestError> {
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
                .map(SecretString::from)
                .ok_or_else(|| GuestError::missing("data.code"))?;
            Ok((
                Some(token),
                Request::ConfigureAuthenticatedSession { configure, code },
            ))
        }
        "onMessage" => {
            let raw: RawOnMessage = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let message = guest_message(raw, limits)?;
            Ok((Some(token), Request::OnMessage(Box::new(message))))
        }
        "echo" => {
            let raw: RawOnMessage = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let message = raw.message.ok_or_else(|| GuestError::missing("message"))?;
            if let Some(text) = &message.text
                && text.chars().count() > limits.text_chars
            {
                return Err(too_long(limits.text_chars));
            }
            let metadata = string_metadata(message.metadata.as_ref(), limits.custom_data_bytes)?;
            Ok((
                Some(token),
                Request::Echo {
                    text: message.text,
                    metadata,
                },
            ))
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
        "onAttachment" => {
            let raw: RawOnAttachment = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let attachment_id = attachment_id(raw.attachment_id)?;
            let file_name = raw
                .file_name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| GuestError::missing("fileName"))?;
            let file_type = raw
                .file_type
                .filter(|t| !t.is_empty())
                .ok_or_else(|| GuestError::missing("fileType"))?;
            Ok((
                Some(token),
                Request::OnAttachment(AttachmentUpload {
                    attachment_id,
                    file_name,
                    file_type,
                    file_size: raw.file_size,
                }),
            ))
        }
        "getAttachment" | "deleteAttachment" => {
            let raw: RawAttachmentId = shape(object)?;
            let token = required_token(raw.token.as_deref())?;
            let attachment_id = attachment_id(raw.attachment_id)?;
            let request = if action == "getAttachment" {
                Request::GetAttachment { attachment_id }
            } else {
                Request::DeleteAttachment { attachment_id }
            };
            Ok((Some(token), request))
        }
        _ => Err(GuestError::bad_request("unknown action")),
    }
}

fn attachment_id(id: Option<String>) -> Result<String, GuestError> {
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| GuestError::missing("attachmentId"))?;
    if id.chars().count() > crate::routing::content::MAX_ATTACHMENT_ID_CHARS {
        return Err(GuestError::bad_request(format!(
            "attachmentId is longer than {} characters",
            crate::routing::content::MAX_ATTACHMENT_ID_CHARS
        )));
    }
    Ok(id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOnAttachment {
    token: Option<String>,
    attachment_id: Option<String>,
    file_name: Option<String>,
    file_type: Option<String>,
    file_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttachmentId {
    token: Option<String>,
    attachment_id: Option<String>,
}

/// Deserializes the frame into an action's shape; a field of the wrong type
/// is a 400 naming what was expected.
fn shape<T: DeserializeOwned>(object: Value) -> Result<T, GuestError> {
    serde_json::from_value(object).map_err(|e| {
        GuestError::bad_request(format!(
            "invalid request: {}",
            crate::http::body::redact(&e.to_string())
        ))
    })
}

fn required_token(token: Option<&str>) -> Result<SecretString, GuestError> {
    match token {
        None | Some("") => Err(GuestError::missing("token")),
        Some(t) if t.chars().count() > MAX_TOKEN_CHARS => Err(GuestError::bad_request(format!(
            "token is longer than {MAX_TOKEN_CHARS} characters"
        ))),
        Some(t) => Ok(SecretString::from(t.to_owned())),
    }
}

pub(super) fn too_long(max_chars: usize) -> GuestError {
    GuestError::new(
        4011,
        format!("message too long: at most {max_chars} characters"),
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::super::message::{GuestEvent, MessageKind};
    use super::*;
    use crate::gateway::guest::frames::defaults::{MAX_TEXT_CHARS, parse};
    use crate::gateway::guest::messages::GuestPresence;

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

        // An attachment is named by its id; the SDK sends it as Text
        // without text.
        let frame = r#"{"action":"onMessage","token":"t","message":{"type":"Structured","content":[{"contentType":"Attachment","attachment":{}}]}}"#;
        assert_eq!(err(frame).error.code, 400);
        let frame = r#"{"action":"onMessage","token":"t","message":{"type":"Text","text":"","content":[{"contentType":"Attachment","attachment":{"id":"abcd-1234"}}]}}"#;
        assert!(parse(frame).is_ok());
        let frame = r#"{"action":"onMessage","token":"t","message":{"type":"Attachment"}}"#;
        assert_eq!(err(frame).error.code, 400);
        let long = "a".repeat(65);
        let frame = serde_json::json!({"action":"getAttachment","token":"t","attachmentId":long});
        assert_eq!(err(&frame.to_string()).error.code, 400);
        let frame =
            r#"{"action":"onAttachment","token":"t","attachmentId":"a","fileName":"x.png"}"#;
        assert_eq!(err(frame).error.code, 4020);

        let token = "t".repeat(MAX_TOKEN_CHARS + 1);
        let frame = serde_json::json!({"action":"getJwt","token":token});
        assert_eq!(err(&frame.to_string()).error.code, 400);
    }

    #[test]
    fn parses_the_attachment_actions_as_the_sdk_sends_them() {
        // The SDK's OnAttachmentRequest, DeleteAttachmentRequest and
        // GetAttachmentRequest, as its serialization tests spell them.
        let p = parse(r#"{"token":"<token>","attachmentId":"88888888-8888-8888-8888-888888888888","fileName":"test_attachment.png","fileType":"image/png","fileSize":1,"errorsAsJson":true,"tracingId":"t-1","action":"onAttachment"}"#).unwrap();
        assert_eq!(p.tracing_id.as_deref(), Some("t-1"));
        let Request::OnAttachment(upload) = p.request else {
            panic!("not onAttachment");
        };
        assert_eq!(
            upload,
            AttachmentUpload {
                attachment_id: "88888888-8888-8888-8888-888888888888".into(),
                file_name: "test_attachment.png".into(),
                file_type: "image/png".into(),
                file_size: Some(1),
            }
        );
        let p = parse(r#"{"token":"<token>","attachmentId":"a-1","tracingId":"t","action":"deleteAttachment"}"#).unwrap();
        assert!(
            matches!(p.request, Request::DeleteAttachment { ref attachment_id } if attachment_id == "a-1")
        );
        assert_eq!(p.request.attachment_id(), Some("a-1"));
        let p =
            parse(r#"{"token":"<token>","attachmentId":"a-1","action":"getAttachment"}"#).unwrap();
        assert!(matches!(p.request, Request::GetAttachment { .. }));
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
            matches!(p.request, Request::ConfigureAuthenticatedSession { ref code, .. } if code.expose_secret() == "jwt")
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
            MessageKind::Event(GuestEvent::Presence(GuestPresence::Join))
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
}
