//! Staff sign-in (SSO) for the console and the admin API.
//!
//! Staff sign in at their organization's staff OIDC integration with a login
//! switchboard runs itself (authorization code, PKCE, nonce, `state`). This
//! module keeps what that needs server-side, on the engine's ephemeral
//! values, so any node serves any step:
//!
//! - the **login in progress** ([`Space::StaffLogin`]), under the digest of
//!   its `state`, single use, for [`STAFF_LOGIN_TTL`]. It is also bound to
//!   the browser that started it (the digest of a random `sb_login` cookie),
//!   so a callback URL someone else produced cannot sign a victim in as them
//!   (login CSRF, RFC 6749 10.12);
//! - the **session** ([`Space::StaffSession`]), under the digest of the
//!   `sb_session` cookie's random value, for [`STAFF_SESSION_TTL`]: which
//!   member, and the CSRF token cookie-authenticated state changes must
//!   carry. The cookie itself is never stored.
//!
//! A session names a member, not roles: every request reads the member's
//! current roles, so a grant or a revocation applies at once, and deleting
//! the member ends its sessions.
//!
//! Members are keyed by (organization, issuer, subject). The first sign-in
//! creates one with the agent role; an admin grants more by member id, or the
//! operator with `switchboard members grant` ([`grant_member`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::oidc::{self, VerifiedIdentity};
use super::{Auth, AuthError, Principal, PrincipalKind, crypto};
use crate::engine::{Collection, Commit, Expect, Home, Kind, Put, RecordKey, Space, StashMode};
use crate::store::records::{Member, Meta, Organization};
use crate::store::types::{OrgId, Role};
use crate::store::{Store, StoreError};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sb_session";
/// The cookie that binds a login in progress to the browser that began it.
pub const LOGIN_COOKIE: &str = "sb_login";
/// The header carrying the CSRF token on cookie-authenticated state changes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in may take between `/auth/login` and `/auth/callback`.
pub const STAFF_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a console session lasts; the member signs in again afterwards.
pub const STAFF_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Prefix of session cookie values, so a leaked one is recognisable.
const SESSION_PREFIX: &str = "sbc_";
const LOGIN_PREFIX: &str = "sbl_";
/// Longest display name a member gets from an ID token.
const MAX_NAME_CHARS: usize = 200;

/// The setting that marks an organization whose next new staff member is
/// its first admin: written by first-run setup, deleted by the sign-in that
/// uses it. Suffixed with the organization's id.
pub const FIRST_ADMIN_SETTING: &str = "first-admin";

/// In the organization's home, so that the sign-in that uses it deletes it
/// in the same commit as it creates the member.
fn first_admin_key(org: OrgId) -> RecordKey {
    RecordKey::new(
        Home::Org(org.0),
        Kind::Setting,
        format!("{FIRST_ADMIN_SETTING}:{}", org.0),
    )
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FirstAdmin {
    integration_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    /// The `state` is unknown, used or expired, or the callback reached
    /// another browser than the one that began the login.
    #[error("unknown, used or expired sign-in state; sign in again")]
    InvalidState,
    #[error("{0}")]
    Invalid(String),
    #[error("no organization {0}")]
    UnknownOrg(OrgId),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing or encoding failed: a bug, never input.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<AuthError> for StaffError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => StaffError::Store(e),
            AuthError::Missing | AuthError::Invalid | AuthError::Csrf | AuthError::CrossOrigin => {
                StaffError::InvalidState
            }
        }
    }
}

fn engine_error(e: crate::engine::EngineError) -> StoreError {
    StoreError::from(e)
}

/// The secrets of a new sign-in: `state`, nonce, PKCE pair, and the browser
/// binding (the `sb_login` cookie's value).
pub struct NewStaffLogin {
    pub state: String,
    pub nonce: SecretString,
    pub verifier: SecretString,
    pub challenge: String,
    pub browser: SecretString,
}

impl std::fmt::Debug for NewStaffLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewStaffLogin").finish_non_exhaustive()
    }
}

impl NewStaffLogin {
    pub fn generate() -> Self {
        let (verifier, challenge) = oidc::pkce_pair();
        Self {
            state: oidc::random_state(),
            nonce: SecretString::from(oidc::random_state()),
            verifier,
            challenge,
            browser: crypto::random_token(LOGIN_PREFIX),
        }
    }
}

