//! A site for a test: an OIDC integration (when visitors sign in), a
//! published configuration, a queue and an active deployment on the shop's
//! origin, made through the admin API. Also the request bodies the admin
//! API tests build on.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::app::{Api, Reply, TestApp};
use super::idp::{SHOP_ORIGIN, TestIdp};

/// An integration at `https://idp.example.com/` (which does not resolve
/// here), with a client secret.
pub(crate) fn integration_body(name: &str) -> Value {
    json!({
        "name": name,
        "issuer": "https://idp.example.com/",
        "clientId": "switchboard-web",
        "clientSecret": "integration-client-secret-value",
        "scopes": ["openid", "email", "profile"],
        "authorizeParams": { "prompt": "login" },
    })
}

/// An integration signing visitors in at the real test IdP `idp`.
pub(crate) fn idp_integration_body(idp: &TestIdp) -> Value {
    json!({
        "name": "Test IdP",
        "issuer": idp.issuer,
        "clientId": idp.client_id,
        "clientSecret": idp.client_secret,
        "scopes": ["openid", "email", "profile"],
        "maxRefreshTokenLifetimeSeconds": 3600,
    })
}

/// A configuration; authentication is on exactly with an `integration`.
pub(crate) fn configuration_body(name: &str, integration: Option<&str>) -> Value {
    json!({
        "name": name,
        "description": "web chat",
        "authenticationSettings": {
            "enabled": integration.is_some(),
            "integrationId": integration,
            "allowSessionUpgrade": false,
        },
        "messenger": { "apps": { "conversations": { "showAgentTypingIndicator": true } } },
        "languages": ["en-us"],
        "defaultLanguage": "en-us",
    })
}

/// An active deployment of `configuration` at `version` on the shop's
/// origin, routing to `queue`.
pub(crate) fn deployment_body(configuration: &str, version: &str, queue: &str) -> Value {
    json!({
        "name": "shop",
        "configuration": { "id": configuration, "version": version },
        "allowedDomains": [SHOP_ORIGIN],
        "status": "Active",
        "queueId": queue,
    })
}

/// A record the site makes anew, or one it reuses.
#[derive(Clone, Debug)]
enum Part {
    New(Value),
    Existing(String),
}

/// What a site is made of. [`SiteSpec::new`] is a guest site: no
/// integration, configuration "Shop messenger" as [`configuration_body`]
/// has it, a new queue "Support", the shop's origin.
#[derive(Clone, Debug)]
pub(crate) struct SiteSpec {
    integration: Option<Part>,
    sign_in: Option<bool>,
    session_upgrade: bool,
    conversations: Option<Value>,
    origins: Vec<String>,
    queue: Part,
}

impl Default for SiteSpec {
    fn default() -> Self {
        SiteSpec {
            integration: None,
            sign_in: None,
            session_upgrade: false,
            conversations: None,
            origins: vec![SHOP_ORIGIN.to_owned()],
            queue: Part::New(json!({ "name": "Support" })),
        }
    }
}

impl SiteSpec {
    pub(crate) fn new() -> SiteSpec {
        SiteSpec::default()
    }

    /// Visitors sign in at the [`integration_body`] IdP "Shop IdP".
    pub(crate) fn shop_idp() -> SiteSpec {
        SiteSpec::new().integration(integration_body("Shop IdP"))
    }

    /// Visitors sign in at the real test IdP `idp`.
    pub(crate) fn test_idp(idp: &TestIdp) -> SiteSpec {
        SiteSpec::new().integration(idp_integration_body(idp))
    }

    /// A new integration from `body`; sign-in is on unless
    /// [`SiteSpec::sign_in`] says otherwise.
    pub(crate) fn integration(mut self, body: Value) -> SiteSpec {
        self.integration = Some(Part::New(body));
        self
    }

    /// An integration that exists already.
    pub(crate) fn reusing_integration(mut self, id: &str) -> SiteSpec {
        self.integration = Some(Part::Existing(id.to_owned()));
        self
    }

    /// Whether visitors must sign in (the integration stays named).
    pub(crate) fn sign_in(mut self, required: bool) -> SiteSpec {
        self.sign_in = Some(required);
        self
    }

    /// `allowSessionUpgrade`: a guest session may sign in in place.
    pub(crate) fn session_upgrade(mut self, allowed: bool) -> SiteSpec {
        self.session_upgrade = allowed;
        self
    }

