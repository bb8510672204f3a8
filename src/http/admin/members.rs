//! `/api/v2/members`: staff identities and their roles.

use serde::Deserialize;
use utoipa::ToSchema;

use super::resource::{Resource, crud_routes, name};
use crate::http::AppState;
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
