//! Configuration: an optional TOML file, overridden by environment variables.
//!
//! The environment names are a published interface (operators and scripts set
//! them), so they are spelled once, here, and documented in the README.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;
use url::Url;

mod telemetry;
pub use telemetry::{
    ENV_BOOTSTRAP_TOKEN_OUTPUT, ENV_METRICS_LISTEN, ENV_OTLP_ENDPOINT, OtlpProtocol,
    TelemetryConfig, TraceConfig,
};
mod attachments;
pub use attachments::{
    AttachmentsConfig, ENV_ATTACHMENT_ORPHAN_MINUTES, ENV_ATTACHMENT_QUOTA_MB,
    ENV_S3_ACCESS_KEY_ID, ENV_S3_BUCKET, ENV_S3_ENDPOINT, ENV_S3_PATH_STYLE, ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY, S3Config,
};
mod push;
mod redis;
pub use redis::{
    ENV_REDIS_CLUSTER_NODES, ENV_REDIS_PASSWORD, ENV_REDIS_SENTINEL_MASTER, ENV_REDIS_SENTINELS,
    ENV_REDIS_TLS_CA_FILE, ENV_REDIS_URL, ENV_REDIS_USERNAME, ENV_REDIS_WAIT_REPLICAS,
    ENV_REDIS_WAIT_TIMEOUT_MS,
};
mod retention;
pub use push::{ApnsConfig, FcmConfig, PushConfig};
pub use retention::{
    DEFAULT_RETENTION_DAYS, DEFAULT_SILENT_SESSION_HOURS, ENV_RETENTION_DAYS,
    ENV_SILENT_SESSION_HOURS, MAX_RETENTION_DAYS, RetentionConfig,
};
pub mod serve;

pub use serve::ServeSettings;

pub const ENV_LISTEN: &str = "SWITCHBOARD_LISTEN";
pub const ENV_PUBLIC_URL: &str = "SWITCHBOARD_PUBLIC_URL";
pub const ENV_REDIS_PREFIX: &str = "SWITCHBOARD_REDIS_PREFIX";
pub const ENV_MASTER_KEY: &str = "SWITCHBOARD_MASTER_KEY";
pub const ENV_DATA_DIR: &str = "SWITCHBOARD_DATA_DIR";
pub const ENV_BOOTSTRAP_TOKEN: &str = "SWITCHBOARD_BOOTSTRAP_TOKEN";
pub const ENV_LOG_FORMAT: &str = "SWITCHBOARD_LOG_FORMAT";
pub const ENV_LOG_LEVEL: &str = "SWITCHBOARD_LOG_LEVEL";
pub const ENV_OIDC_ALLOW_INSECURE: &str = "SWITCHBOARD_OIDC_ALLOW_INSECURE";
pub const ENV_AGENT_GRACE_SECONDS: &str = "SWITCHBOARD_AGENT_GRACE_SECONDS";

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_REDIS_PREFIX: &str = "sb:";
const DEFAULT_DATA_DIR: &str = "./switchboard-data";
/// The log filter when neither `RUST_LOG` nor the setting names one.
pub const DEFAULT_LOG_LEVEL: &str = "info,tower_http=info,redb=warn";

/// The settings that hold secrets. Each can instead be read from a file
/// named by the same variable with `_FILE` appended (Docker and systemd
/// credentials, Kubernetes secrets mounted as files).
pub const SECRET_SETTINGS: [&str; 4] = [
    ENV_REDIS_URL,
    ENV_REDIS_PASSWORD,
    ENV_MASTER_KEY,
    ENV_BOOTSTRAP_TOKEN,
];

