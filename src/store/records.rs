//! The admin records, in the form they are stored and (except where a secret
//! is involved) shown by the API.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Record;
use super::types::{Algorithm, AppHost, DeploymentStatus, OrgId, Origin, RedirectScheme, Role};
use crate::engine::{Claim, Collection, Home, Kind, RecordKey};

/// Identity and bookkeeping every record carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub id: Uuid,
    /// Optimistic concurrency: an update must send the version it read, and
    /// is refused with 409 when the record changed since.
    pub version: u64,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

impl Meta {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            version: 0,
            date_created: now,
            date_modified: now,
        }
    }
}

macro_rules! record {
    ($ty:ty, $kind:expr) => {
        impl $ty {
            /// The key of the record `id` of the organization `org`.
            pub fn key_of(org: OrgId, id: Uuid) -> RecordKey {
                RecordKey::new(<$ty as Record>::home_for(org), $kind, id.to_string())
            }
        }
    };
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[serde(flatten)]
    pub meta: Meta,
    pub name: String,
    /// The organization a fresh install starts with; the bootstrap token
    /// administers it.
    #[serde(default)]
    pub is_default: bool,
    /// The OIDC integration (of this organization) its staff sign in with
    /// to the console; none means staff SSO is off. A reference, so the
    /// integration cannot be deleted while it is used.
    #[serde(default)]
    pub staff_integration_id: Option<Uuid>,
    /// Days ended conversations (with their logs), visitors' sessions and
    /// records, and audit entries are kept; none: the node's default
    /// (`SWITCHBOARD_RETENTION_DAYS`). A deployment may set its own for its
    /// conversations and sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// What the organization overrides of the node's rates (see
    /// [`crate::limits::OrgLimits`]); set through its own endpoint.
    #[serde(default, skip_serializing_if = "crate::limits::OrgLimits::is_empty")]
    pub limits: crate::limits::OrgLimits,
}
record!(Organization, Kind::Organization);

impl Record for Organization {
    const KIND: Kind = Kind::Organization;
    /// Listed across the installation: the directory's entries are the
    /// list of organizations.
    const LOCATED: bool = true;
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn org(&self) -> OrgId {
        OrgId(self.meta.id)
    }
    /// A list of one in the organization's own home; the installation's
    /// list of organizations is the directory's (see [`Record::LOCATED`]).
    fn collection(&self) -> Collection {
        Collection::Org {
            org: self.meta.id,
            kind: Kind::Organization,
        }
    }
    fn refs(&self) -> Vec<RecordKey> {
        self.staff_integration_id
            .map(|id| OidcIntegration::key_of(self.org(), id))
            .into_iter()
            .collect()
    }
}

/// An OIDC integration as stored: the client secret sealed under the master
/// key, never in the clear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcIntegration {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Sealed under the master key (by `auth`), bound to this record.
    pub sealed_client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub authorize_params: BTreeMap<String, String>,
    pub allowed_algorithms: Vec<Algorithm>,
    pub max_refresh_token_lifetime_seconds: u32,
    /// Whether a refresh spends the presented refresh token and answers the
    /// next one. With rotation a token presented twice revokes its family
    /// (a leaked token is caught); without, a token works until its family
    /// ends or is revoked, which is what Genesys's Transport SDK needs: it
    /// keeps the first refresh token it got and presents it every time.
    /// Records written before this setting existed rotate, as they did.
    #[serde(default = "rotate_by_default")]
    pub refresh_token_rotation: bool,
    pub active: bool,
}
record!(OidcIntegration, Kind::OidcIntegration);

fn rotate_by_default() -> bool {
    true
}

impl OidcIntegration {
    /// The associated data a sealed client secret is bound to.
    pub fn secret_context(id: Uuid) -> String {
        format!("oidc/{id}/clientSecret")
    }
}

impl Record for OidcIntegration {
    const KIND: Kind = Kind::OidcIntegration;
    crate::store::record_basics!();
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthenticationSettings {
    /// Visitors must sign in at the integration's IdP before messaging.
    pub enabled: bool,
    pub integration_id: Option<Uuid>,
    /// A guest session may become authenticated in place.
    pub allow_session_upgrade: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MessengerSettings {
    pub enabled: bool,
    pub styles: Styles,
    pub launcher_button: LauncherButton,
    pub apps: Apps,
    pub file_upload: FileUpload,
}

impl Default for MessengerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            styles: Styles::default(),
            launcher_button: LauncherButton::default(),
            apps: Apps::default(),
            file_upload: FileUpload::default(),
        }
    }
}

