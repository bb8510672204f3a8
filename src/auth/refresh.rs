//! Refresh tokens of visitor sessions: rotating (or not), reuse-detecting,
//! stored only as digests.
//!
//! A successful exchange starts a *family* (the session, `sid` in its JWTs)
//! that lives for the integration's maximum refresh-token lifetime from that
//! first exchange, however often it is refreshed. With rotation ([`Mode`],
//! a setting of the integration) each refresh spends the presented token
//! and answers a new one of the same family. Spending is an
//! atomic `swap` in [`Space::RefreshToken`] that marks the token rotated, so
//! of two concurrent refreshes exactly one succeeds. A rotated token stays
//! stored until its family ends, marked as such: presenting it again means
//! it leaked (or a client replayed it), and the whole family is revoked in
//! [`Space::RefreshFamily`], which also refuses the family's newest token and
//! its session JWTs.
//!
//! Without rotation the presented token is not spent: it keeps working until
//! its family ends or is revoked (logout). That is what Genesys's Transport
//! SDK needs, since it keeps the first refresh token it got and presents it
//! on every refresh. A token once spent under rotation stays spent: if the
//! setting is switched off later, presenting it still counts as reuse.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::crypto;
use super::visitor_token::{SessionError, VisitorIdentity};
use crate::engine::{Engine, Space, StashMode};
use crate::store::types::OrgId;

/// Prefix of refresh tokens, so a leaked one is recognisable.
pub const REFRESH_TOKEN_PREFIX: &str = "sbr_";
/// The longest a family can live: the admin API's upper bound for an
/// integration's maximum refresh-token lifetime (90 days). A revocation that
/// does not know its family's end is kept this long.
pub const MAX_FAMILY_LIFETIME: Duration = Duration::from_secs(7_776_000);

/// How a refresh treats the token it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Spend it and answer the family's next token; a spent token presented
    /// again revokes the family.
    Rotate,
    /// Leave it valid: the same token is the answer.
    Keep,
}

/// What a new family is started for.
#[derive(Clone, Debug)]
pub struct NewFamily {
    pub deployment: Uuid,
    pub org: OrgId,
    pub integration: Uuid,
    pub identity: VisitorIdentity,
    /// From the first exchange: the integration's maximum refresh-token
    /// lifetime.
    pub lifetime: Duration,
}

/// A family as each of its refresh tokens records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyState {
    /// The family id, which session JWTs carry as `sid`.
    pub family: Uuid,
    pub deployment: Uuid,
    pub org: OrgId,
    pub integration: Uuid,
    pub identity: VisitorIdentity,
    pub family_expires_at: DateTime<Utc>,
}

/// One stored refresh token.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    #[serde(flatten)]
    family: FamilyState,
    /// Set once the token was spent.
    rotated_at: Option<DateTime<Utc>>,
}

/// Why a rotation failed.
#[derive(Debug)]
pub enum RotateError {
    /// The token had been spent before: its family is now revoked.
    Reused(FamilyState),
    Session(SessionError),
}

impl From<SessionError> for RotateError {
    fn from(e: SessionError) -> Self {
        RotateError::Session(e)
    }
}

impl From<crate::engine::EngineError> for RotateError {
    fn from(e: crate::engine::EngineError) -> Self {
        RotateError::Session(e.into())
    }
}

/// Starts a family and answers its id and first token.
pub async fn start(
    engine: &Engine,
    family: NewFamily,
    now: DateTime<Utc>,
) -> Result<(Uuid, SecretString), SessionError> {
    let lifetime = chrono::Duration::from_std(family.lifetime.min(MAX_FAMILY_LIFETIME))
        .map_err(|e| SessionError::Corrupt(format!("family lifetime: {e}")))?;
    let state = FamilyState {
        family: Uuid::new_v4(),
        deployment: family.deployment,
        org: family.org,
        integration: family.integration,
        identity: family.identity,
        family_expires_at: now + lifetime,
    };
    let id = state.family;
    let token = mint(engine, state, now).await?;
    Ok((id, token))
}

/// Stores a fresh token of `family`, living until the family ends.
async fn mint(
    engine: &Engine,
    family: FamilyState,
    now: DateTime<Utc>,
) -> Result<SecretString, SessionError> {
    let ttl = remaining(family.family_expires_at, now).ok_or(SessionError::RefreshUnknown)?;
    let token = crypto::random_token(REFRESH_TOKEN_PREFIX);
    let body = encode(&StoredToken {
        family,
        rotated_at: None,
    })?;
    let written = engine
        .stash(
            Space::RefreshToken,
            &crypto::digest(token.expose_secret()),
            &body,
            ttl,
            StashMode::IfAbsent,
        )
        .await?;
    if !written {
        // 256 random bits collided: practically impossible, never silent.
        return Err(SessionError::Corrupt(
            "a fresh refresh token already exists".to_owned(),
        ));
    }
    Ok(token)
}

