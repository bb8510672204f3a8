//! The session signing keys: the ring every node shares through one
//! setting record (private halves sealed under the master key), cached in
//! memory, reloaded on an unknown kid or when stale, and rotated by the
//! first node that finds the newest key due.

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    KEY_CACHE_TTL, KEY_RETENTION, KEY_ROTATION, KEYS_SETTING, MAX_KEYS, SessionError, VisitorTokens,
};
use crate::engine::{Collection, Commit, Expect, Kind, Put, RecordKey};
use crate::store::StoreError;

/// The signing keys as stored in the setting record, newest first.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StoredKeys {
    pub(super) keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StoredKey {
    pub(super) kid: String,
    pub(super) created_at: DateTime<Utc>,
    /// PKCS#8 of the private key, base64, sealed under the master key and
    /// bound to this record and kid.
    pub(super) sealed_pkcs8: String,
    /// The public point, base64url, as the JWK publishes it.
    pub(super) x: String,
    pub(super) y: String,
}

/// The keys a node holds in memory.
pub(super) struct KeyRing {
    /// The setting record's version, for the rotation's versioned commit.
    pub(super) version: u64,
    /// Newest first; the first signs.
    pub(super) keys: Vec<LoadedKey>,
    pub(super) loaded: Instant,
}

pub(super) struct LoadedKey {
    pub(super) kid: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    pub(super) x: String,
    pub(super) y: String,
}

impl KeyRing {
    pub(super) fn find(&self, kid: &str) -> Option<&LoadedKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub(super) fn fresh(&self) -> bool {
        self.loaded.elapsed() < KEY_CACHE_TTL
    }
}

impl VisitorTokens {
    /// The cached ring, or a fresh read when it is missing or stale.
    pub(super) async fn ring(&self) -> Result<Arc<KeyRing>, SessionError> {
        match self.cached() {
            Some(ring) if ring.fresh() => Ok(ring),
            stale => self.reload(stale.as_ref()).await,
        }
    }

