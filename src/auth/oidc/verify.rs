//! ID token validation, OpenID Connect Core 1.0 section 3.1.3.7.
//!
//! A pure function of the token, the IdP's cached keys, what the integration
//! allows and the time, so every refusal is testable without a network and
//! without sleeping. Fetching keys again is the caller's decision: an
//! unknown `kid` comes back as [`Refusal::UnknownKid`].
//!
//! The order matters: the header is read only to pick the algorithm (from
//! the integration's allowed list) and the key (by `kid`, from the IdP's key
//! set, or the client secret for an HMAC algorithm an admin allowed); the
//! signature is checked before any claim is trusted. The header never
//! supplies a key: `jku`, `x5u`, `x5c` and an embedded `jwk` are ignored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::VerifiedIdentity;
use super::discovery::{KeySet, algorithm_from_name, algorithm_name};
use super::error::OidcError;
use crate::store::types::Algorithm;

/// Clock skew tolerated on `exp`, `iat` and `nbf`.
pub(super) const LEEWAY_SECONDS: i64 = 60;
/// An ID token is a few KiB; anything far larger is not one.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// OIDC Core 2: `sub` is at most 255 ASCII characters.
const MAX_SUBJECT_BYTES: usize = 255;

/// What a token must satisfy for one integration.
#[derive(Debug)]
pub(super) struct Expectations<'a> {
    /// The integration's issuer, equal to the discovered one.
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub allowed: &'a [Algorithm],
    /// Keys HMAC algorithms, when an admin allowed one. Never a key from
    /// the IdP's key set: a public key is public.
    pub hmac_secret: Option<&'a SecretString>,
    pub nonce: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Why a token was not accepted.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The token names a key the cached key set lacks (or names none and the
    /// set is empty): the caller may fetch the key set again, once.
    UnknownKid,
    Refused(OidcError),
}

impl From<OidcError> for Refusal {
    fn from(e: OidcError) -> Self {
        Refusal::Refused(e)
    }
}

impl Refusal {
    pub(super) fn into_error(self) -> OidcError {
        match self {
            Refusal::UnknownKid => OidcError::UnknownKid,
            Refusal::Refused(e) => e,
        }
    }
}

/// Verifies `token` and returns who it identifies. Does not record the
/// nonce as used; the caller does that once everything else passed.
pub(super) fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations<'_>,
) -> Result<VerifiedIdentity, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::MalformedToken("it is too large").into());
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::MalformedToken(
            "it is not a signed JWT (three dot-separated parts)",
        )
        .into());
    };
    let header = decode_object(header).ok_or(OidcError::MalformedToken(
        "its header is not a base64url JSON object",
    ))?;
    let algorithm = pick_algorithm(&header, expect.allowed)?;
    if header.contains_key("crit") {
        return Err(
            OidcError::MalformedToken("critical header extensions are not supported").into(),
        );
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(OidcError::MalformedToken("its kid is not a string").into()),
    };

    let hmac_key;
    let key: &DecodingKey = if algorithm.is_hmac() {
        let secret = expect.hmac_secret.ok_or_else(|| {
            OidcError::AlgorithmNotAllowed(
                "the ID token is HMAC-signed, which needs the integration's client secret, and none is set".to_owned(),
            )
        })?;
        hmac_key = DecodingKey::from_secret(secret.expose_secret().as_bytes());
        &hmac_key
    } else {
        // A kid is only ever compared with the kids of the cached key set:
        // whatever it contains never reaches a path, a query or a log.
        let chosen = match (kid, keys.keys.as_slice()) {
            (Some(kid), _) => keys.by_kid(kid).ok_or(Refusal::UnknownKid)?,
            (None, []) => return Err(Refusal::UnknownKid),
            (None, [only]) => only,
            (None, _) => return Err(OidcError::KidRequired.into()),
        };
        if !chosen.fits(algorithm) {
            // The key exists but is of another type than the algorithm
            // needs: a token claiming RS256 under an EC key, say.
            return Err(OidcError::SignatureInvalid.into());
        }
        &chosen.key
    };

    let mut validation = Validation::new(to_jwt(algorithm));
    // Claims are checked below with our own codes and clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
            | ErrorKind::InvalidToken => OidcError::MalformedToken("it does not decode"),
            _ => OidcError::SignatureInvalid,
        })?
        .claims;
    let Value::Object(claims) = claims else {
        return Err(OidcError::MalformedToken("its claims are not a JSON object").into());
    };
    check_claims(&claims, expect).map_err(Refusal::Refused)
}

