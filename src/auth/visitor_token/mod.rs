//! Session JWTs: switchboard's own short-lived tokens for visitors who proved
//! who they are at their organization's IdP.
//!
//! A session JWT is what a widget or app presents on the guest WebSocket
//! (`configureAuthenticatedSession`) and on the history endpoint. It is
//! ES256-signed with a `kid`, audience-bound to one deployment, lives at most
//! [`SESSION_TTL`] and never past the IdP token it came from, and names its
//! refresh-token family (`sid`) so that a logout or a detected refresh-token
//! reuse ends every session of the family.
//!
//! Signing keys are shared by every node through the engine: one
//! [`Kind::Setting`] record holds them, the private halves sealed under the
//! master key. The first node that needs a key creates the record
//! (`Expect::Absent`, so racing nodes agree on one), and the node that finds
//! the newest key older than [`KEY_ROTATION`] adds a fresh one with a
//! versioned commit. Retired keys stay published for verification for
//! [`KEY_RETENTION`], longer than any token they signed lives. Nodes cache
//! the key ring and reload it when a token names a kid they do not know, or
//! when their copy is older than [`KEY_CACHE_TTL`].
//!
//! Revocation is by token id (`jti`, in [`Space::RevokedSession`] until the
//! token would have expired anyway) and by family ([`Space::RefreshFamily`]);
//! [`VisitorTokens::subscribe`] tells this node's sockets about it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::broadcast;
use uuid::Uuid;

use self::keys::KeyRing;
use super::crypto::{self, Sealer};
use super::refresh::{self, FamilyState, NewFamily};
use crate::config::{Config, MasterKey};
use crate::engine::{EngineError, Space, StashMode};
use crate::store::types::OrgId;
use crate::store::{Store, StoreError};

mod keys;

/// The longest a session JWT lives. Short, because a JWT cannot be recalled
/// from a client that ignores revocation; refresh tokens extend sessions.
pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// How long one signing key signs before a fresh one takes over.
pub const KEY_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// How long a retired key stays published and accepted: twice the token
/// lifetime, so every token it signed expires first, with room for skew.
pub const KEY_RETENTION: Duration = Duration::from_secs(2 * 15 * 60);
/// How long a node trusts its cached key ring before reading it again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// Clock skew tolerated between nodes (expiry and issue time).
pub const LEEWAY: Duration = Duration::from_secs(30);
/// More keys than this are never kept, whatever their age: a bound on the
/// record and on what verification scans.
const MAX_KEYS: usize = 4;
/// The setting record that holds the signing keys.
const KEYS_SETTING: &str = "session-signing-keys";
/// Room for revocation notices this node's sockets have not read yet.
const REVOCATION_CHANNEL_CAPACITY: usize = 1024;
/// The most refresh-token families a visitor's list keeps (the newest);
/// the token endpoints' rate limits make more within a family's lifetime
/// take a determined effort.
const MAX_INDEXED_FAMILIES: usize = 1000;

/// The id of a visitor's lists (their sessions, their refresh-token
/// families): visitor ids are derived per organization, and naming the
/// organization keeps one organization's admin from reaching another's
/// lists with an id they learnt.
pub fn visitor_lists_key(org: OrgId, visitor: Uuid) -> String {
    format!("{org}:{visitor}")
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session token is malformed")]
    Malformed,
    /// Bad signature, or signed by a key switchboard does not hold.
    #[error("the session token's signature does not verify")]
    Signature,
    #[error("the session token was issued by another issuer")]
    Issuer,
    /// A token of one deployment presented to another.
    #[error("the session token was issued for another deployment")]
    Audience,
    #[error("the session token has expired")]
    Expired,
    #[error("the session token's issue time is in the future")]
    NotYetValid,
    #[error("the session was revoked")]
    Revoked,
    /// The IdP token the session would be based on has already expired.
    #[error("the identity provider's token has expired")]
    IdpTokenExpired,
    #[error("the refresh token is unknown or expired")]
    RefreshUnknown,
    /// A refresh token presented a second time: its family is revoked.
    #[error("the refresh token was already used; every session of its family is revoked")]
    RefreshReused,
    #[error("the refresh token's session was revoked")]
    RefreshRevoked,
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored keys or state do not decode or open: a bug, a foreign
    /// writer, or another master key. Never caused by input.
    #[error("session state is corrupt: {0}")]
    Corrupt(String),
}

