//! The `openidconnect` client as switchboard uses it: a token response that
//! keeps the ID token raw for [`super::verify`], the client built from
//! discovery, token-endpoint refusals in our codes, and UserInfo completion.

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, ClaimsVerificationError, Client, ClientId, ClientSecret,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, ExtraTokenFields, IdToken, RequestTokenError,
    StandardErrorResponse, StandardTokenResponse, SubjectIdentifier, UserInfoError,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::OidcError;
use super::http::IdpHttp;
use super::{Provider, VerifiedIdentity};
use crate::store::records::OidcIntegration;

/// `openidconnect`'s `Client` with a token response that keeps the ID token
/// raw (see the module docs), and the endpoints discovery provides.
pub(super) type RpClient = Client<
    NoExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    RawTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// No claims beyond the standard ones. Local, so that [`RawTokenResponse`]
/// can implement `openidconnect::TokenResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NoExtraClaims {}
impl AdditionalClaims for NoExtraClaims {}

pub(super) type RawTokenResponse = StandardTokenResponse<RawIdToken, CoreTokenType>;

/// The `id_token` of a token response, unparsed: [`verify`] decides what a
/// bad token is.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RawIdToken {
    #[serde(default)]
    pub(super) id_token: Option<RawJwt>,
}
impl ExtraTokenFields for RawIdToken {}

/// A JWT as received. Never shown or serialized.
pub(super) struct RawJwt(pub(super) SecretString);

impl std::fmt::Debug for RawJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawJwt([redacted])")
    }
}

impl<'de> Deserialize<'de> for RawJwt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| RawJwt(SecretString::from(s)))
    }
}

impl Serialize for RawJwt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

impl
    openidconnect::TokenResponse<
        NoExtraClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for RawTokenResponse
{
    /// Always `None`: the raw token is in `extra_fields().id_token`.
    fn id_token(
        &self,
    ) -> Option<
        &IdToken<
            NoExtraClaims,
            CoreGenderClaim,
            CoreJweContentEncryptionAlgorithm,
            CoreJwsSigningAlgorithm,
        >,
    > {
        None
    }
}

pub(super) fn rp_client(
    integration: &OidcIntegration,
    provider: &Provider,
    secret: Option<&SecretString>,
) -> RpClient {
    RpClient::from_provider_metadata(
        provider.discovered.metadata.clone(),
        ClientId::new(integration.client_id.clone()),
        secret.map(|s| ClientSecret::new(s.expose_secret().to_owned())),
    )
}

/// Maps the token endpoint's refusal to our codes. The IdP's
/// `error_description` is not repeated: it is the IdP's text, not ours.
pub(super) fn token_error(
    error: RequestTokenError<OidcError, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            CoreErrorResponseType::InvalidGrant => OidcError::InvalidGrant("invalid_grant".to_owned()),
            CoreErrorResponseType::InvalidClient => OidcError::IdpError(
                "the token endpoint refused the client (invalid_client): check the client id and secret".to_owned(),
            ),
            other => OidcError::IdpError(format!(
                "the token endpoint answered the OAuth error {}",
                printable(other.as_ref())
            )),
        },
        RequestTokenError::Request(error) => error,
        RequestTokenError::Parse(_, _) => {
            OidcError::IdpError("the token endpoint's answer is not a token response".to_owned())
        }
        RequestTokenError::Other(_) => {
            OidcError::IdpError("the token endpoint answered unexpectedly".to_owned())
        }
    }
}

/// An IdP-supplied code, cut to something safe to repeat.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// Adds what UserInfo knows and the ID token did not say. A UserInfo answer
/// about another subject is refused (token substitution); any other
/// UserInfo failure leaves the identity as the ID token stated it.
pub(super) async fn complete_from_userinfo(
    client: &RpClient,
    http: &IdpHttp,
    access_token: AccessToken,
    identity: &mut VerifiedIdentity,
) -> Result<(), OidcError> {
    let Ok(request) = client.user_info(
        access_token,
        Some(SubjectIdentifier::new(identity.subject.clone())),
    ) else {
        // The IdP has no UserInfo endpoint.
        return Ok(());
    };
    let claims = match request
        .request_async::<NoExtraClaims, _, CoreGenderClaim>(http)
        .await
    {
        Ok(claims) => claims,
        Err(UserInfoError::ClaimsVerification(ClaimsVerificationError::InvalidSubject(_))) => {
            return Err(OidcError::UserinfoSubjectMismatch);
        }
        Err(error) => {
            let kind = match &error {
                UserInfoError::ClaimsVerification(_) => "its claims did not verify",
                UserInfoError::Parse(_) => "its answer did not parse",
                UserInfoError::Request(e) => e.code(),
                UserInfoError::Response(_, _, _) => "it answered an error status",
                _ => "it failed",
            };
            tracing::warn!(issuer = %identity.issuer, reason = kind, "UserInfo could not complete the identity; using the ID token's claims");
            return Ok(());
        }
    };
    if identity.email.is_none() {
        identity.email = claims.email().map(|e| e.as_str().to_owned());
        identity.email_verified = identity.email_verified.or(claims.email_verified());
    }
    if identity.name.is_none() {
        identity.name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
    }
    if identity.given_name.is_none() {
        identity.given_name = claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
    }
    if identity.family_name.is_none() {
        identity.family_name = claims
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tokens_never_show() {
        let parsed: RawIdToken = serde_json::from_str(r#"{"id_token": "eyJ.secret.sig"}"#).unwrap();
        assert!(!format!("{parsed:?}").contains("secret"));
        assert!(!serde_json::to_string(&parsed).unwrap().contains("secret"));
    }
}