/// Everything a node needs to start, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` to bind.
    pub listen: String,
    /// The URL visitors and agents reach this service at: issuer of session
    /// tokens, base of the snippet and of OAuth redirect URIs.
    pub public_url: Url,
    /// Selects the Redis engine and how to reach it (one server, a
    /// cluster, Sentinel); absent means the embedded engine. Its `Debug`
    /// prints no credential.
    pub redis: Option<crate::engine::RedisTarget>,
    pub redis_prefix: String,
    /// Encrypts secrets at rest. Absent is only allowed on the embedded
    /// engine, which then generates one in the data directory.
    pub master_key: Option<MasterKey>,
    pub data_dir: PathBuf,
    pub bootstrap_token: Option<SecretString>,
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `warn,switchboard=debug`), re-read from
    /// the config file on SIGHUP. `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// Lets http and loopback/private IdPs through. For local testing only.
    pub oidc_allow_insecure: bool,
    /// How long an agent without a live socket keeps its conversations
    /// before they go back to their queues.
    pub agent_grace: std::time::Duration,
    /// Metrics listener and bootstrap token output.
    pub telemetry: TelemetryConfig,
    /// How long visitors' data and audit entries are kept by default.
    pub retention: RetentionConfig,
    /// Rates, sizes and caps, and the trusted proxies (see
    /// [`crate::limits`]).
    pub limits: crate::limits::Limits,
    /// TLS, the shutdown drain, connection timeouts and caps.
    pub serve: ServeSettings,
    /// The push services agent messages reach apps through.
    pub push: PushConfig,
    /// Where attachments are kept, and each organization's quota.
    pub attachments: AttachmentsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl LogFormat {
    /// The format the environment asks for, for the error of a
    /// configuration that could not be loaded: a collector that expects
    /// JSON gets that error as JSON too.
    pub fn from_env_hint() -> Self {
        match std::env::var(ENV_LOG_FORMAT) {
            Ok(value) if value.trim() == "json" => Self::Json,
            _ => Self::Pretty,
        }
    }
}

/// 32 bytes that encrypt secrets at rest.
#[derive(Clone)]
pub struct MasterKey(std::sync::Arc<SecretBox<[u8; 32]>>);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(std::sync::Arc::new(SecretBox::new(Box::new(bytes))))
    }

    /// Parses the standard-base64 form used in the environment and config.
    pub fn from_base64(text: &str) -> Result<Self, ConfigError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| ConfigError::invalid(ENV_MASTER_KEY, "is not standard base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError::invalid(ENV_MASTER_KEY, "must decode to exactly 32 bytes"))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.expose())
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("SWITCHBOARD_CONFIG (--config) {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SWITCHBOARD_CONFIG (--config) {}: not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{name} {message}")]
    Invalid { name: &'static str, message: String },
    #[error("{name}_FILE: cannot read {path}: {source}")]
    SecretFile {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            message: message.into(),
        }
    }
}

/// The config file: every field optional, same meaning as the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    public_url: Option<String>,
    redis_url: Option<String>,
    redis_cluster_nodes: Option<String>,
    redis_sentinels: Option<String>,
    redis_sentinel_master: Option<String>,
    redis_username: Option<String>,
    redis_password: Option<String>,
    redis_tls_ca_file: Option<PathBuf>,
    redis_wait_replicas: Option<u32>,
    redis_wait_timeout_ms: Option<u64>,
    redis_prefix: Option<String>,
    master_key: Option<String>,
    data_dir: Option<PathBuf>,
    bootstrap_token: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    oidc_allow_insecure: Option<bool>,
    agent_grace_seconds: Option<u64>,
    metrics_listen: Option<String>,
    bootstrap_token_output: Option<PathBuf>,
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    trace_sample_ratio: Option<f64>,
    retention_days: Option<u32>,
    silent_session_hours: Option<u32>,
    limits: Option<crate::limits::LimitsFile>,
    #[serde(default)]
    serve: serve::ServeFile,
}

