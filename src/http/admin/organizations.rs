//! `/api/v2/organizations`: tenants. Only the operator (the bootstrap
//! token's holder) adds them; each new one comes with a first admin API
//! client, whose secret is in the answer once.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::{actor, entry, shown};
use super::clients::ApiClientView;
use super::resource::{Resource, name, present, retention_days};
use crate::app::AppState;
use crate::auth::new_api_client;
use crate::engine::{Collection, Commit, Expect, Kind};
use crate::http::PagedList;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Json, JsonOut, Paging};
use crate::store::audit::{AuditAction, AuditEntry, AuditTarget, changes};
use crate::store::records::{Meta, Organization};
use crate::store::types::{OrgId, Role};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(me, update_me))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrganizationInput {
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOrganization {
    organization: Organization,
    /// An admin credential of the new organization. Its secret is shown here
    /// only.
    client: ApiClientView,
}

/// Lists every organization (operator only).
#[utoipa::path(get, path = "/api/v2/organizations", tag = "organizations", security(("bearer" = [])),
    params(("pageNumber" = Option<u64>, Query), ("pageSize" = Option<u64>, Query)),
    responses((status = 200, body = PagedList<Organization>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Paging(page): Paging,
) -> Result<JsonOut<PagedList<Organization>>, ApiError> {
    caller.require_operator()?;
    let listing = state
        .store
        .list::<Organization>(&Collection::Organizations, page)
        .await?;
    Ok(axum::Json(PagedList::new(listing, page, |o| o)))
}

/// Adds an organization with a first admin API client (operator only).
#[utoipa::path(post, path = "/api/v2/organizations", tag = "organizations", security(("bearer" = [])),
    request_body = OrganizationInput,
    responses((status = 201, body = CreatedOrganization), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<OrganizationInput>,
) -> Result<(StatusCode, JsonOut<CreatedOrganization>), ApiError> {
    caller.require_operator()?;
    let now = Utc::now();
    let organization = Organization {
        meta: Meta::new(now),
        name: name("name", &input.name)?,
        is_default: false,
        staff_integration_id: None,
        retention_days: None,
    };
    let org = OrgId(organization.meta.id);
    let client = new_api_client(
        org,
        Meta::new(now),
        "Initial admin".to_owned(),
        vec![Role::Admin],
    );
    // The new organization's log starts with its making.
    let audit = AuditEntry::new(
        org,
        actor(caller.require_operator()?),
        AuditAction::Create,
        AuditTarget::new(Kind::Organization, org),
        changes(None, shown(&organization).as_ref()),
        now,
    );
    let commit = Commit::new()
        .put(state.store.prepare(&organization, Expect::Absent).await?)
        .put(state.store.prepare(&client, Expect::Absent).await?)
        .put(audit.put()?);
    state.store.commit(commit).await?;
    let mut organization = organization;
    organization.meta.version = 1;
    let mut client = client;
    client.meta.version = 1;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedOrganization {
            organization,
            client: client.view(&state),
        }),
    ))
}

/// The caller's own organization.
#[utoipa::path(get, path = "/api/v2/organizations/me", tag = "organizations", security(("bearer" = [])),
    responses((status = 200, body = Organization), (status = 401, body = ErrorBody)))]
async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<JsonOut<Organization>, ApiError> {
    let org = state
        .store
        .get::<Organization>(caller.0.org, caller.0.org.0)
        .await?;
    Ok(axum::Json(org))
}

/// What an admin may change of its own organization.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationUpdate {
    name: String,
    /// The OIDC integration (of this organization) staff sign in with at
    /// `/auth/login`; `null` turns staff SSO off.
    staff_integration_id: Option<uuid::Uuid>,
    /// Days ended conversations (with their logs), visitors' sessions and
    /// records, and audit entries are kept (1 to 36500); `null`: the
    /// node's default (`SWITCHBOARD_RETENTION_DAYS`). Omitted: the stored
    /// value is kept. Deployments may set their own for their
    /// conversations and sessions.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    retention_days: Option<Option<u32>>,
    /// The version read.
    version: Option<u64>,
}

/// Updates the caller's own organization: its name and staff integration
/// (admin).
#[utoipa::path(put, path = "/api/v2/organizations/me", tag = "organizations", security(("bearer" = [])),
    request_body = OrganizationUpdate,
    responses((status = 200, body = Organization), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "stale version"),
        (status = 422, body = ErrorBody, description = "an unknown integration, a missing version")))]
async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<OrganizationUpdate>,
) -> Result<JsonOut<Organization>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let expected = input
        .version
        .ok_or_else(|| ApiError::invalid("version is required: send the version you read"))?;
    let mut org = state
        .store
        .get::<Organization>(principal.org, principal.org.0)
        .await?;
    let before = shown(&org);
    org.name = name("name", &input.name)?;
    // The store checks that the integration belongs to this organization.
    org.staff_integration_id = input.staff_integration_id;
    org.retention_days = retention_days(input.retention_days, org.retention_days)?;
    org.meta.date_modified = Utc::now();
    let audit = entry(
        principal,
        AuditAction::Update,
        Kind::Organization,
        org.meta.id,
        before.as_ref(),
        shown(&org).as_ref(),
    );
    let put = state.store.prepare(&org, Expect::Version(expected)).await?;
    state
        .store
        .commit(Commit::new().put(put).put(audit.put()?))
        .await?;
    org.meta.version = expected + 1;
    Ok(axum::Json(org))
}
