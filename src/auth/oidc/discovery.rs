//! Discovery documents and key sets: fetched, checked, parsed once, cached
//! by the caller.

use jsonwebtoken::DecodingKey;
use openidconnect::core::CoreProviderMetadata;
use serde_json::Value;
use url::Url;

use super::error::OidcError;
use super::http::{IdpHttp, display_url};
use crate::store::types::Algorithm;

/// What an IdP's discovery document told us, with the endpoints already
/// parsed.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    /// The document's `issuer`, exactly as written.
    pub issuer: String,
    pub metadata: CoreProviderMetadata,
    pub authorization_endpoint: Url,
    pub token_endpoint: Option<Url>,
    pub jwks_uri: Url,
    /// `id_token_signing_alg_values_supported`, as written (unknown values
    /// included, so a report can show them).
    pub algorithms_offered: Vec<String>,
}

/// `{issuer}/.well-known/openid-configuration`. A trailing slash on the
/// issuer is not doubled (OIDC Discovery 4), and the issuer itself is kept
/// exactly as configured for the `iss` comparison.
pub(super) fn discovery_url(issuer: &str) -> Result<Url, OidcError> {
    let text = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    Url::parse(&text)
        .map_err(|_| OidcError::DiscoveryInvalid("the issuer is not an absolute URL".to_owned()))
}

/// Fetches and parses the discovery document. The issuer is not compared
/// here (see [`check_issuer`]), so a report can show both steps.
pub(super) async fn fetch_discovery(http: &IdpHttp, issuer: &str) -> Result<Discovered, OidcError> {
    let url = discovery_url(issuer)?;
    let body = http.get_json(&url).await?;
    parse_discovery(&body, &display_url(&url))
}

fn parse_discovery(body: &[u8], shown_url: &str) -> Result<Discovered, OidcError> {
    let invalid = |what: String| OidcError::DiscoveryInvalid(format!("{shown_url}: {what}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("not a JSON document".to_owned()))?;
    let issuer = value
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("it has no issuer".to_owned()))?
        .to_owned();
    let algorithms_offered = value
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
        .map(|algs| {
            algs.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let metadata: CoreProviderMetadata =
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    let token_endpoint = metadata.token_endpoint().map(|u| u.url().clone());
    Ok(Discovered {
        issuer,
        authorization_endpoint: metadata.authorization_endpoint().url().clone(),
        token_endpoint,
        jwks_uri: metadata.jwks_uri().url().clone(),
        algorithms_offered,
        metadata,
    })
}

/// The document's issuer must equal the configured one exactly (OIDC
/// Discovery 4.3): otherwise tokens from the document's issuer could be
/// accepted for an integration an admin set up for another. The message
/// says what to change when the cause is a common one.
pub(super) fn check_issuer(configured: &str, discovered: &str) -> Result<(), OidcError> {
    if configured == discovered {
        return Ok(());
    }
    let message = if is_entra_multi_tenant(configured) || discovered.contains("{tenantid}") {
        format!(
            "the issuer {configured} is a multi-tenant Entra ID endpoint (common, organizations or consumers), which has no fixed issuer; configure your tenant's issuer, https://login.microsoftonline.com/<tenant-id>/v2.0"
        )
    } else if configured.trim_end_matches('/') == discovered.trim_end_matches('/') {
        format!(
            "the discovery document's issuer is {discovered}, but the integration says {configured}: they differ only by a trailing slash, which matters; set the issuer to exactly {discovered}"
        )
    } else {
        format!(
            "the discovery document's issuer is {discovered}, not the configured {configured}; set the issuer the IdP states"
        )
    };
    Err(OidcError::IssuerMismatch(message))
}

fn is_entra_multi_tenant(issuer: &str) -> bool {
    let Ok(url) = Url::parse(issuer) else {
        return false;
    };
    url.path_segments()
        .and_then(|mut segments| segments.next())
        .is_some_and(|first| {
            ["common", "organizations", "consumers"]
                .iter()
                .any(|t| first.eq_ignore_ascii_case(t))
        })
}

/// The kind of key a JWS algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// The key kind an asymmetric algorithm verifies with; `None` for HMAC,
    /// whose key is never taken from a key set.
    pub(super) fn for_algorithm(alg: Algorithm) -> Option<KeyKind> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(KeyKind::Rsa),
            Algorithm::ES256 => Some(KeyKind::P256),
            Algorithm::ES384 => Some(KeyKind::P384),
            Algorithm::EdDSA => Some(KeyKind::Ed25519),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => None,
        }
    }
}

