//! `/api/v2/organizations`: tenants. Only the operator (the bootstrap
//! token's holder) adds them; each new one comes with a first admin API
//! client, whose secret is in the answer once.

use axum::extract::{Path, State};
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
use crate::engine::{Commit, Expect, Kind};
use crate::http::PagedList;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Json, JsonOut, Paging};
use crate::limits::{OrgLimits, OrgRates, Rate};
use crate::store::audit::{AuditAction, AuditEntry, AuditTarget, changes};
use crate::store::records::{Meta, Organization};
use crate::store::types::{OrgId, Role};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(me, update_me))
        .routes(routes!(get_limits, put_limits))
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
    let listing = state.store.organizations(page).await?;
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
        limits: Default::default(),
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
    // Everything lives in the new organization's home, written in one
    // step once the installation lists the organization and its client.
    let commit = Commit::new()
        .put(state.store.prepare(&organization, Expect::Absent).await?)
        .put(state.store.prepare(&client, Expect::Absent).await?)
        .put(audit.put()?);
    state.store.enter_directory(&organization).await?;
    state.store.enter_directory(&client).await?;
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

/// An organization's limits: what it overrides, and the rates in force
/// (the node's defaults where it overrides nothing).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    overrides: OrgLimits,
    effective: EffectiveLimits,
    /// The organization record's version, for the next update.
    version: u64,
}

/// Every rate of an organization, as in force.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveLimits {
    #[schema(value_type = String)]
    guest_messages: Rate,
    #[schema(value_type = String)]
    agent_messages: Rate,
    #[schema(value_type = String)]
    org_agent_messages: Rate,
    #[schema(value_type = String)]
    sessions_per_address: Rate,
    #[schema(value_type = String)]
    sessions_per_deployment: Rate,
    #[schema(value_type = String)]
    conversations_per_address: Rate,
    #[schema(value_type = String)]
    conversations_per_deployment: Rate,
    queued_per_address: u32,
}

impl From<OrgRates> for EffectiveLimits {
    fn from(r: OrgRates) -> Self {
        Self {
            guest_messages: r.guest_messages,
            agent_messages: r.agent_messages,
            org_agent_messages: r.org_agent_messages,
            sessions_per_address: r.sessions_per_address,
            sessions_per_deployment: r.sessions_per_deployment,
            conversations_per_address: r.conversations_per_address,
            conversations_per_deployment: r.conversations_per_deployment,
            queued_per_address: r.queued_per_address,
        }
    }
}

/// New overrides: the whole set (a field left out returns to the node's
/// default), with the version read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsUpdate {
    #[serde(default)]
    overrides: OrgLimitsInput,
    version: Option<u64>,
}

/// Overrides as sent: rates as text (`"2/s burst 5"`), each checked.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgLimitsInput {
    guest_messages: Option<String>,
    agent_messages: Option<String>,
    org_agent_messages: Option<String>,
    sessions_per_address: Option<String>,
    sessions_per_deployment: Option<String>,
    conversations_per_address: Option<String>,
    conversations_per_deployment: Option<String>,
    queued_per_address: Option<u32>,
}

impl OrgLimitsInput {
    fn parse(self) -> Result<OrgLimits, ApiError> {
        let rate = |field: &str, text: Option<String>| {
            text.map(|t| {
                t.parse::<Rate>()
                    .map_err(|e| ApiError::invalid(format!("overrides.{field} {e}")))
            })
            .transpose()
        };
        Ok(OrgLimits {
            guest_messages: rate("guestMessages", self.guest_messages)?,
            agent_messages: rate("agentMessages", self.agent_messages)?,
            org_agent_messages: rate("orgAgentMessages", self.org_agent_messages)?,
            sessions_per_address: rate("sessionsPerAddress", self.sessions_per_address)?,
            sessions_per_deployment: rate("sessionsPerDeployment", self.sessions_per_deployment)?,
            conversations_per_address: rate(
                "conversationsPerAddress",
                self.conversations_per_address,
            )?,
            conversations_per_deployment: rate(
                "conversationsPerDeployment",
                self.conversations_per_deployment,
            )?,
            queued_per_address: self.queued_per_address,
        })
    }
}

/// The organization `id` as the caller may see its limits: the operator
/// any, an admin its own (another's is 404, as for every record).
async fn limits_target(
    state: &AppState,
    caller: &Caller,
    id: uuid::Uuid,
) -> Result<Organization, ApiError> {
    let org = if caller.0.is_operator() {
        OrgId(id)
    } else {
        let principal = caller.require(Role::Admin)?;
        if principal.org.0 != id {
            return Err(ApiError::not_found());
        }
        principal.org
    };
    Ok(state.store.get::<Organization>(org, id).await?)
}

fn limits_view(state: &AppState, org: &Organization) -> LimitsView {
    LimitsView {
        overrides: org.limits,
        effective: org.limits.apply(&state.limits.current().org).into(),
        version: org.meta.version,
    }
}

/// An organization's limits (its admin, or the operator).
#[utoipa::path(get, path = "/api/v2/organizations/{id}/limits", tag = "organizations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = LimitsView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<uuid::Uuid>,
) -> Result<JsonOut<LimitsView>, ApiError> {
    let org = limits_target(&state, &caller, id).await?;
    Ok(axum::Json(limits_view(&state, &org)))
}

/// Replaces an organization's overrides. Its admin may only tighten the
/// node's defaults; the operator may set any valid value. Every node
/// applies the change within seconds.
#[utoipa::path(put, path = "/api/v2/organizations/{id}/limits", tag = "organizations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    request_body = LimitsUpdate,
    responses((status = 200, body = LimitsView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "stale version"),
        (status = 422, body = ErrorBody, description = "a malformed rate, a value out of range, an admin raising a limit, a missing version")))]
async fn put_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<uuid::Uuid>,
    Json(input): Json<LimitsUpdate>,
) -> Result<JsonOut<LimitsView>, ApiError> {
    let mut org = limits_target(&state, &caller, id).await?;
    let expected = input
        .version
        .ok_or_else(|| ApiError::invalid("version is required: send the version you read"))?;
    let overrides = input.overrides.parse()?;
    overrides
        .check(&state.limits.current().org, caller.0.is_operator())
        .map_err(|(field, message)| ApiError::invalid(format!("overrides.{field} {message}")))?;
    org.limits = overrides;
    org.meta.date_modified = Utc::now();
    state.store.update(&mut org, expected).await?;
    state.limits.forget(OrgId(id));
    Ok(axum::Json(limits_view(&state, &org)))
}
