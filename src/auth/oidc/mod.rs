//! switchboard as an OpenID Connect relying party (spec: oidc-rp.md).
//!
//! [`OidcClients`] holds, per integration, the IdP's discovery document and
//! key set, and does everything that needs them: the authorize URL of a
//! login switchboard runs, redeeming an authorization code, verifying an ID
//! token (OIDC Core 3.1.3.7, every check every time, in [`verify`]), and
//! the "test connection" report.
//!
//! # Caching
//!
//! ID token verification never fetches when keys are cached. Entries are
//! keyed by the integration's id *and version*, so an edited integration
//! misses the cache and is discovered afresh: no hook on the admin API is
//! needed. Cached documents are refreshed in the background after
//! [`REFRESH_AFTER`]; an unknown `kid` fetches the key set again once (at
//! most once per [`MIN_REFETCH_INTERVAL`] per integration, so a stream of
//! forged kids cannot make us hammer the IdP) and retries, so key rotation
//! at the IdP never needs a restart. A failed discovery is remembered for
//! [`RETRY_FAILED_AFTER`], so a dead IdP is not asked on every request.
//!
//! # The `openidconnect` crate and our own verifier
//!
//! `openidconnect` provides the discovery metadata types, the authorize URL,
//! the token request (`client_secret_basic`, PKCE) and UserInfo, all sent
//! through [`http::IdpHttp`], the guarded client. ID tokens come back from
//! the token endpoint as raw strings (`rp::RawIdToken`) and are verified by
//! [`verify`] with `jsonwebtoken`: the crate's verifier folds distinct
//! failures into few errors and parses claims before checking them, which
//! would lose the machine codes our API promises (a token without `sub`
//! must answer `claim_missing`, not "unparseable response").
//!
//! # Secrets
//!
//! Codes, tokens, verifiers and client secrets stay in `secrecy` types or
//! `openidconnect`'s secret newtypes, every function that touches one is
//! instrumented with all arguments skipped, and no error message is built
//! from them (see [`error`]).

mod diagnose;
mod discovery;
mod error;
mod http;
mod rp;
mod verify;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::CoreResponseType;
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

pub use self::diagnose::{Diagnosis, DiagnosisStep, Problem};
pub use self::error::OidcError;

use self::discovery::{Discovered, KeySet};
use self::http::IdpHttp;
use self::rp::{complete_from_userinfo, rp_client, token_error};
use self::verify::{Expectations, Refusal};
use super::crypto::{self, Sealer};
use crate::engine::{Engine, Space, StashMode};
use crate::store::records::OidcIntegration;

/// How long a discovery document and key set are used before they are
/// fetched again (in the background, while the cached ones keep serving).
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// The least time between two key-set fetches caused by unknown kids.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a failed discovery is answered from memory.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(10);
/// Longest a used nonce is remembered, whatever the token's `exp` says.
const MAX_NONCE_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who an ID token proved the user to be. Users are keyed by
/// (`issuer`, `subject`), never by subject alone or by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
}

impl VerifiedIdentity {
    /// Whether UserInfo could add something: the email, or any name.
    fn is_incomplete(&self) -> bool {
        self.email.is_none()
            || (self.name.is_none() && self.given_name.is_none() && self.family_name.is_none())
    }
}

/// Verifies an untrusted ID token against the key set `jwks` (a JWKS
/// document, also untrusted) for `issuer` and `client_id`, exactly as a
/// presented token is verified, with the default algorithms and HS256 keyed
/// by `hmac_secret`: how the fuzz harness (tests/fuzz) drives hostile
/// tokens and key sets through the verifier without an IdP. Answers the
/// subject, or the refusal's code.
#[doc(hidden)]
pub fn verify_untrusted(
    jwks: &[u8],
    issuer: &str,
    client_id: &str,
    hmac_secret: &SecretString,
    token: &str,
    nonce: Option<&str>,
) -> Result<String, &'static str> {
    let keys = discovery::parse_keys(jwks).map_err(|_| "jwks_invalid")?;
    let mut allowed = crate::store::types::Algorithm::default_allowed();
    allowed.push(crate::store::types::Algorithm::HS256);
    let expect = Expectations {
        issuer,
        client_id,
        allowed: &allowed,
        hmac_secret: Some(hmac_secret),
        nonce,
        now: Utc::now(),
    };
    verify::verify(token, &keys, &expect)
        .map(|identity| identity.subject)
        .map_err(|refusal| refusal.into_error().code())
}

