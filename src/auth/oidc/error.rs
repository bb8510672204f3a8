//! Why an OIDC step failed, with the machine code API answers carry.
//!
//! Messages are written for the person reading an error body or a log line:
//! they name the IdP's endpoints and addresses when that helps, and never a
//! code, token, verifier, nonce or secret. Nothing that came from inside a
//! token is echoed either: a hostile token must not write our error text.

use axum::http::StatusCode;

/// A refused login or an IdP that cannot be used. Cheap to clone, so a
/// failed discovery can be remembered for a few seconds and answered again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The IdP's token endpoint refused the code (used, expired, wrong
    /// redirect URI or PKCE verifier). Carries the IdP's OAuth error code.
    #[error("the IdP refused the authorization code ({0})")]
    InvalidGrant(String),
    /// The caller's own input is unusable (a redirect URI that is not a
    /// URL, a malformed PKCE challenge).
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("the IdP could not be reached: {0}")]
    IdpUnreachable(String),
    #[error("the IdP answered unexpectedly: {0}")]
    IdpError(String),
    /// The discovery document names another issuer than the configured one.
    #[error("{0}")]
    IssuerMismatch(String),
    /// An ID token's `iss` is not the integration's issuer.
    #[error("the ID token was not issued by the integration's issuer")]
    TokenIssuerMismatch,
    #[error("the ID token is not meant for this client: {0}")]
    AudienceMismatch(&'static str),
    #[error("the ID token's authorized party (azp) is not this client")]
    AzpMismatch,
    #[error("the ID token's signature does not verify")]
    SignatureInvalid,
    #[error("{0}")]
    AlgorithmNotAllowed(String),
    #[error("no key of the IdP has the ID token's key id, even after reloading the IdP's key set")]
    UnknownKid,
    #[error("the IdP publishes several keys and the ID token names none (no kid)")]
    KidRequired,
    #[error("the ID token has expired")]
    TokenExpired,
    #[error("the ID token is not valid yet (issued in the future)")]
    TokenNotYetValid,
    #[error("the ID token lacks the {0} claim")]
    ClaimMissing(&'static str),
    #[error("the ID token carries no nonce, and one was sent")]
    NonceMissing,
    #[error("the ID token's nonce is not the one that was sent")]
    NonceMismatch,
    #[error("the ID token's nonce was already used")]
    NonceReplayed,
    /// A presented ID token is accepted once, whether or not it came with
    /// its nonce.
    #[error("this ID token was already presented")]
    TokenReplayed,
    #[error("the ID token is malformed: {0}")]
    MalformedToken(&'static str),
    #[error("the IdP's UserInfo answer is about another subject than the ID token")]
    UserinfoSubjectMismatch,
    #[error("the OIDC integration is not active")]
    IntegrationInactive,
    #[error("{0}")]
    IdpAddressRefused(String),
    #[error("{0}")]
    IdpInsecure(String),
    #[error("the IdP's discovery document is not usable: {0}")]
    DiscoveryInvalid(String),
    /// The IdP's key set has no key switchboard can verify signatures with.
    #[error("{0}")]
    NoSigningKeys(String),
    /// Storage failed while recording a used nonce.
    #[error("storage is unavailable, try again")]
    Unavailable,
}

impl OidcError {
    /// The machine code of `{code, message}` answers.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::InvalidGrant(_) => "invalid_grant",
            OidcError::InvalidRequest(_) => "invalid_request",
            OidcError::IdpUnreachable(_) => "idp_unreachable",
            OidcError::IdpError(_) => "idp_error",
            OidcError::IssuerMismatch(_) | OidcError::TokenIssuerMismatch => "issuer_mismatch",
            OidcError::AudienceMismatch(_) => "audience_mismatch",
            OidcError::AzpMismatch => "azp_mismatch",
            OidcError::SignatureInvalid => "signature_invalid",
            OidcError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            OidcError::UnknownKid => "unknown_kid",
            OidcError::KidRequired => "kid_required",
            OidcError::TokenExpired => "token_expired",
            OidcError::TokenNotYetValid => "token_not_yet_valid",
            OidcError::ClaimMissing(_) => "claim_missing",
            OidcError::NonceMissing => "nonce_missing",
            OidcError::NonceMismatch => "nonce_mismatch",
            OidcError::NonceReplayed => "nonce_replayed",
            OidcError::TokenReplayed => "token_replayed",
            OidcError::MalformedToken(_) => "malformed_token",
            OidcError::UserinfoSubjectMismatch => "userinfo_subject_mismatch",
            OidcError::IntegrationInactive => "integration_inactive",
            OidcError::IdpAddressRefused(_) => "idp_address_refused",
            OidcError::IdpInsecure(_) => "idp_insecure",
            OidcError::DiscoveryInvalid(_) => "discovery_invalid",
            OidcError::NoSigningKeys(_) => "no_signing_keys",
            OidcError::Unavailable => "unavailable",
        }
    }

    /// Whose fault it was: 400 for a code the IdP refused, 401 for a token
    /// that does not prove who the caller is, 403 for an integration that is
    /// switched off, 502 when the IdP (or its configuration) is the problem,
    /// 503 when our own storage is.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::InvalidGrant(_) | OidcError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            OidcError::TokenIssuerMismatch
            | OidcError::AudienceMismatch(_)
            | OidcError::AzpMismatch
            | OidcError::SignatureInvalid
            | OidcError::AlgorithmNotAllowed(_)
            | OidcError::UnknownKid
            | OidcError::KidRequired
            | OidcError::TokenExpired
            | OidcError::TokenNotYetValid
            | OidcError::ClaimMissing(_)
            | OidcError::NonceMissing
            | OidcError::NonceMismatch
            | OidcError::NonceReplayed
            | OidcError::TokenReplayed
            | OidcError::MalformedToken(_)
            | OidcError::UserinfoSubjectMismatch => StatusCode::UNAUTHORIZED,
            OidcError::IntegrationInactive => StatusCode::FORBIDDEN,
            OidcError::IdpUnreachable(_)
            | OidcError::IdpError(_)
            | OidcError::IssuerMismatch(_)
            | OidcError::IdpAddressRefused(_)
            | OidcError::IdpInsecure(_)
            | OidcError::DiscoveryInvalid(_)
            | OidcError::NoSigningKeys(_) => StatusCode::BAD_GATEWAY,
            OidcError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
