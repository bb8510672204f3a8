//! How a node serves connections: native TLS, the shutdown drain, the
//! timeouts and the per-address cap that keep slow or greedy clients from
//! holding connections, and HSTS.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

pub const ENV_TLS_CERT_FILE: &str = "SWITCHBOARD_TLS_CERT_FILE";
pub const ENV_TLS_KEY_FILE: &str = "SWITCHBOARD_TLS_KEY_FILE";
pub const ENV_DRAIN_SECONDS: &str = "SWITCHBOARD_DRAIN_SECONDS";
pub const ENV_HEADER_TIMEOUT_SECONDS: &str = "SWITCHBOARD_HEADER_TIMEOUT_SECONDS";
pub const ENV_IDLE_TIMEOUT_SECONDS: &str = "SWITCHBOARD_IDLE_TIMEOUT_SECONDS";
pub const ENV_MAX_CONNECTIONS_PER_ADDRESS: &str = "SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS";
pub const ENV_UNCAPPED_ADDRESSES: &str = "SWITCHBOARD_UNCAPPED_ADDRESSES";
pub const ENV_HSTS_MAX_AGE_SECONDS: &str = "SWITCHBOARD_HSTS_MAX_AGE_SECONDS";

const DEFAULT_DRAIN_SECONDS: u64 = 5;
const DEFAULT_HEADER_TIMEOUT_SECONDS: u64 = 30;
const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 120;
const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
const DEFAULT_UNCAPPED_ADDRESSES: &str = "127.0.0.0/8,::1/128";
const DEFAULT_HSTS_MAX_AGE_SECONDS: u64 = 31_536_000;

/// The `[serve]` table of the config file; the same meaning as the
/// environment variables, which override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServeFile {
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    drain_seconds: Option<u64>,
    header_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    max_connections_per_address: Option<usize>,
    uncapped_addresses: Option<Vec<String>>,
    hsts_max_age_seconds: Option<u64>,
}

/// How the node serves connections, validated.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Native TLS: the node terminates TLS itself with these PEM files,
    /// reloaded when they change and on SIGHUP. Absent: plain HTTP (behind
    /// a proxy that terminates TLS).
    pub tls: Option<TlsFiles>,
    /// After SIGTERM, how long readiness answers 503 while the node still
    /// serves, so load balancers take it out before it closes.
    pub drain: Duration,
    /// How long a client has to send a request's headers (on a new
    /// connection, after the TLS handshake, and between requests on a kept
    /// connection): a connection that dribbles headers is closed.
    pub header_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (a request body or a response read at a trickle).
    pub idle_timeout: Duration,
    /// Open connections one client address may hold; the next is refused.
    /// `None`: no cap.
    pub max_connections_per_address: Option<usize>,
    /// Peers the cap does not apply to: a reverse proxy carries every
    /// client's connection from its own address.
    pub uncapped: Vec<Cidr>,
    /// `Strict-Transport-Security` max-age when the public URL is https;
    /// `None` sends no HSTS header.
    pub hsts_max_age: Option<u64>,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An address block, `192.0.2.0/24` or `2001:db8::/32` (a bare address is
/// one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_match(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_match(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_match(network: &[u8], address: &[u8], prefix: u8) -> bool {
    let mut left = u32::from(prefix);
    for (n, a) in network.iter().zip(address) {
        if left == 0 {
            return true;
        }
        let bits = left.min(8);
        let mask = u8::MAX.checked_shl(8 - bits).unwrap_or(0);
        if n & mask != a & mask {
            return false;
        }
        left -= bits;
    }
    true
}

