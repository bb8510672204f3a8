//! How long data about visitors is kept: the node-wide defaults of the
//! retention an organization (or one of its deployments) may set itself.

use std::time::Duration;

use super::ConfigError;

pub const ENV_RETENTION_DAYS: &str = "SWITCHBOARD_RETENTION_DAYS";
pub const ENV_SILENT_SESSION_HOURS: &str = "SWITCHBOARD_SILENT_SESSION_HOURS";

/// Days that ended conversations (and their logs), visitors' sessions and
/// records, and audit entries are kept where an organization sets nothing.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Hours after its last activity that a session without a conversation is
/// deleted.
pub const DEFAULT_SILENT_SESSION_HOURS: u32 = 24;

/// The longest retention an organization, a deployment or the node may set:
/// a hundred years, so that a day count never overflows a date.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// The node's retention defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Where neither the organization nor the deployment sets one.
    pub default_days: u32,
    /// How long a session that has no conversation (it never spoke, or its
    /// conversation was cleared or deleted) outlives its last activity:
    /// anonymous clients create sessions at will, so they must go soon.
    pub silent_session: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_days: DEFAULT_RETENTION_DAYS,
            silent_session: hours(DEFAULT_SILENT_SESSION_HOURS),
        }
    }
}

fn hours(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 3600)
}

impl RetentionConfig {
    /// Reads the settings: the environment first, then the file's values.
    pub(super) fn load(
        env: &impl Fn(&str) -> Option<String>,
        file_days: Option<u32>,
        file_hours: Option<u32>,
    ) -> Result<Self, ConfigError> {
        let default_days = number(
            env,
            ENV_RETENTION_DAYS,
            file_days,
            DEFAULT_RETENTION_DAYS,
            1..=MAX_RETENTION_DAYS,
        )?;
        let silent_hours = number(
            env,
            ENV_SILENT_SESSION_HOURS,
            file_hours,
            DEFAULT_SILENT_SESSION_HOURS,
            1..=8760,
        )?;
        Ok(Self {
            default_days,
            silent_session: hours(silent_hours),
        })
    }
}

/// A whole number from the environment (else the file, else `default`)
/// within `range`; the error names the setting.
pub(super) fn number(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    file: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let value = match env(name) {
        Some(text) => text.trim().parse::<u32>().map_err(|_| {
            ConfigError::invalid(
                name,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })?,
        None => file.unwrap_or(default),
    };
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            name,
            format!("must be from {} to {}", range.start(), range.end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<RetentionConfig, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        RetentionConfig::load(&env, None, None)
    }

    #[test]
    fn defaults_and_errors_name_the_variable() {
        assert_eq!(load(&[]).unwrap(), RetentionConfig::default());
        let set = load(&[(ENV_RETENTION_DAYS, "7"), (ENV_SILENT_SESSION_HOURS, "2")]).unwrap();
        assert_eq!(set.default_days, 7);
        assert_eq!(set.silent_session, Duration::from_secs(7200));
        for (name, value) in [
            (ENV_RETENTION_DAYS, "0"),
            (ENV_RETENTION_DAYS, "forever"),
            (ENV_RETENTION_DAYS, "36501"),
            (ENV_SILENT_SESSION_HOURS, "0"),
            (ENV_SILENT_SESSION_HOURS, "-1"),
        ] {
            let err = load(&[(name, value)]).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
    }
}
