//! `switchboard members grant`: names an organization's first admin (or any
//! member's roles) before anyone can sign in, by (issuer, subject). `list`
//! and `revoke` speak the admin API (`cli::admin`).
//!
//! It opens the engine the service would open, with the same configuration.
//! With the embedded engine that means the database file itself, which one
//! process at a time may hold: the service must be stopped meanwhile (or use
//! `POST /api/v2/members` with the bootstrap token while it runs).

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::admin::{ApiArgs, parse_role};
use crate::auth::staff::{self, GrantOutcome, MemberGrant, StaffError};
use crate::config::Config;
use crate::engine::{EmbeddedEngine, Engine, RedisEngine};
use crate::store::Store;
use crate::store::types::{OrgId, Role};

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Creates the member (issuer, subject) if missing and adds the roles;
    /// prints the member id. Works on the engine, so it can name the first
    /// admin before anyone can sign in.
    Grant(GrantArgs),
    /// The organization's members (through the admin API).
    List(ApiArgs),
    /// Takes the named roles from a member, or without --role removes the
    /// member, who then cannot sign in (through the admin API).
    Revoke {
        /// The member's id.
        id: Uuid,
        /// A role to take away. Repeatable; none removes the member.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The IdP's issuer, exactly as in its ID tokens (the staff
    /// integration's issuer).
    #[arg(long)]
    pub issuer: String,
    /// The person's `sub` at that IdP.
    #[arg(long)]
    pub subject: String,
    /// A role to add: admin, supervisor or agent. Repeatable.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// The organization's id; the default organization when absent.
    #[arg(long)]
    pub org: Option<Uuid>,
    /// The display name (of a new member; renames an existing one).
    #[arg(long)]
    pub name: Option<String>,
    /// Print `{memberId, outcome, roles}` as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error(
        "cannot open the embedded database in {dir}: {message}\n\
         With the embedded engine the service must not be running while this command runs: \
         stop it first, or use POST /api/v2/members with the bootstrap token while it runs."
    )]
    EmbeddedLocked { dir: String, message: String },
    #[error("cannot reach Redis: {0}")]
    Redis(String),
    #[error("{0}")]
    Grant(#[from] StaffError),
}

/// What `members grant` did, for the terminal.
#[derive(Debug)]
pub struct Granted {
    pub member_id: Uuid,
    pub outcome: GrantOutcome,
    pub roles: Vec<Role>,
}

/// Runs `members grant` against the configured engine.
pub async fn run(config: &Config, args: GrantArgs) -> Result<Granted, MembersError> {
    let engine = open_engine(config).await?;
    let store = Store::new(engine);
    let (member, outcome) = staff::grant_member(
        &store,
        MemberGrant {
            org: args.org.map(OrgId),
            issuer: args.issuer,
            subject: args.subject,
            roles: args.roles,
            display_name: args.name,
        },
    )
    .await?;
    Ok(Granted {
        member_id: member.meta.id,
        outcome,
        roles: member.roles,
    })
}

async fn open_engine(config: &Config) -> Result<Engine, MembersError> {
    match &config.redis {
        Some(target) => RedisEngine::open(target, &config.redis_prefix)
            .await
            .map(Engine::Redis)
            .map_err(|e| MembersError::Redis(e.to_string())),
        None => EmbeddedEngine::open(&config.data_dir)
            .await
            .map(Engine::Embedded)
            .map_err(|e| MembersError::EmbeddedLocked {
                dir: config.data_dir.display().to_string(),
                message: e.to_string(),
            }),
    }
}