/// Whether the messenger shows its launcher button. Genesys clients require
/// the field in `config.json` (the Transport SDK refuses a configuration
/// without it); the web snippet shows its launcher either way.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LauncherButton {
    pub visibility: LauncherVisibility,
}

/// The values Genesys uses for `launcherButton.visibility`.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub enum LauncherVisibility {
    #[default]
    On,
    Off,
    /// Hidden until the host page opens the messenger itself.
    OnDemand,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Styles {
    /// CSS colour of the launcher and header.
    pub primary_color: String,
}

impl Default for Styles {
    fn default() -> Self {
        Self {
            primary_color: "#1f5eff".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Apps {
    pub conversations: ConversationsApp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConversationsApp {
    pub enabled: bool,
    pub show_agent_typing_indicator: bool,
    pub show_user_typing_indicator: bool,
    pub auto_start: Toggle,
    pub conversation_disconnect: ConversationDisconnect,
    pub conversation_clear: Toggle,
    /// A session with no activity for this long expires.
    pub session_duration_seconds: u32,
    /// Apps may register their device for push notifications (the
    /// Transport SDK syncs its device token on every session when this is
    /// on), and agents' messages reach it while the visitor is away
    /// (see [`crate::push`]).
    pub notifications: Notifications,
}

impl Default for ConversationsApp {
    fn default() -> Self {
        Self {
            enabled: true,
            show_agent_typing_indicator: true,
            show_user_typing_indicator: true,
            auto_start: Toggle::default(),
            conversation_disconnect: ConversationDisconnect::default(),
            conversation_clear: Toggle { enabled: true },
            session_duration_seconds: DEFAULT_SESSION_DURATION_SECONDS,
            notifications: Notifications::default(),
        }
    }
}

pub const DEFAULT_SESSION_DURATION_SECONDS: u32 = 1800;

#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Toggle {
    pub enabled: bool,
}

/// Push notifications to apps, as Genesys's `config.json` names them.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Notifications {
    pub enabled: bool,
    pub notification_content_type: NotificationContentType,
}

/// Whether a push may carry the message text, or only say that one came.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub enum NotificationContentType {
    IncludeMessagesContent,
    #[default]
    ExcludeMessagesContent,
}

#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConversationDisconnect {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: DisconnectType,
}

/// What the visitor can do after an agent ends the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub enum DisconnectType {
    /// The transcript stays visible; sending is disabled.
    #[default]
    ReadOnly,
    /// Sending a new message starts a new conversation.
    Send,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FileUpload {
    pub enable_attachments: bool,
    pub modes: Vec<FileUploadMode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileUploadMode {
    pub file_types: Vec<String>,
    #[serde(rename = "maxFileSizeKB")]
    pub max_file_size_kb: u32,
}

/// What an admin edits: the content of a configuration's draft and, frozen,
/// of each published version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationContent {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub authentication_settings: AuthenticationSettings,
    #[serde(default)]
    pub messenger: MessengerSettings,
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    #[serde(default = "default_language")]
    pub default_language: String,
    #[serde(default)]
    pub journey_events: Toggle,
}

fn default_languages() -> Vec<String> {
    vec![default_language()]
}

fn default_language() -> String {
    "en-us".to_owned()
}

/// A messenger configuration: its editable draft and how many versions were
/// published from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(flatten)]
    pub meta: Meta,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    #[serde(flatten)]
    pub draft: ConfigurationContent,
    /// The newest published version ("1", "2", ...), if any.
    pub latest_version: Option<String>,
    pub published_versions: u32,
}
record!(Configuration, Kind::Configuration);

impl Record for Configuration {
    const KIND: Kind = Kind::Configuration;
    crate::store::record_basics!();
    fn refs(&self) -> Vec<RecordKey> {
        self.draft
            .authentication_settings
            .integration_id
            .map(|id| OidcIntegration::key_of(self.org_id, id))
            .into_iter()
            .collect()
    }
}

