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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StructuredMessage {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub text: Option<String>,
    pub direction: String,
    #[serde(default)]
    pub content: Vec<serde_json::Value>,
    /// Every value a JSON string.
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) enum MessageType {
    Text,
    Event,
    Structured,
}

/// The envelope of a socket frame.
#[derive(Debug, Deserialize)]
pub(super) struct Frame<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: i32,
    pub body: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionResponse {
    pub connected: bool,
    #[serde(default)]
    pub new_session: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct JwtResponse {
    #[serde(default)]
    pub jwt: String,
    #[serde(default)]
    pub exp: i64,
}