/// One public key an IdP signs with.
#[derive(Clone)]
pub(super) struct SigningKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The key's `alg`, when the key set pins one.
    pub alg: Option<String>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Whether this key may verify a token signed with `alg`.
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        KeyKind::for_algorithm(alg) == Some(self.kind)
            && self.alg.as_deref().is_none_or(|a| a == algorithm_name(alg))
    }
}

/// The usable signing keys of a key set. Keys for encryption, symmetric
/// keys, keys of unknown types and malformed keys are left out (counted in
/// `skipped`), so one odd key never breaks a whole key set.
#[derive(Debug, Clone, Default)]
pub(super) struct KeySet {
    pub keys: Vec<SigningKey>,
    pub skipped: usize,
}

impl KeySet {
    pub(super) fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Which of `algs` some key of this set can verify.
    pub(super) fn supports(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.fits(alg))
    }
}

/// Fetches and parses the IdP's key set.
pub(super) async fn fetch_keys(http: &IdpHttp, jwks_uri: &Url) -> Result<KeySet, OidcError> {
    let body = http.get_json(jwks_uri).await?;
    parse_keys(&body)
        .map_err(|what| OidcError::DiscoveryInvalid(format!("{}: {what}", display_url(jwks_uri))))
}

pub(super) fn parse_keys(body: &[u8]) -> Result<KeySet, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "the key set is not JSON".to_owned())?;
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "the key set has no keys array".to_owned())?;
    let mut set = KeySet::default();
    for jwk in keys {
        match parse_key(jwk) {
            Some(key) => set.keys.push(key),
            None => set.skipped += 1,
        }
    }
    Ok(set)
}

/// Smallest RSA modulus accepted: 2048 bits (NIST SP 800-131A).
const MIN_RSA_MODULUS_BYTES: usize = 256;

fn parse_key(jwk: &Value) -> Option<SigningKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op.as_str() == Some("verify"))
    {
        return None;
    }
    let kid = text("kid").map(str::to_owned);
    let alg = text("alg").map(str::to_owned);
    let (kind, key) = match (text("kty")?, text("crv")) {
        ("RSA", _) => {
            let n = text("n")?;
            let modulus = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                n.trim_end_matches('='),
            )
            .ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(n, text("e")?).ok()?,
            )
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => (
            if curve == "P-256" {
                KeyKind::P256
            } else {
                KeyKind::P384
            },
            DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
        ),
        ("OKP", Some("Ed25519")) => (
            KeyKind::Ed25519,
            DecodingKey::from_ed_components(text("x")?).ok()?,
        ),
        // "oct" (a shared secret published in a key set is no secret) and
        // anything else.
        _ => return None,
    };
    Some(SigningKey {
        kid,
        kind,
        alg,
        key,
    })
}

/// The JOSE name of an algorithm.
pub(super) fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
    }
}

/// The algorithm a JOSE name stands for, if switchboard knows it.
pub(super) fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_appends_once() {
        assert_eq!(
            discovery_url("https://idp.example.com/").unwrap().as_str(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example.com").unwrap().as_str(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example.com/realms/shop")
                .unwrap()
                .as_str(),
            "https://idp.example.com/realms/shop/.well-known/openid-configuration"
        );
    }

    #[test]
    fn issuer_mismatches_explain_themselves() {
        assert!(check_issuer("https://a.example/", "https://a.example/").is_ok());
        let slash = check_issuer("https://a.example/", "https://a.example").unwrap_err();
        assert_eq!(slash.code(), "issuer_mismatch");
        assert!(slash.to_string().contains("trailing slash"));
        let entra = check_issuer(
            "https://login.microsoftonline.com/common/v2.0",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        )
        .unwrap_err();
        assert!(entra.to_string().contains("tenant"));
        let other = check_issuer("https://a.example", "https://evil.example").unwrap_err();
        assert!(!other.to_string().contains("trailing slash"));
    }

    #[test]
    fn algorithm_names_round_trip() {
        for name in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
            "HS256", "HS384", "HS512",
        ] {
            assert_eq!(algorithm_name(algorithm_from_name(name).unwrap()), name);
        }
        assert!(algorithm_from_name("none").is_none());
        assert!(algorithm_from_name("rs256").is_none());
    }

    #[test]
    fn odd_keys_are_skipped_not_fatal() {
        let set = parse_keys(
            br#"{"keys": [
                {"kty": "oct", "k": "c2VjcmV0"},
                {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
                {"kty": "XYZ"},
                "nonsense"
            ]}"#,
        )
        .unwrap();
        assert!(set.keys.is_empty());
        assert_eq!(set.skipped, 5);
        assert!(parse_keys(b"[]").is_err());
    }
}
