//! `/api/v2/webdeployments/deployments`: where a messenger runs. A
//! deployment ties a published configuration to the origins allowed to embed
//! it (and the native apps allowed to use it) and the queue its
//! conversations go to, and offers the snippet a site pastes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{Resource, crud_routes, name, present, retention_days};
use crate::app::AppState;
use crate::engine::{Expect, Put};
use crate::http::error::ApiError;
use crate::store::records::{ConfigurationRef, DeletedDeployment, Deployment, Meta};
use crate::store::types::{AppHost, DeploymentStatus, OrgId, Origin, RedirectScheme, Role};
use crate::store::{StoreError, put_for};

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
    /// Any web origin; exclusive with `allowedDomains`. Native apps are not
    /// covered: they are listed in `allowedAppHosts` and
    /// `allowedAppRedirectSchemes`.
    #[serde(default)]
    allow_all_domains: bool,
    /// Host names native apps send as their `Origin`, without scheme or
    /// port: `webmessaging.<domain>` (the Transport SDK's socket) and
    /// `<domain>` (its history requests), where `<domain>` is the domain
    /// the app is configured with. Omitted on update: the stored list is
    /// kept.
    allowed_app_hosts: Option<Vec<AppHost>>,
    /// Reverse-DNS schemes (`com.example.app`, RFC 8252 7.1) apps receive
    /// their OAuth redirect on; a login's `redirectUri` on one of them is
    /// accepted. Omitted on update: the stored list is kept.
    allowed_app_redirect_schemes: Option<Vec<RedirectScheme>>,
    #[serde(default)]
    status: DeploymentStatus,
    queue_id: Uuid,
    /// Days this deployment's ended conversations (with their logs) and
    /// visitors' sessions are kept (1 to 36500); `null`: the
    /// organization's retention. Omitted on update: the stored value is
    /// kept.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    retention_days: Option<Option<u32>>,
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
    allowed_app_hosts: Vec<AppHost>,
    allowed_app_redirect_schemes: Vec<RedirectScheme>,
    status: DeploymentStatus,
    queue_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_days: Option<u32>,
    /// What a site pastes into its pages.
    snippet: String,
    /// Settings that work but put visitors at risk, in words for the admin
    /// (see [`ALLOW_ALL_WARNING`]). Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    version: u64,
    date_created: DateTime<Utc>,
    date_modified: DateTime<Utc>,
    self_uri: String,
}

/// Said of every deployment that allows all domains. Any website can then
/// embed the messenger, and if its configuration signs visitors in, any
/// website can run a visitor's sign-in and receive the session it yields
/// (the sign-in popup answers only the page that started the login, so one
/// site cannot take another's). Allowed, for demos and catch-all widgets
/// without sign-in; warned, so an admin who turns on sign-in knows to list
/// the origins instead.
pub const ALLOW_ALL_WARNING: &str = "allowAllDomains: any website can embed this messenger. If its configuration signs visitors in, any website can start a visitor's sign-in and receive their session: list the sites in allowedDomains instead (wildcards like https://*.example.com are allowed).";

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
        existing: Option<&Deployment>,
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
        // Clients that predate these lists (the console's deployment form,
        // older scripts) send a whole record without them: they keep what
        // is stored rather than erase it.
        let allowed_app_hosts = listed(
            "allowedAppHosts",
            input.allowed_app_hosts,
            existing.map(|d| &d.allowed_app_hosts),
        )?;
        let allowed_app_redirect_schemes = listed(
            "allowedAppRedirectSchemes",
            input.allowed_app_redirect_schemes,
            existing.map(|d| &d.allowed_app_redirect_schemes),
        )?;
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
            allowed_app_hosts,
            allowed_app_redirect_schemes,
            status: input.status,
            queue_id: input.queue_id,
            retention_days: retention_days(
                input.retention_days,
                existing.and_then(|d| d.retention_days),
            )?,
        })
    }

    /// A deleted deployment leaves its guest sessions behind: a tombstone
    /// tells the retention sweep where to find them.
    fn left_behind(&self, now: DateTime<Utc>) -> Result<Vec<Put>, StoreError> {
        Ok(vec![put_for(
            &DeletedDeployment::of(self, now),
            Expect::Absent,
        )?])
    }

    fn view(self, state: &AppState) -> DeploymentView {
        DeploymentView {
            snippet: snippet(&state.config.public_url, self.meta.id),
            warnings: if self.allow_all_domains {
                vec![ALLOW_ALL_WARNING.to_owned()]
            } else {
                Vec::new()
            },
            self_uri: format!("/api/v2/webdeployments/deployments/{}", self.meta.id),
            id: self.meta.id,
            name: self.name,
            description: self.description,
            configuration: self.configuration,
            allowed_domains: self.allowed_domains,
            allow_all_domains: self.allow_all_domains,
            allowed_app_hosts: self.allowed_app_hosts,
            allowed_app_redirect_schemes: self.allowed_app_redirect_schemes,
            status: self.status,
            queue_id: self.queue_id,
            retention_days: self.retention_days,
            version: self.meta.version,
            date_created: self.meta.date_created,
            date_modified: self.meta.date_modified,
        }
    }
}

/// The most entries each app list holds, as for `allowedDomains`.
const MAX_LISTED: usize = 100;

/// An app list as given, sorted and without duplicates; the stored one when
/// the input leaves it out (none on create).
fn listed<T: Ord + Clone>(
    field: &str,
    given: Option<Vec<T>>,
    stored: Option<&Vec<T>>,
) -> Result<Vec<T>, ApiError> {
    let mut list = match given {
        Some(list) => list,
        None => stored.cloned().unwrap_or_default(),
    };
    if list.len() > MAX_LISTED {
        return Err(ApiError::invalid(format!(
            "{field} lists at most {MAX_LISTED} entries"
        )));
    }
    list.sort();
    list.dedup();
    Ok(list)
}

crud_routes! {
    resource = Deployment,
    input = DeploymentInput,
    view = DeploymentView,
    path = "/api/v2/webdeployments/deployments",
    item = "/api/v2/webdeployments/deployments/{id}",
    tag = "deployments",
}
