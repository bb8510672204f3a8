//! `/api/v2/oauth/clients`: machine credentials for the admin API and for
//! bots. The secret is shown once, in the answer to the create; only its
//! digest is kept.

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{Resource, crud_routes, name};
use crate::app::AppState;
use crate::auth::new_api_client;
use crate::http::error::ApiError;
use crate::store::records::{ApiClient, Meta};
use crate::store::types::{OrgId, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiClientInput {
    name: String,
    roles: Vec<Role>,
    /// Required on update: the version read.
    version: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiClientView {
    /// The client id for `POST /oauth/token`.
    id: Uuid,
    name: String,
    roles: Vec<Role>,
    /// Only in the answer to the create, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    version: u64,
    date_created: DateTime<Utc>,
    date_modified: DateTime<Utc>,
}

impl std::fmt::Debug for ApiClientView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClientView")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Validated roles of a credential: at least one, each once.
pub fn roles(mut roles: Vec<Role>) -> Result<Vec<Role>, ApiError> {
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err(ApiError::invalid(
            "roles must name at least one of admin, supervisor, agent",
        ));
    }
    Ok(roles)
}

impl Resource for ApiClient {
    type Input = ApiClientInput;
    type View = ApiClientView;
    const READ_ROLE: Role = Role::Admin;

    fn input_version(input: &ApiClientInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: ApiClientInput,
        org: OrgId,
        meta: Meta,
        existing: Option<&ApiClient>,
        _: &AppState,
    ) -> Result<ApiClient, ApiError> {
        let name = name("name", &input.name)?;
        let roles = roles(input.roles)?;
        Ok(match existing {
            Some(existing) => ApiClient {
                meta,
                name,
                roles,
                ..existing.clone()
            },
            None => new_api_client(org, meta, name, roles),
        })
    }

    fn view(self, _: &AppState) -> ApiClientView {
        ApiClientView {
            id: self.meta.id,
            name: self.name,
            roles: self.roles,
            secret: self.fresh_secret.map(|s| s.expose_secret().to_owned()),
            version: self.meta.version,
            date_created: self.meta.date_created,
            date_modified: self.meta.date_modified,
        }
    }
}

/// `POST /api/v2/oauth/clients/{id}/secret`, beside the generated routes.
pub fn rotate_router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(rotate_secret))
}

/// Gives the client a new secret, shown once in the answer; the old one
/// stops working at once (tokens it minted live out their hour).
#[utoipa::path(post, path = "/api/v2/oauth/clients/{id}/secret", tag = "credentials",
    operation_id = "rotateApiClientSecret", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiClientView),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 403, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody),
        (status = 409, body = crate::http::error::ErrorBody, description = "changed meanwhile")))]
async fn rotate_secret(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: crate::http::extract::Caller,
    crate::http::extract::Id(id): crate::http::extract::Id,
) -> Result<axum::Json<ApiClientView>, ApiError> {
    let principal = caller.require(Role::Admin)?;
    let existing = state.store.get::<ApiClient>(principal.org, id).await?;
    let expected = existing.meta.version;
    let mut meta = existing.meta.clone();
    meta.date_modified = Utc::now();
    let mut client = new_api_client(
        existing.org_id,
        meta,
        existing.name.clone(),
        existing.roles.clone(),
    );
    state.store.update(&mut client, expected).await?;
    Ok(axum::Json(client.view(&state)))
}

crud_routes! {
    resource = ApiClient,
    input = ApiClientInput,
    view = ApiClientView,
    path = "/api/v2/oauth/clients",
    item = "/api/v2/oauth/clients/{id}",
    tag = "credentials",
}
