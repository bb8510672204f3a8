//! Firebase Cloud Messaging, HTTP v1: a service account's signed assertion
//! (RS256, RFC 7523) traded at its `token_uri` for an access token, kept
//! until shortly before it expires; then one `messages:send` per
//! notification.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Credential, Note, PushError, Sent, service_client};
use crate::config::FcmConfig;

/// The scope FCM's send API asks for.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The assertion's life, the longest Google accepts.
const ASSERTION_SECONDS: i64 = 3600;
/// An access token is replaced this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

pub(super) struct Fcm {
    config: FcmConfig,
    key: EncodingKey,
    client: reqwest::Client,
    token: Credential,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("project_id", &self.config.project_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// FCM's error body, as much of it as decides what to do.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl Fcm {
    pub(super) fn new(config: FcmConfig) -> Result<Self, PushError> {
        let key = EncodingKey::from_rsa_pem(config.private_key.expose_secret().as_bytes())
            .map_err(|e| PushError::Setup(format!("FCM service account key: {e}")))?;
        Ok(Self {
            config,
            key,
            client: service_client(false)?,
            token: Credential::default(),
        })
    }

    /// A live access token: the cached one, or a new one from the token
    /// endpoint.
    async fn access_token(&self) -> Result<SecretString, Sent> {
        self.token.get(|| self.new_access_token()).await
    }

    async fn new_access_token(&self) -> Result<(SecretString, Instant), Sent> {
        let now = chrono::Utc::now().timestamp();
        let assertion = Assertion {
            iss: &self.config.client_email,
            scope: SCOPE,
            aud: self.config.token_uri.as_str(),
            iat: now,
            exp: now + ASSERTION_SECONDS,
        };
        let signed = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &assertion, &self.key)
            .map_err(|e| Sent::Rejected(format!("cannot sign the FCM assertion: {e}")))?;
        let answer = self
            .client
            .post(self.config.token_uri.clone())
            .form(&[("grant_type", GRANT), ("assertion", signed.as_str())])
            .send()
            .await
            .map_err(|e| Sent::Retry(None, format!("FCM token endpoint: {e}")))?;
        let status = answer.status();
        if !status.is_success() {
            let why = format!("FCM token endpoint answered {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Sent::Retry(retry_after(&answer), why)
            } else {
                // A revoked or wrong service account: retrying later
                // may help once an operator fixes it, but not now.
                Sent::Retry(Some(Duration::from_secs(60)), why)
            });
        }
        let token: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| Sent::Retry(None, format!("FCM token answer: {e}")))?;
        let life = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let renew_at = Instant::now() + life.saturating_sub(RENEW_MARGIN);
        Ok((SecretString::from(token.access_token), renew_at))
    }

    pub(super) async fn send(&self, device: &str, note: &Note) -> Sent {
        let token = match self.access_token().await {
            Ok(token) => token,
            Err(sent) => return sent,
        };
        let mut url = self.config.endpoint.clone();
        url.set_path(&format!(
            "/v1/projects/{}/messages:send",
            self.config.project_id
        ));
        let body = json!({
            "message": {
                "token": device,
                "notification": { "title": note.title, "body": note.body },
                "data": {
                    "deploymentId": note.deployment_id.to_string(),
                    "conversationId": note.conversation_id.to_string(),
                    "sequence": note.sequence.to_string(),
                },
                "android": { "priority": "high" },
            }
        });
        let answer = match self
            .client
            .post(url)
            .bearer_auth(token.expose_secret())
            .json(&body)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Sent::Retry(None, format!("FCM: {e}")),
        };
        let status = answer.status();
        if status.is_success() {
            return Sent::Delivered;
        }
        let after = retry_after(&answer);
        let error = answer.json::<ErrorAnswer>().await.ok().map(|a| a.error);
        let code = error
            .as_ref()
            .and_then(|e| {
                e.details
                    .iter()
                    .find_map(|d| d.get("errorCode").and_then(|c| c.as_str()))
            })
            .unwrap_or_default()
            .to_owned();
        let why = format!(
            "FCM answered {status} {} {code}",
            error.map(|e| e.status).unwrap_or_default()
        );
        match status.as_u16() {
            404 if code == "UNREGISTERED" || code.is_empty() => Sent::Unregistered,
            _ if code == "UNREGISTERED" => Sent::Unregistered,
            401 => {
                // The access token was refused: forget it.
                self.token.forget().await;
                Sent::Retry(Some(Duration::from_secs(1)), why)
            }
            429 | 500..=599 => Sent::Retry(after, why),
            _ => Sent::Rejected(why),
        }
    }
}

/// A `Retry-After` in seconds, when the answer has one.
pub(super) fn retry_after(answer: &reqwest::Response) -> Option<Duration> {
    answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
