//! Apple Push Notification service: HTTP/2 requests to
//! `/3/device/<token>`, authenticated by a provider token (an ES256 JWT
//! from the team's `.p8` key) that is reused for 40 minutes, since Apple
//! refuses tokens older than an hour and throttles ones renewed more often
//! than every 20 minutes.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fcm::retry_after;
use super::{Credential, Note, PushError, Sent, service_client};
use crate::config::ApnsConfig;

const TOKEN_LIFE: Duration = Duration::from_secs(40 * 60);
/// How long APNs keeps trying a device that is offline.
const EXPIRATION_SECONDS: i64 = 24 * 3600;

pub(super) struct Apns {
    config: ApnsConfig,
    key: EncodingKey,
    client: reqwest::Client,
    token: Credential,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("topic", &self.config.topic)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    reason: String,
}

impl Apns {
    pub(super) fn new(config: ApnsConfig) -> Result<Self, PushError> {
        let key = EncodingKey::from_ec_pem(config.key.expose_secret().as_bytes())
            .map_err(|e| PushError::Setup(format!("APNs key: {e}")))?;
        Ok(Self {
            config,
            key,
            // APNs speaks HTTP/2 only.
            client: service_client(true)?,
            token: Credential::default(),
        })
    }

    async fn provider_token(&self) -> Result<SecretString, Sent> {
        self.token
            .get(|| async {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some(self.config.key_id.clone());
                let claims = Claims {
                    iss: &self.config.team_id,
                    iat: chrono::Utc::now().timestamp(),
                };
                let signed = jsonwebtoken::encode(&header, &claims, &self.key)
                    .map_err(|e| Sent::Rejected(format!("cannot sign the APNs token: {e}")))?;
                Ok((SecretString::from(signed), Instant::now() + TOKEN_LIFE))
            })
            .await
    }

    pub(super) async fn send(&self, device: &str, note: &Note) -> Sent {
        // APNs device tokens are hexadecimal; anything else is no device of
        // Apple's, and must not become part of the request path.
        if !device.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Sent::Unregistered;
        }
        let token = match self.provider_token().await {
            Ok(token) => token,
            Err(sent) => return sent,
        };
        let mut url = self.config.endpoint.clone();
        url.set_path(&format!("/3/device/{device}"));
        let body = json!({
            "aps": {
                "alert": { "title": note.title, "body": note.body },
                "sound": "default",
            },
            "deploymentId": note.deployment_id,
            "conversationId": note.conversation_id,
            "sequence": note.sequence,
        });
        let expiration = chrono::Utc::now().timestamp() + EXPIRATION_SECONDS;
        let answer = match self
            .client
            .post(url)
            .header("authorization", format!("bearer {}", token.expose_secret()))
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", expiration.to_string())
            .json(&body)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Sent::Retry(None, format!("APNs: {e}")),
        };
        let status = answer.status();
        if status.is_success() {
            return Sent::Delivered;
        }
        let after = retry_after(&answer);
        let reason = answer
            .json::<ErrorAnswer>()
            .await
            .map(|a| a.reason)
            .unwrap_or_default();
        let why = format!("APNs answered {status} {reason}");
        match (status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Sent::Unregistered,
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.token.forget().await;
                Sent::Retry(Some(Duration::from_secs(1)), why)
            }
            (429 | 500..=599, _) => Sent::Retry(after, why),
            _ => Sent::Rejected(why),
        }
    }
}
