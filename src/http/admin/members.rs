//! `/api/v2/members`: staff identities and their roles.

use serde::Deserialize;
use utoipa::ToSchema;

use super::resource::{Resource, crud_routes, name};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::records::{Member, Meta};
use crate::store::types::{OrgId, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberInput {
    /// The IdP's issuer, exactly as in its ID tokens.
    issuer: String,
    /// The IdP's `sub` for this person.
    subject: String,
    display_name: String,
    email: Option<String>,
    #[serde(default)]
    roles: Vec<Role>,
    /// Required on update: the version read.
    version: Option<u64>,
}

impl Resource for Member {
    type Input = MemberInput;
    type View = Member;
    const READ_ROLE: Role = Role::Supervisor;

    fn input_version(input: &MemberInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: MemberInput,
        org: OrgId,
        meta: Meta,
        _: Option<&Member>,
        _: &AppState,
    ) -> Result<Member, ApiError> {
        let issuer = input.issuer.trim();
        if url::Url::parse(issuer).is_err() {
            return Err(ApiError::invalid("issuer must be the IdP's issuer URL"));
        }
        if input.subject.is_empty() || input.subject.len() > 255 {
            return Err(ApiError::invalid("subject must be 1 to 255 characters"));
        }
        if let Some(email) = &input.email
            && (!email.contains('@') || email.len() > 254)
        {
            return Err(ApiError::invalid("email is not an email address"));
        }
        let mut roles = input.roles;
        roles.sort();
        roles.dedup();
        Ok(Member {
            meta,
            org_id: org,
            issuer: issuer.to_owned(),
            subject: input.subject,
            display_name: name("displayName", &input.display_name)?,
            email: input.email,
            roles,
        })
    }

    fn view(self, _: &AppState) -> Member {
        self
    }
}

crud_routes! {
    resource = Member,
    input = MemberInput,
    view = Member,
    path = "/api/v2/members",
    item = "/api/v2/members/{id}",
    tag = "members",
}

/// `GET /api/v2/members/me`, beside the generated routes: the static
/// segment wins over `/{id}`.
pub fn me_router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(me))
}

/// A signed-in member's own record: what it hands to an admin to be granted
/// roles.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSelf {
    id: uuid::Uuid,
    issuer: String,
    subject: String,
    display_name: String,
    email: Option<String>,
    roles: Vec<Role>,
    #[schema(value_type = String, format = Uuid)]
    org_id: OrgId,
}

/// The caller's own member record (a signed-in member; any role).
#[utoipa::path(get, path = "/api/v2/members/me", tag = "members", security(("bearer" = [])),
    responses((status = 200, body = MemberSelf),
        (status = 401, body = crate::http::error::ErrorBody),
        (status = 403, body = crate::http::error::ErrorBody, description = "the caller is an API client or the operator, not a member")))]
async fn me(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: crate::http::extract::Caller,
) -> Result<axum::Json<MemberSelf>, ApiError> {
    let crate::auth::PrincipalKind::Member { id } = caller.0.kind else {
        return Err(ApiError::forbidden(
            "only a signed-in member has a member record; this credential is an API client or the bootstrap token",
        ));
    };
    let member = state.store.get::<Member>(caller.0.org, id).await?;
    Ok(axum::Json(MemberSelf {
        id: member.meta.id,
        issuer: member.issuer,
        subject: member.subject,
        display_name: member.display_name,
        email: member.email,
        roles: member.roles,
        org_id: member.org_id,
    }))
}
