//! Push delivery settings: the app's FCM service account and its APNs
//! signing key. Read and checked at start, so a wrong file is a one-line
//! refusal naming the setting rather than a failed push hours later.

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::ConfigError;

const ENV_FCM_CREDENTIALS_FILE: &str = "SWITCHBOARD_PUSH_FCM_CREDENTIALS_FILE";
const ENV_FCM_ENDPOINT: &str = "SWITCHBOARD_PUSH_FCM_ENDPOINT";
const ENV_APNS_KEY_FILE: &str = "SWITCHBOARD_PUSH_APNS_KEY_FILE";
const ENV_APNS_KEY_ID: &str = "SWITCHBOARD_PUSH_APNS_KEY_ID";
const ENV_APNS_TEAM_ID: &str = "SWITCHBOARD_PUSH_APNS_TEAM_ID";
const ENV_APNS_TOPIC: &str = "SWITCHBOARD_PUSH_APNS_TOPIC";
const ENV_APNS_ENDPOINT: &str = "SWITCHBOARD_PUSH_APNS_ENDPOINT";

const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";
const APNS_ENDPOINT: &str = "https://api.push.apple.com";

/// Which push services this node delivers through; neither by default.
#[derive(Clone, Debug, Default)]
pub struct PushConfig {
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
}

/// Firebase Cloud Messaging (HTTP v1), with a service account of the app's
/// Firebase project.
#[derive(Clone, Debug)]
pub struct FcmConfig {
    pub project_id: String,
    pub client_email: String,
    /// The service account's RSA key (PEM), signing the OAuth assertion.
    pub private_key: SecretString,
    /// Where the assertion is traded for an access token (the account
    /// file's `token_uri`).
    pub token_uri: Url,
    /// FCM's base URL (`https://fcm.googleapis.com`).
    pub endpoint: Url,
}

/// Apple Push Notification service, with token-based (`.p8`) auth.
#[derive(Clone, Debug)]
pub struct ApnsConfig {
    /// The `.p8` key (PEM, P-256), signing provider tokens.
    pub key: SecretString,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com`, or the sandbox
    /// `https://api.sandbox.push.apple.com` for development builds.
    pub endpoint: Url,
}

/// The fields of a Google service account file that FCM needs.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: String,
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

impl PushConfig {
    pub(super) fn load(env: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let fcm = env(ENV_FCM_CREDENTIALS_FILE)
            .map(|path| FcmConfig::load(Path::new(&path), env))
            .transpose()?;
        let apns = env(ENV_APNS_KEY_FILE)
            .map(|path| ApnsConfig::load(Path::new(&path), env))
            .transpose()?;
        Ok(Self { fcm, apns })
    }

    /// Whether any push service is configured.
    pub fn any(&self) -> bool {
        self.fcm.is_some() || self.apns.is_some()
    }
}

fn read(name: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(name, format!("cannot read {}: {e}", path.display())))
}

fn http_url(name: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim())
        .map_err(|_| ConfigError::invalid(name, "must be an http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::invalid(name, "must be an http(s) URL"));
    }
    Ok(url)
}

impl FcmConfig {
    fn load(path: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let name = ENV_FCM_CREDENTIALS_FILE;
        let text = read(name, path)?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| {
            ConfigError::invalid(
                name,
                format!("{} is not a service account file: {e}", path.display()),
            )
        })?;
        if account.kind != "service_account" {
            return Err(ConfigError::invalid(
                name,
                format!("{}: type must be service_account", path.display()),
            ));
        }
        if jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                name,
                format!("{}: private_key is not an RSA key in PEM", path.display()),
            ));
        }
        let token_uri = http_url(
            name,
            account
                .token_uri
                .as_deref()
                .unwrap_or("https://oauth2.googleapis.com/token"),
        )?;
        let endpoint = http_url(
            ENV_FCM_ENDPOINT,
            &env(ENV_FCM_ENDPOINT).unwrap_or_else(|| FCM_ENDPOINT.to_owned()),
        )?;
        Ok(Self {
            project_id: account.project_id,
            client_email: account.client_email,
            private_key: SecretString::from(account.private_key),
            token_uri,
            endpoint,
        })
    }
}

impl ApnsConfig {
    fn load(path: &Path, env: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let key = read(ENV_APNS_KEY_FILE, path)?;
        if jsonwebtoken::EncodingKey::from_ec_pem(key.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                ENV_APNS_KEY_FILE,
                format!("{} is not a .p8 signing key (PEM)", path.display()),
            ));
        }
        // Apple's key and team ids are ten upper-case letters and digits.
        let apple_id = |name: &'static str| -> Result<String, ConfigError> {
            let value = env(name).ok_or_else(|| {
                ConfigError::invalid(name, format!("is required with {ENV_APNS_KEY_FILE}"))
            })?;
            let value = value.trim().to_owned();
            if value.len() != 10
                || !value
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return Err(ConfigError::invalid(
                    name,
                    "must be Apple's ten-character id (A-Z, 0-9)",
                ));
            }
            Ok(value)
        };
        let topic = env(ENV_APNS_TOPIC).ok_or_else(|| {
            ConfigError::invalid(
                ENV_APNS_TOPIC,
                format!("is required with {ENV_APNS_KEY_FILE} (the app's bundle id)"),
            )
        })?;
        let topic = topic.trim().to_owned();
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        {
            return Err(ConfigError::invalid(
                ENV_APNS_TOPIC,
                "must be a bundle id such as com.example.app",
            ));
        }
        Ok(Self {
            key: SecretString::from(key),
            key_id: apple_id(ENV_APNS_KEY_ID)?,
            team_id: apple_id(ENV_APNS_TEAM_ID)?,
            topic,
            endpoint: http_url(
                ENV_APNS_ENDPOINT,
                &env(ENV_APNS_ENDPOINT).unwrap_or_else(|| APNS_ENDPOINT.to_owned()),
            )?,
        })
    }
}
