//! Push devices: the phone an app's guest session wants its notifications
//! on, as Genesys's Transport SDK registers it
//! (`/api/v2/webmessaging/deployments/{id}/pushdevices/{token}`).
//!
//! One device per deployment and guest session, so anonymous callers can
//! store at most one per session they hold, and each lives
//! [`PUSH_DEVICE_TTL`] from its last registration or update: the SDK
//! updates at least every 30 days while the app is used, and a device not
//! heard of for longer is treated as gone (and replaced or removed on the
//! next call that meets it). Notifications are sent by [`crate::push`].
//!
//! The devices are records of the engine's setting kind, under
//! `push/<deployment>/<session>` and listed per deployment; read by key
//! below the typed [`Record`](super::Record) machinery, like published
//! versions, because they belong to a session rather than an organization's
//! admin records. They reference nothing, so they never hold a deployment
//! or session back from deletion.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::types::OrgId;
use super::{Store, StoreError, StoreResult};
use crate::engine::{Collection, Commit, Expect, Home, Kind, Put, RecordKey};

/// How long a registration lives without an update.
pub const PUSH_DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The longest device token accepted. FCM registration tokens are about
/// 160 characters and APNs device tokens 64 hex digits; this leaves room
/// for their growth without letting a caller store kilobytes.
pub const MAX_DEVICE_TOKEN_CHARS: usize = 4096;
/// The longest language tag accepted (BCP 47 tags in practice stay under
/// 35 characters).
pub const MAX_LANGUAGE_CHARS: usize = 35;

/// The push service a device token belongs to, spelled as the SDK's enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
pub enum PushProvider {
    /// Firebase Cloud Messaging.
    FCM,
    /// Apple Push Notification service.
    APNS,
}

impl PushProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            PushProvider::FCM => "FCM",
            PushProvider::APNS => "APNS",
        }
    }
}

impl Serialize for PushProvider {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PushProvider {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.eq_ignore_ascii_case("FCM") {
            Ok(PushProvider::FCM)
        } else if text.eq_ignore_ascii_case("APNS") {
            Ok(PushProvider::APNS)
        } else {
            Err(serde::de::Error::custom(format!(
                "notificationProvider {text:?} is not FCM or APNS"
            )))
        }
    }
}

/// The platform of the device: the SDK sends its OS name in lowercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeviceType {
    Android,
    Ios,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Android => "android",
            DeviceType::Ios => "ios",
        }
    }
}

impl Serialize for DeviceType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.eq_ignore_ascii_case("android") {
            Ok(DeviceType::Android)
        } else if text.eq_ignore_ascii_case("ios") {
            Ok(DeviceType::Ios)
        } else {
            Err(serde::de::Error::custom(format!(
                "deviceType {text:?} is not android or ios"
            )))
        }
    }
}

/// A push service's token for one app install: printable ASCII without
/// spaces, 1 to [`MAX_DEVICE_TOKEN_CHARS`] characters. Not a secret (it
/// only lets its holder send to the device through the app's own push
/// credentials), but not logged either.
#[derive(Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct DeviceToken(String);

