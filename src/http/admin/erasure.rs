//! Erasure on request (GDPR article 17): one conversation, or everything
//! about one signed-in visitor. Admin only; each erasure answers what it
//! deleted and leaves an audit entry naming the erased record's id only.

use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::entry;
use crate::app::AppState;
use crate::engine::Kind;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Id, Json, JsonOut};
use crate::routing::{Erased, RoutingError};
use crate::store::audit::AuditAction;
use crate::store::types::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(erase_conversation))
        .routes(routes!(erase_visitor))
}

/// Erases one conversation of the caller's organization, in any state:
/// its record, its log (every message and event), its place in its agent's
/// load, its visitor's history and its session. History and the console
/// no longer show it. Answers what was deleted.
#[utoipa::path(delete, path = "/api/v2/conversations/{id}", tag = "erasure", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Erased), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn erase_conversation(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<JsonOut<Erased>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    if state
        .routing
        .conversation(principal.org, id)
        .await
        .map_err(routing_error)?
        .is_none()
    {
        return Err(ApiError::not_found());
    }
    let now = Utc::now();
    let entries = state
        .routing
        .erase_conversation(principal.org, id, None, now)
        .await
        .map_err(routing_error)?;
    let erased = Erased {
        conversations: entries.map(|_| id).into_iter().collect(),
        log_entries: entries.unwrap_or(0),
        ..Erased::default()
    };
    let audit = entry(
        principal,
        AuditAction::Erase,
        Kind::Conversation,
        id,
        None,
        None,
    );
    state.store.audit_alone(&audit).await;
    Ok(axum::Json(erased))
}

/// Names one signed-in visitor: by switchboard's visitor id (the `sub` of
/// their session tokens), or by their IdP's issuer and subject.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VisitorErasure {
    visitor_id: Option<Uuid>,
    /// The IdP's issuer, exactly as in its ID tokens.
    issuer: Option<String>,
    /// The IdP's `sub` for this person.
    subject: Option<String>,
}

/// Erases everything about one signed-in visitor of the caller's
/// organization: every conversation they had (with its log), every session
/// signed in as them (its sockets are closed), their record, and every
/// refresh-token family of theirs (revoked: they must sign in again). Answers
/// what was deleted; erasing someone who left nothing answers zeros. The
/// audit entry names the visitor id only, never the issuer or subject.
#[utoipa::path(post, path = "/api/v2/visitors/erase", tag = "erasure", security(("bearer" = [])),
    request_body = VisitorErasure,
    responses((status = 200, body = Erased), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "neither a visitorId nor an issuer and subject, or both")))]
async fn erase_visitor(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<VisitorErasure>,
) -> Result<JsonOut<Erased>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let visitor = match (input.visitor_id, input.issuer, input.subject) {
        (Some(id), None, None) => id,
        (None, Some(issuer), Some(subject)) if !issuer.is_empty() && !subject.is_empty() => {
            if issuer.len() > 2000 || subject.len() > 255 {
                return Err(ApiError::invalid(
                    "issuer is at most 2000 and subject at most 255 characters",
                ));
            }
            state
                .visitor_tokens
                .visitor_subject(principal.org, &issuer, &subject)
        }
        _ => {
            return Err(ApiError::invalid(
                "name the visitor by visitorId, or by issuer and subject (not both)",
            ));
        }
    };
    let now = Utc::now();
    let mut erased = state
        .routing
        .erase_visitor(principal.org, visitor, now)
        .await
        .map_err(routing_error)?;
    // Every sign-in of theirs ends too: refresh tokens and session tokens
    // stop working, and the families' sockets are logged out everywhere.
    let revoked = state
        .visitor_tokens
        .revoke_visitor(principal.org, visitor, &erased.session_families, now)
        .await?;
    erased.token_families = revoked.len() as u64;
    for revoked in revoked {
        state.routing.session_revoked(revoked).await;
    }
    let audit = entry(
        principal,
        AuditAction::Erase,
        Kind::Visitor,
        visitor,
        None,
        None,
    );
    state.store.audit_alone(&audit).await;
    Ok(axum::Json(erased))
}

/// Routing's refusals as the admin API answers them.
fn routing_error(e: RoutingError) -> ApiError {
    match e {
        RoutingError::Store(e) => e.into(),
        RoutingError::UnknownConversation | RoutingError::UnknownSession => ApiError::not_found(),
        RoutingError::Contended => {
            ApiError::conflict("busy", "the records changed while erasing them; try again")
        }
        // Erasure creates nothing, so no limit applies to it.
        e @ (RoutingError::NotAllowed(_)
        | RoutingError::ReadOnly
        | RoutingError::Limited { .. }) => ApiError::internal().caused_by(true, e.to_string()),
    }
}