/// A published, immutable version of a configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationVersion {
    /// The configuration's id.
    pub id: Uuid,
    /// "1", "2", ... in publishing order.
    pub version: String,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    #[serde(flatten)]
    pub content: ConfigurationContent,
    pub date_published: DateTime<Utc>,
    /// Store bookkeeping; versions are never updated.
    #[serde(skip)]
    pub revision: u64,
}

impl ConfigurationVersion {
    pub fn key_of(org: OrgId, configuration: Uuid, version: u32) -> RecordKey {
        RecordKey::new(
            Home::Org(org.0),
            Kind::ConfigurationVersion,
            format!("{configuration}/{version}"),
        )
    }

    pub fn collection_of(org: OrgId, configuration: Uuid) -> Collection {
        Collection::ConfigurationVersions {
            org: org.0,
            configuration,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationRef {
    pub id: Uuid,
    /// A published version: "1", "2", ...
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(flatten)]
    pub meta: Meta,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    pub name: String,
    pub description: String,
    pub configuration: ConfigurationRef,
    pub allowed_domains: Vec<Origin>,
    pub allow_all_domains: bool,
    /// The bare hosts native apps send as `Origin` (see [`AppHost`]):
    /// admitted on the guest socket and history. `allowAllDomains` does not
    /// cover them.
    #[serde(default)]
    pub allowed_app_hosts: Vec<AppHost>,
    /// The private-use schemes native apps receive their OAuth redirect on:
    /// admitted as `redirectUri` of a login. `allowAllDomains` does not
    /// cover them.
    #[serde(default)]
    pub allowed_app_redirect_schemes: Vec<RedirectScheme>,
    pub status: DeploymentStatus,
    pub queue_id: Uuid,
    /// Days this deployment's ended conversations and sessions are kept,
    /// instead of its organization's retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}
record!(Deployment, Kind::Deployment);

impl Deployment {
    /// The published version number, validated when the deployment was
    /// written.
    pub fn configuration_version(&self) -> Option<u32> {
        self.configuration.version.parse().ok()
    }

    /// Whether a browser on `origin` may use the deployment: one of its
    /// allowed web origins, or with `allowAllDomains` any serialized origin
    /// (`scheme://host[:port]`, or the `null` of sandboxed frames). A bare
    /// host, which only apps send, is not a web origin: it is admitted by
    /// [`Deployment::admits_origin`] when listed, never by "allow all".
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.allow_all_domains {
            return origin.contains("://") || origin == "null";
        }
        self.allowed_domains.iter().any(|o| o.matches(origin))
    }

    /// Whether `origin` is one of the app hosts the deployment lists.
    pub fn allows_app_host(&self, origin: &str) -> bool {
        self.allowed_app_hosts.iter().any(|h| h.matches(origin))
    }

    /// Whether a client presenting `origin` may use the guest socket and
    /// history: a browser on an allowed web origin, or an app whose host is
    /// listed.
    pub fn admits_origin(&self, origin: &str) -> bool {
        self.allows_origin(origin) || self.allows_app_host(origin)
    }

    /// Whether an app may receive its OAuth redirect on `scheme`.
    pub fn allows_redirect_scheme(&self, scheme: &str) -> bool {
        self.allowed_app_redirect_schemes
            .iter()
            .any(|s| s.as_str().eq_ignore_ascii_case(scheme))
    }
}

/// What a deleted deployment leaves for the retention sweep: its guest
/// sessions (and their push devices) are listed under its id, which no
/// longer names a deployment the sweep would walk. Written with the
/// deletion, in the same commit; removed by the sweep once nothing is left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedDeployment {
    /// The deleted deployment's id.
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
}

impl DeletedDeployment {
    pub fn of(deployment: &Deployment, now: DateTime<Utc>) -> Self {
        Self {
            meta: Meta {
                id: deployment.meta.id,
                version: 0,
                date_created: now,
                date_modified: now,
            },
            org_id: deployment.org_id,
        }
    }
}

impl Record for DeletedDeployment {
    const KIND: Kind = Kind::DeletedDeployment;
    crate::store::record_basics!();
}

impl Record for Deployment {
    const KIND: Kind = Kind::Deployment;
    /// A snippet, `config.json` and a guest socket name a deployment by id
    /// alone.
    const LOCATED: bool = true;
    crate::store::record_basics!();
    fn refs(&self) -> Vec<RecordKey> {
        let mut refs = vec![
            Configuration::key_of(self.org_id, self.configuration.id),
            Queue::key_of(self.org_id, self.queue_id),
        ];
        if let Some(version) = self.configuration_version() {
            refs.push(ConfigurationVersion::key_of(
                self.org_id,
                self.configuration.id,
                version,
            ));
        }
        refs
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    #[serde(flatten)]
    pub meta: Meta,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    pub name: String,
    /// How long an agent has to accept an offer before it goes to another.
    pub offer_timeout_seconds: u32,
    /// Conversations an agent of this queue handles at once.
    pub agent_capacity: u32,
    pub member_ids: Vec<Uuid>,
    /// How long an agent's decline (or an offer it let time out) keeps the
    /// conversation from that agent. After it the declines are forgotten,
    /// so a conversation every agent turned down is offered again.
    #[serde(default = "default_decline_cooldown")]
    pub decline_cooldown_seconds: u32,
    /// How long a conversation may wait for an agent. After it the
    /// conversation ends and the visitor is told (a message and the
    /// `Disconnect` presence); none waits as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_seconds: Option<u32>,
}
record!(Queue, Kind::Queue);

/// The cool-down of queues stored before it was a setting.
pub const DEFAULT_DECLINE_COOLDOWN_SECONDS: u32 = 60;

fn default_decline_cooldown() -> u32 {
    DEFAULT_DECLINE_COOLDOWN_SECONDS
}

impl Record for Queue {
    const KIND: Kind = Kind::Queue;
    crate::store::record_basics!();
    fn refs(&self) -> Vec<RecordKey> {
        self.member_ids
            .iter()
            .map(|&id| Member::key_of(self.org_id, id))
            .collect()
    }
}

/// A staff identity, keyed by the (issuer, subject) pair of its IdP, never
/// by email or subject alone. A member an admin pre-provisioned by email
/// has no identity yet (`issuer` and `subject` empty, `pending`): the first
/// staff sign-in whose IdP asserts that email as verified claims it, roles
/// and all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(flatten)]
    pub meta: Meta,
    #[schema(value_type = String, format = Uuid)]
    pub org_id: OrgId,
    /// Empty while the member is pending.
    pub issuer: String,
    /// Empty while the member is pending.
    pub subject: String,
    pub display_name: String,
    pub email: Option<String>,
    pub roles: Vec<Role>,
}
record!(Member, Kind::Member);

impl Member {
    /// The unique claim for (organization, issuer, subject).
    pub fn identity_claim(org: OrgId, issuer: &str, subject: &str) -> Claim {
        Claim::member_identity(org.0, issuer, subject)
    }

