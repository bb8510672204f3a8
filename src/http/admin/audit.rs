//! `/api/v2/audit`: the organization's audit log, newest first, for admins;
//! and the helpers admin handlers use to write an entry with their change.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Principal, PrincipalKind};
use crate::engine::Kind;
use crate::http::PagedList;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, JsonOut, Paging};
use crate::store::audit::{
    Actor, ActorKind, AuditAction, AuditEntry, AuditFilter, AuditTarget, changes,
};
use crate::store::types::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Who a principal is, as the audit log names it.
pub(crate) fn actor(principal: &Principal) -> Actor {
    match principal.kind {
        PrincipalKind::Operator => Actor {
            kind: ActorKind::Operator,
            id: None,
        },
        PrincipalKind::ApiClient { id } => Actor {
            kind: ActorKind::ApiClient,
            id: Some(id),
        },
        PrincipalKind::Member { id } => Actor {
            kind: ActorKind::Member,
            id: Some(id),
        },
    }
}

/// The shown form of a record, for the changes an entry lists.
pub(crate) fn shown<T: Serialize>(view: &T) -> Option<serde_json::Value> {
    serde_json::to_value(view).ok()
}

/// An entry for `principal`'s `action` on a record, listing what differs
/// between its shown forms before and after (`None` where it does not
/// exist).
pub(crate) fn entry(
    principal: &Principal,
    action: AuditAction,
    kind: Kind,
    id: impl ToString,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> AuditEntry {
    AuditEntry::new(
        principal.org,
        actor(principal),
        action,
        AuditTarget::new(kind, id),
        changes(before, after),
        Utc::now(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    record_id: Option<String>,
    actor_id: Option<Uuid>,
}

/// The organization's audit log, newest first (admin). Each entry names
/// who acted (`actor`), when, on which record, and the fields that changed
/// with their values before and after; secret fields are named without
/// values. `recordId` and `actorId` narrow it (looking at the newest 10,000
/// entries). Entries are kept as long as the organization's
/// `retentionDays`.
#[utoipa::path(get, path = "/api/v2/audit", tag = "audit", security(("bearer" = [])),
    params(("pageNumber" = Option<u64>, Query), ("pageSize" = Option<u64>, Query),
        ("recordId" = Option<String>, Query, description = "only entries about this record id"),
        ("actorId" = Option<Uuid>, Query, description = "only entries by this API client or member")),
    responses((status = 200, body = PagedList<AuditEntry>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Paging(page): Paging,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<JsonOut<PagedList<AuditEntry>>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let Query(query) = query
        .map_err(|_| ApiError::bad_request("recordId must be a record id and actorId a UUID"))?;
    if query.record_id.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::bad_request(
            "recordId is longer than 200 characters",
        ));
    }
    let filter = AuditFilter {
        record: query.record_id,
        actor: query.actor_id,
    };
    let listing = state.store.audit_page(principal.org, &filter, page).await?;
    Ok(axum::Json(PagedList::new(listing, page, |e| e)))
}