/// The family `token` belongs to, read without spending it: how a refresh
/// that names no deployment finds its deployment. Unknown and expired
/// tokens are [`SessionError::RefreshUnknown`].
pub async fn family_of(engine: &Engine, token: &SecretString) -> Result<FamilyState, SessionError> {
    let id = crypto::digest(token.expose_secret());
    let stored = engine
        .peek(Space::RefreshToken, &id)
        .await?
        .ok_or(SessionError::RefreshUnknown)?;
    Ok(decode(&stored)?.family)
}

/// A refresh of `token` presented for `deployment`: its family and the
/// token the client should present next (a new one with [`Mode::Rotate`],
/// `token` itself with [`Mode::Keep`]).
pub async fn refresh(
    engine: &Engine,
    token: &SecretString,
    deployment: Uuid,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<(FamilyState, SecretString), RotateError> {
    match mode {
        Mode::Rotate => rotate(engine, token, deployment, now).await,
        Mode::Keep => keep(engine, token, deployment, now).await,
    }
}

/// The stored state of a presented token that may still be used: known,
/// of `deployment` (a token of another deployment is unknown here; it stays
/// usable where it belongs), its family not revoked, and not yet spent (a
/// spent one presented again is a replay: the family is revoked).
async fn usable(
    engine: &Engine,
    token: &SecretString,
    deployment: Uuid,
    now: DateTime<Utc>,
) -> Result<(String, StoredToken), RotateError> {
    let id = crypto::digest(token.expose_secret());
    let stored = engine
        .peek(Space::RefreshToken, &id)
        .await?
        .ok_or(SessionError::RefreshUnknown)?;
    let stored = decode(&stored)?;
    if stored.family.deployment != deployment {
        return Err(SessionError::RefreshUnknown.into());
    }
    if family_revoked(engine, stored.family.family).await? {
        return Err(SessionError::RefreshRevoked.into());
    }
    if stored.rotated_at.is_some() {
        return Err(reused(engine, stored.family, now).await);
    }
    Ok((id, stored))
}

/// Checks `token` without spending it.
async fn keep(
    engine: &Engine,
    token: &SecretString,
    deployment: Uuid,
    now: DateTime<Utc>,
) -> Result<(FamilyState, SecretString), RotateError> {
    let (_, stored) = usable(engine, token, deployment, now).await?;
    // The stored token expires with its family; this covers a read racing
    // that expiry.
    if remaining(stored.family.family_expires_at, now).is_none() {
        return Err(SessionError::RefreshUnknown.into());
    }
    let same = SecretString::from(token.expose_secret().to_owned());
    Ok((stored.family, same))
}

/// Spends `token` and answers its family and the family's next token.
async fn rotate(
    engine: &Engine,
    token: &SecretString,
    deployment: Uuid,
    now: DateTime<Utc>,
) -> Result<(FamilyState, SecretString), RotateError> {
    let (id, stored) = usable(engine, token, deployment, now).await?;
    let spent = encode(&StoredToken {
        family: stored.family.clone(),
        rotated_at: Some(now),
    })?;
    let previous = engine
        .swap(Space::RefreshToken, &id, &spent)
        .await?
        .ok_or(SessionError::RefreshUnknown)?;
    let previous = decode(&previous)?;
    if previous.rotated_at.is_some() {
        // Another request spent it between our read and our swap.
        return Err(reused(engine, previous.family, now).await);
    }
    let next = mint(engine, previous.family.clone(), now).await?;
    Ok((previous.family, next))
}

async fn reused(engine: &Engine, family: FamilyState, now: DateTime<Utc>) -> RotateError {
    match revoke_family(engine, family.family, Some(family.family_expires_at), now).await {
        Ok(()) => RotateError::Reused(family),
        Err(e) => RotateError::Session(e),
    }
}

/// Marks a family revoked until it would have ended (`until`), or for the
/// longest a family can live when that is unknown.
pub async fn revoke_family(
    engine: &Engine,
    family: Uuid,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), SessionError> {
    let ttl = match until {
        Some(until) => remaining(until, now).unwrap_or(Duration::from_secs(1)),
        None => MAX_FAMILY_LIFETIME,
    };
    engine
        .stash(
            Space::RefreshFamily,
            &family.to_string(),
            now.to_rfc3339().as_bytes(),
            ttl,
            StashMode::Replace,
        )
        .await?;
    Ok(())
}

pub async fn family_revoked(engine: &Engine, family: Uuid) -> Result<bool, SessionError> {
    Ok(engine
        .peek(Space::RefreshFamily, &family.to_string())
        .await?
        .is_some())
}

/// Time left until `until`, if any.
fn remaining(until: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    (until - now).to_std().ok().filter(|d| !d.is_zero())
}

fn encode(token: &StoredToken) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(token).map_err(|e| SessionError::Corrupt(format!("refresh token: {e}")))
}

fn decode(bytes: &[u8]) -> Result<StoredToken, SessionError> {
    serde_json::from_slice(bytes).map_err(|e| SessionError::Corrupt(format!("refresh token: {e}")))
}