impl ServeSettings {
    pub(super) fn load(
        file: ServeFile,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let cert = env(ENV_TLS_CERT_FILE)
            .map(PathBuf::from)
            .or(file.tls_cert_file);
        let key = env(ENV_TLS_KEY_FILE)
            .map(PathBuf::from)
            .or(file.tls_key_file);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    ENV_TLS_KEY_FILE,
                    format!("is required with {ENV_TLS_CERT_FILE}"),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    ENV_TLS_CERT_FILE,
                    format!("is required with {ENV_TLS_KEY_FILE}"),
                ));
            }
        };
        let drain = seconds(
            env,
            ENV_DRAIN_SECONDS,
            file.drain_seconds,
            DEFAULT_DRAIN_SECONDS,
            0..=600,
        )?;
        let header_timeout = seconds(
            env,
            ENV_HEADER_TIMEOUT_SECONDS,
            file.header_timeout_seconds,
            DEFAULT_HEADER_TIMEOUT_SECONDS,
            1..=3600,
        )?;
        let idle_timeout = seconds(
            env,
            ENV_IDLE_TIMEOUT_SECONDS,
            file.idle_timeout_seconds,
            DEFAULT_IDLE_TIMEOUT_SECONDS,
            1..=86_400,
        )?;
        let cap = match env(ENV_MAX_CONNECTIONS_PER_ADDRESS) {
            Some(text) => text.trim().parse::<usize>().map_err(|_| {
                ConfigError::invalid(
                    ENV_MAX_CONNECTIONS_PER_ADDRESS,
                    "must be a number of connections (0: no cap)",
                )
            })?,
            None => file
                .max_connections_per_address
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
        };
        let uncapped_text: Vec<String> = match env(ENV_UNCAPPED_ADDRESSES) {
            Some(text) => text.split(',').map(str::to_owned).collect(),
            None => file.uncapped_addresses.unwrap_or_else(|| {
                DEFAULT_UNCAPPED_ADDRESSES
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }),
        };
        let mut uncapped = Vec::new();
        for entry in uncapped_text {
            let entry = entry.trim();
            if entry.is_empty() || entry.eq_ignore_ascii_case("none") {
                continue;
            }
            uncapped.push(Cidr::parse(entry).ok_or_else(|| {
                ConfigError::invalid(
                    ENV_UNCAPPED_ADDRESSES,
                    format!(
                        "must be addresses or CIDR blocks separated by commas (or none); `{entry}` is not"
                    ),
                )
            })?);
        }
        let hsts = seconds(
            env,
            ENV_HSTS_MAX_AGE_SECONDS,
            file.hsts_max_age_seconds,
            DEFAULT_HSTS_MAX_AGE_SECONDS,
            0..=63_072_000,
        )?;
        Ok(Self {
            tls,
            drain,
            header_timeout,
            idle_timeout,
            max_connections_per_address: (cap > 0).then_some(cap),
            uncapped,
            hsts_max_age: (!hsts.is_zero()).then_some(hsts.as_secs()),
        })
    }

    /// Whether the cap counts connections from `peer`.
    pub fn capped(&self, peer: IpAddr) -> bool {
        !self.uncapped.iter().any(|c| c.contains(peer))
    }
}

fn seconds(
    env: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    file: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let value = match env(name) {
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::invalid(name, "must be a number of seconds"))?,
        None => file.unwrap_or(default),
    };
    if !range.contains(&value) {
        return Err(ConfigError::invalid(
            name,
            format!("must be {} to {}", range.start(), range.end()),
        ));
    }
    Ok(Duration::from_secs(value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<ServeSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServeSettings::load(ServeFile::default(), &|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert!(s.tls.is_none());
        assert_eq!(s.drain, Duration::from_secs(5));
        assert_eq!(s.header_timeout, Duration::from_secs(30));
        assert_eq!(s.max_connections_per_address, Some(256));
        assert!(!s.capped("127.0.0.1".parse().unwrap()));
        assert!(!s.capped("::1".parse().unwrap()));
        assert!(s.capped("192.0.2.7".parse().unwrap()));
        assert_eq!(s.hsts_max_age, Some(31_536_000));
    }

    #[test]
    fn tls_needs_both_files() {
        let err = load(&[(ENV_TLS_CERT_FILE, "/x/cert.pem")]).unwrap_err();
        assert!(err.to_string().starts_with(ENV_TLS_KEY_FILE), "{err}");
        let s = load(&[
            (ENV_TLS_CERT_FILE, "/x/cert.pem"),
            (ENV_TLS_KEY_FILE, "/x/key.pem"),
        ])
        .unwrap();
        assert_eq!(s.tls.unwrap().key, PathBuf::from("/x/key.pem"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (ENV_DRAIN_SECONDS, "soon"),
            (ENV_DRAIN_SECONDS, "601"),
            (ENV_HEADER_TIMEOUT_SECONDS, "0"),
            (ENV_IDLE_TIMEOUT_SECONDS, "-1"),
            (ENV_MAX_CONNECTIONS_PER_ADDRESS, "many"),
            (ENV_UNCAPPED_ADDRESSES, "10.0.0.0/33"),
            (ENV_UNCAPPED_ADDRESSES, "proxy.example"),
            (ENV_HSTS_MAX_AGE_SECONDS, "x"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn address_blocks() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.1".parse().unwrap())
        );
        let none = load(&[(ENV_UNCAPPED_ADDRESSES, "none")]).unwrap();
        assert!(none.capped("127.0.0.1".parse().unwrap()));
        let off = load(&[(ENV_MAX_CONNECTIONS_PER_ADDRESS, "0")]).unwrap();
        assert_eq!(off.max_connections_per_address, None);
    }
}
