//! Typed values shared by records and the API: parsed once at the edge,
//! trusted afterwards.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;
use utoipa::ToSchema;
use uuid::Uuid;

/// The organization a record, member or credential belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct OrgId(pub Uuid);

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A staff role. Admin can do everything in its organization; supervisor
/// reads queues and members; agent answers conversations.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Supervisor,
    Agent,
}

/// A web origin (`https://shop.example.com[:port]`): scheme, host and port
/// only. Deployments list the origins their snippet may run on; the browser's
/// `Origin` header is compared with these exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "https://shop.example.com")]
pub struct Origin(String);

impl Origin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text)
            .map_err(|_| format!("{text:?} is not an origin like https://example.com"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?} must use http or https"));
        }
        if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must name a host and nothing else"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} is an origin only: no path, query or fragment"
            ));
        }
        // Url normalizes case and default ports; the origin form drops the
        // trailing slash, as browsers send it.
        Ok(Self(url.origin().ascii_serialization()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Origin::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name a native app presents as its `Origin`: Genesys's Transport
/// SDK sends the bare host it connects to (`webmessaging.<domain>` on the
/// socket, `<domain>` on history), never `scheme://host`. Browsers always
/// send a serialized origin (or `null`), so a bare host never comes from a
/// web page; a deployment lists the hosts of its apps explicitly all the
/// same, so nothing is admitted that an admin did not name.
///
/// Parsed as a DNS name: lowercase letters, digits and hyphens in labels of
/// 1 to 63 characters (no leading or trailing hyphen), separated by dots, at
/// most 253 characters; no scheme, port, path, wildcard or trailing dot.
/// `null` (the origin browsers send from sandboxed frames) is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "webmessaging.chat.example.com")]
pub struct AppHost(String);

impl AppHost {
    pub fn parse(text: &str) -> Result<Self, String> {
        let host = text.to_ascii_lowercase();
        if host == "null" {
            return Err(
                "\"null\" is the origin of sandboxed browser frames, not an app's host".to_owned(),
            );
        }
        if !is_dns_name(&host) {
            return Err(format!(
                "{text:?} is not a host name like webmessaging.chat.example.com (no scheme, port or path)"
            ));
        }
        Ok(Self(host))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an `Origin` header is this host. Host names compare without
    /// regard to case.
    pub fn matches(&self, origin: &str) -> bool {
        self.0.eq_ignore_ascii_case(origin)
    }
}

impl<'de> Deserialize<'de> for AppHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AppHost::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AppHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A private-use URI scheme a native app receives its OAuth redirect on
/// (RFC 8252 7.1), such as `com.example.app` for
/// `com.example.app:/oauth2redirect`. RFC 8252 asks for the reverse form of
/// a domain name the app's publisher controls, which is what is accepted:
/// at least two dot-separated DNS labels, starting with a letter, stored in
/// lowercase (schemes are case-insensitive). That form also keeps out
/// `http`, `https`, `javascript`, `data`, `file` and every other scheme a
/// browser gives meaning to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "com.example.app")]
pub struct RedirectScheme(String);

impl RedirectScheme {
    pub fn parse(text: &str) -> Result<Self, String> {
        let scheme = text.to_ascii_lowercase();
        let reverse_dns = is_dns_name(&scheme)
            && scheme.contains('.')
            && scheme.starts_with(|c: char| c.is_ascii_lowercase());
        if !reverse_dns {
            return Err(format!(
                "{text:?} is not a reverse-DNS scheme like com.example.app (RFC 8252 7.1): the scheme only, without ':' or a path"
            ));
        }
        Ok(Self(scheme))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RedirectScheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RedirectScheme::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RedirectScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lowercase DNS name in letter-digit-hyphen form (RFC 1123 2.1).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A JWS algorithm an integration accepts for ID tokens. `none` is not
/// representable; HMAC ones must be listed explicitly by an admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub fn default_allowed() -> Vec<Algorithm> {
        vec![Algorithm::RS256, Algorithm::ES256, Algorithm::PS256]
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub enum DeploymentStatus {
    #[default]
    Active,
    Inactive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalize_and_refuse_paths() {
        assert_eq!(
            Origin::parse("HTTPS://Shop.Example.com").unwrap().as_str(),
            "https://shop.example.com"
        );
        assert_eq!(
            Origin::parse("https://shop.example.com:443")
                .unwrap()
                .as_str(),
            "https://shop.example.com"
        );
        assert_eq!(
            Origin::parse("http://localhost:3000").unwrap().as_str(),
            "http://localhost:3000"
        );
        assert_eq!(
            Origin::parse("https://shop.example.com/").unwrap().as_str(),
            "https://shop.example.com"
        );
        for bad in [
            "shop.example.com",
            "https://shop.example.com/path",
            "https://a@b.com",
            "ftp://x.com",
            "https://x.com?q",
            "*.example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_hosts_are_dns_names() {
        assert_eq!(
            AppHost::parse("WebMessaging.Chat.Example.com")
                .unwrap()
                .as_str(),
            "webmessaging.chat.example.com"
        );
        assert_eq!(AppHost::parse("localhost").unwrap().as_str(), "localhost");
        let host = AppHost::parse("chat.example.com").unwrap();
        assert!(host.matches("chat.example.com"));
        assert!(host.matches("CHAT.example.com"));
        assert!(!host.matches("https://chat.example.com"));
        for bad in [
            "",
            "null",
            "NULL",
            "https://chat.example.com",
            "chat.example.com:443",
            "chat.example.com/",
            "*.example.com",
            "chat..example.com",
            "chat.example.com.",
            "-chat.example.com",
            "chat_app.example.com",
            "chat example.com",
            &"a".repeat(64),
            &format!("{}com", "a.".repeat(126)),
        ] {
            assert!(AppHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_schemes_are_reverse_dns() {
        assert_eq!(
            RedirectScheme::parse("com.Example.App").unwrap().as_str(),
            "com.example.app"
        );
        assert!(RedirectScheme::parse("io.chat-app.ios").is_ok());
        for bad in [
            "",
            "myapp",
            "http",
            "https",
            "javascript",
            "com.example.app:",
            "com.example.app:/callback",
            "1com.example",
            "com..example",
            "com.example_app",
            "com.example.app+x",
        ] {
            assert!(RedirectScheme::parse(bad).is_err(), "{bad}");
        }
    }
}