impl DeviceToken {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_DEVICE_TOKEN_CHARS {
            return Err(format!(
                "deviceToken must be 1 to {MAX_DEVICE_TOKEN_CHARS} characters"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("deviceToken must be printable ASCII without spaces".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceToken({} chars)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for DeviceToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DeviceToken::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The language notifications should be in: a BCP 47 tag as the SDK sends
/// it (`en-us`), stored in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "en-us")]
pub struct Language(String);

impl Language {
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= MAX_LANGUAGE_CHARS
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !text.starts_with(['-', '_']);
        if !ok {
            return Err(format!(
                "language {text:?} is not a language tag like en-us (letters, digits and hyphens, at most {MAX_LANGUAGE_CHARS})"
            ));
        }
        Ok(Self(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Language::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushDevice {
    pub org_id: OrgId,
    pub deployment_id: Uuid,
    /// The guest session (the id its session token derives).
    pub session_id: Uuid,
    pub provider: PushProvider,
    pub device_type: DeviceType,
    pub device_token: DeviceToken,
    pub language: Language,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Past this, the registration counts as gone.
    pub expires_at: DateTime<Utc>,
    /// The engine's version, for the next compare-and-set write.
    #[serde(skip)]
    pub version: u64,
}

impl PushDevice {
    pub fn key_of(org: OrgId, deployment: Uuid, session: Uuid) -> RecordKey {
        RecordKey::new(
            Home::Org(org.0),
            Kind::Setting,
            format!("push/{deployment}/{session}"),
        )
    }

    pub fn collection_of(org: OrgId, deployment: Uuid) -> Collection {
        Collection::PushDevices {
            org: org.0,
            deployment,
        }
    }

    /// The end of a registration made or renewed at `now`.
    pub fn expiry_from(now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(PUSH_DEVICE_TTL).unwrap_or(chrono::Duration::MAX)
    }

    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

impl Store {
    /// The device registered for (`deployment`, `session`), live or not.
    pub async fn push_device(
        &self,
        org: OrgId,
        deployment: Uuid,
        session: Uuid,
    ) -> StoreResult<Option<PushDevice>> {
        let Some(stored) = self
            .raw_get(&PushDevice::key_of(org, deployment, session))
            .await?
        else {
            return Ok(None);
        };
        let mut device: PushDevice =
            serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
                key: stored.key,
                message: e.to_string(),
            })?;
        device.version = stored.version;
        Ok(Some(device))
    }

    /// Writes `device`: a new registration when `read` is `None` (refused
    /// with [`StoreError::Conflict`] when one exists), else a replacement of
    /// the registration read at that version ([`StoreError::Stale`] when it
    /// changed since, [`StoreError::NotFound`] when it is gone).
    pub async fn put_push_device(&self, device: &PushDevice, read: Option<u64>) -> StoreResult<()> {
        let put = Put {
            key: PushDevice::key_of(device.org_id, device.deployment_id, device.session_id),
            expect: read.map_or(Expect::Absent, Expect::Version),
            body: super::encode(device)?,
            collection: PushDevice::collection_of(device.org_id, device.deployment_id),
            order: device.registered_at.timestamp_millis(),
            refs: Vec::new(),
            unique: Vec::new(),
        };
        self.commit(Commit::new().put(put)).await
    }

    /// Removes the registration read at `read`.
    pub async fn delete_push_device(
        &self,
        org: OrgId,
        deployment: Uuid,
        session: Uuid,
        read: u64,
    ) -> StoreResult<()> {
        self.commit(Commit::new().delete(
            PushDevice::key_of(org, deployment, session),
            Expect::Version(read),
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse_as_the_sdk_sends_them() {
        let provider: PushProvider = serde_json::from_str("\"FCM\"").unwrap();
        assert_eq!(provider, PushProvider::FCM);
        assert_eq!(
            serde_json::to_string(&PushProvider::APNS).unwrap(),
            "\"APNS\""
        );
        assert!(serde_json::from_str::<PushProvider>("\"GCM\"").is_err());
        let android: DeviceType = serde_json::from_str("\"android\"").unwrap();
        assert_eq!(android, DeviceType::Android);
        assert_eq!(serde_json::to_string(&DeviceType::Ios).unwrap(), "\"ios\"");
        assert!(serde_json::from_str::<DeviceType>("\"web\"").is_err());
        assert_eq!(Language::parse("en-US").unwrap().as_str(), "en-us");
        assert!(Language::parse("").is_err());
        assert!(Language::parse("en us").is_err());
        assert!(DeviceToken::parse("fcm:APA91b-_x").is_ok());
        assert!(DeviceToken::parse("").is_err());
        assert!(DeviceToken::parse("a b").is_err());
        assert!(DeviceToken::parse(&"a".repeat(MAX_DEVICE_TOKEN_CHARS + 1)).is_err());
    }
}
