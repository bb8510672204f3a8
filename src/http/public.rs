//! The public deployment configuration a widget or app reads before it
//! connects. Unauthenticated, so it carries nothing secret: of the OIDC
//! integration only what a browser needs to start a login.
//!
//! Its shape is Genesys's `DeploymentConfig`, which the Transport SDK
//! decodes strictly: every field it requires is always present (an app
//! whose `config.json` does not decode never opens a socket), enums carry
//! only values it knows, and nothing is `null`. Fields of our own are
//! additive (the SDK ignores unknown keys). The route is host-agnostic, so
//! the same path answers on the `api-cdn.<domain>` name the SDK derives.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::cors;
use super::error::{ApiError, ErrorBody};
use super::extract::Id;
use crate::app::AppState;
use crate::store::records::{
    AuthenticationSettings, ConversationDisconnect, Deployment, FileUpload, LauncherButton,
    Notifications, OidcIntegration, Styles, Toggle,
};
use crate::store::types::DeploymentStatus;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(config_json))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicConfig {
    id: Uuid,
    /// The published configuration version in force.
    version: String,
    status: DeploymentStatus,
    /// Base URL of the REST endpoints (token exchange, history).
    api_endpoint: String,
    auth: PublicAuth,
    messenger: PublicMessenger,
    journey_events: Toggle,
    languages: Vec<String>,
    default_language: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicAuth {
    enabled: bool,
    allow_session_upgrade: bool,
    /// The public half of the OIDC integration, when authentication is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<PublicOidc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicOidc {
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    authorize_params: std::collections::BTreeMap<String, String>,
    /// The IdP's authorization endpoint, from its discovery document. Left
    /// out when discovery does not answer in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_endpoint: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicMessenger {
    enabled: bool,
    styles: Styles,
    /// Required by the Transport SDK.
    launcher_button: LauncherButton,
    apps: PublicApps,
    /// `modes` lists file types only when attachments are enabled.
    file_upload: FileUpload,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PublicApps {
    conversations: PublicConversations,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PublicConversations {
    enabled: bool,
    /// Base URL of the guest WebSocket (`/v1?deploymentId=` is appended).
    messaging_endpoint: String,
    show_agent_typing_indicator: bool,
    show_user_typing_indicator: bool,
    auto_start: Toggle,
    conversation_disconnect: ConversationDisconnect,
    conversation_clear: Toggle,
    session_duration_seconds: u32,
    /// Present when the configuration lets apps register for push
    /// notifications: the Transport SDK then registers its device
    /// (`/api/v2/webmessaging/deployments/{id}/pushdevices/{token}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<Notifications>,
}

/// The deployment's public configuration. Inactive and unknown deployments
/// are both 404.
#[utoipa::path(get, path = "/webdeployments/v1/deployments/{id}/config.json", tag = "public",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PublicConfig), (status = 404, body = ErrorBody)))]
async fn config_json(
    State(state): State<AppState>,
    Id(id): Id,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (deployment, configuration) = state.store.active_deployment(id).await?;
    let content = configuration.content;
    let oidc = public_oidc(&state, &deployment, &content.authentication_settings).await?;
    let conversations = content.messenger.apps.conversations;
    let base = state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let ws_base = base.replacen("http", "ws", 1);
    let body = PublicConfig {
        id: deployment.meta.id,
        version: configuration.version,
        status: deployment.status,
        api_endpoint: base,
        auth: PublicAuth {
            enabled: content.authentication_settings.enabled,
            allow_session_upgrade: content.authentication_settings.allow_session_upgrade,
            oidc,
        },
        messenger: PublicMessenger {
            enabled: content.messenger.enabled,
            styles: content.messenger.styles,
            apps: PublicApps {
                conversations: PublicConversations {
                    enabled: conversations.enabled,
                    messaging_endpoint: ws_base,
                    show_agent_typing_indicator: conversations.show_agent_typing_indicator,
                    show_user_typing_indicator: conversations.show_user_typing_indicator,
                    auto_start: conversations.auto_start,
                    conversation_disconnect: conversations.conversation_disconnect,
                    conversation_clear: conversations.conversation_clear,
                    session_duration_seconds: conversations.session_duration_seconds,
                    notifications: Some(conversations.notifications).filter(|n| n.enabled),
                },
            },
            launcher_button: content.messenger.launcher_button,
            file_upload: file_upload(content.messenger.file_upload, state.attachments.available()),
        },
        journey_events: content.journey_events,
        languages: content.languages,
        default_language: content.default_language,
    };
    let mut response = axum::Json(body).into_response();
    cors::allow_deployment_origin(&deployment, &headers, response.headers_mut());
    Ok(response)
}

/// File types are offered only while attachments are on (and this node
/// can keep them: Redis without object storage cannot): a client that
/// sees modes may try to attach.
fn file_upload(mut settings: FileUpload, available: bool) -> FileUpload {
    settings.enable_attachments &= available;
    if !settings.enable_attachments {
        settings.modes.clear();
    }
    settings
}

async fn public_oidc(
    state: &AppState,
    deployment: &Deployment,
    settings: &AuthenticationSettings,
) -> Result<Option<PublicOidc>, ApiError> {
    let Some(integration_id) = settings.integration_id.filter(|_| settings.enabled) else {
        return Ok(None);
    };
    let integration = state
        .store
        .get::<OidcIntegration>(deployment.org_id, integration_id)
        .await;
    let Ok(integration) = integration else {
        return Ok(None);
    };
    let authorization_endpoint = authorization_endpoint(state, &integration).await;
    Ok(Some(PublicOidc {
        issuer: integration.issuer,
        client_id: integration.client_id,
        scopes: integration.scopes,
        authorize_params: integration.authorize_params,
        authorization_endpoint,
    }))
}

/// How long config.json waits for an IdP's discovery document. Discovery
/// goes on in the background after that, so a later request finds it cached.
const DISCOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Best effort: config.json is served without the endpoint rather than not
/// at all when the IdP cannot be discovered.
async fn authorization_endpoint(state: &AppState, integration: &OidcIntegration) -> Option<String> {
    match tokio::time::timeout(
        DISCOVERY_WAIT,
        state.oidc.authorization_endpoint(integration),
    )
    .await
    {
        Ok(Ok(url)) => Some(url.to_string()),
        Ok(Err(error)) => {
            tracing::warn!(integration = %integration.meta.id, code = error.code(), %error, "config.json: the IdP's authorization endpoint is unknown");
            None
        }
        Err(_) => {
            tracing::warn!(integration = %integration.meta.id, "config.json: the IdP's discovery did not answer in time");
            None
        }
    }
}
