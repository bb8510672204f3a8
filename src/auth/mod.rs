//! Who is calling: credentials, principals and roles.
//!
//! The admin API accepts three kinds of bearer credential: the operator's
//! bootstrap token (an admin of the default organization that may also add
//! organizations), access tokens minted for API clients by `POST
//! /oauth/token`, and (with staff SSO) members' sessions. Each resolves to a
//! [`Principal`] carrying its organization and roles; handlers ask the
//! principal for the role they need.

pub mod credential;
pub mod crypto;
pub mod key_check;
pub mod oidc;
pub mod refresh;
pub mod staff;
pub mod visitor_token;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{Config, MasterKey};
use crate::engine::{Collection, Commit, Expect, Kind, Put, RecordKey};
use crate::store::records::{ApiClient, Member, Meta, Organization};
use crate::store::types::{OrgId, Role};
use crate::store::{Store, StoreError};
use crypto::Sealer;

/// How long an API client's access token lives.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);
const ACCESS_TOKEN_AUDIENCE: &str = "switchboard:api";
/// Prefix of API client secrets, so a leaked one is recognisable.
pub const CLIENT_SECRET_PREFIX: &str = "sbs_";
const BOOTSTRAP_PREFIX: &str = "sbb_";

/// A caller the service recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub org: OrgId,
    pub roles: Vec<Role>,
    pub kind: PrincipalKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The holder of the bootstrap token: admin of the default organization
    /// and the only one who may add organizations.
    Operator,
    ApiClient {
        id: Uuid,
    },
    Member {
        id: Uuid,
    },
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    pub fn is_operator(&self) -> bool {
        self.kind == PrincipalKind::Operator
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credential")]
    Missing,
    #[error("the credential is not valid")]
    Invalid,
    /// A cookie-authenticated change without the session's CSRF token.
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// A cookie-authenticated socket from another site.
    #[error("cookie credential from another origin")]
    CrossOrigin,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    aud: String,
    /// The API client's id, or the member's (see `kind`).
    sub: Uuid,
    org: OrgId,
    iat: i64,
    exp: i64,
    jti: Uuid,
    /// `member` for a token a staff member got with the JWT-bearer grant;
    /// absent for an API client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

/// The `kind` claim of a member's access token.
const MEMBER_TOKEN_KIND: &str = "member";

/// An access token as handed to the client.
#[derive(Debug)]
pub struct AccessToken {
    pub token: SecretString,
    pub expires_in: Duration,
}

/// Credentials and secrets of one node; shared by every request.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    store: Store,
    sealer: Sealer,
    issuer: String,
    access_encoding: EncodingKey,
    access_decoding: DecodingKey,
    /// SHA-256 of the bootstrap token; never the token itself.
    bootstrap_digest: String,
    default_org: OrgId,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.inner.issuer)
            .field("default_org", &self.inner.default_org)
            .finish_non_exhaustive()
    }
}