/// The token's algorithm, if the integration allows it. `none` and anything
/// unknown are refused by name before any key is looked at.
fn pick_algorithm(
    header: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<Algorithm, OidcError> {
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(OidcError::MalformedToken("its header has no alg"));
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(OidcError::AlgorithmNotAllowed(
            "unsigned ID tokens (alg none) are never accepted".to_owned(),
        ));
    }
    let algorithm = algorithm_from_name(alg).ok_or_else(|| {
        OidcError::AlgorithmNotAllowed(
            "the ID token's algorithm is not one switchboard supports".to_owned(),
        )
    })?;
    if !allowed.contains(&algorithm) {
        let names: Vec<&str> = allowed.iter().map(|a| algorithm_name(*a)).collect();
        return Err(OidcError::AlgorithmNotAllowed(format!(
            "the ID token is signed with {}, which the integration does not allow (allowed: {})",
            algorithm_name(algorithm),
            names.join(", ")
        )));
    }
    Ok(algorithm)
}

fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<VerifiedIdentity, OidcError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == expect.issuer => {}
        Some(Value::String(_)) => return Err(OidcError::TokenIssuerMismatch),
        Some(_) => return Err(OidcError::MalformedToken("its iss is not a string")),
        None => return Err(OidcError::ClaimMissing("iss")),
    }

    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(OidcError::ClaimMissing("aud")),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
            .ok_or(OidcError::MalformedToken(
                "its aud holds something other than strings",
            ))?,
        Some(_) => {
            return Err(OidcError::MalformedToken(
                "its aud is neither a string nor a list",
            ));
        }
    };
    if audiences.is_empty() {
        return Err(OidcError::ClaimMissing("aud"));
    }
    if !audiences.contains(&expect.client_id) {
        return Err(OidcError::AudienceMismatch(
            "its audience does not include the integration's client id",
        ));
    }
    if audiences.iter().any(|aud| *aud != expect.client_id) {
        return Err(OidcError::AudienceMismatch(
            "it also names other audiences, which are refused",
        ));
    }
    match claims.get("azp") {
        None | Some(Value::Null) => {}
        Some(Value::String(azp)) if azp == expect.client_id => {}
        Some(_) => return Err(OidcError::AzpMismatch),
    }

    let now = expect.now.timestamp();
    let expires_at = time_claim(claims, "exp")?.ok_or(OidcError::ClaimMissing("exp"))?;
    if now > expires_at.timestamp().saturating_add(LEEWAY_SECONDS) {
        return Err(OidcError::TokenExpired);
    }
    let issued_at = time_claim(claims, "iat")?.ok_or(OidcError::ClaimMissing("iat"))?;
    if issued_at.timestamp() > now.saturating_add(LEEWAY_SECONDS) {
        return Err(OidcError::TokenNotYetValid);
    }
    if let Some(not_before) = time_claim(claims, "nbf")?
        && not_before.timestamp() > now.saturating_add(LEEWAY_SECONDS)
    {
        return Err(OidcError::TokenNotYetValid);
    }

    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(OidcError::ClaimMissing("sub"));
        }
        Some(_) => return Err(OidcError::MalformedToken("its sub is not a string")),
    };
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(OidcError::MalformedToken(
            "its sub is longer than 255 characters",
        ));
    }

    if let Some(expected) = expect.nonce {
        match claims.get("nonce") {
            None | Some(Value::Null) => return Err(OidcError::NonceMissing),
            Some(Value::String(nonce))
                if bool::from(nonce.as_bytes().ct_eq(expected.as_bytes())) => {}
            Some(_) => return Err(OidcError::NonceMismatch),
        }
    }

    Ok(VerifiedIdentity {
        issuer: expect.issuer.to_owned(),
        subject: subject.clone(),
        email: string_claim(claims, "email"),
        email_verified: bool_claim(claims, "email_verified"),
        given_name: string_claim(claims, "given_name"),
        family_name: string_claim(claims, "family_name"),
        name: string_claim(claims, "name"),
        expires_at,
        issued_at,
    })
}

/// A NumericDate claim (seconds since the epoch; fractions allowed and
/// dropped). `Ok(None)` when absent.
fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<DateTime<Utc>>, OidcError> {
    let malformed =
        OidcError::MalformedToken("a time claim (exp, iat or nbf) is not a valid number");
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let seconds = match n.as_i64() {
                Some(s) => s,
                None => {
                    let f = n
                        .as_f64()
                        .filter(|f| f.is_finite())
                        .ok_or(malformed.clone())?;
                    if f.abs() > 1e15 {
                        return Err(malformed);
                    }
                    f.floor() as i64
                }
            };
            DateTime::from_timestamp(seconds, 0)
                .map(Some)
                .ok_or(malformed)
        }
        Some(_) => Err(malformed),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `email_verified` is a boolean, but some IdPs send `"true"`.
