//! `/api/v2/webdeployments/configurations`: messenger configurations.
//!
//! A configuration is an editable draft; publishing freezes the draft as
//! version "1", "2", ... Deployments point at a published version, so an
//! admin can edit the draft without changing what visitors get until they
//! publish and move the deployment.
//!
//! Two different numbers are called version here, as in the API this one is
//! shaped after: the draft record's `version` is its optimistic-concurrency
//! counter (send it back on PUT), while a published version's `version` is
//! its name ("1", "2", ...).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::{entry, shown};
use super::resource::{self, Resource, in_range, name};
use crate::app::AppState;
use crate::engine::{Commit, Expect, Kind, Put};
use crate::http::PagedList;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Id, Json, JsonOut, Paging};
use crate::store::audit::AuditAction;
use crate::store::encode;
use crate::store::records::{Configuration, ConfigurationContent, ConfigurationVersion, Meta};
use crate::store::types::{OrgId, Role};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(get_draft, update_draft))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(publish))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationInput {
    #[serde(flatten)]
    content: ConfigurationContent,
    /// Required on update: the draft's version read.
    version: Option<u64>,
}

/// Rules a configuration's content must keep, whatever else it says.
fn validate(mut content: ConfigurationContent) -> Result<ConfigurationContent, ApiError> {
    content.name = name("name", &content.name)?;
    if content.description.chars().count() > 2000 {
        return Err(ApiError::invalid(
            "description is longer than 2000 characters",
        ));
    }
    let auth = &content.authentication_settings;
    if auth.enabled && auth.integration_id.is_none() {
        return Err(ApiError::invalid(
            "authenticationSettings.integrationId is required when authentication is enabled",
        ));
    }
    let conversations = &content.messenger.apps.conversations;
    in_range(
        "messenger.apps.conversations.sessionDurationSeconds",
        conversations.session_duration_seconds,
        60..=2_592_000,
    )?;
    let color = &content.messenger.styles.primary_color;
    let hex = color.strip_prefix('#').unwrap_or("");
    if !matches!(hex.len(), 3 | 6 | 8) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "messenger.styles.primaryColor must be a hex colour like #1f5eff",
        ));
    }
    for mode in &content.messenger.file_upload.modes {
        in_range(
            "messenger.fileUpload.modes.maxFileSizeKB",
            mode.max_file_size_kb,
            1..=102_400,
        )?;
        if mode
            .file_types
            .iter()
            .any(|t| !t.contains('/') || t.len() > 100)
        {
            return Err(ApiError::invalid(
                "messenger.fileUpload.modes.fileTypes must be MIME types",
            ));
        }
    }
    if content.languages.is_empty()
        || content
            .languages
            .iter()
            .any(|l| l.is_empty() || l.len() > 35)
    {
        return Err(ApiError::invalid("languages must list language tags"));
    }
    if !content.languages.contains(&content.default_language) {
        return Err(ApiError::invalid(
            "defaultLanguage must be one of languages",
        ));
    }
    Ok(content)
}

impl Resource for Configuration {
    type Input = ConfigurationInput;
    type View = Configuration;
    const READ_ROLE: Role = Role::Admin;

    fn input_version(input: &ConfigurationInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: ConfigurationInput,
        org: OrgId,
        meta: Meta,
        existing: Option<&Configuration>,
        _: &AppState,
    ) -> Result<Configuration, ApiError> {
        Ok(Configuration {
            meta,
            org_id: org,
            draft: validate(input.content)?,
            latest_version: existing.and_then(|e| e.latest_version.clone()),
            published_versions: existing.map_or(0, |e| e.published_versions),
        })
    }

    fn view(self, _: &AppState) -> Configuration {
        self
    }
}

/// Lists configurations (their drafts).
#[utoipa::path(get, path = "/api/v2/webdeployments/configurations", tag = "configurations", security(("bearer" = [])),
    params(("pageNumber" = Option<u64>, Query), ("pageSize" = Option<u64>, Query)),
    responses((status = 200, body = PagedList<Configuration>), (status = 403, body = ErrorBody)))]
async fn list(
    state: State<AppState>,
    caller: Caller,
    paging: Paging,
) -> Result<JsonOut<PagedList<Configuration>>, ApiError> {
    resource::list::<Configuration>(state, caller, paging).await
}

/// Creates a configuration: a draft, not yet published.
#[utoipa::path(post, path = "/api/v2/webdeployments/configurations", tag = "configurations", security(("bearer" = [])),
    request_body = ConfigurationInput,
    responses((status = 201, body = Configuration), (status = 422, body = ErrorBody)))]
async fn create(
    state: State<AppState>,
    caller: Caller,
    input: Json<ConfigurationInput>,
) -> Result<(StatusCode, JsonOut<Configuration>), ApiError> {
    resource::create::<Configuration>(state, caller, input).await
}