/// A fresh PKCE pair (RFC 7636): a verifier of 32 random bytes (43
/// characters) and its S256 challenge.
pub fn pkce_pair() -> (SecretString, String) {
    let bytes: [u8; 32] = rand::random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = pkce_challenge(&verifier);
    (SecretString::from(verifier), challenge)
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A random `state` or `nonce`: 32 bytes, base64url. Unguessable, so it
/// binds a callback to the login that started it.
pub fn random_state() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The relying party for every OIDC integration of this node. Cheap to
/// clone; held in `AppState` as `oidc`.
#[derive(Clone)]
pub struct OidcClients {
    inner: Arc<Inner>,
}

struct Inner {
    /// Records used nonces (ephemeral `UsedNonce` values).
    engine: Engine,
    http: IdpHttp,
    settings: Settings,
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
}

#[derive(Clone)]
struct Settings {
    allow_insecure: bool,
    /// Opens an integration's sealed client secret when a caller has not
    /// opened it already (HMAC-signed ID tokens, code redemption).
    sealer: Option<Sealer>,
    refresh_after: Duration,
}

impl std::fmt::Debug for OidcClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClients")
            .field("allow_insecure", &self.inner.settings.allow_insecure)
            .field("cached", &lock(&self.inner.slots).len())
            .finish_non_exhaustive()
    }
}

/// The cache of one version of one integration.
struct Slot {
    version: u64,
    issuer: String,
    state: Mutex<SlotState>,
    /// One fetch at a time per integration: concurrent logins after a
    /// restart wait for one discovery instead of each sending their own.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    provider: Option<Arc<Provider>>,
    refresh_at: Option<Instant>,
    refreshing: bool,
    failure: Option<(Instant, OidcError)>,
    forced_refetch_at: Option<Instant>,
}

/// An IdP as last fetched.
struct Provider {
    discovered: Arc<Discovered>,
    keys: Arc<KeySet>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic (plain assignments),
    // so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl OidcClients {
    /// `allow_insecure` (SWITCHBOARD_OIDC_ALLOW_INSECURE) lets `http://` and
    /// loopback or private IdPs through, for local testing only.
    pub fn new(engine: Engine, allow_insecure: bool) -> Self {
        Self::build(
            engine,
            Settings {
                allow_insecure,
                sealer: None,
                refresh_after: REFRESH_AFTER,
            },
        )
    }

