//! Where attachments are kept and how much of it an organization may use.
//!
//! The embedded engine keeps files in its data directory unless object
//! storage is configured; the Redis engine needs object storage (nodes share
//! no disk), so without it attachments are unavailable there. Read and
//! checked at start: a half-configured bucket is a one-line refusal naming
//! the setting, not a failed upload later.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::ConfigError;
use super::retention::number;

pub const ENV_S3_BUCKET: &str = "SWITCHBOARD_S3_BUCKET";
pub const ENV_S3_ENDPOINT: &str = "SWITCHBOARD_S3_ENDPOINT";
pub const ENV_S3_REGION: &str = "SWITCHBOARD_S3_REGION";
pub const ENV_S3_ACCESS_KEY_ID: &str = "SWITCHBOARD_S3_ACCESS_KEY_ID";
pub const ENV_S3_SECRET_ACCESS_KEY: &str = "SWITCHBOARD_S3_SECRET_ACCESS_KEY";
pub const ENV_S3_PATH_STYLE: &str = "SWITCHBOARD_S3_PATH_STYLE";
pub const ENV_ATTACHMENT_QUOTA_MB: &str = "SWITCHBOARD_ATTACHMENT_QUOTA_MB";
pub const ENV_ATTACHMENT_ORPHAN_MINUTES: &str = "SWITCHBOARD_ATTACHMENT_ORPHAN_MINUTES";

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_QUOTA_MB: u32 = 1024;
const DEFAULT_ORPHAN_MINUTES: u32 = 60;

/// Attachment storage and its limits.
#[derive(Clone, Debug)]
pub struct AttachmentsConfig {
    /// Object storage; `None` keeps files in the data directory (embedded
    /// engine) or disables attachments (Redis engine).
    pub s3: Option<S3Config>,
    /// Bytes one organization may keep, uploads in progress included.
    pub quota_bytes: u64,
    /// How long an uploaded file may wait for the message that sends it.
    pub orphan_after: Duration,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            s3: None,
            quota_bytes: u64::from(DEFAULT_QUOTA_MB) * 1024 * 1024,
            orphan_after: Duration::from_secs(u64::from(DEFAULT_ORPHAN_MINUTES) * 60),
        }
    }
}