/// What start-up produced that the operator must see once.
#[derive(Debug)]
pub struct Bootstrapped {
    pub auth: Auth,
    /// Set when this start generated the bootstrap token: it is shown once
    /// and only its digest is kept.
    pub generated_bootstrap_token: Option<SecretString>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultOrgSetting {
    org_id: OrgId,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootstrapSetting {
    digest: String,
}

impl Auth {
    /// Prepares authentication for a node: makes sure the default
    /// organization and a bootstrap credential exist. Safe when many nodes
    /// start at once: the first writer wins and the others read its result.
    pub async fn bootstrap(
        config: &Config,
        master: &MasterKey,
        store: Store,
    ) -> Result<Bootstrapped, StoreError> {
        let default_org = ensure_default_org(&store).await?;
        let (bootstrap_digest, generated) = match &config.bootstrap_token {
            Some(token) => (crypto::digest(token.expose_secret()), None),
            None => ensure_bootstrap_digest(&store).await?,
        };
        let token_key = crypto::derive_key(master, "switchboard/access-token/v1");
        let auth = Auth {
            inner: Arc::new(AuthInner {
                store,
                sealer: Sealer::new(master),
                issuer: config.public_url.as_str().trim_end_matches('/').to_owned(),
                access_encoding: EncodingKey::from_secret(&token_key),
                access_decoding: DecodingKey::from_secret(&token_key),
                bootstrap_digest,
                default_org,
            }),
        };
        Ok(Bootstrapped {
            auth,
            generated_bootstrap_token: generated,
        })
    }

    pub fn sealer(&self) -> &Sealer {
        &self.inner.sealer
    }

    pub fn default_org(&self) -> OrgId {
        self.inner.default_org
    }

    /// Resolves a bearer credential to a principal.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        if crypto::digest_matches(token, &self.inner.bootstrap_digest) {
            return Ok(Principal {
                org: self.inner.default_org,
                roles: vec![Role::Admin],
                kind: PrincipalKind::Operator,
            });
        }
        let claims = self.decode_access_token(token)?;
        if claims.kind.as_deref() == Some(MEMBER_TOKEN_KIND) {
            // The member must still exist, with its current roles: removing
            // a member or a role takes effect on its next request.
            let member = self
                .inner
                .store
                .find::<Member>(claims.org, claims.sub)
                .await?
                .ok_or(AuthError::Invalid)?;
            return Ok(Principal {
                org: member.org_id,
                roles: member.roles,
                kind: PrincipalKind::Member { id: member.meta.id },
            });
        }
        if claims.kind.is_some() {
            return Err(AuthError::Invalid);
        }
        // The client must still exist: deleting it revokes its tokens, and
        // its current roles apply, not those it had when the token was minted.
        let client = self
            .inner
            .store
            .find::<ApiClient>(claims.org, claims.sub)
            .await?
            .ok_or(AuthError::Invalid)?;
        Ok(Principal {
            org: client.org_id,
            roles: client.roles,
            kind: PrincipalKind::ApiClient { id: client.meta.id },
        })
    }

    fn decode_access_token(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.set_audience(&[ACCESS_TOKEN_AUDIENCE]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<AccessClaims>(token, &self.inner.access_decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| AuthError::Invalid)
    }

    /// The client-credentials grant: checks the client's secret and mints an
    /// access token for its organization.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, AuthError> {
        let id = Uuid::parse_str(client_id).map_err(|_| AuthError::Invalid)?;
        let client = self
            .inner
            .store
            .locate::<ApiClient>(id)
            .await?
            .ok_or(AuthError::Invalid)?;
        if !crypto::digest_matches(secret.expose_secret(), &client.secret_digest) {
            return Err(AuthError::Invalid);
        }
        self.mint(client.meta.id, client.org_id, None, now)
    }