    fn build(engine: Engine, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                http: IdpHttp::new(settings.allow_insecure),
                settings,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same relying party with other settings and an empty cache.
    fn reconfigure(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings.clone();
        change(&mut settings);
        Self::build(self.inner.engine.clone(), settings)
    }

    /// Lets this relying party open integrations' sealed client secrets
    /// itself, so callers need not (HMAC-signed ID tokens presented
    /// directly, and [`OidcClients::exchange_code`] without a secret).
    pub fn with_sealer(self, sealer: Sealer) -> Self {
        self.reconfigure(|s| s.sealer = Some(sealer))
    }

    /// How long cached discovery documents and key sets serve before a
    /// background refresh ([`REFRESH_AFTER`] unless changed; tests shorten
    /// it rather than wait).
    pub fn with_refresh_after(self, every: Duration) -> Self {
        self.reconfigure(|s| s.refresh_after = every)
    }

    /// Drops what is cached for an integration. Rarely needed: an edited
    /// integration has a new version and misses the cache anyway.
    pub fn forget(&self, integration_id: Uuid) {
        lock(&self.inner.slots).remove(&integration_id);
    }

    /// Redeems an authorization code at the integration's token endpoint
    /// (`client_secret_basic`, with the PKCE verifier when given), verifies
    /// the ID token, and completes the identity from UserInfo when the ID
    /// token lacks the email or every name (UserInfo's `sub` must be the ID
    /// token's). Without `client_secret`, the integration's stored secret is
    /// used when this node can open it (see [`OidcClients::with_sealer`]).
    #[tracing::instrument(name = "oidc_exchange_code", skip_all, fields(integration = %integration.meta.id))]
    pub async fn exchange_code(
        &self,
        integration: &OidcIntegration,
        client_secret: Option<&SecretString>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        ensure_active(integration)?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| OidcError::InvalidRequest("redirectUri is not an absolute URL"))?;
        let (slot, provider) = self.provider(integration).await?;
        let secret = self.secret_for(integration, client_secret);
        let client = rp_client(integration, &provider, secret.as_ref());
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| {
                OidcError::DiscoveryInvalid(
                    "the discovery document names no token_endpoint".to_owned(),
                )
            })?
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = code_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
        }
        let response = request
            .request_async(&self.inner.http)
            .await
            .map_err(token_error)?;
        let id_token = response.extra_fields().id_token.as_ref().ok_or_else(|| {
            OidcError::IdpError(
                "the token answer has no id_token (is the openid scope granted?)".to_owned(),
            )
        })?;
        let mut identity = self
            .verify_with(
                integration,
                &slot,
                &provider,
                id_token.0.expose_secret(),
                secret.as_ref(),
                expected_nonce,
            )
            .await?;
        if identity.is_incomplete() {
            complete_from_userinfo(
                &client,
                &self.inner.http,
                response.access_token().clone(),
                &mut identity,
            )
            .await?;
        }
        Ok(identity)
    }

    /// Verifies an ID token presented directly by an app that signed the
    /// user in itself; its audience must be the integration's client id.
    #[tracing::instrument(name = "oidc_verify_id_token", skip_all, fields(integration = %integration.meta.id))]
    pub async fn verify_id_token(
        &self,
        integration: &OidcIntegration,
        id_token: &str,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        ensure_active(integration)?;
        let (slot, provider) = self.provider(integration).await?;
        let secret = if integration.allowed_algorithms.iter().any(|a| a.is_hmac()) {
            self.secret_for(integration, None)
        } else {
            None
        };
        self.verify_with(
            integration,
            &slot,
            &provider,
            id_token,
            secret.as_ref(),
            expected_nonce,
        )
        .await
    }

    /// Verifies an ID token presented by a caller (not one switchboard
    /// redeemed a code for) and accepts it once: the token itself is
    /// recorded as used until it expires, so presenting it again, with its
    /// nonce or without one, is a replay. The nonce, when sent, is consumed
    /// as well.
    #[tracing::instrument(name = "oidc_redeem_id_token", skip_all, fields(integration = %integration.meta.id))]
    pub async fn redeem_id_token(
        &self,
        integration: &OidcIntegration,
        id_token: &str,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let identity = self
            .verify_id_token(integration, id_token, expected_nonce)
            .await?;
        let id = crypto::digest(&format!("token\n{}\n{}", identity.issuer, id_token));
        if self.record_used(&id, &identity).await? {
            Ok(identity)
        } else {
            Err(OidcError::TokenReplayed)
        }
    }

    /// The authorize URL of a login switchboard runs: `response_type=code`,
    /// the integration's scopes and extra parameters, `state`, `nonce` and
    /// the S256 `code_challenge`.
    #[tracing::instrument(name = "oidc_authorize_url", skip_all, fields(integration = %integration.meta.id))]
    pub async fn authorize_url(
        &self,
        integration: &OidcIntegration,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        pkce_challenge: &str,
    ) -> Result<Url, OidcError> {
        ensure_active(integration)?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| OidcError::InvalidRequest("redirectUri is not an absolute URL"))?;
        let well_formed = pkce_challenge.len() == 43
            && pkce_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(OidcError::InvalidRequest(
                "the PKCE challenge is not an S256 challenge (43 base64url characters)",
            ));
        }
        // The crate only builds challenges from verifiers; this one was
        // built by the caller, who keeps the verifier.
        let challenge: PkceCodeChallenge = serde_json::from_value(serde_json::json!({
            "code_challenge": pkce_challenge,
            "code_challenge_method": "S256",
        }))
        .map_err(|_| OidcError::InvalidRequest("the PKCE challenge is not usable"))?;
        let (_, provider) = self.provider(integration).await?;
        let client = rp_client(integration, &provider, None);
        let state = state.to_owned();
        let nonce = nonce.to_owned();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect));
        // `openid` is always added by the crate.
        for scope in integration.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &integration.authorize_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _, _) = request.url();
        Ok(url)
    }

    /// The IdP's authorization endpoint: public and cacheable, for
    /// `config.json`.
    pub async fn authorization_endpoint(
        &self,
        integration: &OidcIntegration,
    ) -> Result<Url, OidcError> {
        let (_, provider) = self.provider(integration).await?;
        Ok(provider.discovered.authorization_endpoint.clone())
    }

    /// Tests an integration against its IdP as it is now: discovery, the
    /// issuer, the key set, the algorithms, and whether the token endpoint
    /// accepts the client id and stored secret. Never uses or fills the
    /// cache.
    pub async fn diagnose(&self, integration: &OidcIntegration) -> Diagnosis {
        let secret = self.secret_for(integration, None);
        diagnose::run(&self.inner.http, integration, secret.as_ref()).await
    }

    /// The cache slot of this version of the integration, new when the
    /// integration changed.
    fn slot(&self, integration: &OidcIntegration) -> Arc<Slot> {
        let mut slots = lock(&self.inner.slots);
        if let Some(slot) = slots.get(&integration.meta.id)
            && slot.version == integration.meta.version
            && slot.issuer == integration.issuer
        {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            version: integration.meta.version,
            issuer: integration.issuer.clone(),
            state: Mutex::new(SlotState::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        slots.insert(integration.meta.id, slot.clone());
        slot
    }

    /// The IdP's discovery document and keys: cached, or fetched now.
    async fn provider(
        &self,
        integration: &OidcIntegration,
    ) -> Result<(Arc<Slot>, Arc<Provider>), OidcError> {
        let slot = self.slot(integration);
        if let Some(provider) = self.cached(&slot)? {
            return Ok((slot, provider));
        }
        // In a task of its own, so a request that gives up (a client that
        // disconnects, a caller's timeout) does not cancel a fetch other
        // requests are waiting for.
        let (http, refresh_after) = self.fetcher();
        let task_slot = slot.clone();
        let provider = tokio::spawn(async move { load(&http, refresh_after, &task_slot).await })
            .await
            .map_err(|_| {
                OidcError::IdpUnreachable("the IdP lookup was interrupted".to_owned())
            })??;
        Ok((slot, provider))
    }

    /// What the tasks that fetch from IdPs need, and no more: a task that
    /// outlives its request (or the server) must not keep the engine open.
    fn fetcher(&self) -> (IdpHttp, Duration) {
        (self.inner.http.clone(), self.inner.settings.refresh_after)
    }

    /// What the slot holds, starting a background refresh when it is old,
    /// or the remembered failure when discovery failed moments ago.
    fn cached(&self, slot: &Arc<Slot>) -> Result<Option<Arc<Provider>>, OidcError> {
        let mut state = lock(&slot.state);
        if let Some(provider) = state.provider.clone() {
            let due = state.refresh_at.is_none_or(|at| Instant::now() >= at);
            if due && !state.refreshing {
                state.refreshing = true;
                let (http, refresh_after) = self.fetcher();
                tokio::spawn(refresh(http, refresh_after, slot.clone()));
            }
            return Ok(Some(provider));
        }
        if let Some((at, error)) = &state.failure
            && at.elapsed() < RETRY_FAILED_AFTER
        {
            return Err(error.clone());
        }
        Ok(None)
    }

    /// Verifies with the cached keys; on an unknown kid fetches the key set
    /// once and retries; then records the nonce as used.
    async fn verify_with(
        &self,
        integration: &OidcIntegration,
        slot: &Arc<Slot>,
        provider: &Arc<Provider>,
        token: &str,
        hmac_secret: Option<&SecretString>,
        expected_nonce: Option<&str>,
    ) -> Result<VerifiedIdentity, OidcError> {
        let expect = Expectations {
            issuer: &integration.issuer,
            client_id: &integration.client_id,
            allowed: &integration.allowed_algorithms,
            hmac_secret,
            nonce: expected_nonce,
            now: Utc::now(),
        };
        let identity = match verify::verify(token, &provider.keys, &expect) {
            Ok(identity) => identity,
            Err(Refusal::UnknownKid) => {
                let Some(fresh) = self.refetch_keys(slot, provider).await else {
                    return Err(OidcError::UnknownKid);
                };
                verify::verify(token, &fresh.keys, &expect).map_err(Refusal::into_error)?
            }
            Err(Refusal::Refused(error)) => return Err(error),
        };
        if let Some(nonce) = expected_nonce {
            self.consume_nonce(&identity, nonce).await?;
        }
        Ok(identity)
    }

    /// Fetches the key set again after an unknown kid, unless another
    /// request just did (then its keys are used) or the last such fetch was
    /// less than [`MIN_REFETCH_INTERVAL`] ago (then `None`).
    async fn refetch_keys(&self, slot: &Arc<Slot>, seen: &Arc<Provider>) -> Option<Arc<Provider>> {
        let (http, _) = self.fetcher();
        let slot = slot.clone();
        let seen_keys = seen.keys.clone();
        let task = tokio::spawn(async move {
            let _single = slot.fetching.lock().await;
            let current = {
                let mut state = lock(&slot.state);
                let current = state.provider.clone()?;
                if !Arc::ptr_eq(&current.keys, &seen_keys) {
                    return Some(current);
                }
                if state
                    .forced_refetch_at
                    .is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL)
                {
                    return None;
                }
                state.forced_refetch_at = Some(Instant::now());
                current
            };
            match discovery::fetch_keys(&http, &current.discovered.jwks_uri).await {
                Ok(keys) => {
                    let fresh = Arc::new(Provider {
                        discovered: current.discovered.clone(),
                        keys: Arc::new(keys),
                    });
                    lock(&slot.state).provider = Some(fresh.clone());
                    tracing::info!(issuer = %slot.issuer, "fetched the IdP's key set again for a key id it did not have");
                    Some(fresh)
                }
                Err(error) => {
                    tracing::warn!(issuer = %slot.issuer, code = error.code(), %error, "fetching the IdP's key set again failed");
                    None
                }
            }
        });
        task.await.ok().flatten()
    }

    /// Accepts a nonce once: the first token carrying it for this issuer
    /// records it until the token expires; any later one is a replay.
    async fn consume_nonce(
        &self,
        identity: &VerifiedIdentity,
        nonce: &str,
    ) -> Result<(), OidcError> {
        let id = crypto::digest(&format!("{}\n{}", identity.issuer, nonce));
        if self.record_used(&id, identity).await? {
            Ok(())
        } else {
            Err(OidcError::NonceReplayed)
        }
    }

    /// Records `id` (a digest) as used for as long as `identity`'s token
    /// could still be accepted: until it expires, plus the clock leeway.
    /// Nothing outlives the token, so the records an anonymous caller can
    /// create stay bounded by the tokens the IdP issued. Answers whether
    /// this call was the first.
    async fn record_used(&self, id: &str, identity: &VerifiedIdentity) -> Result<bool, OidcError> {
        let remaining = (identity.expires_at - Utc::now()).num_seconds() + verify::LEEWAY_SECONDS;
        let ttl =
            Duration::from_secs(u64::try_from(remaining).unwrap_or(0).max(1)).min(MAX_NONCE_MEMORY);
        self.inner
            .engine
            .stash(Space::UsedNonce, id, b"1", ttl, StashMode::IfAbsent)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "recording a used nonce or ID token failed");
                OidcError::Unavailable
            })
    }

    /// The client secret to use: the caller's, else the stored one if this
    /// node can open it.
    fn secret_for(
        &self,
        integration: &OidcIntegration,
        given: Option<&SecretString>,
    ) -> Option<SecretString> {
        if let Some(secret) = given {
            return Some(secret.clone());
        }
        let sealed = integration.sealed_client_secret.as_ref()?;
        let sealer = self.inner.settings.sealer.as_ref()?;
        match sealer.open(
            sealed,
            &OidcIntegration::secret_context(integration.meta.id),
        ) {
            Ok(secret) => Some(secret),
            Err(error) => {
                tracing::warn!(integration = %integration.meta.id, %error, "the integration's client secret does not open");
                None
            }
        }
    }
}

