//! The credential a request carries, found in one place for the admin API
//! and the agent socket.
//!
//! Staff present either a bearer token (API clients' access tokens, the
//! bootstrap token) or the console's session cookie. A cookie travels with
//! every request a browser makes, whichever site started it, so it must
//! prove more than a bearer token does: a CSRF token on HTTP requests that
//! change something, the service's own origin on a WebSocket upgrade.

use axum::http::header::{AUTHORIZATION, COOKIE, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, Method};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};

use super::staff::{CSRF_HEADER, SESSION_COOKIE, StaffSession};
use super::{Auth, AuthError, Principal};

/// The subprotocol a browser names to carry its bearer token on a
/// WebSocket, since it cannot set headers there: `bearer, <token>`.
pub const BEARER_PROTOCOL: &str = "bearer";

/// How a request reached the service: what a cookie must prove, and where
/// a bearer token may be.
#[derive(Clone, Copy, Debug)]
pub enum Via<'a> {
    /// An HTTP request: a cookie on a method that changes something needs
    /// the session's CSRF header.
    Request(&'a Method),
    /// A WebSocket upgrade: a cookie must come from `own_origin`
    /// (cross-site WebSocket hijacking); the bearer may be the subprotocol.
    Socket { own_origin: &'a str },
}

impl Auth {
    /// The principal of a request's credential: a bearer token first, then
    /// the staff session cookie. [`AuthError::Missing`] without either.
    #[tracing::instrument(name = "authenticate", skip_all)]
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        via: Via<'_>,
    ) -> Result<Principal, AuthError> {
        let token = match via {
            Via::Request(_) => bearer(headers),
            Via::Socket { .. } => bearer(headers).or_else(|| subprotocol_bearer(headers)),
        };
        if let Some(token) = token {
            return self.authenticate_bearer(token.expose_secret()).await;
        }
        let cookie = cookie_value(headers, SESSION_COOKIE).ok_or(AuthError::Missing)?;
        match via {
            Via::Request(method) => {
                let session = self.staff_session(cookie, Utc::now()).await?;
                if changes_state(method) {
                    check_csrf(headers, &session)?;
                }
                Ok(session.principal())
            }
            Via::Socket { own_origin } => {
                let origin = headers.get(ORIGIN).and_then(|o| o.to_str().ok());
                if origin != Some(own_origin) {
                    return Err(AuthError::CrossOrigin);
                }
                self.authenticate_cookie(cookie).await
            }
        }
    }
}

/// A cookie-authenticated change must carry the session's CSRF token.
pub fn check_csrf(headers: &HeaderMap, session: &StaffSession) -> Result<(), AuthError> {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if presented.is_some_and(|token| session.csrf_matches(token)) {
        Ok(())
    } else {
        Err(AuthError::Csrf)
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .then(|| SecretString::from(token.to_owned()))
}

/// The token of `Sec-WebSocket-Protocol: bearer, <token>`.
fn subprotocol_bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    let mut offered = value.split(',').map(str::trim);
    if offered.next()? != BEARER_PROTOCOL {
        return None;
    }
    offered
        .next()
        .filter(|token| !token.is_empty())
        .map(|token| SecretString::from(token.to_owned()))
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::auth::staff::LOGIN_COOKIE;

    #[test]
    fn cookie_values_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; sb_session=sbc_x"));
        headers.append(COOKIE, HeaderValue::from_static("sb_login=sbl_y"));
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("sbc_x"));
        assert_eq!(cookie_value(&headers, LOGIN_COOKIE), Some("sbl_y"));
        assert_eq!(cookie_value(&headers, "sb"), None);
        let mut empty = HeaderMap::new();
        empty.append(COOKIE, HeaderValue::from_static("sb_session="));
        assert_eq!(cookie_value(&empty, SESSION_COOKIE), None);
    }

    #[test]
    fn bearer_tokens_come_from_the_header_or_the_subprotocol() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR  abc "));
        assert_eq!(bearer(&headers).unwrap().expose_secret(), "abc");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&headers).is_none());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer(&headers).is_none());

        let mut socket = HeaderMap::new();
        socket.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer, tok"),
        );
        assert_eq!(subprotocol_bearer(&socket).unwrap().expose_secret(), "tok");
        socket.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, tok"),
        );
        assert!(subprotocol_bearer(&socket).is_none());
        socket.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("bearer"));
        assert!(subprotocol_bearer(&socket).is_none());
    }
}