    /// The configuration's `messenger.apps.conversations`, whole.
    pub(crate) fn conversations(mut self, settings: Value) -> SiteSpec {
        self.conversations = Some(settings);
        self
    }

    /// The deployment's `allowedDomains`.
    pub(crate) fn origins(mut self, origins: &[&str]) -> SiteSpec {
        self.origins = origins.iter().map(|&o| o.to_owned()).collect();
        self
    }

    /// A new queue from `body`.
    pub(crate) fn queue(mut self, body: Value) -> SiteSpec {
        self.queue = Part::New(body);
        self
    }

    /// A queue that exists already.
    pub(crate) fn in_queue(mut self, id: &str) -> SiteSpec {
        self.queue = Part::Existing(id.to_owned());
        self
    }
}

/// The records of a site, by id.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    /// The admin access token that made it.
    pub admin: String,
    pub integration: Option<String>,
    pub configuration: String,
    pub queue: String,
    pub deployment: String,
    /// The deployment as the API answered its creation.
    pub record: Value,
}

impl Site {
    #[track_caller]
    pub(crate) fn integration_id(&self) -> &str {
        self.integration
            .as_deref()
            .expect("a site with an integration")
    }

    /// The admin API paths of the site's records: its integration (if
    /// any), configuration, published version 1, queue and deployment.
    pub(crate) fn record_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .integration
            .iter()
            .map(|id| format!("/api/v2/integrations/oidc/{id}"))
            .collect();
        let configuration = format!(
            "/api/v2/webdeployments/configurations/{}",
            self.configuration
        );
        paths.push(format!("{configuration}/versions/1"));
        paths.push(configuration);
        paths.push(format!("/api/v2/routing/queues/{}", self.queue));
        paths.push(format!(
            "/api/v2/webdeployments/deployments/{}",
            self.deployment
        ));
        paths
    }

    pub(crate) fn queue_id(&self) -> Uuid {
        self.queue.parse().unwrap()
    }

    pub(crate) fn deployment_id(&self) -> Uuid {
        self.deployment.parse().unwrap()
    }
}

impl Api {
    /// Makes the site `spec` describes through `admin`.
    pub(crate) async fn site_as(&self, admin: &str, spec: &SiteSpec) -> Site {
        let integration = match &spec.integration {
            Some(Part::New(body)) => Some(
                self.create("/api/v2/integrations/oidc", admin, body.clone())
                    .await,
            ),
            Some(Part::Existing(id)) => Some(id.clone()),
            None => None,
        };
        let mut body = configuration_body("Shop messenger", integration.as_deref());
        let auth = &mut body["authenticationSettings"];
        auth["enabled"] = json!(spec.sign_in.unwrap_or(integration.is_some()));
        auth["allowSessionUpgrade"] = json!(spec.session_upgrade);
        if let Some(conversations) = &spec.conversations {
            body["messenger"]["apps"]["conversations"] = conversations.clone();
        }
        let configuration = self
            .create("/api/v2/webdeployments/configurations", admin, body)
            .await;
        let published = self
            .post(
                &format!(
                    "/api/v2/webdeployments/configurations/{configuration}/versions/draft/publish"
                ),
                admin,
                json!({}),
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(published["version"], "1");
        let queue = match &spec.queue {
            Part::New(body) => {
                self.create("/api/v2/routing/queues", admin, body.clone())
                    .await
            }
            Part::Existing(id) => id.clone(),
        };
        let mut body = deployment_body(&configuration, "1", &queue);
        body["allowedDomains"] = json!(spec.origins);
        let record = self
            .post("/api/v2/webdeployments/deployments", admin, body)
            .await
            .expect(StatusCode::CREATED);
        Site {
            admin: admin.to_owned(),
            integration,
            configuration,
            queue,
            deployment: record["id"].as_str().unwrap().to_owned(),
            record,
        }
    }
}

impl Api {
    /// A deployment's public `config.json`, as the widget reads it.
    pub(crate) async fn public_config(&self, deployment: &str) -> Reply {
        let path = format!("/webdeployments/v1/deployments/{deployment}/config.json");
        self.call(Method::GET, &path, None, None).await
    }
}

impl TestApp {
    /// Makes the site `spec` describes through a new admin access token.
    pub(crate) async fn site(&self, spec: &SiteSpec) -> Site {
        let admin = self.admin().await;
        self.site_as(&admin, spec).await
    }

    /// A guest site: no sign-in.
    pub(crate) async fn guest_site(&self) -> Site {
        self.site(&SiteSpec::new()).await
    }
}