fn ensure_active(integration: &OidcIntegration) -> Result<(), OidcError> {
    if integration.active {
        Ok(())
    } else {
        Err(OidcError::IntegrationInactive)
    }
}

/// Fills the slot if it is still empty; one fetch at a time.
async fn load(
    http: &IdpHttp,
    refresh_after: Duration,
    slot: &Slot,
) -> Result<Arc<Provider>, OidcError> {
    let _single = slot.fetching.lock().await;
    {
        let state = lock(&slot.state);
        if let Some(provider) = &state.provider {
            return Ok(provider.clone());
        }
        if let Some((at, error)) = &state.failure
            && at.elapsed() < RETRY_FAILED_AFTER
        {
            return Err(error.clone());
        }
    }
    let result = fetch_provider(http, &slot.issuer).await;
    let mut state = lock(&slot.state);
    match result {
        Ok(provider) => {
            let provider = Arc::new(provider);
            state.provider = Some(provider.clone());
            state.refresh_at = Some(Instant::now() + refresh_after);
            state.failure = None;
            Ok(provider)
        }
        Err(error) => {
            state.failure = Some((Instant::now(), error.clone()));
            Err(error)
        }
    }
}

/// Fetches discovery and keys again; the cached ones stay on failure.
async fn refresh(http: IdpHttp, refresh_after: Duration, slot: Arc<Slot>) {
    let _single = slot.fetching.lock().await;
    let result = fetch_provider(&http, &slot.issuer).await;
    let mut state = lock(&slot.state);
    state.refreshing = false;
    match result {
        Ok(provider) => {
            state.provider = Some(Arc::new(provider));
            state.refresh_at = Some(Instant::now() + refresh_after);
        }
        Err(error) => {
            state.refresh_at = Some(Instant::now() + RETRY_FAILED_AFTER);
            tracing::warn!(issuer = %slot.issuer, code = error.code(), %error, "refreshing the IdP's discovery document and keys failed; the cached ones stay in use");
        }
    }
}

