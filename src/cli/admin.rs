//! Admin commands that speak the admin API of a running node:
//! `switchboard orgs`, `switchboard clients`, `switchboard members list` and
//! `revoke`. Each prints a short table for people, or with `--json` the
//! API's own answer for scripts.
//!
//! The credential is a bearer token: the operator's bootstrap token or an
//! API client's access token (`POST /oauth/token`), from `--token` or
//! `SWITCHBOARD_TOKEN`, never from a file the command writes.

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use super::at;
use crate::config::Config;
use crate::store::types::Role;

/// Where the admin API is and who calls it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The node's base URL; by default SWITCHBOARD_LISTEN on this machine.
    #[arg(long, env = "SWITCHBOARD_URL")]
    pub url: Option<String>,
    /// A bearer token: the bootstrap token or an API access token.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: SecretString,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Every organization (the bootstrap token only).
    List(ApiArgs),
    /// Adds an organization with a first admin API client, whose secret is
    /// printed once (the bootstrap token only).
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// The caller's organization's API clients.
    List(ApiArgs),
    /// A new API client; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// admin, supervisor or agent. Repeatable.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A new secret for the client, printed once; the old one stops working.
    Rotate {
        id: Uuid,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deletes the client: its tokens stop working at once.
    Delete {
        id: Uuid,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Parses a role name as the API spells it.
pub fn parse_role(text: &str) -> Result<Role, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "admin" => Ok(Role::Admin),
        "supervisor" => Ok(Role::Supervisor),
        "agent" => Ok(Role::Agent),
        _ => Err("expected admin, supervisor or agent".to_owned()),
    }
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--url {0}: not an http(s) URL")]
    Url(String),
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
    /// The API refused: its status and `{code, message}`.
    #[error("HTTP {status}: {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("no member has the id {0}")]
    NoSuchMember(Uuid),
}

/// A client of one node's admin API.
#[derive(Debug)]
pub struct AdminApi {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl AdminApi {
    pub fn new(config: &Config, args: &ApiArgs) -> Result<Self, AdminError> {
        let base = match &args.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", local_address(&config.listen)),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AdminError::Url(base));
        }
        Ok(Self {
            base,
            token: args.token.clone(),
            http: reqwest::Client::new(),
        })
    }

    /// One request; the JSON answer (null for 204), or the API's refusal.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unreachable = |e: reqwest::Error| AdminError::Unreachable {
            url: self.base.clone(),
            message: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(AdminError::Refused {
            status: status.as_u16(),
            code: at(&value, "/code").as_str().unwrap_or("").to_owned(),
            message: at(&value, "/message")
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        })
    }

    /// Every entity of a paged list.
    async fn list_all(&self, path: &str) -> Result<Vec<Value>, AdminError> {
        let mut all = Vec::new();
        for page in 1u64.. {
            let answer = self
                .call(
                    Method::GET,
                    &format!("{path}?pageSize=100&pageNumber={page}"),
                    None,
                )
                .await?;
            let entities = at(&answer, "/entities")
                .as_array()
                .cloned()
                .unwrap_or_default();
            let last =
                entities.is_empty() || page >= at(&answer, "/pageCount").as_u64().unwrap_or(1);
            all.extend(entities);
            if last {
                break;
            }
        }
        Ok(all)
    }
}

/// A wildcard bind address is reached on loopback.
pub fn local_address(listen: &str) -> String {
    listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]")
}

/// What a command prints: lines for people, or one JSON value.
#[derive(Debug)]
pub struct Output {
    pub json: bool,
    pub value: Value,
    pub lines: Vec<String>,
}

impl Output {
    fn new(json: bool, value: Value, lines: Vec<String>) -> Self {
        Self { json, value, lines }
    }

    /// The text for stdout.
    pub fn render(&self) -> String {
        if self.json {
            self.value.to_string()
        } else {
            self.lines.join("\n")
        }
    }
}

