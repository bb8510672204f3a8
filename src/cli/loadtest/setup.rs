//! The organization data a run needs, made through the admin API with the
//! bootstrap token (README's walk-through, by machine): a guest deployment
//! (no sign-in), its queue with enough agent capacity, and API clients with
//! the agent role, each with an access token.
//!
//! Every run makes its own queue and deployment, and its agents go
//! available on that queue only, so conversations left over from an
//! earlier run are never offered to this run's agents.

use serde_json::{Value, json};

use super::LoadError;

/// What the visitors and agents of a run use.
#[derive(Debug)]
pub(super) struct Organization {
    pub deployment: String,
    pub queue: String,
    pub agent_tokens: Vec<String>,
}

/// The largest `agentCapacity` a queue takes.
pub(super) const MAX_AGENT_CAPACITY: usize = 50;

/// The origin the deployment allows. The tool itself sends no `Origin` (as
/// a native app does), which every deployment allows.
const ORIGIN: &str = "https://loadtest.invalid";

/// Sets up `count` organizations with `agents` dealt out among them: one
/// is the default organization (the bootstrap token's); more are new ones,
/// each administered by the API client its creation answers.
pub(super) async fn organizations(
    base: &str,
    bootstrap: &str,
    scenario: &str,
    count: usize,
    agents: usize,
    capacity: usize,
) -> Result<Vec<Organization>, LoadError> {
    let http = reqwest::Client::new();
    let operator = Admin {
        http: http.clone(),
        base,
        token: bootstrap,
    };
    if count <= 1 {
        return Ok(vec![
            organization(&operator, scenario, agents, capacity).await?,
        ]);
    }
    let mut made = Vec::with_capacity(count);
    for n in 0..count {
        let name = format!(
            "loadtest {scenario} {n} {}",
            chrono::Utc::now().to_rfc3339()
        );
        let created = operator
            .post("/api/v2/organizations", json!({ "name": name }))
            .await?;
        let client = created.get("client").unwrap_or(&Value::Null);
        let (Some(id), Some(secret)) = (field(client, "id"), field(client, "secret")) else {
            return Err(LoadError::Setup(
                "the organization's answer has no client id or secret".to_owned(),
            ));
        };
        let token = operator.access_token(id, secret).await?;
        let admin = Admin {
            http: http.clone(),
            base,
            token: &token,
        };
        // Agent `j` of the run belongs to organization `j mod count`.
        let share = (n..agents).step_by(count).count();
        made.push(organization(&admin, scenario, share, capacity).await?);
    }
    Ok(made)
}

/// Makes a deployment, a queue (`capacity` conversations per agent) and
/// `agents` agent credentials in `admin`'s organization.
async fn organization(
    admin: &Admin<'_>,
    scenario: &str,
    agents: usize,
    capacity: usize,
) -> Result<Organization, LoadError> {
    let name = format!("loadtest {scenario} {}", chrono::Utc::now().to_rfc3339());
    let configuration = admin
        .create(
            "/api/v2/webdeployments/configurations",
            json!({ "name": name }),
        )
        .await?;
    admin
        .post(
            &format!(
                "/api/v2/webdeployments/configurations/{configuration}/versions/draft/publish"
            ),
            json!({}),
        )
        .await?;
    let queue = admin
        .create(
            "/api/v2/routing/queues",
            json!({ "name": name, "offerTimeoutSeconds": 60,
                    "agentCapacity": capacity.clamp(1, MAX_AGENT_CAPACITY) }),
        )
        .await?;
    let deployment = admin
        .create(
            "/api/v2/webdeployments/deployments",
            json!({ "name": name, "configuration": { "id": configuration, "version": "1" },
                    "allowedDomains": [ORIGIN], "status": "Active", "queueId": queue }),
        )
        .await?;
    let mut agent_tokens = Vec::with_capacity(agents);
    for i in 0..agents {
        let client = admin
            .post(
                "/api/v2/oauth/clients",
                json!({ "name": format!("{name} agent {i}"), "roles": ["agent"] }),
            )
            .await?;
        let (Some(id), Some(secret)) = (field(&client, "id"), field(&client, "secret")) else {
            return Err(LoadError::Setup(
                "the API client answer has no id or secret".to_owned(),
            ));
        };
        agent_tokens.push(admin.access_token(id, secret).await?);
    }
    Ok(Organization {
        deployment,
        queue,
        agent_tokens,
    })
}

struct Admin<'a> {
    http: reqwest::Client,
    base: &'a str,
    token: &'a str,
}

impl Admin<'_> {
    async fn post(&self, path: &str, body: Value) -> Result<Value, LoadError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| LoadError::Setup(format!("POST {path}: {e}")))?;
        answer(path, response).await
    }

    /// POSTs a record and answers its id.
    async fn create(&self, path: &str, body: Value) -> Result<String, LoadError> {
        let record = self.post(path, body).await?;
        field(&record, "id")
            .map(str::to_owned)
            .ok_or_else(|| LoadError::Setup(format!("POST {path}: the answer has no id")))
    }

    async fn access_token(&self, id: &str, secret: &str) -> Result<String, LoadError> {
        let path = "/oauth/token";
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| LoadError::Setup(format!("POST {path}: {e}")))?;
        let token = answer(path, response).await?;
        field(&token, "access_token")
            .map(str::to_owned)
            .ok_or_else(|| LoadError::Setup("the token answer has no access_token".to_owned()))
    }
}

async fn answer(path: &str, response: reqwest::Response) -> Result<Value, LoadError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| LoadError::Setup(format!("{path}: {e}")))?;
    if !status.is_success() {
        return Err(LoadError::Setup(format!("{path}: HTTP {status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| LoadError::Setup(format!("{path}: {e}")))
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}
