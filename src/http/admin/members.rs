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
    /// The IdP's issuer, exactly as in its ID tokens. Left out (with
    /// `subject`) to pre-provision a member by `email`.
    #[serde(default)]
    issuer: Option<String>,
    /// The IdP's `sub` for this person. Left out (with `issuer`) to
    /// pre-provision a member by `email`.
    #[serde(default)]
    subject: Option<String>,
    display_name: String,
    /// Without `issuer` and `subject`: the address the member is claimed
    /// by, at the first staff sign-in whose IdP asserts it as verified
    /// (`email_verified`). One pending member per address.
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
        existing: Option<&Member>,
        _: &AppState,
    ) -> Result<Member, ApiError> {
        if let Some(email) = &input.email
            && (!email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace))
        {
            return Err(ApiError::invalid("email is not an email address"));
        }
        let (issuer, subject) = match (input.issuer, input.subject) {
            (Some(issuer), Some(subject)) => {
                let issuer = issuer.trim().to_owned();
                if url::Url::parse(&issuer).is_err() {
                    return Err(ApiError::invalid("issuer must be the IdP's issuer URL"));
                }
                if subject.is_empty() || subject.len() > 255 {
                    return Err(ApiError::invalid("subject must be 1 to 255 characters"));
                }
                (issuer, subject)
            }
            (None, None) => {
                if existing.is_some_and(|m| !m.is_pending()) {
                    return Err(ApiError::invalid(
                        "issuer and subject of a member who signed in stay: send them unchanged",
                    ));
                }
                if input.email.is_none() {
                    return Err(ApiError::invalid(
                        "a member is named by issuer and subject, or pre-provisioned by email",
                    ));
                }
                (String::new(), String::new())
            }
            _ => {
                return Err(ApiError::invalid(
                    "issuer and subject go together (or both are left out to pre-provision by email)",
                ));
            }
        };
        let mut roles = input.roles;
        roles.sort();
        roles.dedup();
        Ok(Member {
            meta,
            org_id: org,
            issuer,
            subject,
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