    /// An access token for a staff member, who proved who they are with an
    /// ID token from the organization's staff IdP (the JWT-bearer grant):
    /// scripts run as the person, with the member's roles at each request.
    pub fn member_access_token(
        &self,
        member: &Member,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, AuthError> {
        self.mint(
            member.meta.id,
            member.org_id,
            Some(MEMBER_TOKEN_KIND.to_owned()),
            now,
        )
    }

    fn mint(
        &self,
        sub: Uuid,
        org: OrgId,
        kind: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<AccessToken, AuthError> {
        let claims = AccessClaims {
            iss: self.inner.issuer.clone(),
            aud: ACCESS_TOKEN_AUDIENCE.to_owned(),
            sub,
            org,
            iat: now.timestamp(),
            exp: now.timestamp() + ACCESS_TOKEN_TTL.as_secs() as i64,
            jti: Uuid::new_v4(),
            kind,
        };
        let token = jsonwebtoken::encode(
            &Header::new(JwtAlgorithm::HS256),
            &claims,
            &self.inner.access_encoding,
        )
        .map_err(|_| AuthError::Invalid)?;
        Ok(AccessToken {
            token: SecretString::from(token),
            expires_in: ACCESS_TOKEN_TTL,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ScopedClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
}

impl Auth {
    /// A short-lived token only this service reads, for one purpose
    /// (`audience`) and one subject: the guest history token of `getJwt`,
    /// say. Keyed by the master key, so every node accepts it.
    pub fn issue_scoped(
        &self,
        audience: &str,
        subject: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(SecretString, DateTime<Utc>), AuthError> {
        let expires = now + chrono::Duration::from_std(ttl).map_err(|_| AuthError::Invalid)?;
        let claims = ScopedClaims {
            iss: self.inner.issuer.clone(),
            aud: audience.to_owned(),
            sub: subject.to_owned(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(JwtAlgorithm::HS256),
            &claims,
            &self.inner.access_encoding,
        )
        .map_err(|_| AuthError::Invalid)?;
        Ok((SecretString::from(token), expires))
    }

    /// The subject of a token from [`Auth::issue_scoped`] for `audience`.
    pub fn verify_scoped(&self, audience: &str, token: &str) -> Result<String, AuthError> {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<ScopedClaims>(token, &self.inner.access_decoding, &validation)
            .map(|data| data.claims.sub)
            .map_err(|_| AuthError::Invalid)
    }
}

/// Builds an API client record with a fresh secret, held in the clear only
/// in `fresh_secret` until it is shown once.
pub fn new_api_client(org: OrgId, meta: Meta, name: String, roles: Vec<Role>) -> ApiClient {
    let secret = crypto::random_token(CLIENT_SECRET_PREFIX);
    ApiClient {
        meta,
        org_id: org,
        name,
        roles,
        secret_digest: crypto::digest(secret.expose_secret()),
        fresh_secret: Some(secret),
    }
}

pub(crate) fn setting_put(id: &str, body: Vec<u8>) -> Put {
    Put {
        key: RecordKey::installation(Kind::Setting, id),
        expect: Expect::Absent,
        body,
        collection: Collection::Settings,
        order: 0,
        refs: Vec::new(),
        unique: Vec::new(),
    }
}

pub(crate) async fn read_setting<T: serde::de::DeserializeOwned>(
    store: &Store,
    id: &str,
) -> Result<Option<T>, StoreError> {
    let key = RecordKey::installation(Kind::Setting, id);
    match store.raw_get(&key).await? {
        None => Ok(None),
        Some(record) => {
            serde_json::from_slice(&record.body)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key,
                    message: e.to_string(),
                })
        }
    }
}

async fn ensure_default_org(store: &Store) -> Result<OrgId, StoreError> {
    const SETTING: &str = "default-org";
    if let Some(setting) = read_setting::<DefaultOrgSetting>(store, SETTING).await? {
        return Ok(setting.org_id);
    }
    let mut org = Organization {
        meta: Meta::new(Utc::now()),
        name: "Default".to_owned(),
        is_default: true,
        staff_integration_id: None,
        retention_days: None,
        limits: Default::default(),
    };
    let id = OrgId(org.meta.id);
    // The organization in its own home first, then, in one installation-
    // wide step, the setting naming it and its entry in the list of
    // organizations: of nodes starting together exactly one names its own.
    let org_put = store.prepare(&org, Expect::Absent).await?;
    store.commit(Commit::new().put(org_put)).await?;
    org.meta.version = 1;
    let setting = crate::store::encode(&DefaultOrgSetting { org_id: id })?;
    let mut named = Commit::new().put(setting_put(SETTING, setting));
    if let Some(entry) = store.directory_put(&org)? {
        named = named.put(entry);
    }
    match store.commit(named).await {
        Ok(()) => Ok(id),
        // Another node created it first: its organization is the default,
        // and this one's goes (it was never listed or named).
        Err(StoreError::Conflict(_)) => {
            let _ = store
                .commit(Commit::new().delete(crate::store::Record::key(&org), Expect::Any))
                .await;
            read_setting::<DefaultOrgSetting>(store, SETTING)
                .await?
                .map(|s| s.org_id)
                .ok_or_else(|| StoreError::Conflict("default organization vanished".to_owned()))
        }
        Err(e) => Err(e),
    }
}

async fn ensure_bootstrap_digest(
    store: &Store,
) -> Result<(String, Option<SecretString>), StoreError> {
    const SETTING: &str = "bootstrap-token";
    if let Some(setting) = read_setting::<BootstrapSetting>(store, SETTING).await? {
        return Ok((setting.digest, None));
    }
    let token = crypto::random_token(BOOTSTRAP_PREFIX);
    let digest = crypto::digest(token.expose_secret());
    let body = crate::store::encode(&BootstrapSetting {
        digest: digest.clone(),
    })?;
    match store
        .commit(Commit::new().put(setting_put(SETTING, body)))
        .await
    {
        Ok(()) => Ok((digest, Some(token))),
        Err(StoreError::Conflict(_)) => read_setting::<BootstrapSetting>(store, SETTING)
            .await?
            .map(|s| (s.digest, None))
            .ok_or_else(|| StoreError::Conflict("bootstrap token vanished".to_owned())),
        Err(e) => Err(e),
    }
}