/// A sign-in in progress as stored: nonce and verifier sealed, bound to the
/// digest of its state.
#[derive(Serialize, Deserialize)]
struct StoredLogin {
    org: OrgId,
    integration: Uuid,
    return_to: String,
    sealed_nonce: String,
    sealed_verifier: String,
    browser_digest: String,
}

/// A sign-in taken back at the callback.
pub struct StaffLogin {
    pub org: OrgId,
    pub integration: Uuid,
    /// A local path (checked when the login began).
    pub return_to: String,
    pub nonce: SecretString,
    pub verifier: SecretString,
}

impl std::fmt::Debug for StaffLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffLogin")
            .field("org", &self.org)
            .field("integration", &self.integration)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// A console session as stored under the digest of its cookie.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    member: Uuid,
    org: OrgId,
    csrf: String,
    expires_at: DateTime<Utc>,
}

/// A live console session, with its member as stored now.
pub struct StaffSession {
    pub member: Member,
    pub csrf_token: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for StaffSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffSession")
            .field("member", &self.member.meta.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl StaffSession {
    /// The member as a principal, with its current roles.
    pub fn principal(&self) -> Principal {
        Principal {
            org: self.member.org_id,
            roles: self.member.roles.clone(),
            kind: PrincipalKind::Member {
                id: self.member.meta.id,
            },
        }
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let expected = self.csrf_token.expose_secret().as_bytes();
        expected.len() == presented.len() && bool::from(expected.ct_eq(presented.as_bytes()))
    }
}

/// A new session: the cookie value (shown to the browser only) and the
/// session.
pub struct NewStaffSession {
    pub cookie: SecretString,
    pub session: StaffSession,
}

impl std::fmt::Debug for NewStaffSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewStaffSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Whether `path` may be redirected to after sign-in: a path on this
/// service (`/console`), never another site (`//evil.example`,
/// `/\evil.example`, `https://...`), without spaces or control characters.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 2048
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

impl Auth {
    /// Keeps a sign-in until its callback (single use, [`STAFF_LOGIN_TTL`]).
    pub async fn save_staff_login(
        &self,
        login: &NewStaffLogin,
        org: OrgId,
        integration: Uuid,
        return_to: &str,
    ) -> Result<(), StaffError> {
        let id = crypto::digest(&login.state);
        let seal = |value: &SecretString, field: &str| {
            self.inner
                .sealer
                .seal(value, &format!("stafflogin/{id}/{field}"))
                .map_err(|e| StaffError::Internal(format!("cannot seal a staff login: {e}")))
        };
        let stored = StoredLogin {
            org,
            integration,
            return_to: return_to.to_owned(),
            sealed_nonce: seal(&login.nonce, "nonce")?,
            sealed_verifier: seal(&login.verifier, "verifier")?,
            browser_digest: crypto::digest(login.browser.expose_secret()),
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|e| StaffError::Internal(format!("cannot encode a staff login: {e}")))?;
        let written = self
            .inner
            .store
            .engine()
            .stash(
                Space::StaffLogin,
                &id,
                &value,
                STAFF_LOGIN_TTL,
                StashMode::IfAbsent,
            )
            .await
            .map_err(engine_error)?;
        if written {
            Ok(())
        } else {
            Err(StaffError::Internal(
                "a fresh login state collided".to_owned(),
            ))
        }
    }

    /// Takes a sign-in back by its `state`, once. `browser` is the
    /// `sb_login` cookie the callback request carried; the login is
    /// consumed even when it does not match, so a stolen state is burnt.
    pub async fn take_staff_login(
        &self,
        state: &str,
        browser: Option<&str>,
    ) -> Result<StaffLogin, StaffError> {
        let id = crypto::digest(state);
        let taken = self
            .inner
            .store
            .engine()
            .take(Space::StaffLogin, &id)
            .await
            .map_err(engine_error)?
            .ok_or(StaffError::InvalidState)?;
        let stored: StoredLogin =
            serde_json::from_slice(&taken).map_err(|_| StaffError::InvalidState)?;
        let same_browser =
            browser.is_some_and(|b| crypto::digest_matches(b, &stored.browser_digest));
        if !same_browser {
            return Err(StaffError::InvalidState);
        }
        let open = |sealed: &str, field: &str| {
            self.inner
                .sealer
                .open(sealed, &format!("stafflogin/{id}/{field}"))
                .map_err(|_| StaffError::InvalidState)
        };
        Ok(StaffLogin {
            org: stored.org,
            integration: stored.integration,
            return_to: stored.return_to,
            nonce: open(&stored.sealed_nonce, "nonce")?,
            verifier: open(&stored.sealed_verifier, "verifier")?,
        })
    }

    /// The member a verified identity signs in as in `org`: found by
    /// (organization, issuer, subject); else the member an admin
    /// pre-provisioned with the identity's email, claimed (bound to the
    /// identity, roles kept) only when the IdP asserts `email_verified`;
    /// else created with the agent role, named from the ID token. An email
    /// the IdP did not verify is never matched nor stored: on an IdP where
    /// users register themselves, anyone can claim any address. Answers
    /// whether the member is new to this identity.
    pub async fn member_for_sign_in(
        &self,
        org: OrgId,
        identity: &VerifiedIdentity,
        now: DateTime<Utc>,
    ) -> Result<(Member, bool), StoreError> {
        let store = &self.inner.store;
        let claim = Member::identity_claim(org, &identity.issuer, &identity.subject);
        if let Some(member) = store.lookup::<Member>(&claim).await? {
            return Ok((member, false));
        }
        let verified_email = identity
            .email
            .clone()
            .filter(|e| identity.email_verified == Some(true) && e.contains('@') && e.len() <= 254);
        if let Some(email) = &verified_email
            && let Some(claimed) = self.claim_invite(org, identity, email).await?
        {
            return Ok((claimed, true));
        }
        let mut member = Member {
            meta: Meta::new(now),
            org_id: org,
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            display_name: display_name(identity),
            email: verified_email,
            roles: vec![Role::Agent],
        };
        if let Some(armed) = store.raw_get(&first_admin_key(org)).await? {
            // The first sign-in after setup: this member is the admin, and
            // the mark goes in the same commit, so only one person gets it.
            member.roles = vec![Role::Admin, Role::Agent];
            let put = store.prepare(&member, Expect::Absent).await?;
            let commit = Commit::new()
                .put(put)
                .delete(first_admin_key(org), Expect::Version(armed.version));
            match store.commit(commit).await {
                Ok(()) => {
                    member.meta.version = 1;
                    tracing::info!(%org, member = %member.meta.id, "the first admin signed in");
                    return Ok((member, true));
                }
                // Someone else took it (or the same person raced): sign in
                // as anyone would.
                Err(
                    StoreError::Conflict(_) | StoreError::Duplicate(_) | StoreError::Stale { .. },
                ) => {
                    member.roles = vec![Role::Agent];
                    if let Some(existing) = store.lookup::<Member>(&claim).await? {
                        return Ok((existing, false));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match store.create(&mut member).await {
            Ok(()) => Ok((member, true)),
            // A concurrent first sign-in of the same person won.
            Err(StoreError::Duplicate(_) | StoreError::Conflict(_)) => store
                .lookup::<Member>(&claim)
                .await?
                .map(|m| (m, false))
                .ok_or_else(|| StoreError::Conflict("the new member vanished".to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Binds the member pre-provisioned with `email` in `org` to
    /// `identity`, if there is one. A concurrent sign-in that claimed it
    /// first wins: then `None` (this identity gets a member of its own).
    async fn claim_invite(
        &self,
        org: OrgId,
        identity: &VerifiedIdentity,
        email: &str,
    ) -> Result<Option<Member>, StoreError> {
        let store = &self.inner.store;
        let Some(mut member) = store
            .lookup::<Member>(&Member::invite_claim(org, email))
            .await?
            .filter(|m| m.org_id == org && m.is_pending())
        else {
            return Ok(None);
        };
        let version = member.meta.version;
        member.issuer = identity.issuer.clone();
        member.subject = identity.subject.clone();
        match store.update(&mut member, version).await {
            Ok(()) => {
                tracing::info!(%org, member = %member.meta.id, "a pre-provisioned member was claimed by its verified email");
                Ok(Some(member))
            }
            Err(StoreError::Conflict(_) | StoreError::Duplicate(_) | StoreError::Stale { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Arms the first sign-in of `org`: the next member created by a staff
    /// sign-in gets the admin role, once (see `http/setup`).
    pub async fn arm_first_admin(&self, org: OrgId, integration: Uuid) -> Result<(), StoreError> {
        let body = crate::store::encode(&FirstAdmin {
            integration_id: integration,
        })?;
        let put = Put {
            key: first_admin_key(org),
            expect: Expect::Absent,
            body,
            collection: Collection::Org {
                org: org.0,
                kind: Kind::Setting,
            },
            order: 0,
            refs: Vec::new(),
            unique: Vec::new(),
        };
        match self.inner.store.commit(Commit::new().put(put)).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a console session for `member`.
    pub async fn start_staff_session(
        &self,
        member: Member,
        now: DateTime<Utc>,
    ) -> Result<NewStaffSession, StaffError> {
        let cookie = crypto::random_token(SESSION_PREFIX);
        let csrf = oidc::random_state();
        let ttl = chrono::Duration::from_std(STAFF_SESSION_TTL)
            .map_err(|e| StaffError::Internal(e.to_string()))?;
        let expires_at = now + ttl;
        let stored = StoredSession {
            member: member.meta.id,
            org: member.org_id,
            csrf: csrf.clone(),
            expires_at,
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|e| StaffError::Internal(format!("cannot encode a staff session: {e}")))?;
        let written = self
            .inner
            .store
            .engine()
            .stash(
                Space::StaffSession,
                &crypto::digest(cookie.expose_secret()),
                &value,
                STAFF_SESSION_TTL,
                StashMode::IfAbsent,
            )
            .await
            .map_err(engine_error)?;
        if !written {
            return Err(StaffError::Internal(
                "a fresh session token collided".to_owned(),
            ));
        }
        Ok(NewStaffSession {
            cookie,
            session: StaffSession {
                member,
                csrf_token: SecretString::from(csrf),
                expires_at,
            },
        })
    }

    /// The live session of a `sb_session` cookie value, with its member as
    /// stored now. [`AuthError::Invalid`] when unknown, expired, or its
    /// member is gone.
    pub async fn staff_session(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
    ) -> Result<StaffSession, AuthError> {
        if !cookie.starts_with(SESSION_PREFIX) || cookie.len() > 256 {
            return Err(AuthError::Invalid);
        }
        let id = crypto::digest(cookie);
        let engine = self.inner.store.engine();
        let value = engine
            .peek(Space::StaffSession, &id)
            .await
            .map_err(|e| AuthError::Store(engine_error(e)))?
            .ok_or(AuthError::Invalid)?;
        let stored: StoredSession =
            serde_json::from_slice(&value).map_err(|_| AuthError::Invalid)?;
        if stored.expires_at <= now {
            return Err(AuthError::Invalid);
        }
        let member = self
            .inner
            .store
            .find::<Member>(stored.org, stored.member)
            .await?;
        let Some(member) = member else {
            // The member was deleted: its sessions end with it.
            let _ = engine.discard(Space::StaffSession, &id).await;
            return Err(AuthError::Invalid);
        };
        Ok(StaffSession {
            member,
            csrf_token: SecretString::from(stored.csrf),
            expires_at: stored.expires_at,
        })
    }

    /// Resolves a `sb_session` cookie value to its member, with the member's
    /// current roles. CSRF is the HTTP layer's business.
    pub async fn authenticate_cookie(&self, cookie: &str) -> Result<Principal, AuthError> {
        Ok(self.staff_session(cookie, Utc::now()).await?.principal())
    }

    /// Ends the session of a cookie value; nothing happens when it is
    /// unknown.
    pub async fn end_staff_session(&self, cookie: &str) -> Result<(), AuthError> {
        self.inner
            .store
            .engine()
            .discard(Space::StaffSession, &crypto::digest(cookie))
            .await
            .map_err(|e| AuthError::Store(engine_error(e)))
    }
}

/// What a member is called when the ID token says so: its name, else given
/// and family name, else email, else the subject.
fn display_name(identity: &VerifiedIdentity) -> String {
    let joined = [&identity.given_name, &identity.family_name]
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let candidates = [
        identity.name.clone(),
        Some(joined),
        identity.email.clone(),
        Some(identity.subject.clone()),
    ];
    let name = candidates
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "Member".to_owned());
    name.chars().take(MAX_NAME_CHARS).collect()
}

/// What `switchboard members grant` asks for.
#[derive(Debug, Clone)]
pub struct MemberGrant {
    /// The organization; the default one when `None`.
    pub org: Option<OrgId>,
    pub issuer: String,
    pub subject: String,
    pub roles: Vec<Role>,
    /// The display name of a new member (the subject when `None`); renames
    /// an existing one when given.
    pub display_name: Option<String>,
}

/// What [`grant_member`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    Created,
    Updated,
    Unchanged,
}

/// Makes sure the member (organization, issuer, subject) exists and holds
/// `roles`, creating it when missing: how an operator names the first admin
/// of an organization before anyone can sign in. The subject signs in later
/// through the organization's staff integration, whose issuer must be
/// exactly `issuer`.
pub async fn grant_member(
    store: &Store,
    grant: MemberGrant,
) -> Result<(Member, GrantOutcome), StaffError> {
    let issuer = grant.issuer.trim().to_owned();
    if url::Url::parse(&issuer).is_err() {
        return Err(StaffError::Invalid(
            "--issuer must be the IdP's issuer URL, exactly as in its ID tokens".to_owned(),
        ));
    }
    if grant.subject.is_empty() || grant.subject.len() > 255 {
        return Err(StaffError::Invalid(
            "--subject must be 1 to 255 characters".to_owned(),
        ));
    }
    let display_name = match grant.display_name.as_deref().map(str::trim) {
        Some("") => return Err(StaffError::Invalid("--name must not be empty".to_owned())),
        Some(name) if name.chars().count() > MAX_NAME_CHARS => {
            return Err(StaffError::Invalid(format!(
                "--name is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        other => other.map(str::to_owned),
    };
    let org = match grant.org {
        Some(org) => org,
        None => super::ensure_default_org(store).await?,
    };
    if store.find::<Organization>(org, org.0).await?.is_none() {
        return Err(StaffError::UnknownOrg(org));
    }
    let claim = Member::identity_claim(org, &issuer, &grant.subject);
    // A concurrent change (an admin editing the member) is retried.
    for _ in 0..3 {
        match store.lookup::<Member>(&claim).await? {
            None => {
                let mut roles = grant.roles.clone();
                roles.sort();
                roles.dedup();
                let mut member = Member {
                    meta: Meta::new(Utc::now()),
                    org_id: org,
                    issuer: issuer.clone(),
                    subject: grant.subject.clone(),
                    display_name: display_name
                        .clone()
                        .unwrap_or_else(|| grant.subject.clone()),
                    email: None,
                    roles,
                };
                match store.create(&mut member).await {
                    Ok(()) => return Ok((member, GrantOutcome::Created)),
                    Err(StoreError::Duplicate(_) | StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Some(mut member) => {
                let before = member.clone();
                member.roles.extend(grant.roles.iter().copied());
                member.roles.sort();
                member.roles.dedup();
                if let Some(name) = &display_name {
                    member.display_name.clone_from(name);
                }
                if member == before {
                    return Ok((member, GrantOutcome::Unchanged));
                }
                let expected = member.meta.version;
                member.meta.date_modified = Utc::now();
                match store.update(&mut member, expected).await {
                    Ok(()) => return Ok((member, GrantOutcome::Updated)),
                    Err(StoreError::Stale { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(StaffError::Store(StoreError::Conflict(
        "the member kept changing; try again".to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_return_targets() {
        for good in ["/", "/console", "/console?tab=queues#x", "/a/b%2F/c"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "",
            "console",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "/con sole",
            "/console\r\nSet-Cookie: x=y",
            "/caf\u{e9}",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }

    fn identity() -> VerifiedIdentity {
        VerifiedIdentity {
            issuer: "https://idp.example.com".to_owned(),
            subject: "sub-1".to_owned(),
            email: None,
            email_verified: None,
            given_name: None,
            family_name: None,
            name: None,
            expires_at: Utc::now(),
            issued_at: Utc::now(),
        }
    }

    #[test]
    fn display_names_fall_back_in_order() {
        let mut id = identity();
        assert_eq!(display_name(&id), "sub-1");
        id.email = Some("a@example.com".to_owned());
        assert_eq!(display_name(&id), "a@example.com");
        id.family_name = Some("Tester".to_owned());
        assert_eq!(display_name(&id), "Tester");
        id.given_name = Some("Ada".to_owned());
        assert_eq!(display_name(&id), "Ada Tester");
        id.name = Some("  Ada L. Tester ".to_owned());
        assert_eq!(display_name(&id), "Ada L. Tester");
        id.name = Some("x".repeat(500));
        assert_eq!(display_name(&id).chars().count(), MAX_NAME_CHARS);
    }
}