/// Discovery (with the exact issuer check) and the key set.
async fn fetch_provider(http: &IdpHttp, issuer: &str) -> Result<Provider, OidcError> {
    let discovered = discovery::fetch_discovery(http, issuer).await?;
    discovery::check_issuer(issuer, &discovered.issuer)?;
    // The browser goes to the authorization endpoint; it must not be sent
    // there over plain http either.
    if discovered.authorization_endpoint.scheme() != "https" && !http.allows_insecure() {
        return Err(OidcError::IdpInsecure(format!(
            "the IdP's authorization endpoint {} does not use https",
            http::display_url(&discovered.authorization_endpoint)
        )));
    }
    let keys = discovery::fetch_keys(http, &discovered.jwks_uri).await?;
    Ok(Provider {
        discovered: Arc::new(discovered),
        keys: Arc::new(keys),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_pairs_match_rfc7636() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (verifier, challenge) = pkce_pair();
        assert_eq!(verifier.expose_secret().len(), 43);
        assert_eq!(pkce_challenge(verifier.expose_secret()), challenge);
        assert_ne!(random_state(), random_state());
        assert_eq!(random_state().len(), 43);
    }

    /// The futures other engineers await in handlers must be `Send`.
    #[expect(
        dead_code,
        reason = "compiled to prove the futures are Send, never run"
    )]
    fn futures_are_send(clients: OidcClients, integration: OidcIntegration) {
        fn send<T: Send>(_: T) {}
        let secret = SecretString::from("s");
        send(clients.exchange_code(
            &integration,
            Some(&secret),
            "c",
            "https://r",
            Some("v"),
            Some("n"),
        ));
        send(clients.verify_id_token(&integration, "t", None));
        send(clients.authorize_url(&integration, "https://r", "s", "n", "c"));
        send(clients.authorization_endpoint(&integration));
        send(clients.diagnose(&integration));
    }
}
