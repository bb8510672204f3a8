//! The client's address, which every per-address limit keys on.
//!
//! It is the TCP peer, unless the peer is a trusted proxy: then the
//! forwarding header the proxies append to (`X-Forwarded-For`, or RFC 7239
//! `Forwarded`) is read from the right, skipping trusted hops, and the first
//! hop that is not a trusted proxy is the client. Whatever a client writes
//! into the header itself sits to the left of what its first trusted proxy
//! appended, so it is never reached; a peer that is not trusted has its
//! headers ignored altogether.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Which header the trusted proxies append the client's address to. Only
/// one is believed: a proxy that sets one and passes the other through
/// would otherwise let a client choose its own address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(()),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        })
    }
}

/// The proxies whose forwarding header is believed: addresses or CIDR
/// blocks. Empty (the default) believes no header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Parses a comma- or space-separated list of addresses and CIDRs
    /// (`10.0.0.0/8, 192.168.1.7, fd00::/8`).
    pub fn parse(list: &str, header: ForwardedHeader) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("{item:?} is not an address or CIDR block")),
                },
            };
            nets.push(net.trunc());
        }
        Ok(Self { nets, header })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether `ip` is a trusted proxy. An IPv4 peer on an IPv6 socket
    /// (`::ffff:10.0.0.1`) is compared as the IPv4 address it is.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, seen from a connection with `peer` carrying
    /// `headers` (see the module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
            ForwardedHeader::Forwarded => forwarded(headers),
        };
        for hop in hops.iter().rev() {
            if !self.trusts(client) {
                break;
            }
            match hop {
                Some(ip) => client = canonical(*ip),
                // A hop that is no address ("unknown", an obfuscated name):
                // the last proxy that was trusted is as far as it goes.
                None => break,
            }
        }
        client
    }

    /// The list as operators write it, for logs.
    pub fn describe(&self) -> String {
        self.nets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Every hop of every `X-Forwarded-For` line, in order; `None` for one that
/// is not an address.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| {
            value
                .to_str()
                .map_or_else(|_| vec![None], |text| text.split(',').map(hop).collect())
        })
        .collect()
}

/// The `for=` of every element of every `Forwarded` line (RFC 7239), in
/// order.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|value| {
            value.to_str().map_or_else(
                |_| vec![None],
                |text| {
                    text.split(',')
                        .map(|element| {
                            element
                                .split(';')
                                .filter_map(|pair| pair.split_once('='))
                                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                                .and_then(|(_, value)| hop(value))
                        })
                        .collect()
                },
            )
        })
        .collect()
}

/// One hop: an address, perhaps quoted, bracketed or with a port.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::parse("10.0.0.0/8", ForwardedHeader::XForwardedFor).unwrap();
        let spoofed = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies =
            TrustedProxies::parse("10.0.0.0/8, 192.168.1.7", ForwardedHeader::XForwardedFor)
                .unwrap();
        // The client wrote 1.1.1.1 itself; its proxy appended its real
        // address; an inner proxy appended the outer one.
        let chain = headers(
            "x-forwarded-for",
            &["1.1.1.1, 198.51.100.20", "192.168.1.7"],
        );
        assert_eq!(proxies.client(ip("10.1.2.3"), &chain), ip("198.51.100.20"));
        // Every hop trusted: the leftmost is as far as it goes.
        let internal = headers("x-forwarded-for", &["10.9.9.9"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &internal), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        // Garbage stops the walk at the last trusted hop.
        let garbage = headers("x-forwarded-for", &["198.51.100.20, nonsense"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &garbage), ip("10.1.2.3"));
        // Ports and brackets are read.
        let ported = headers("x-forwarded-for", &["[2001:db8::1]:443"]);
        assert_eq!(proxies.client(ip("10.1.2.3"), &ported), ip("2001:db8::1"));
    }

    #[test]
    fn forwarded_is_read_only_when_chosen() {
        let proxies = TrustedProxies::parse("10.0.0.1", ForwardedHeader::Forwarded).unwrap();
        let mut both = headers(
            "forwarded",
            &[r#"for=192.0.2.60;proto=https, For="[2001:db8:cafe::17]:4711""#],
        );
        both.append("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &both),
            ip("2001:db8:cafe::17")
        );
        let xff = TrustedProxies::parse("10.0.0.1", ForwardedHeader::XForwardedFor).unwrap();
        assert_eq!(xff.client(ip("10.0.0.1"), &both), ip("1.2.3.4"));
    }

    #[test]
    fn mapped_peers_and_bad_lists() {
        let proxies = TrustedProxies::parse("127.0.0.1", ForwardedHeader::XForwardedFor).unwrap();
        let chain = headers("x-forwarded-for", &["198.51.100.1"]);
        assert_eq!(
            proxies.client(ip("::ffff:127.0.0.1"), &chain),
            ip("198.51.100.1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33", ForwardedHeader::XForwardedFor).is_err());
        assert!(TrustedProxies::parse("proxy.local", ForwardedHeader::XForwardedFor).is_err());
        assert!(
            TrustedProxies::parse(" ", ForwardedHeader::XForwardedFor)
                .unwrap()
                .is_empty()
        );
    }
}