    /// A ring whose newest key may sign at `now`, rotating when it is due.
    pub(super) async fn signing_ring(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Arc<KeyRing>, SessionError> {
        let ring = self.ring().await?;
        let due = ring
            .keys
            .first()
            .is_none_or(|k| k.created_at + KEY_ROTATION <= now);
        if !due {
            return Ok(ring);
        }
        self.rotate(&ring, now).await
    }

    pub(super) fn cached(&self) -> Option<Arc<KeyRing>> {
        self.inner
            .ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn install(&self, ring: KeyRing) -> Arc<KeyRing> {
        let ring = Arc::new(ring);
        *self
            .inner
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ring.clone());
        ring
    }

    /// Reads the keys from the engine, creating the first one when there are
    /// none. `seen` is the ring the caller found wanting: when another task
    /// replaced it while this one waited for the lock, that newer ring is
    /// the answer and no read is needed.
    pub(super) async fn reload(
        &self,
        seen: Option<&Arc<KeyRing>>,
    ) -> Result<Arc<KeyRing>, SessionError> {
        let _guard = self.inner.reload.lock().await;
        if let Some(current) = self.cached() {
            let replaced = seen.is_none_or(|seen| !Arc::ptr_eq(seen, &current));
            if replaced && current.fresh() {
                return Ok(current);
            }
        }
        let key = RecordKey::installation(Kind::Setting, KEYS_SETTING);
        if let Some(stored) = self.inner.store.raw_get(&key).await? {
            let ring = self.open_ring(stored.version, &stored.body)?;
            return Ok(self.install(ring));
        }
        let first = self.generate(Utc::now())?;
        let body = encode(&StoredKeys { keys: vec![first] })?;
        match self
            .inner
            .store
            .commit(Commit::new().put(setting_put(body.clone(), Expect::Absent)))
            .await
        {
            Ok(()) => {
                let ring = self.open_ring(1, &body)?;
                Ok(self.install(ring))
            }
            // Another node created them first: use theirs.
            Err(StoreError::Conflict(_)) => {
                let stored = self.inner.store.raw_get(&key).await?.ok_or_else(|| {
                    SessionError::Unavailable("the signing keys vanished".to_owned())
                })?;
                let ring = self.open_ring(stored.version, &stored.body)?;
                Ok(self.install(ring))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a fresh signing key in front of `ring` and drops keys past their
    /// retention. Another node rotating at the same time wins or loses the
    /// versioned commit; either way the stored ring is the answer.
    pub(super) async fn rotate(
        &self,
        ring: &Arc<KeyRing>,
        now: DateTime<Utc>,
    ) -> Result<Arc<KeyRing>, SessionError> {
        let _guard = self.inner.reload.lock().await;
        let key = RecordKey::installation(Kind::Setting, KEYS_SETTING);
        let stored = self
            .inner
            .store
            .raw_get(&key)
            .await?
            .ok_or_else(|| SessionError::Unavailable("the signing keys vanished".to_owned()))?;
        if stored.version != ring.version {
            // Someone rotated already.
            let ring = self.open_ring(stored.version, &stored.body)?;
            return Ok(self.install(ring));
        }
        let current: StoredKeys = serde_json::from_slice(&stored.body)
            .map_err(|e| SessionError::Corrupt(format!("signing keys: {e}")))?;
        let mut keys = vec![self.generate(now)?];
        // A key retires when the next one starts signing.
        let mut retired_at = now;
        for old in current.keys {
            if retired_at + KEY_RETENTION > now && keys.len() < MAX_KEYS {
                retired_at = old.created_at;
                keys.push(old);
            } else {
                break;
            }
        }
        let body = encode(&StoredKeys { keys })?;
        match self
            .inner
            .store
            .commit(Commit::new().put(setting_put(body.clone(), Expect::Version(stored.version))))
            .await
        {
            Ok(()) => {
                let ring = self.open_ring(stored.version + 1, &body)?;
                tracing::info!("rotated the session signing key");
                Ok(self.install(ring))
            }
            Err(StoreError::Stale { .. }) => {
                let stored = self.inner.store.raw_get(&key).await?.ok_or_else(|| {
                    SessionError::Unavailable("the signing keys vanished".to_owned())
                })?;
                let ring = self.open_ring(stored.version, &stored.body)?;
                Ok(self.install(ring))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn generate(&self, now: DateTime<Utc>) -> Result<StoredKey, SessionError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| SessionError::Corrupt("cannot generate a P-256 key".to_owned()))?;
        let (x, y) = public_point(pkcs8.as_ref())?;
        let kid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
        let sealed_pkcs8 = self
            .inner
            .sealer
            .seal(
                &SecretString::from(STANDARD.encode(pkcs8.as_ref())),
                &seal_context(&kid),
            )
            .map_err(|e| SessionError::Corrupt(format!("sealing a signing key: {e}")))?;
        Ok(StoredKey {
            kid,
            created_at: now,
            sealed_pkcs8,
            x,
            y,
        })
    }

    pub(super) fn open_ring(&self, version: u64, body: &[u8]) -> Result<KeyRing, SessionError> {
        let stored: StoredKeys = serde_json::from_slice(body)
            .map_err(|e| SessionError::Corrupt(format!("signing keys: {e}")))?;
        let keys = stored
            .keys
            .into_iter()
            .map(|k| {
                let pkcs8 = self
                    .inner
                    .sealer
                    .open(&k.sealed_pkcs8, &seal_context(&k.kid))
                    .map_err(|e| SessionError::Corrupt(format!("signing key {}: {e}", k.kid)))?;
                let pkcs8 = STANDARD
                    .decode(pkcs8.expose_secret())
                    .map_err(|e| SessionError::Corrupt(format!("signing key {}: {e}", k.kid)))?;
                let decoding = DecodingKey::from_ec_components(&k.x, &k.y)
                    .map_err(|e| SessionError::Corrupt(format!("signing key {}: {e}", k.kid)))?;
                Ok(LoadedKey {
                    encoding: EncodingKey::from_ec_der(&pkcs8),
                    decoding,
                    kid: k.kid,
                    created_at: k.created_at,
                    x: k.x,
                    y: k.y,
                })
            })
            .collect::<Result<Vec<_>, SessionError>>()?;
        Ok(KeyRing {
            version,
            keys,
            loaded: Instant::now(),
        })
    }
}

/// The JWK `x` and `y` (base64url) of a P-256 key pair given as PKCS#8.
pub(super) fn public_point(pkcs8: &[u8]) -> Result<(String, String), SessionError> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| SessionError::Corrupt("a generated key does not parse".to_owned()))?;
    // Uncompressed SEC1 point: 0x04, then 32 bytes of x and 32 of y.
    let point = pair.public_key().as_ref();
    match (point.first(), point.get(1..33), point.get(33..65)) {
        (Some(0x04), Some(x), Some(y)) if point.len() == 65 => {
            Ok((URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)))
        }
        _ => Err(SessionError::Corrupt(
            "unexpected P-256 public key encoding".to_owned(),
        )),
    }
}

pub(super) fn seal_context(kid: &str) -> String {
    format!("setting/{KEYS_SETTING}/{kid}")
}

pub(super) fn setting_put(body: Vec<u8>, expect: Expect) -> Put {
    Put {
        key: RecordKey::installation(Kind::Setting, KEYS_SETTING),
        expect,
        body,
        collection: Collection::Settings,
        order: 0,
        refs: Vec::new(),
        unique: Vec::new(),
    }
}

pub(super) fn encode(keys: &StoredKeys) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(keys).map_err(|e| SessionError::Corrupt(format!("signing keys: {e}")))
}
