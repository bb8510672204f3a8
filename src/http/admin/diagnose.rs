//! `POST /api/v2/integrations/oidc/{id}/test`: tries an integration against
//! its IdP (discovery, the exact issuer, the key set, the algorithms) and
//! answers a report that says what to fix, so an admin learns about a
//! trailing slash before the first visitor does.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::oidc::Diagnosis;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Caller, Id, JsonOut};
use crate::store::records::OidcIntegration;
use crate::store::types::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(diagnose_integration))
}

/// Tests the integration against its IdP as it is now. A failing IdP is
/// still a 200: the report is the answer, with `ok: false` and a `problem`.
#[utoipa::path(post, path = "/api/v2/integrations/oidc/{id}/test", tag = "integrations",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Diagnosis),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn diagnose_integration(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<JsonOut<Diagnosis>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let integration = state
        .store
        .get::<OidcIntegration>(principal.org, id)
        .await?;
    let report = state.oidc.diagnose(&integration).await;
    if let Some(problem) = &report.problem {
        tracing::info!(integration = %id, code = %problem.code, "OIDC integration test found a problem");
    }
    Ok(axum::Json(report))
}
