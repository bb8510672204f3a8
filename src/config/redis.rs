//! The Redis settings: which form (one server, a cluster, Sentinel), the ACL
//! user and password, and a private CA for TLS. Parsed into an
//! [`RedisTarget`] here, so that a wrong setting stops `check-config` and
//! start-up with one line naming it.

use std::path::PathBuf;

use secrecy::SecretString;

use super::ConfigError;
use crate::engine::RedisTarget;

pub const ENV_REDIS_URL: &str = "REDIS_URL";
pub const ENV_REDIS_CLUSTER_NODES: &str = "SWITCHBOARD_REDIS_CLUSTER_NODES";
pub const ENV_REDIS_SENTINELS: &str = "SWITCHBOARD_REDIS_SENTINELS";
pub const ENV_REDIS_SENTINEL_MASTER: &str = "SWITCHBOARD_REDIS_SENTINEL_MASTER";
pub const ENV_REDIS_USERNAME: &str = "SWITCHBOARD_REDIS_USERNAME";
pub const ENV_REDIS_PASSWORD: &str = "SWITCHBOARD_REDIS_PASSWORD";
pub const ENV_REDIS_TLS_CA_FILE: &str = "SWITCHBOARD_REDIS_TLS_CA_FILE";
pub const ENV_REDIS_WAIT_REPLICAS: &str = "SWITCHBOARD_REDIS_WAIT_REPLICAS";
pub const ENV_REDIS_WAIT_TIMEOUT_MS: &str = "SWITCHBOARD_REDIS_WAIT_TIMEOUT_MS";

/// How long an append waits for its replicas unless set.
const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1000;
/// More replicas than any deployment runs per master.
const MAX_WAIT_REPLICAS: u32 = 16;

/// The Redis settings as read, from the environment or the file, before
/// they are checked together.
#[derive(Default)]
pub(super) struct RedisSettings {
    pub(super) url: Option<String>,
    pub(super) cluster_nodes: Option<String>,
    pub(super) sentinels: Option<String>,
    pub(super) sentinel_master: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) wait_replicas: Option<String>,
    pub(super) wait_timeout_ms: Option<String>,
}

impl RedisSettings {
    /// The target these settings describe; `None` (the embedded engine)
    /// when no Redis form is set, and then no other Redis setting may be.
    pub(super) fn target(self) -> Result<Option<RedisTarget>, ConfigError> {
        let invalid = |name: &'static str| {
            move |e: crate::engine::TargetError| ConfigError::invalid(name, e.to_string())
        };
        let forms = [
            (ENV_REDIS_URL, self.url.is_some()),
            (ENV_REDIS_CLUSTER_NODES, self.cluster_nodes.is_some()),
            (ENV_REDIS_SENTINELS, self.sentinels.is_some()),
        ];
        let set: Vec<&str> = forms
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
        if let [first, second, ..] = set.as_slice() {
            return Err(ConfigError::invalid(
                ENV_REDIS_URL,
                format!("form: {first} and {second} are both set; set one Redis form"),
            ));
        }
        if self.sentinel_master.is_some() && self.sentinels.is_none() {
            return Err(ConfigError::invalid(
                ENV_REDIS_SENTINEL_MASTER,
                format!("is set without {ENV_REDIS_SENTINELS}"),
            ));
        }
        let target = if let Some(url) = &self.url {
            RedisTarget::single(url).map_err(invalid(ENV_REDIS_URL))?
        } else if let Some(nodes) = &self.cluster_nodes {
            RedisTarget::cluster(nodes).map_err(invalid(ENV_REDIS_CLUSTER_NODES))?
        } else if let Some(sentinels) = &self.sentinels {
            let master = self.sentinel_master.as_deref().ok_or_else(|| {
                ConfigError::invalid(
                    ENV_REDIS_SENTINEL_MASTER,
                    format!("is required with {ENV_REDIS_SENTINELS}: the name the Sentinels monitor the master by"),
                )
            })?;
            RedisTarget::sentinel(sentinels, master).map_err(|e| {
                // The master's name is checked there too; say which is wrong.
                let name = if RedisTarget::sentinel(sentinels, "m").is_ok() {
                    ENV_REDIS_SENTINEL_MASTER
                } else {
                    ENV_REDIS_SENTINELS
                };
                ConfigError::invalid(name, e.to_string())
            })?
        } else {
            for (name, set) in [
                (ENV_REDIS_USERNAME, self.username.is_some()),
                (ENV_REDIS_PASSWORD, self.password.is_some()),
                (ENV_REDIS_TLS_CA_FILE, self.tls_ca_file.is_some()),
                (ENV_REDIS_WAIT_REPLICAS, self.wait_replicas.is_some()),
                (ENV_REDIS_WAIT_TIMEOUT_MS, self.wait_timeout_ms.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        name,
                        format!(
                            "is set but no Redis is: set {ENV_REDIS_URL}, \
                             {ENV_REDIS_CLUSTER_NODES} or {ENV_REDIS_SENTINELS}"
                        ),
                    ));
                }
            }
            return Ok(None);
        };
        let has_url_credentials = target.url_has_credentials();
        let mut target = target;
        if let Some(username) = &self.username {
            if has_url_credentials {
                return Err(ConfigError::invalid(
                    ENV_REDIS_USERNAME,
                    format!("is set and {ENV_REDIS_URL} carries credentials too: set one"),
                ));
            }
            target = target
                .with_username(username)
                .map_err(invalid(ENV_REDIS_USERNAME))?;
        }
        if let Some(password) = self.password {
            if has_url_credentials {
                return Err(ConfigError::invalid(
                    ENV_REDIS_PASSWORD,
                    format!("is set and {ENV_REDIS_URL} carries credentials too: set one"),
                ));
            }
            target = target.with_password(SecretString::from(password));
        }
        if let Some(path) = &self.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    ENV_REDIS_TLS_CA_FILE,
                    format!("{}: cannot read: {e}", path.display()),
                )
            })?;
            target = target
                .with_ca_pem(pem)
                .map_err(invalid(ENV_REDIS_TLS_CA_FILE))?;
        }
        let replicas = match &self.wait_replicas {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_WAIT_REPLICAS)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        ENV_REDIS_WAIT_REPLICAS,
                        format!("must be a number of replicas, 0 to {MAX_WAIT_REPLICAS}"),
                    )
                })?,
            None => 0,
        };
        let timeout_ms = match &self.wait_timeout_ms {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=60_000).contains(ms))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        ENV_REDIS_WAIT_TIMEOUT_MS,
                        "must be 1 to 60000 milliseconds",
                    )
                })?,
            None => DEFAULT_WAIT_TIMEOUT_MS,
        };
        Ok(Some(target.with_wait_replicas(
            replicas,
            std::time::Duration::from_millis(timeout_ms),
        )))
    }
}