impl SessionError {
    /// The machine code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Malformed => "invalid_token",
            SessionError::Signature => "signature_invalid",
            SessionError::Issuer => "issuer_mismatch",
            SessionError::Audience => "audience_mismatch",
            SessionError::Expired | SessionError::IdpTokenExpired => "token_expired",
            SessionError::NotYetValid => "token_not_yet_valid",
            SessionError::Revoked => "session_revoked",
            SessionError::RefreshUnknown => "invalid_grant",
            SessionError::RefreshReused => "refresh_token_reused",
            SessionError::RefreshRevoked => "refresh_token_revoked",
            SessionError::Unavailable(_) => "unavailable",
            SessionError::Corrupt(_) => "internal",
        }
    }
}

impl From<EngineError> for SessionError {
    fn from(e: EngineError) -> Self {
        SessionError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { key, message } => {
                SessionError::Corrupt(format!("{key}: {message}"))
            }
            other => SessionError::Unavailable(other.to_string()),
        }
    }
}

/// Who a signed-in visitor is at their IdP: what the session JWT carries to
/// the gateway, the guest session and conversation keep, and the agent is
/// shown. Keyed by (issuer, subject), never by email. A guest has none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorIdentity {
    #[serde(rename = "iss")]
    pub issuer: String,
    #[serde(rename = "sub")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

impl VisitorIdentity {
    /// What agents call the visitor. The email stands in for a missing name
    /// only when the IdP verified it: an unverified address is whatever the
    /// visitor typed at registration.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (&self.given_name, &self.family_name) {
            (Some(g), Some(f)) => format!("{g} {f}"),
            (Some(g), None) => g.clone(),
            _ => self
                .verified_email()
                .map(str::to_owned)
                .unwrap_or_else(|| GUEST_NAME.to_owned()),
        }
    }

    /// The email, when the IdP asserted `email_verified: true`. An email
    /// without that assertion proves nothing about who the visitor is (on
    /// an IdP with self-registration anyone can type anyone's address).
    pub fn verified_email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified == Some(true))
    }
}

/// What agents call a visitor who did not sign in.
pub const GUEST_NAME: &str = "Visitor";

/// The claims of a session JWT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// switchboard's public URL, without a trailing slash.
    pub iss: String,
    /// The deployment the session belongs to.
    pub aud: Uuid,
    /// switchboard's stable id for the visitor: the same for the same
    /// (organization, IdP issuer, IdP subject) on every node and every login.
    pub sub: Uuid,
    pub org: OrgId,
    pub identity: VisitorIdentity,
    /// The session (refresh-token family) this token belongs to.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

impl SessionClaims {
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// What a session JWT is issued for.
#[derive(Clone, Debug)]
pub struct SessionGrant {
    pub deployment: Uuid,
    pub org: OrgId,
    pub identity: VisitorIdentity,
    pub sid: Uuid,
    /// The token never outlives this: the IdP token's expiry on the first
    /// exchange, the family's end on a refresh.
    pub not_after: DateTime<Utc>,
}

/// A freshly signed session JWT.
#[derive(Debug)]
pub struct IssuedSession {
    pub jwt: SecretString,
    pub claims: SessionClaims,
}

/// A session that ended before its time: every socket of
/// (`deployment`, `sid`) must get `LogoutEvent` and close.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the session's sockets on other nodes are told through routing"]
pub struct RevokedSession {
    pub deployment: Uuid,
    pub sid: Uuid,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// Valid; here is the family and the token to present next (a new one
    /// when the integration rotates, the same one when it does not).
    Rotated(Box<FamilyState>, SecretString),
    /// Presented a second time: the whole family is revoked.
    Reused(RevokedSession),
}

/// Issues and verifies session JWTs and refresh tokens. Cheap to clone;
/// every request of a node shares one.
#[derive(Clone)]
pub struct VisitorTokens {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sealer: Sealer,
    /// The `iss` of every session JWT: the public URL without trailing slash.
    issuer: String,
    /// Keys the visitor ids, so they are stable across nodes and restarts
    /// but reveal nothing about the IdP subject.
    subject_key: [u8; 32],
    ring: RwLock<Option<Arc<KeyRing>>>,
    /// One reload at a time: a burst of tokens with a new kid costs one read.
    reload: tokio::sync::Mutex<()>,
    revocations: broadcast::Sender<RevokedSession>,
}

impl std::fmt::Debug for VisitorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorTokens")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// The public JWK Set (RFC 7517) of the session keys.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<PublicJwk>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PublicJwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kid: String,
    pub x: String,
    pub y: String,
}

