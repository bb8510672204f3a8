//! `/api/v2/webdeployments/deployments`: where a messenger runs. A
//! deployment ties a published configuration to the origins allowed to embed
//! it and the queue its conversations go to, and offers the snippet a site
//! pastes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{Resource, crud_routes, name};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::records::{ConfigurationRef, Deployment, Meta};
use crate::store::types::{DeploymentStatus, OrgId, Origin, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInput {
    name: String,
    #[serde(default)]
    description: String,
    /// A published version of a configuration.
    configuration: ConfigurationRef,
    /// Origins (`https://shop.example.com`) the snippet may run on.
    #[serde(default)]
    allowed_domains: Vec<Origin>,
    /// Any origin; exclusive with `allowedDomains`.
    #[serde(default)]
    allow_all_domains: bool,
    #[serde(default)]
    status: DeploymentStatus,
    queue_id: Uuid,
    /// Required on update: the version read.
    version: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    id: Uuid,
    name: String,
    description: String,
    configuration: ConfigurationRef,
    allowed_domains: Vec<Origin>,
    allow_all_domains: bool,
    status: DeploymentStatus,
    queue_id: Uuid,
    /// What a site pastes into its pages.
    snippet: String,
    version: u64,
    date_created: DateTime<Utc>,
    date_modified: DateTime<Utc>,
    self_uri: String,
}

/// The HTML a site pastes: a tiny loader that queues calls made before the
/// widget arrives, then loads the widget from this service.
pub fn snippet(public_url: &url::Url, deployment: Uuid) -> String {
    // The loader of web-snippet/loader.html, exactly as the widget expects it.
    crate::http::web::snippet(public_url, deployment)
}

impl Resource for Deployment {
    type Input = DeploymentInput;
    type View = DeploymentView;
    const READ_ROLE: Role = Role::Admin;

    fn input_version(input: &DeploymentInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: DeploymentInput,
        org: OrgId,
        meta: Meta,
        _: Option<&Deployment>,
        _: &AppState,
    ) -> Result<Deployment, ApiError> {
        match input.configuration.version.parse::<u32>() {
            Ok(n) if n > 0 => {}
            _ => {
                return Err(ApiError::invalid(
                    "configuration.version must name a published version (\"1\", \"2\", ...)",
                ));
            }
        }
        if input.allow_all_domains && !input.allowed_domains.is_empty() {
            return Err(ApiError::invalid(
                "allowAllDomains and allowedDomains are exclusive",
            ));
        }
        if input.allowed_domains.len() > 100 {
            return Err(ApiError::invalid(
                "allowedDomains lists at most 100 origins",
            ));
        }
        let mut allowed_domains = input.allowed_domains;
        allowed_domains.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed_domains.dedup();
        if input.description.chars().count() > 2000 {
            return Err(ApiError::invalid(
                "description is longer than 2000 characters",
            ));
        }
        Ok(Deployment {
            meta,
            org_id: org,
            name: name("name", &input.name)?,
            description: input.description,
            configuration: input.configuration,
            allowed_domains,
            allow_all_domains: input.allow_all_domains,
            status: input.status,
            queue_id: input.queue_id,
        })
    }

    fn view(self, state: &AppState) -> DeploymentView {
        DeploymentView {
            snippet: snippet(&state.config.public_url, self.meta.id),
            self_uri: format!("/api/v2/webdeployments/deployments/{}", self.meta.id),
            id: self.meta.id,
            name: self.name,
            description: self.description,
            configuration: self.configuration,
            allowed_domains: self.allowed_domains,
            allow_all_domains: self.allow_all_domains,
            status: self.status,
            queue_id: self.queue_id,
            version: self.meta.version,
            date_created: self.meta.date_created,
            date_modified: self.meta.date_modified,
        }
    }
}

crud_routes! {
    resource = Deployment,
    input = DeploymentInput,
    view = DeploymentView,
    path = "/api/v2/webdeployments/deployments",
    item = "/api/v2/webdeployments/deployments/{id}",
    tag = "deployments",
}
