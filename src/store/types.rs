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
/// only; or a wildcard over the subdomains of a domain
/// (`https://*.example.com[:port]`). Deployments list the origins their
/// snippet may run on; the browser's `Origin` header is compared with these
/// exactly, or for a wildcard: same scheme and port, and a host that is a
/// subdomain at any depth. The wildcard never covers the domain itself (list
/// it too), a name that merely ends the same way (`evilexample.com`), or a
/// domain of one label (`https://*.com` is refused).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "https://shop.example.com")]
pub struct Origin(String);

impl Origin {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((scheme, rest)) = text.split_once("://")
            && let Some(domain) = rest.strip_prefix("*.")
        {
            return Self::parse_wildcard(text, scheme, domain);
        }
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
        if url.host_str().is_some_and(|h| h.contains('*')) {
            return Err(format!(
                "{text:?}: a wildcard is a whole first label only, as in https://*.example.com"
            ));
        }
        // Url normalizes case and default ports; the origin form drops the
        // trailing slash, as browsers send it.
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// `scheme://*.` + `domain`: the domain is parsed as an origin of its
    /// own, and must be a DNS name of two labels or more.
    fn parse_wildcard(text: &str, scheme: &str, domain: &str) -> Result<Self, String> {
        if domain.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is a whole first label only, as in https://*.example.com"
            ));
        }
        let base = Self::parse(&format!("{scheme}://{domain}"))
            .map_err(|_| format!("{text:?} is not a wildcard origin like https://*.example.com"))?;
        let url = Url::parse(&base.0).map_err(|_| format!("{text:?} is not an origin"))?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Err(format!(
                "{text:?}: a wildcard covers the subdomains of a domain name, not of an address"
            ));
        };
        if !host.contains('.') || !host.split('.').all(|label| !label.is_empty()) {
            return Err(format!(
                "{text:?}: a wildcard needs a domain of two labels or more (https://*.example.com)"
            ));
        }
        let (scheme, rest) = base
            .0
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not an origin"))?;
        Ok(Self(format!("{scheme}://*.{rest}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a wildcard (`https://*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.0.contains("://*.")
    }

    /// Whether a browser's `Origin` header value is this origin, or for a
    /// wildcard one of the subdomains it covers. Only the serialized form
    /// browsers send matches a wildcard (lowercase, no default port).
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, suffix)) = self.0.split_once("://*") else {
            return self.0 == origin;
        };
        // `suffix` is `.example.com[:port]`.
        let Some(host_port) = origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
        else {
            return false;
        };
        let Some(sub) = host_port.strip_suffix(suffix) else {
            return false;
        };
        !sub.is_empty()
            && !sub.ends_with('.')
            && sub
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && Url::parse(origin).is_ok_and(|u| u.origin().ascii_serialization() == origin)
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
    fn wildcard_origins_cover_subdomains_only() {
        let wildcard = Origin::parse("https://*.Example.com").unwrap();
        assert_eq!(wildcard.as_str(), "https://*.example.com");
        assert!(wildcard.is_wildcard());
        for yes in [
            "https://shop.example.com",
            "https://a.b.example.com",
            "https://x-1.example.com",
        ] {
            assert!(wildcard.matches(yes), "{yes}");
        }
        for no in [
            "https://example.com",
            "https://evilexample.com",
            "https://example.com.evil.com",
            "https://shop.example.com.evil.com",
            "http://shop.example.com",
            "https://shop.example.com:8443",
            "https://SHOP.example.com",
            "https://.example.com",
            "https://a..example.com",
            "https://shop.example.com/",
            "https://user@shop.example.com",
            "null",
            "shop.example.com",
        ] {
            assert!(!wildcard.matches(no), "{no}");
        }
        let ported = Origin::parse("https://*.example.com:8443").unwrap();
        assert!(ported.matches("https://a.example.com:8443"));
        assert!(!ported.matches("https://a.example.com"));
        assert_eq!(
            Origin::parse("https://*.example.com:443").unwrap().as_str(),
            "https://*.example.com"
        );
        for bad in [
            "https://*.com",
            "https://*.localhost",
            "https://*",
            "https://*.",
            "https://*.*.example.com",
            "https://a.*.example.com",
            "https://a*.example.com",
            "https://*example.com",
            "https://*.example.com/path",
            "https://*.10.0.0.1",
            "https://*.[::1]",
            "ftp://*.example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        let plain = Origin::parse("https://shop.example.com").unwrap();
        assert!(!plain.is_wildcard());
        assert!(plain.matches("https://shop.example.com"));
        assert!(!plain.matches("https://a.shop.example.com"));
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