    /// The unique claim of a pending member on its email address.
    pub fn invite_claim(org: OrgId, email: &str) -> Claim {
        Claim::member_invite(org.0, email)
    }

    /// Pre-provisioned by email, not signed in yet.
    pub fn is_pending(&self) -> bool {
        self.issuer.is_empty() && self.subject.is_empty()
    }
}

impl Record for Member {
    const KIND: Kind = Kind::Member;
    crate::store::record_basics!();
    fn claims(&self) -> Vec<Claim> {
        if self.is_pending() {
            self.email
                .iter()
                .map(|email| Member::invite_claim(self.org_id, email))
                .collect()
        } else {
            vec![Member::identity_claim(
                self.org_id,
                &self.issuer,
                &self.subject,
            )]
        }
    }
}

/// A machine credential for the admin API (and, with the agent role, for
/// bots that answer conversations).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiClient {
    #[serde(flatten)]
    pub meta: Meta,
    pub org_id: OrgId,
    pub name: String,
    pub roles: Vec<Role>,
    /// SHA-256 of the secret, which is shown once at creation.
    pub secret_digest: String,
    /// The secret in the clear, only between creation and the answer that
    /// shows it once. Never stored.
    #[serde(skip)]
    pub fresh_secret: Option<secrecy::SecretString>,
}
record!(ApiClient, Kind::ApiClient);

impl Record for ApiClient {
    const KIND: Kind = Kind::ApiClient;
    /// The client-credentials grant names a client by id alone.
    const LOCATED: bool = true;
    crate::store::record_basics!();
}
