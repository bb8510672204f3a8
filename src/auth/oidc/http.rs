//! The one HTTP client that talks to IdPs.
//!
//! An admin types the issuer URL, so every request to an IdP is a request to
//! an address someone else chose. The client therefore refuses, unless the
//! operator allowed insecure IdPs for local testing:
//!
//! - plain `http://` (and any other scheme than `https`);
//! - loopback, private, link-local, CGNAT, unspecified, broadcast, multicast
//!   and cloud metadata addresses, both as IP literals in the URL and after
//!   DNS resolution (a custom resolver drops them, so a name that resolves
//!   to `127.0.0.1` connects nowhere);
//! - redirects (a public URL must not bounce the request inward);
//! - proxies from the environment (the proxy would resolve names for us);
//! - slow answers (3 s to connect, 10 s in all) and bodies over 1 MiB.
//!
//! It implements `openidconnect`'s [`AsyncHttpClient`], so the token and
//! UserInfo requests the crate builds go through the same guard.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::http;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use url::Url;

use super::error::OidcError;

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(super) const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets are a few KiB; a megabyte is a mistake
/// or an attempt to exhaust memory.
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The guarded client. Cheap to clone.
#[derive(Clone)]
pub(super) struct IdpHttp {
    /// `Err` only if the TLS stack could not start; every request then fails
    /// instead of falling back to an unguarded client.
    client: Result<reqwest::Client, String>,
    allow_insecure: bool,
}

impl std::fmt::Debug for IdpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpHttp")
            .field("allow_insecure", &self.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl IdpHttp {
    pub(super) fn new(allow_insecure: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .https_only(!allow_insecure);
        if !allow_insecure {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder.build().map_err(|e| {
            tracing::error!(error = %e, "the HTTP client for IdPs could not be built");
            "the HTTP client for IdPs could not be built".to_owned()
        });
        Self {
            client,
            allow_insecure,
        }
    }

    pub(super) fn allows_insecure(&self) -> bool {
        self.allow_insecure
    }

    /// Refuses a URL before anything is sent: the scheme, and a host that is
    /// an IP literal (those never pass through the resolver).
    pub(super) fn check_url(&self, url: &Url) -> Result<(), OidcError> {
        let shown = display_url(url);
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            "http" => {
                return Err(OidcError::IdpInsecure(format!(
                    "{shown} uses plain http; IdPs must use https (SWITCHBOARD_OIDC_ALLOW_INSECURE allows http for local testing only)"
                )));
            }
            other => {
                return Err(OidcError::IdpInsecure(format!(
                    "{shown} uses the scheme {other:?}; IdPs must use https"
                )));
            }
        }
        if self.allow_insecure {
            return Ok(());
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => {
                return Err(OidcError::IdpError(format!("{shown} names no host")));
            }
        };
        if is_refused(ip) {
            return Err(address_refused(url.host_str().unwrap_or_default(), ip));
        }
        Ok(())
    }

    /// GETs a JSON document (discovery, key set): 200 with a body of at
    /// most [`MAX_BODY_BYTES`].
    pub(super) async fn get_json(&self, url: &Url) -> Result<Vec<u8>, OidcError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| {
                OidcError::IdpError(format!("{} is not a usable URL", display_url(url)))
            })?;
        let response = self.execute(request).await?;
        let status = response.status();
        if status.is_redirection() {
            return Err(OidcError::IdpError(format!(
                "{} answered a redirect ({status}); redirects are not followed, configure the final URL",
                display_url(url)
            )));
        }
        if !status.is_success() {
            return Err(OidcError::IdpError(format!(
                "{} answered {status}",
                display_url(url)
            )));
        }
        Ok(response.into_body())
    }

    /// Sends one request through the guards and reads the whole answer.
    pub(super) async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, OidcError> {
        let client = self
            .client
            .as_ref()
            .map_err(|message| OidcError::IdpUnreachable(message.clone()))?;
        let request = reqwest::Request::try_from(request)
            .map_err(|_| OidcError::IdpError("the request URL is not usable".to_owned()))?;
        let url = request.url().clone();
        self.check_url(&url)?;
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(too_large(&url));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&url, &e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large(&url));
            }
            body.extend_from_slice(&chunk);
        }
        let mut answer = http::Response::builder().status(status);
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        answer.body(body).map_err(|_| {
            OidcError::IdpError(format!("{} answered malformed headers", display_url(&url)))
        })
    }
}