fn bool_claim(claims: &Map<String, Value>, name: &str) -> Option<bool> {
    match claims.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn to_jwt(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
        Algorithm::HS256 => J::HS256,
        Algorithm::HS384 => J::HS384,
        Algorithm::HS512 => J::HS512,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "client-secret-that-is-long-enough-for-hs256";
    const MARKER: &str = "TOKEN-MARKER-7f3a";

    fn expectations<'a>(secret: &'a SecretString, allowed: &'a [Algorithm]) -> Expectations<'a> {
        Expectations {
            issuer: "https://idp.example.com",
            client_id: "client",
            allowed,
            hmac_secret: Some(secret),
            nonce: Some("n-0S6_WzA2Mj"),
            now: Utc::now(),
        }
    }

    fn claims() -> Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": "https://idp.example.com",
            "aud": "client",
            "sub": "user-1",
            "exp": now + 300,
            "iat": now,
            "nonce": "n-0S6_WzA2Mj",
            "email": "a@example.com",
        })
    }

    fn hs256(claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn hmac_tokens_verify_only_with_the_client_secret() {
        let secret = SecretString::from(SECRET);
        let allowed = [Algorithm::HS256];
        let expect = expectations(&secret, &allowed);
        let token = hs256(&claims(), None);
        let identity = verify(&token, &KeySet::default(), &expect).unwrap();
        assert_eq!(identity.subject, "user-1");
        assert_eq!(identity.email.as_deref(), Some("a@example.com"));

        let other = SecretString::from("another-secret");
        let expect = expectations(&other, &allowed);
        assert_eq!(
            verify(&token, &KeySet::default(), &expect)
                .unwrap_err()
                .into_error()
                .code(),
            "signature_invalid"
        );
    }

    /// No refusal repeats what the token carried: not the token, not a
    /// claim, not the kid.
    #[test]
    fn refusals_never_carry_token_content() {
        let secret = SecretString::from(SECRET);
        let mut cases: Vec<String> = Vec::new();
        let mutate = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            hs256(&c, Some(MARKER))
        };
        cases.push(mutate(&|c| c["iss"] = json!(MARKER)));
        cases.push(mutate(&|c| c["aud"] = json!(MARKER)));
        cases.push(mutate(&|c| c["aud"] = json!(["client", MARKER])));
        cases.push(mutate(&|c| c["azp"] = json!(MARKER)));
        cases.push(mutate(&|c| c["nonce"] = json!(MARKER)));
        cases.push(mutate(&|c| c["exp"] = json!(MARKER)));
        cases.push(mutate(&|c| c["sub"] = json!(MARKER.repeat(40))));
        cases.push(mutate(&|c| c["exp"] = json!(1)));
        cases.push(mutate(&|c| c["iat"] = json!(Utc::now().timestamp() + 9999)));
        for missing in ["sub", "iat", "aud", "exp", "nonce", "iss"] {
            cases.push(mutate(&|c| {
                c.as_object_mut().unwrap().remove(missing);
            }));
        }
        let mut tampered = hs256(&claims(), Some(MARKER));
        tampered.push('A');
        cases.push(tampered);
        cases.push(format!("{MARKER}.{MARKER}.{MARKER}"));
        cases.push(format!("{MARKER}.{MARKER}"));
        let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{MARKER}"}}"#));
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        cases.push(format!("{none_header}.{payload}."));
        let odd_alg = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{MARKER}"}}"#));
        cases.push(format!("{odd_alg}.{payload}.sig"));
        let rs = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"{MARKER}"}}"#));
        cases.push(format!("{rs}.{payload}.sig"));

        let mut codes = std::collections::BTreeSet::new();
        for token in &cases {
            let allowed = [Algorithm::HS256, Algorithm::RS256];
            let expect = expectations(&secret, &allowed);
            let error = verify(token, &KeySet::default(), &expect)
                .unwrap_err()
                .into_error();
            codes.insert(error.code());
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(!shown.contains(MARKER), "{shown}");
                assert!(!shown.contains(token.as_str()), "{shown}");
                assert!(!shown.contains(SECRET), "{shown}");
            }
        }
        for code in [
            "issuer_mismatch",
            "audience_mismatch",
            "azp_mismatch",
            "nonce_mismatch",
            "nonce_missing",
            "malformed_token",
            "token_expired",
            "token_not_yet_valid",
            "claim_missing",
            "signature_invalid",
            "algorithm_not_allowed",
            "unknown_kid",
        ] {
            assert!(codes.contains(code), "{code} not exercised: {codes:?}");
        }
    }

    #[test]
    fn leeway_is_a_minute() {
        let secret = SecretString::from(SECRET);
        let allowed = [Algorithm::HS256];
        let expect = expectations(&secret, &allowed);
        let now = Utc::now().timestamp();
        let mut c = claims();
        c["exp"] = json!(now - 30);
        c["iat"] = json!(now + 30);
        assert!(verify(&hs256(&c, None), &KeySet::default(), &expect).is_ok());
        c["exp"] = json!(now - 90);
        assert_eq!(
            verify(&hs256(&c, None), &KeySet::default(), &expect)
                .unwrap_err()
                .into_error()
                .code(),
            "token_expired"
        );
    }
}