/// An S3-compatible bucket, signed for with SigV4.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// `https://s3.<region>.amazonaws.com` unless set (MinIO, Ceph, R2...).
    pub endpoint: Url,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key`: what most
    /// self-hosted servers want.
    pub path_style: bool,
}

impl AttachmentsConfig {
    pub(super) fn load(
        env: &impl Fn(&str) -> Option<String>,
        secret: &impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let quota_mb = u64::from(number(
            env,
            ENV_ATTACHMENT_QUOTA_MB,
            None,
            DEFAULT_QUOTA_MB,
            1..=u32::MAX,
        )?);
        let orphan_minutes = u64::from(number(
            env,
            ENV_ATTACHMENT_ORPHAN_MINUTES,
            None,
            DEFAULT_ORPHAN_MINUTES,
            1..=10_080,
        )?);
        let s3 = match env(ENV_S3_BUCKET) {
            None => {
                for name in [ENV_S3_ENDPOINT, ENV_S3_ACCESS_KEY_ID] {
                    if env(name).is_some() {
                        return Err(ConfigError::invalid(
                            name,
                            format!("is set but {ENV_S3_BUCKET} is not"),
                        ));
                    }
                }
                None
            }
            Some(bucket) => Some(S3Config::load(bucket, env, secret)?),
        };
        Ok(Self {
            s3,
            quota_bytes: quota_mb.saturating_mul(1024 * 1024),
            orphan_after: Duration::from_secs(orphan_minutes * 60),
        })
    }
}

impl S3Config {
    fn load(
        bucket: String,
        env: &impl Fn(&str) -> Option<String>,
        secret: &impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let bucket = bucket.trim().to_owned();
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(ConfigError::invalid(
                ENV_S3_BUCKET,
                "must be an S3 bucket name: 3 to 63 lowercase letters, digits, '-' or '.'",
            ));
        }
        let region = env(ENV_S3_REGION).unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError::invalid(
                ENV_S3_REGION,
                "must be a region name like eu-west-1",
            ));
        }
        let endpoint = match env(ENV_S3_ENDPOINT) {
            Some(text) => {
                let url = Url::parse(text.trim()).map_err(|_| {
                    ConfigError::invalid(ENV_S3_ENDPOINT, "must be an absolute http(s) URL")
                })?;
                if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                    return Err(ConfigError::invalid(
                        ENV_S3_ENDPOINT,
                        "must be an absolute http(s) URL",
                    ));
                }
                url
            }
            None => Url::parse(&format!("https://s3.{region}.amazonaws.com"))
                .map_err(|_| ConfigError::invalid(ENV_S3_REGION, "must be a region name"))?,
        };
        let access_key_id = env(ENV_S3_ACCESS_KEY_ID).ok_or_else(|| {
            ConfigError::invalid(
                ENV_S3_ACCESS_KEY_ID,
                format!("is required with {ENV_S3_BUCKET}"),
            )
        })?;
        let secret_access_key = secret(ENV_S3_SECRET_ACCESS_KEY)?.ok_or_else(|| {
            ConfigError::invalid(
                ENV_S3_SECRET_ACCESS_KEY,
                format!("(or its _FILE) is required with {ENV_S3_BUCKET}"),
            )
        })?;
        let path_style = match env(ENV_S3_PATH_STYLE).as_deref().map(str::trim) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(_) => {
                return Err(ConfigError::invalid(
                    ENV_S3_PATH_STYLE,
                    "must be true or false",
                ));
            }
        };
        Ok(Self {
            bucket,
            endpoint,
            region,
            access_key_id: access_key_id.trim().to_owned(),
            secret_access_key: SecretString::from(secret_access_key),
            path_style,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<AttachmentsConfig, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let secret = |name: &'static str| Ok(env(name));
        AttachmentsConfig::load(&env, &secret)
    }

    #[test]
    fn object_storage_is_all_or_nothing_and_errors_name_the_setting() {
        let plain = load(&[]).unwrap();
        assert!(plain.s3.is_none());
        assert_eq!(plain.quota_bytes, 1024 * 1024 * 1024);
        let s3 = load(&[
            (ENV_S3_BUCKET, "uploads"),
            (ENV_S3_ENDPOINT, "http://127.0.0.1:9000"),
            (ENV_S3_ACCESS_KEY_ID, "id"),
            (ENV_S3_SECRET_ACCESS_KEY, "secret"),
            (ENV_S3_PATH_STYLE, "true"),
        ])
        .unwrap()
        .s3
        .unwrap();
        assert!(s3.path_style);
        assert_eq!(s3.region, "us-east-1");
        let aws = load(&[
            (ENV_S3_BUCKET, "uploads"),
            (ENV_S3_REGION, "eu-west-1"),
            (ENV_S3_ACCESS_KEY_ID, "id"),
            (ENV_S3_SECRET_ACCESS_KEY, "secret"),
        ])
        .unwrap()
        .s3
        .unwrap();
        assert_eq!(aws.endpoint.as_str(), "https://s3.eu-west-1.amazonaws.com/");
        for (vars, name) in [
            (vec![(ENV_S3_ENDPOINT, "http://x")], ENV_S3_ENDPOINT),
            (vec![(ENV_S3_BUCKET, "Up_loads")], ENV_S3_BUCKET),
            (vec![(ENV_S3_BUCKET, "uploads")], ENV_S3_ACCESS_KEY_ID),
            (
                vec![(ENV_S3_BUCKET, "uploads"), (ENV_S3_ACCESS_KEY_ID, "id")],
                ENV_S3_SECRET_ACCESS_KEY,
            ),
            (
                vec![(ENV_ATTACHMENT_QUOTA_MB, "0")],
                ENV_ATTACHMENT_QUOTA_MB,
            ),
            (
                vec![(ENV_ATTACHMENT_ORPHAN_MINUTES, "soon")],
                ENV_ATTACHMENT_ORPHAN_MINUTES,
            ),
        ] {
            let err = load(&vars).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
    }
}