impl Config {
    /// Loads the file (if any) and applies the process environment over it.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], reading variables through `env` (tests pass a map).
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // An empty variable counts as unset: compose files often declare
        // `REDIS_URL=` to mean "not configured".
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        // A secret from its variable or from the file its `_FILE` names.
        let secret = |name: &'static str| -> Result<Option<String>, ConfigError> {
            let file_name = format!("{name}_FILE");
            match (env(name), env(&file_name)) {
                (Some(_), Some(_)) => Err(ConfigError::invalid(
                    name,
                    format!("and {file_name} are both set: set one"),
                )),
                (Some(value), None) => Ok(Some(value)),
                (None, Some(path)) => {
                    let path = PathBuf::from(path);
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        ConfigError::SecretFile {
                            name,
                            path: path.clone(),
                            source,
                        }
                    })?;
                    // Files usually end with a newline; the secret does not.
                    let value = text.trim_end_matches(['\r', '\n']).to_owned();
                    Ok((!value.trim().is_empty()).then_some(value))
                }
                (None, None) => Ok(None),
            }
        };

        let listen = env(ENV_LISTEN)
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        validate_listen(&listen)?;

        let public_url = match env(ENV_PUBLIC_URL).or(file.public_url) {
            Some(text) => parse_public_url(&text)?,
            None => parse_public_url(&format!("http://{listen}"))?,
        };

        let redis = redis::RedisSettings {
            url: secret(ENV_REDIS_URL)?.or(file.redis_url),
            cluster_nodes: env(ENV_REDIS_CLUSTER_NODES).or(file.redis_cluster_nodes),
            sentinels: env(ENV_REDIS_SENTINELS).or(file.redis_sentinels),
            sentinel_master: env(ENV_REDIS_SENTINEL_MASTER).or(file.redis_sentinel_master),
            username: env(ENV_REDIS_USERNAME).or(file.redis_username),
            password: secret(ENV_REDIS_PASSWORD)?.or(file.redis_password),
            tls_ca_file: env(ENV_REDIS_TLS_CA_FILE)
                .map(PathBuf::from)
                .or(file.redis_tls_ca_file),
            wait_replicas: env(ENV_REDIS_WAIT_REPLICAS)
                .or(file.redis_wait_replicas.map(|n| n.to_string())),
            wait_timeout_ms: env(ENV_REDIS_WAIT_TIMEOUT_MS)
                .or(file.redis_wait_timeout_ms.map(|n| n.to_string())),
        }
        .target()?;

        let redis_prefix = env(ENV_REDIS_PREFIX)
            .or(file.redis_prefix)
            .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned());
        if redis_prefix.len() > 64
            || !redis_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
        {
            return Err(ConfigError::invalid(
                ENV_REDIS_PREFIX,
                "must be at most 64 characters of letters, digits, '-', '_', ':' or '.'",
            ));
        }

        let master_key = secret(ENV_MASTER_KEY)?
            .or(file.master_key)
            .map(|text| MasterKey::from_base64(&text))
            .transpose()?;
        if redis.is_some() && master_key.is_none() {
            return Err(ConfigError::invalid(
                ENV_MASTER_KEY,
                "is required with Redis: every node must encrypt and decrypt with the same key \
                 (generate one with `openssl rand -base64 32`)",
            ));
        }

        let data_dir = env(ENV_DATA_DIR)
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let bootstrap_token = secret(ENV_BOOTSTRAP_TOKEN)?.or(file.bootstrap_token);
        if let Some(token) = &bootstrap_token
            && token.len() < 16
        {
            return Err(ConfigError::invalid(
                ENV_BOOTSTRAP_TOKEN,
                "must be at least 16 characters",
            ));
        }

        let log_format = match env(ENV_LOG_FORMAT).or(file.log_format).as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(_) => {
                return Err(ConfigError::invalid(
                    ENV_LOG_FORMAT,
                    "must be pretty or json",
                ));
            }
        };

        let log_level = env(ENV_LOG_LEVEL)
            .or(file.log_level)
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
        if tracing_subscriber::EnvFilter::builder()
            .parse(&log_level)
            .is_err()
        {
            return Err(ConfigError::invalid(
                ENV_LOG_LEVEL,
                "is not a log filter (such as info, or warn,switchboard=debug)",
            ));
        }

        let oidc_allow_insecure = match env(ENV_OIDC_ALLOW_INSECURE) {
            Some(text) => parse_bool(&text).ok_or_else(|| {
                ConfigError::invalid(ENV_OIDC_ALLOW_INSECURE, "must be true or false")
            })?,
            None => file.oidc_allow_insecure.unwrap_or(false),
        };

        let agent_grace_seconds = match env(ENV_AGENT_GRACE_SECONDS) {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                ConfigError::invalid(ENV_AGENT_GRACE_SECONDS, "must be a number of seconds")
            })?,
            None => file.agent_grace_seconds.unwrap_or(30),
        };
        if !(1..=3600).contains(&agent_grace_seconds) {
            return Err(ConfigError::invalid(
                ENV_AGENT_GRACE_SECONDS,
                "must be 1 to 3600",
            ));
        }

        let telemetry = TelemetryConfig::load(
            env,
            file.metrics_listen,
            file.bootstrap_token_output,
            telemetry::TraceFile {
                otlp_endpoint: file.otlp_endpoint,
                otlp_protocol: file.otlp_protocol,
                trace_sample_ratio: file.trace_sample_ratio,
            },
        )?;
        let retention =
            RetentionConfig::load(&env, file.retention_days, file.silent_session_hours)?;
        let push = PushConfig::load(&env)?;
        let attachments = AttachmentsConfig::load(&env, &secret)?;
        let limits = crate::limits::Limits::load(file.limits.unwrap_or_default(), env)?;

        Ok(Config {
            limits,
            listen,
            public_url,
            redis,
            redis_prefix,
            master_key,
            data_dir,
            bootstrap_token: bootstrap_token.map(SecretString::from),
            log_format,
            oidc_allow_insecure,
            agent_grace: std::time::Duration::from_secs(agent_grace_seconds),
            telemetry,
            retention,
            log_level,
            serve: ServeSettings::load(file.serve, &env)?,
            push,
            attachments,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

fn validate_listen(listen: &str) -> Result<(), ConfigError> {
    validate_listen_of(ENV_LISTEN, listen)
}

/// `host:port`, or an error naming the setting `name`.
fn validate_listen_of(name: &'static str, listen: &str) -> Result<(), ConfigError> {
    let port = listen
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|port| port.parse::<u16>().ok());
    match port {
        Some(_) => Ok(()),
        None => Err(ConfigError::invalid(name, "must be host:port")),
    }
}

fn parse_public_url(text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|_| ConfigError::invalid(ENV_PUBLIC_URL, "is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::invalid(
            ENV_PUBLIC_URL,
            "must be an http(s) URL with a host",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            ENV_PUBLIC_URL,
            "must not carry a query or fragment",
        ));
    }
    Ok(url)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with(None, |name| map.get(name).cloned())
    }

    #[test]
    fn defaults_select_the_embedded_engine() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(config.redis.is_none());
        assert!(config.master_key.is_none());
        assert_eq!(config.redis_prefix, "sb:");
        assert!(!config.oidc_allow_insecure);
    }

    #[test]
    fn redis_requires_a_master_key() {
        let err = load(&[(ENV_REDIS_URL, "redis://127.0.0.1:6379")]).unwrap_err();
        assert!(err.to_string().contains(ENV_MASTER_KEY));
        let key = MasterKey::generate().to_base64();
        let config = load(&[
            (ENV_REDIS_URL, "redis://127.0.0.1:6379"),
            (ENV_MASTER_KEY, &key),
        ])
        .unwrap();
        assert_eq!(config.master_key.unwrap().to_base64(), key);
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nredis_prefix = \"file:\"\n",
        )
        .unwrap();
        let config = Config::load_with(Some(&path), |name| {
            (name == ENV_LISTEN).then(|| "0.0.0.0:9100".to_owned())
        })
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9100");
        assert_eq!(config.redis_prefix, "file:");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (ENV_LISTEN, "no-port"),
            (ENV_PUBLIC_URL, "ftp://x"),
            (ENV_MASTER_KEY, "c2hvcnQ="),
            (ENV_LOG_FORMAT, "xml"),
            (ENV_OIDC_ALLOW_INSECURE, "maybe"),
            (ENV_REDIS_PREFIX, "bad prefix"),
            (ENV_METRICS_LISTEN, "no-port"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    /// Every Redis form, and each mistake answered with the setting that
    /// is wrong at the start of the line.
    #[test]
    fn redis_forms_and_their_mistakes() {
        let key = MasterKey::generate().to_base64();
        let with_key = |vars: &[(&str, &str)]| {
            let mut all = vars.to_vec();
            all.push((ENV_MASTER_KEY, key.as_str()));
            load(&all)
        };
        let cluster = with_key(&[
            (ENV_REDIS_CLUSTER_NODES, "10.0.0.1:7000,10.0.0.2:7000"),
            (ENV_REDIS_USERNAME, "switchboard"),
            (ENV_REDIS_PASSWORD, "pw"),
        ])
        .unwrap()
        .redis
        .unwrap();
        assert_eq!(cluster.form(), "cluster");
        assert!(!format!("{cluster:?}").contains("pw"));
        let sentinel = with_key(&[
            (ENV_REDIS_SENTINELS, "s1,s2,s3"),
            (ENV_REDIS_SENTINEL_MASTER, "mymaster"),
        ])
        .unwrap()
        .redis
        .unwrap();
        assert_eq!(sentinel.form(), "sentinel");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "nothing").unwrap();
        let not_pem = not_pem.to_str().unwrap();
        for (vars, setting) in [
            (
                vec![
                    (ENV_REDIS_URL, "redis://a"),
                    (ENV_REDIS_CLUSTER_NODES, "b:1"),
                ],
                ENV_REDIS_URL,
            ),
            (
                vec![(ENV_REDIS_CLUSTER_NODES, " , ")],
                ENV_REDIS_CLUSTER_NODES,
            ),
            (vec![(ENV_REDIS_SENTINELS, "s1")], ENV_REDIS_SENTINEL_MASTER),
            (
                vec![
                    (ENV_REDIS_SENTINELS, "s1"),
                    (ENV_REDIS_SENTINEL_MASTER, "a b"),
                ],
                ENV_REDIS_SENTINEL_MASTER,
            ),
            (
                vec![
                    (ENV_REDIS_SENTINELS, "ftp://s1"),
                    (ENV_REDIS_SENTINEL_MASTER, "m"),
                ],
                ENV_REDIS_SENTINELS,
            ),
            (
                vec![(ENV_REDIS_SENTINEL_MASTER, "m")],
                ENV_REDIS_SENTINEL_MASTER,
            ),
            (vec![(ENV_REDIS_PASSWORD, "pw")], ENV_REDIS_PASSWORD),
            (
                vec![(ENV_REDIS_URL, "redis://:pw@a"), (ENV_REDIS_PASSWORD, "pw")],
                ENV_REDIS_PASSWORD,
            ),
            (
                vec![
                    (ENV_REDIS_URL, "redis://a"),
                    (ENV_REDIS_TLS_CA_FILE, not_pem),
                ],
                ENV_REDIS_TLS_CA_FILE,
            ),
            (
                vec![
                    (ENV_REDIS_URL, "rediss://a"),
                    (ENV_REDIS_TLS_CA_FILE, not_pem),
                ],
                ENV_REDIS_TLS_CA_FILE,
            ),
            (
                vec![
                    (ENV_REDIS_URL, "rediss://a"),
                    (ENV_REDIS_TLS_CA_FILE, "/nonexistent/ca.pem"),
                ],
                ENV_REDIS_TLS_CA_FILE,
            ),
        ] {
            let err = with_key(&vars).unwrap_err().to_string();
            assert!(err.starts_with(setting), "{vars:?}: {err}");
            assert!(!err.contains("pw"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(matches!(
            Config::load_with(Some(&path), |_| None),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate().to_base64();
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let token_file = dir.path().join("bootstrap");
        std::fs::write(&token_file, "sbb_from_a_file_0123456789\n").unwrap();
        let redis_file = dir.path().join("redis");
        std::fs::write(&redis_file, "redis://:pw@127.0.0.1:6379\n").unwrap();
        let config = load(&[
            ("SWITCHBOARD_MASTER_KEY_FILE", key_file.to_str().unwrap()),
            (
                "SWITCHBOARD_BOOTSTRAP_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            ("REDIS_URL_FILE", redis_file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(config.master_key.unwrap().to_base64(), key);
        assert_eq!(
            config.bootstrap_token.unwrap().expose_secret(),
            "sbb_from_a_file_0123456789"
        );
        assert_eq!(config.redis.unwrap().describe(), "127.0.0.1:6379");
        // Both forms at once is a mistake; a missing file names its variable.
        for name in SECRET_SETTINGS {
            let file_name = format!("{name}_FILE");
            let err = load(&[
                (name, "x"),
                (file_name.as_str(), token_file.to_str().unwrap()),
            ])
            .unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
            let err = load(&[(file_name.as_str(), "/nonexistent/secret")]).unwrap_err();
            assert!(err.to_string().starts_with(&file_name), "{err}");
        }
    }

    #[test]
    fn the_log_level_is_a_filter() {
        assert_eq!(load(&[]).unwrap().log_level, DEFAULT_LOG_LEVEL);
        let config = load(&[(ENV_LOG_LEVEL, "warn,switchboard=debug")]).unwrap();
        assert_eq!(config.log_level, "warn,switchboard=debug");
        let err = load(&[(ENV_LOG_LEVEL, "info,[=")]).unwrap_err();
        assert!(err.to_string().starts_with(ENV_LOG_LEVEL), "{err}");
    }

    #[test]
    fn the_master_key_never_prints() {
        let key = MasterKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