impl<'c> AsyncHttpClient<'c> for IdpHttp {
    type Error = OidcError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, OidcError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// A URL as error messages show it: without query or fragment, which could
/// carry something that is not ours to repeat.
pub(super) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

fn too_large(url: &Url) -> OidcError {
    OidcError::IdpError(format!(
        "{} answered more than {} KiB; refused",
        display_url(url),
        MAX_BODY_BYTES / 1024
    ))
}

fn address_refused(host: &str, ip: IpAddr) -> OidcError {
    OidcError::IdpAddressRefused(format!(
        "the IdP host {host} is at {ip}, a loopback, private, link-local or metadata address; refused (SWITCHBOARD_OIDC_ALLOW_INSECURE allows it for local testing only)"
    ))
}

/// Describes a transport failure from its kind, never from reqwest's own
/// text (which repeats the full URL).
fn transport_error(url: &Url, error: &reqwest::Error) -> OidcError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return address_refused(&refused.host, refused.ip);
        }
        source = e.source();
    }
    let host = url.host_str().unwrap_or_default();
    if error.is_timeout() {
        OidcError::IdpUnreachable(format!("{host} did not answer in time"))
    } else if error.is_connect() {
        OidcError::IdpUnreachable(format!("could not connect to {host}"))
    } else if error.is_redirect() {
        OidcError::IdpError(format!("{host} answered a redirect; refused"))
    } else {
        OidcError::IdpUnreachable(format!("the request to {host} failed"))
    }
}

/// Every address a name resolves to is refused: the resolver's error, found
/// again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({ip})")]
struct RefusedAddress {
    host: String,
    ip: IpAddr,
}

/// Resolves names with the system resolver and drops refused addresses, so
/// the connection goes only where the guard allows: checking the name and
/// then letting the connector resolve it again would race DNS rebinding.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| !is_refused(addr.ip()))
                .collect();
            match (allowed.is_empty(), resolved.first()) {
                (true, Some(first)) => Err(Box::new(RefusedAddress {
                    host,
                    ip: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
                    as Box<dyn std::error::Error + Send + Sync>),
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// Whether an address is one an IdP must not be at: anything that reaches
/// this host, its private network or its cloud's metadata service.
pub(super) fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => is_refused_v6(v6),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()            // 127/8
        || ip.is_private()      // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()   // 169.254/16, with 169.254.169.254
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0               // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || a >= 240 // reserved
        || (a == 192 && b == 0 && ip.octets().get(2) == Some(&0)) // 192.0.0/24, IETF assignments
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_refused_v4(v4);
    }
    let segments = ip.segments();
    let first = segments.first().copied().unwrap_or(0);
    let second = segments.get(1).copied().unwrap_or(0);
    let third = segments.get(2).copied().unwrap_or(0);
    // Teredo 2001::/32 tunnels to an IPv4 host through a relay, and the
    // local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) translates into a
    // private network with the IPv4 address anywhere in it: neither is
    // where an IdP is.
    (first == 0x2001 && second == 0)
        || (first == 0x64 && second == 0xff9b && third == 1)
        || ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // ULA fc00::/7, with fd00:ec2::254
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
}

/// The IPv4 address inside IPv4-mapped (`::ffff:0:0/96`), IPv4-translated
/// (`::ffff:0:0:0/96`), IPv4-compatible, NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002::/16`) addresses: each reaches the IPv4 host, so it is judged as
/// that host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let octets = ip.octets();
    let tail = |hi: usize| -> Option<Ipv4Addr> {
        let bytes = octets.get(hi..hi + 4)?;
        let array: [u8; 4] = bytes.try_into().ok()?;
        Some(Ipv4Addr::from(array))
    };
    match s {
        // IPv4-compatible ::a.b.c.d (not :: and ::1, judged as IPv6).
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => tail(12),
        [0, 0, 0, 0, 0xffff, 0, _, _] => tail(12),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => tail(12),
        [0x2002, _, _, _, _, _, _, _] => tail(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        is_refused(s.parse().unwrap())
    }

    #[test]
    fn inward_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.170",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1.1.1.1",
            "64:ff9b:1:a00::1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.2.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::1.1.1.1",
            "2002:0101:0101::",
        ] {
            assert!(!refused(ip), "{ip} must pass");
        }
    }

    #[test]
    fn urls_are_checked_before_sending() {
        let strict = IdpHttp::new(false);
        let check = |u: &str| strict.check_url(&Url::parse(u).unwrap());
        assert_eq!(
            check("http://idp.example.com/").unwrap_err().code(),
            "idp_insecure"
        );
        assert_eq!(
            check("ftp://idp.example.com/").unwrap_err().code(),
            "idp_insecure"
        );
        for u in [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://0x7f000001/",
            "https://10.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert_eq!(check(u).unwrap_err().code(), "idp_address_refused", "{u}");
        }
        assert!(check("https://idp.example.com/").is_ok());
        let lax = IdpHttp::new(true);
        assert!(
            lax.check_url(&Url::parse("http://127.0.0.1:9/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn shown_urls_lose_query_and_credentials() {
        let url = Url::parse("https://u:p@idp.example.com/x?code=abc#frag").unwrap();
        assert_eq!(display_url(&url), "https://idp.example.com/x");
    }
}