fn roles_of(value: &Value) -> String {
    at(value, "/roles")
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn client_line(client: &Value) -> String {
    format!(
        "{}  {}  roles: {}",
        at(client, "/id").as_str().unwrap_or(""),
        at(client, "/name").as_str().unwrap_or(""),
        roles_of(client)
    )
}

fn secret_line(client: &Value) -> Option<String> {
    at(client, "/secret")
        .as_str()
        .map(|secret| format!("secret (shown only now): {secret}"))
}

pub async fn orgs(config: &Config, command: OrgsCommand) -> Result<Output, AdminError> {
    match command {
        OrgsCommand::List(api_args) => {
            let api = AdminApi::new(config, &api_args)?;
            let all = api.list_all("/api/v2/organizations").await?;
            let lines = all
                .iter()
                .map(|org| {
                    format!(
                        "{}  {}{}",
                        at(org, "/id").as_str().unwrap_or(""),
                        at(org, "/name").as_str().unwrap_or(""),
                        if at(org, "/isDefault") == true {
                            "  (default)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            Ok(Output::new(api_args.json, Value::Array(all), lines))
        }
        OrgsCommand::Create {
            name,
            api: api_args,
        } => {
            let api = AdminApi::new(config, &api_args)?;
            let created = api
                .call(
                    Method::POST,
                    "/api/v2/organizations",
                    Some(json!({ "name": name })),
                )
                .await?;
            let mut lines = vec![format!(
                "organization {}  {}",
                at(&created, "/organization/id").as_str().unwrap_or(""),
                at(&created, "/organization/name").as_str().unwrap_or("")
            )];
            lines.push(format!(
                "admin client {}",
                client_line(at(&created, "/client"))
            ));
            lines.extend(secret_line(at(&created, "/client")));
            Ok(Output::new(api_args.json, created, lines))
        }
    }
}

pub async fn clients(config: &Config, command: ClientsCommand) -> Result<Output, AdminError> {
    const PATH: &str = "/api/v2/oauth/clients";
    match command {
        ClientsCommand::List(api_args) => {
            let api = AdminApi::new(config, &api_args)?;
            let all = api.list_all(PATH).await?;
            let lines = all.iter().map(client_line).collect();
            Ok(Output::new(api_args.json, Value::Array(all), lines))
        }
        ClientsCommand::Create {
            name,
            roles,
            api: api_args,
        } => {
            let api = AdminApi::new(config, &api_args)?;
            let roles: Vec<String> = roles.into_iter().map(role_name).collect();
            let created = api
                .call(
                    Method::POST,
                    PATH,
                    Some(json!({ "name": name, "roles": roles })),
                )
                .await?;
            let mut lines = vec![client_line(&created)];
            lines.extend(secret_line(&created));
            Ok(Output::new(api_args.json, created, lines))
        }
        ClientsCommand::Rotate { id, api: api_args } => {
            let api = AdminApi::new(config, &api_args)?;
            let rotated = api
                .call(Method::POST, &format!("{PATH}/{id}/secret"), None)
                .await?;
            let mut lines = vec![client_line(&rotated)];
            lines.extend(secret_line(&rotated));
            Ok(Output::new(api_args.json, rotated, lines))
        }
        ClientsCommand::Delete { id, api: api_args } => {
            let api = AdminApi::new(config, &api_args)?;
            api.call(Method::DELETE, &format!("{PATH}/{id}"), None)
                .await?;
            Ok(Output::new(
                api_args.json,
                json!({ "deleted": id }),
                vec![format!("client {id} deleted")],
            ))
        }
    }
}

fn member_line(member: &Value) -> String {
    format!(
        "{}  {}  {} {}  roles: {}",
        at(member, "/id").as_str().unwrap_or(""),
        at(member, "/displayName").as_str().unwrap_or(""),
        at(member, "/issuer").as_str().unwrap_or(""),
        at(member, "/subject").as_str().unwrap_or(""),
        roles_of(member)
    )
}

/// `members list`: the caller's organization's members.
pub async fn list_members(config: &Config, api_args: ApiArgs) -> Result<Output, AdminError> {
    let api = AdminApi::new(config, &api_args)?;
    let all = api.list_all("/api/v2/members").await?;
    let lines = all.iter().map(member_line).collect();
    Ok(Output::new(api_args.json, Value::Array(all), lines))
}

/// `members revoke`: takes roles from a member, or (with no role named)
/// removes the member, who can then no longer sign in.
pub async fn revoke_member(
    config: &Config,
    id: Uuid,
    roles: Vec<Role>,
    api_args: ApiArgs,
) -> Result<Output, AdminError> {
    let api = AdminApi::new(config, &api_args)?;
    let path = format!("/api/v2/members/{id}");
    let member = match api.call(Method::GET, &path, None).await {
        Err(AdminError::Refused { status, .. }) if status == StatusCode::NOT_FOUND.as_u16() => {
            return Err(AdminError::NoSuchMember(id));
        }
        other => other?,
    };
    if roles.is_empty() {
        api.call(Method::DELETE, &path, None).await?;
        return Ok(Output::new(
            api_args.json,
            json!({ "deleted": id }),
            vec![format!("member {id} removed")],
        ));
    }
    let revoked: Vec<String> = roles.into_iter().map(role_name).collect();
    let kept: Vec<Value> = at(&member, "/roles")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.as_str().is_none_or(|r| !revoked.iter().any(|x| x == r)))
        .cloned()
        .collect();
    let mut body = member.clone();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("roles".to_owned(), Value::Array(kept));
    }
    let updated = api.call(Method::PUT, &path, Some(body)).await?;
    let lines = vec![member_line(&updated)];
    Ok(Output::new(api_args.json, updated, lines))
}