/// Reads a configuration's draft.
#[utoipa::path(get, path = "/api/v2/webdeployments/configurations/{id}", tag = "configurations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Configuration), (status = 404, body = ErrorBody)))]
async fn get(
    state: State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<JsonOut<Configuration>, ApiError> {
    resource::get::<Configuration>(state, caller, id).await
}

/// Replaces a configuration's draft.
#[utoipa::path(put, path = "/api/v2/webdeployments/configurations/{id}", tag = "configurations", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ConfigurationInput,
    responses((status = 200, body = Configuration), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update(
    state: State<AppState>,
    caller: Caller,
    id: Id,
    input: Json<ConfigurationInput>,
) -> Result<JsonOut<Configuration>, ApiError> {
    resource::update::<Configuration>(state, caller, id, input).await
}

/// Reads the draft (the same record as `GET /{id}`).
#[utoipa::path(get, path = "/api/v2/webdeployments/configurations/{id}/versions/draft", tag = "configurations",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Configuration), (status = 404, body = ErrorBody)))]
async fn get_draft(
    state: State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<JsonOut<Configuration>, ApiError> {
    resource::get::<Configuration>(state, caller, id).await
}

/// Replaces the draft (the same as `PUT /{id}`).
#[utoipa::path(put, path = "/api/v2/webdeployments/configurations/{id}/versions/draft", tag = "configurations",
    security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ConfigurationInput,
    responses((status = 200, body = Configuration), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_draft(
    state: State<AppState>,
    caller: Caller,
    id: Id,
    input: Json<ConfigurationInput>,
) -> Result<JsonOut<Configuration>, ApiError> {
    resource::update::<Configuration>(state, caller, id, input).await
}

/// Deletes a configuration and all its published versions, unless a
/// deployment uses it.
#[utoipa::path(delete, path = "/api/v2/webdeployments/configurations/{id}", tag = "configurations",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "in use")))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let configuration = state.store.get::<Configuration>(principal.org, id).await?;
    let audit = entry(
        principal,
        AuditAction::Delete,
        Kind::Configuration,
        id,
        shown(&configuration).as_ref(),
        None,
    );
    let mut commit = Commit::new().put(audit.put()?);
    for version in 1..=configuration.published_versions {
        commit = commit.delete(
            ConfigurationVersion::key_of(principal.org, id, version),
            Expect::Any,
        );
    }
    commit = commit.delete(
        Configuration::key_of(principal.org, id),
        Expect::Version(configuration.meta.version),
    );
    state.store.commit(commit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the published versions, oldest first.
#[utoipa::path(get, path = "/api/v2/webdeployments/configurations/{id}/versions", tag = "configurations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("pageNumber" = Option<u64>, Query), ("pageSize" = Option<u64>, Query)),
    responses((status = 200, body = PagedList<ConfigurationVersion>), (status = 404, body = ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Paging(page): Paging,
) -> Result<JsonOut<PagedList<ConfigurationVersion>>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    state.store.get::<Configuration>(principal.org, id).await?;
    let listing = state
        .store
        .published_versions(principal.org, id, page)
        .await?;
    Ok(axum::Json(PagedList::new(listing, page, |v| v)))
}

/// Reads one published version ("1", "2", ...).
#[utoipa::path(get, path = "/api/v2/webdeployments/configurations/{id}/versions/{version}", tag = "configurations",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("version" = String, Path)),
    responses((status = 200, body = ConfigurationVersion), (status = 404, body = ErrorBody)))]
async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, version)): Path<(String, String)>,
) -> Result<JsonOut<ConfigurationVersion>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let version: u32 = version.parse().map_err(|_| ApiError::not_found())?;
    Ok(axum::Json(
        state
            .store
            .published_version(principal.org, id, version)
            .await?,
    ))
}

/// Freezes the draft as the next version.
#[utoipa::path(post, path = "/api/v2/webdeployments/configurations/{id}/versions/draft/publish",
    tag = "configurations", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 201, body = ConfigurationVersion), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<(StatusCode, JsonOut<ConfigurationVersion>), ApiError> {
    let principal = caller.require(Role::Admin)?;
    let mut configuration = state.store.get::<Configuration>(principal.org, id).await?;
    let read_version = configuration.meta.version;
    let read_latest = configuration.latest_version.clone();
    let number = configuration.published_versions + 1;
    let now = Utc::now();
    let published = ConfigurationVersion {
        id,
        version: number.to_string(),
        org_id: principal.org,
        content: configuration.draft.clone(),
        date_published: now,
        revision: 1,
    };
    configuration.published_versions = number;
    configuration.latest_version = Some(published.version.clone());
    configuration.meta.date_modified = now;
    let bump = state
        .store
        .prepare(&configuration, Expect::Version(read_version))
        .await?;
    let version_put = Put {
        key: ConfigurationVersion::key_of(principal.org, id, number),
        expect: Expect::Absent,
        body: encode(&published)?,
        collection: ConfigurationVersion::collection_of(principal.org, id),
        order: i64::from(number),
        refs: bump.refs.clone(),
        unique: Vec::new(),
    };
    let audit = entry(
        principal,
        AuditAction::Publish,
        Kind::Configuration,
        id,
        Some(&serde_json::json!({ "latestVersion": read_latest })),
        Some(&serde_json::json!({ "latestVersion": published.version })),
    );
    state
        .store
        .commit(Commit::new().put(bump).put(version_put).put(audit.put()?))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(published)))
}
