//! Settings of what a node tells its operator: where metrics are served,
//! and where a generated bootstrap token goes.

use std::path::PathBuf;

use super::{ConfigError, validate_listen_of};

pub const ENV_METRICS_LISTEN: &str = "SWITCHBOARD_METRICS_LISTEN";
pub const ENV_BOOTSTRAP_TOKEN_OUTPUT: &str = "SWITCHBOARD_BOOTSTRAP_TOKEN_OUTPUT";

#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `host:port` of a listener that serves `/metrics` alone; `/metrics`
    /// then answers 404 on the main listener, so the public address does
    /// not expose it. Absent: metrics are on the main listener.
    pub metrics_listen: Option<String>,
    /// A file the bootstrap token generated on a first start is written to
    /// (owner-only), instead of stderr.
    pub bootstrap_token_output: Option<PathBuf>,
}

impl TelemetryConfig {
    /// From the environment (`env`, empty values already unset) over the
    /// file's values.
    pub(super) fn load(
        env: impl Fn(&str) -> Option<String>,
        file_metrics_listen: Option<String>,
        file_bootstrap_token_output: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let metrics_listen = env(ENV_METRICS_LISTEN).or(file_metrics_listen);
        if let Some(listen) = &metrics_listen {
            validate_listen_of(ENV_METRICS_LISTEN, listen)?;
        }
        let bootstrap_token_output = env(ENV_BOOTSTRAP_TOKEN_OUTPUT)
            .map(PathBuf::from)
            .or(file_bootstrap_token_output);
        Ok(Self {
            metrics_listen,
            bootstrap_token_output,
        })
    }
}