impl VisitorTokens {
    pub fn new(config: &Config, master: &MasterKey, store: Store) -> Self {
        let (revocations, _) = broadcast::channel(REVOCATION_CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                store,
                sealer: Sealer::new(master),
                issuer: config.public_url.as_str().trim_end_matches('/').to_owned(),
                subject_key: crypto::derive_key(master, "switchboard/visitor-subject/v1"),
                ring: RwLock::new(None),
                reload: tokio::sync::Mutex::new(()),
                revocations,
            }),
        }
    }

    /// The `iss` of session JWTs.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// switchboard's id for a visitor: a UUID (version 8) from an HMAC of
    /// organization, IdP issuer and IdP subject under a key derived from the
    /// master key, so every node derives the same one without storage.
    pub fn visitor_subject(&self, org: OrgId, issuer: &str, subject: &str) -> Uuid {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.inner.subject_key)
            .unwrap_or_else(|_| crypto::unreachable_hmac());
        mac.update(format!("{org}\n{issuer}\n{subject}").as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        for (slot, byte) in bytes.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// Signs a session JWT for `grant`, valid from `now` for at most
    /// [`SESSION_TTL`] and never past `grant.not_after`.
    pub async fn issue(
        &self,
        grant: &SessionGrant,
        now: DateTime<Utc>,
    ) -> Result<IssuedSession, SessionError> {
        let iat = now.timestamp();
        let exp = (iat + secs(SESSION_TTL)).min(grant.not_after.timestamp());
        if exp <= iat {
            return Err(SessionError::IdpTokenExpired);
        }
        let claims = SessionClaims {
            iss: self.inner.issuer.clone(),
            aud: grant.deployment,
            sub: self.visitor_subject(grant.org, &grant.identity.issuer, &grant.identity.subject),
            org: grant.org,
            identity: grant.identity.clone(),
            sid: grant.sid,
            iat,
            exp,
            jti: Uuid::new_v4(),
        };
        let ring = self.signing_ring(now).await?;
        let key = ring
            .keys
            .first()
            .ok_or_else(|| SessionError::Corrupt("the key ring is empty".to_owned()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| SessionError::Corrupt(format!("signing: {e}")))?;
        Ok(IssuedSession {
            jwt: SecretString::from(jwt),
            claims,
        })
    }

    /// Verifies a session JWT presented for `deployment`: signature by one of
    /// switchboard's keys (by `kid`), issuer, audience, expiry at `now`, and
    /// that neither the token nor its session was revoked.
    pub async fn verify(
        &self,
        token: &str,
        deployment: Uuid,
        now: DateTime<Utc>,
    ) -> Result<SessionClaims, SessionError> {
        let claims = self.verify_token(token, now).await?;
        if claims.aud != deployment {
            return Err(SessionError::Audience);
        }
        self.check_not_revoked(&claims).await?;
        Ok(claims)
    }

    /// Like [`VisitorTokens::verify`] for whichever deployment the token
    /// names: for logout, which carries no deployment besides the token's.
    pub async fn verify_own_audience(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<SessionClaims, SessionError> {
        let claims = self.verify_token(token, now).await?;
        self.check_not_revoked(&claims).await?;
        Ok(claims)
    }

    /// Notices of sessions revoked on this node (logout, refresh-token reuse).
    /// A receiver that lags is told so by `recv`; it should then re-verify
    /// the sessions it holds.
    pub fn subscribe(&self) -> broadcast::Receiver<RevokedSession> {
        self.inner.revocations.subscribe()
    }

    /// Ends the session a token belongs to: the token itself until it would
    /// have expired, and its refresh-token family for good.
    pub async fn revoke(
        &self,
        claims: &SessionClaims,
        now: DateTime<Utc>,
    ) -> Result<RevokedSession, SessionError> {
        let remaining = (claims.exp - now.timestamp()).max(0) + secs(LEEWAY);
        self.inner
            .store
            .engine()
            .stash(
                Space::RevokedSession,
                &claims.jti.to_string(),
                b"1",
                Duration::from_secs(remaining.unsigned_abs()),
                StashMode::Replace,
            )
            .await?;
        refresh::revoke_family(self.inner.store.engine(), claims.sid, None, now).await?;
        Ok(self.announce(RevokedSession {
            deployment: claims.aud,
            sid: claims.sid,
        }))
    }

    /// Whether a session (a refresh-token family, the session JWT's `sid`)
    /// was ended: logout, refresh-token reuse, or its integration changed.
    pub async fn family_revoked(&self, sid: Uuid) -> Result<bool, SessionError> {
        refresh::family_revoked(self.inner.store.engine(), sid).await
    }

    /// Starts a refresh-token family (a new session) and answers its id and
    /// first refresh token.
    ///
    /// The family is noted in the visitor's list of families
    /// ([`Space::VisitorFamilies`], kept as long as a family can live), so
    /// that erasing the visitor revokes it without a scan.
    pub async fn start_family(
        &self,
        family: NewFamily,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, SecretString), SessionError> {
        let visitor = self.visitor_subject(
            family.org,
            &family.identity.issuer,
            &family.identity.subject,
        );
        let (org, deployment) = (family.org, family.deployment);
        let engine = self.inner.store.engine();
        let (id, token) = refresh::start(engine, family, now).await?;
        engine
            .remember(
                Space::VisitorFamilies,
                &visitor_lists_key(org, visitor),
                &format!("{deployment}/{id}"),
                refresh::MAX_FAMILY_LIFETIME,
                MAX_INDEXED_FAMILIES,
            )
            .await?;
        Ok((id, token))
    }

    /// Revokes every refresh-token family of `visitor` of `org` (their
    /// exchanges noted them; `more` adds the (deployment, family) of
    /// sessions found signed in as them): refresh tokens and session JWTs
    /// of those families stop working at once. Answers what was revoked,
    /// for routing to log the families' sockets out on every node.
    pub async fn revoke_visitor(
        &self,
        org: OrgId,
        visitor: Uuid,
        more: &[(Uuid, Uuid)],
        now: DateTime<Utc>,
    ) -> Result<Vec<RevokedSession>, SessionError> {
        let engine = self.inner.store.engine();
        let key = visitor_lists_key(org, visitor);
        let mut families: Vec<(Uuid, Uuid)> = engine
            .recall(Space::VisitorFamilies, &key)
            .await?
            .iter()
            .filter_map(|entry| {
                let (deployment, family) = entry.split_once('/')?;
                Some((deployment.parse().ok()?, family.parse().ok()?))
            })
            .collect();
        families.extend_from_slice(more);
        families.sort();
        families.dedup();
        let mut revoked = Vec::with_capacity(families.len());
        for (deployment, family) in families {
            refresh::revoke_family(engine, family, None, now).await?;
            revoked.push(self.announce(RevokedSession {
                deployment,
                sid: family,
            }));
        }
        engine.discard(Space::VisitorFamilies, &key).await?;
        Ok(revoked)
    }

    /// The family a refresh token belongs to, without using it up.
    pub async fn refresh_family(&self, token: &SecretString) -> Result<FamilyState, SessionError> {
        refresh::family_of(self.inner.store.engine(), token).await
    }

    /// Refreshes with a token presented for `deployment`. With
    /// [`refresh::Mode::Rotate`] the token is spent and a new one of the
    /// same family answered, and a token presented a second time revokes its
    /// whole family; with [`refresh::Mode::Keep`] it stays valid.
    pub async fn rotate_refresh(
        &self,
        token: &SecretString,
        deployment: Uuid,
        mode: refresh::Mode,
        now: DateTime<Utc>,
    ) -> Result<Rotation, SessionError> {
        match refresh::refresh(self.inner.store.engine(), token, deployment, mode, now).await {
            Err(refresh::RotateError::Reused(family)) => {
                Ok(Rotation::Reused(self.announce(RevokedSession {
                    deployment: family.deployment,
                    sid: family.family,
                })))
            }
            Err(refresh::RotateError::Session(e)) => Err(e),
            Ok((family, next)) => Ok(Rotation::Rotated(Box::new(family), next)),
        }
    }

    /// Revokes a family found unusable after rotation (its integration
    /// changed, say).
    pub async fn revoke_family(
        &self,
        family: &FamilyState,
        now: DateTime<Utc>,
    ) -> Result<RevokedSession, SessionError> {
        refresh::revoke_family(
            self.inner.store.engine(),
            family.family,
            Some(family.family_expires_at),
            now,
        )
        .await?;
        Ok(self.announce(RevokedSession {
            deployment: family.deployment,
            sid: family.family,
        }))
    }

    /// The public keys, for `/.well-known/jwks.json`: every key that signs or
    /// may still have signed a live token.
    pub async fn jwks(&self) -> Result<JwkSet, SessionError> {
        let ring = self.ring().await?;
        Ok(JwkSet {
            keys: ring
                .keys
                .iter()
                .map(|k| PublicJwk {
                    kty: "EC",
                    crv: "P-256",
                    alg: "ES256",
                    use_: "sig",
                    kid: k.kid.clone(),
                    x: k.x.clone(),
                    y: k.y.clone(),
                })
                .collect(),
        })
    }

    /// Tells this node's sockets at once; the caller tells the other nodes'
    /// through routing.
    fn announce(&self, revoked: RevokedSession) -> RevokedSession {
        // No receiver is not an error: no socket of this node listens yet.
        let _ = self.inner.revocations.send(revoked.clone());
        revoked
    }

    async fn check_not_revoked(&self, claims: &SessionClaims) -> Result<(), SessionError> {
        let engine = self.inner.store.engine();
        if engine
            .peek(Space::RevokedSession, &claims.jti.to_string())
            .await?
            .is_some()
            || refresh::family_revoked(engine, claims.sid).await?
        {
            return Err(SessionError::Revoked);
        }
        Ok(())
    }

    /// Signature, issuer and times; not audience or revocation.
    async fn verify_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<SessionClaims, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Malformed)?;
        // The header names the key, never the algorithm: ours are all ES256.
        if header.alg != Algorithm::ES256 {
            return Err(SessionError::Signature);
        }
        let kid = header.kid.ok_or(SessionError::Signature)?;
        let mut ring = self.ring().await?;
        if ring.find(&kid).is_none() {
            // Another node may have rotated since this one last looked.
            ring = self.reload(Some(&ring)).await?;
        }
        let key = ring.find(&kid).ok_or(SessionError::Signature)?;
        let mut validation = Validation::new(Algorithm::ES256);
        // Times and audience are checked below against the caller's clock
        // and deployment; the library would use the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => SessionError::Signature,
                _ => SessionError::Malformed,
            })?
            .claims;
        if claims.iss != self.inner.issuer {
            return Err(SessionError::Issuer);
        }
        let now = now.timestamp();
        if claims.exp + secs(LEEWAY) <= now {
            return Err(SessionError::Expired);
        }
        if claims.iat > now + secs(LEEWAY) {
            return Err(SessionError::NotYetValid);
        }
        Ok(claims)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::DecodingKey;

    use super::keys::public_point;
    use super::*;

    #[test]
    fn public_points_are_64_bytes_of_coordinates() {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let (x, y) = public_point(pkcs8.as_ref()).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&x).unwrap().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(&y).unwrap().len(), 32);
        assert!(DecodingKey::from_ec_components(&x, &y).is_ok());
    }

    #[test]
    fn error_codes_are_the_documented_ones() {
        assert_eq!(SessionError::Audience.code(), "audience_mismatch");
        assert_eq!(SessionError::RefreshReused.code(), "refresh_token_reused");
        assert_eq!(SessionError::Expired.code(), "token_expired");
    }
}
