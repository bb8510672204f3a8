//! The server's frames: answers (`response`), pushed events (`message`),
//! error answers, and the bodies of the classes Genesys clients decode.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::GuestError;

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
        r#"{"type":"response","class":"string","code":503,"body":"unexpected error"}"#.to_owned()
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

/// The echo of the visitor's own `onMessage`: a `message`, as Genesys sends
/// it, with the request's `tracingId`, by which the Transport SDK replaces
/// its pending copy of the message.
pub fn own_message<B: Serialize>(class: &str, body: B, tracing_id: Option<&str>) -> String {
    frame("message", class, 200, body, tracing_id)
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
                retry_after: error.retry_after.map_or(RATE_RETRY_AFTER_SECONDS, |wait| {
                    u64::try_from(wait.as_micros().div_ceil(1_000_000))
                        .unwrap_or(u64::MAX)
                        .max(1)
                }),
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

/// What a client told 4029 waits, in seconds, when the refusal does not
/// say: one message's share of the default guest rate, rounded up.
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

/// Files a client may attach: the published configuration's modes while
/// attachments are on, else none.
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
    /// The published `fileUpload` as the SDK reads it from the session:
    /// every mode's types, and the largest mode's size. None while
    /// attachments are off, or this node cannot keep them.
    pub fn of(settings: &crate::store::records::FileUpload, available: bool) -> Self {
        if !settings.enable_attachments || !available || settings.modes.is_empty() {
            return Self::none();
        }
        let mut file_types: Vec<Value> = Vec::new();
        for mode in &settings.modes {
            for file_type in &mode.file_types {
                let value = serde_json::json!({ "type": file_type });
                if !file_types.contains(&value) {
                    file_types.push(value);
                }
            }
        }
        Self {
            inbound: InboundMedia {
                file_types,
                max_file_size_kb: settings
                    .modes
                    .iter()
                    .map(|m| u64::from(m.max_file_size_kb))
                    .max()
                    .unwrap_or(0),
            },
        }
    }

    pub fn none() -> Self {
        Self {
            inbound: InboundMedia {
                file_types: Vec::new(),
                max_file_size_kb: 0,
            },
        }
    }
}

/// The answer to `onAttachment` (with the headers to PUT with: never
/// empty, or the SDK takes it for a refreshed download URL) and to
/// `getAttachment` (no headers, `fileSize` set: a refreshed URL).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUrlResponse {
    pub attachment_id: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub url: String,
    pub file_name: String,
    pub file_size: u64,
    pub file_type: String,
}

/// The upload arrived and passed the checks.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSuccessEvent {
    pub attachment_id: String,
    pub download_url: String,
    /// switchboard's preview of an image (additive; the SDK ignores it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// ISO 8601 with milliseconds, as Genesys sends it.
    pub timestamp: String,
}

/// The upload was refused (its bytes, after the URL was handed out).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadFailureEvent {
    pub attachment_id: String,
    pub error_code: u16,
    pub error_message: String,
    pub timestamp: String,
}

/// An attachment request refused: the SDK fails that attachment with the
/// code (`ErrorCode.mapFrom`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateUrlError {
    pub attachment_id: String,
    pub error_code: u16,
    pub error_message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentDeletedResponse {
    pub attachment_id: String,
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
    /// The answer to `closeSession`: `read_only` when the session's
    /// conversation ended read-only, which is when the Transport SDK closes
    /// a session (`startNewChat`); only `connected: false, readOnly: true`
    /// makes it configure again with `startNew`.
    pub fn disconnected(read_only: bool, max_custom_data_bytes: usize) -> Self {
        Self {
            connected: false,
            new_session: false,
            read_only,
            cleared_existing_session: false,
            max_custom_data_bytes,
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
    use super::*;

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
        let v: Value =
            serde_json::from_str(&own_message("StructuredMessage", Empty {}, Some("t-1"))).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["tracingId"].as_str()),
            (Some("message"), Some("t-1"))
        );
    }
}
