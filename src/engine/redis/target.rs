//! Where the Redis engine connects: one server, a Redis Cluster, or the
//! master a set of Sentinels names; with TLS and an ACL user on each.
//!
//! A [`RedisTarget`] is parsed once, from the settings an operator wrote
//! (see the README's configuration table), and refused there with a message
//! naming what is wrong; connecting later only turns it into the redis
//! crate's clients. It never prints a password: its `Debug` and
//! [`RedisTarget::describe`] leave secrets out.

use std::fmt;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};

/// The port a seed or Redis node listens on when its address names none.
const DEFAULT_REDIS_PORT: u16 = 6379;
/// The port a Sentinel listens on when its address names none.
const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// Bounds the lists, so a typo cannot make a node dial thousands of hosts.
const MAX_NODES: usize = 64;

/// How to reach Redis. Built by the constructors, which refuse what cannot
/// work; see the module docs.
#[derive(Clone)]
pub struct RedisTarget {
    pub(super) topology: Topology,
    /// ACL user; `None` is the `default` user.
    pub(super) username: Option<String>,
    pub(super) password: Option<SecretString>,
    /// `rediss://`: TLS to every Redis node (and Sentinel).
    pub(super) tls: bool,
    /// PEM certificates of a private CA that signed the servers'
    /// certificates; without it the system's trust store decides.
    pub(super) ca_pem: Option<Vec<u8>>,
    /// Replicas that must acknowledge an append before it is acknowledged,
    /// and how long to wait for them.
    pub(super) wait: Option<(u32, std::time::Duration)>,
}

/// The three forms a deployment can take.
#[derive(Clone)]
pub(super) enum Topology {
    /// One server (or a proxy in front of many) at a URL, which may carry
    /// credentials and a database number.
    Single(SecretString),
    /// A Redis Cluster, found through any of these seed nodes.
    Cluster(Vec<NodeAddr>),
    /// The master that these Sentinels name `master`.
    Sentinel {
        sentinels: Vec<NodeAddr>,
        master: String,
    },
}

/// `host:port` of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodeAddr {
    pub(super) host: String,
    pub(super) port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a target was refused. The caller names the setting; the message says
/// what is wrong with it, never quoting a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TargetError(String);

fn refuse<T>(message: impl Into<String>) -> Result<T, TargetError> {
    Err(TargetError(message.into()))
}

impl RedisTarget {
    /// One server at `url`: `redis://`, `rediss://` (TLS), `unix://` or
    /// `redis+unix://`.
    pub fn single(url: &str) -> Result<Self, TargetError> {
        let parsed = url::Url::parse(url).or_else(|_| refuse("is not a URL"))?;
        let tls = match parsed.scheme() {
            "redis" | "unix" | "redis+unix" => false,
            "rediss" => true,
            _ => return refuse("must be a redis:// or rediss:// URL"),
        };
        if !parsed.scheme().contains("unix") && parsed.host_str().is_none_or(str::is_empty) {
            return refuse("must name a host");
        }
        Ok(Self {
            topology: Topology::Single(SecretString::from(url.to_owned())),
            username: None,
            password: None,
            tls,
            ca_pem: None,
            wait: None,
        })
    }

    /// A Redis Cluster found through `seeds`: comma-separated `host:port`
    /// or `redis://host:port` items, `rediss://` for TLS (all alike).
    pub fn cluster(seeds: &str) -> Result<Self, TargetError> {
        let (nodes, tls) = node_list(seeds, DEFAULT_REDIS_PORT)?;
        Ok(Self {
            topology: Topology::Cluster(nodes),
            username: None,
            password: None,
            tls,
            ca_pem: None,
            wait: None,
        })
    }

    /// The master the `sentinels` (a list like [`Self::cluster`]'s, port
    /// 26379 unless named) know as `master`. `rediss://` Sentinels mean TLS
    /// to them and to the master.
    pub fn sentinel(sentinels: &str, master: &str) -> Result<Self, TargetError> {
        let (nodes, tls) = node_list(sentinels, DEFAULT_SENTINEL_PORT)?;
        let master = master.trim();
        if master.is_empty()
            || master.len() > 128
            || !master
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(TargetError(
                "must be a master name of at most 128 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        Ok(Self {
            topology: Topology::Sentinel {
                sentinels: nodes,
                master: master.to_owned(),
            },
            username: None,
            password: None,
            tls,
            ca_pem: None,
            wait: None,
        })
    }

    /// The ACL user to authenticate as on every Redis node.
    pub fn with_username(mut self, username: &str) -> Result<Self, TargetError> {
        let username = username.trim();
        if username.is_empty() || username.len() > 128 || username.chars().any(char::is_whitespace)
        {
            return refuse("must be a user name of at most 128 characters without spaces");
        }
        self.username = Some(username.to_owned());
        Ok(self)
    }

    /// The password (of the ACL user, or `requirepass`) on every Redis node.
    pub fn with_password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// Waits for `replicas` replicas (for at most `timeout`) to acknowledge
    /// each append to a conversation log before the append is acknowledged;
    /// 0 acknowledges once the master has it.
    pub fn with_wait_replicas(mut self, replicas: u32, timeout: std::time::Duration) -> Self {
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Trusts the CA certificates in `pem` for the servers' certificates.
    /// Refused unless the target uses TLS, or when `pem` holds none.
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Result<Self, TargetError> {
        use rustls_pki_types::{CertificateDer, pem::PemObject};
        if !self.tls {
            return refuse("is set but the Redis addresses are not rediss:// (TLS)");
        }
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .or_else(|_| refuse("is not a PEM file of certificates"))?;
        if certs.is_empty() {
            return refuse("holds no PEM certificate");
        }
        self.ca_pem = Some(pem);
        Ok(self)
    }

    /// Whether the URL of a single server already carries a password or a
    /// user, which the separate settings would contradict.
    pub fn url_has_credentials(&self) -> bool {
        match &self.topology {
            Topology::Single(url) => url::Url::parse(url.expose_secret())
                .is_ok_and(|u| !u.username().is_empty() || u.password().is_some()),
            _ => false,
        }
    }

    /// `single`, `cluster` or `sentinel`, for logs and `check-config`.
    pub fn form(&self) -> &'static str {
        match self.topology {
            Topology::Single(_) => "single",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }

    /// Whether notices travel by sharded PUB/SUB (a cluster).
    pub(super) fn sharded(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    /// Where it connects, for logs and `check-config`: addresses, the master
    /// name, whether TLS is on; never a credential.
    pub fn describe(&self) -> String {
        let tls = if self.tls { ", TLS" } else { "" };
        let user = self
            .username
            .as_deref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default();
        match &self.topology {
            Topology::Single(url) => format!("{}{tls}{user}", address_of(url.expose_secret())),
            Topology::Cluster(nodes) => format!("cluster via {}{tls}{user}", join(nodes)),
            Topology::Sentinel { sentinels, master } => {
                format!(
                    "master {master} via sentinels {}{tls}{user}",
                    join(sentinels)
                )
            }
        }
    }

    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: None,
            root_cert: self.ca_pem.clone(),
        }
    }

    /// The client of a single server, credentials and CA applied.
    pub(super) fn single_client(&self, url: &SecretString) -> RedisResult<redis::Client> {
        let info = url.expose_secret().into_connection_info()?;
        let settings = self.apply_auth(info.redis_settings().clone());
        let info = info.set_redis_settings(settings);
        if self.tls && self.ca_pem.is_some() {
            redis::Client::build_with_tls(info, self.certificates())
        } else {
            redis::Client::open(info)
        }
    }

    /// The cluster client for `nodes`; `resp3` for the subscription
    /// connection, which needs RESP3 push messages on a cluster.
    pub(super) fn cluster_client(
        &self,
        nodes: &[NodeAddr],
        resp3: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
        timeouts: (std::time::Duration, std::time::Duration),
    ) -> RedisResult<redis::cluster::ClusterClient> {
        let seeds: Vec<ConnectionInfo> = nodes
            .iter()
            .map(|node| self.node_info(node))
            .collect::<RedisResult<_>>()?;
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(timeouts.0)
            .response_timeout(timeouts.1)
            // A failover takes a few seconds; requests meanwhile wait and
            // retry instead of failing at once.
            .retries(6)
            .max_retry_wait(1000);
        if let Some(username) = &self.username {
            builder = builder.username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password.expose_secret());
        }
        if self.tls {
            builder = builder.tls(redis::TlsMode::Secure);
            if self.ca_pem.is_some() {
                builder = builder.certs(self.certificates());
            }
        }
        if let Some(sender) = resp3 {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(sender);
        }
        builder.build()
    }

    /// The Sentinel client that resolves `master`'s current address.
    pub(super) fn sentinel_client(
        &self,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> RedisResult<redis::sentinel::SentinelClient> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let addrs = sentinels.iter().map(|node| self.node_addr(node));
        let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?;
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password.expose_secret());
        }
        if self.tls {
            builder = builder
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
            if self.ca_pem.is_some() {
                builder = builder
                    .set_client_to_redis_certificates(self.certificates())
                    .set_client_to_sentinel_certificates(self.certificates());
            }
        }
        builder.build()
    }

    fn node_addr(&self, node: &NodeAddr) -> ConnectionAddr {
        if self.tls {
            ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(node.host.clone(), node.port)
        }
    }

    fn node_info(&self, node: &NodeAddr) -> RedisResult<ConnectionInfo> {
        let info = self.node_addr(node).into_connection_info()?;
        let settings = self.apply_auth(info.redis_settings().clone());
        Ok(info.set_redis_settings(settings))
    }

    fn apply_auth(&self, mut settings: redis::RedisConnectionInfo) -> redis::RedisConnectionInfo {
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose_secret());
        }
        settings
    }
}

/// By hand: the URL and password stay out.
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("target", &self.describe())
            .finish_non_exhaustive()
    }
}

fn join(nodes: &[NodeAddr]) -> String {
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port` (or the socket path) of a URL, without its credentials.
pub(super) fn address_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme().contains("unix") => parsed.path().to_owned(),
        Ok(parsed) => format!(
            "{}:{}",
            parsed.host_str().unwrap_or("?"),
            parsed.port().unwrap_or(DEFAULT_REDIS_PORT)
        ),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// Parses a comma-separated list of nodes; answers them and whether they
/// are TLS (`rediss://`). Credentials in an address are refused: they have
/// settings of their own, so that they can come from a file.
fn node_list(text: &str, default_port: u16) -> Result<(Vec<NodeAddr>, bool), TargetError> {
    let mut nodes = Vec::new();
    let mut scheme: Option<bool> = None;
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let with_scheme = if item.contains("://") {
            item.to_owned()
        } else {
            format!("redis://{item}")
        };
        let parsed = url::Url::parse(&with_scheme)
            .or_else(|_| refuse(format!("has an address that does not parse: {item:?}")))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return refuse("takes host:port, redis://host:port or rediss://host:port items"),
        };
        if *scheme.get_or_insert(tls) != tls {
            return refuse("mixes redis:// and rediss:// addresses");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return refuse(
                "must not carry credentials: set SWITCHBOARD_REDIS_USERNAME and \
                 SWITCHBOARD_REDIS_PASSWORD",
            );
        }
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return refuse(format!("takes host:port addresses only, not {item:?}"));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return refuse(format!("has an address without a host: {item:?}")),
        };
        let node = NodeAddr {
            host,
            port: parsed.port().unwrap_or(default_port),
        };
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    if nodes.is_empty() {
        return refuse("names no address");
    }
    if nodes.len() > MAX_NODES {
        return refuse(format!("names more than {MAX_NODES} addresses"));
    }
    Ok((nodes, scheme.unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse_and_refuse() {
        let target =
            RedisTarget::cluster(" 10.0.0.1:7000, redis://b.example , [::1]:7002").unwrap();
        assert_eq!(target.form(), "cluster");
        assert_eq!(
            target.describe(),
            "cluster via 10.0.0.1:7000,b.example:6379,[::1]:7002"
        );
        let tls = RedisTarget::sentinel("rediss://s1,rediss://s2:26380", "mymaster").unwrap();
        assert_eq!(
            tls.describe(),
            "master mymaster via sentinels s1:26379,s2:26380, TLS"
        );
        for (input, what) in [
            ("", "names no address"),
            ("redis://a,rediss://b", "mixes"),
            ("redis://u:pw@a:1", "credentials"),
            ("http://a:1", "takes host:port"),
            ("a:1/3", "host:port addresses only"),
            ("a:99999", "does not parse"),
        ] {
            let err = RedisTarget::cluster(input).unwrap_err().to_string();
            assert!(err.contains(what), "{input:?}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
        assert!(RedisTarget::sentinel("a", "bad name").is_err());
        assert!(RedisTarget::sentinel("a", "").is_err());
    }

    #[test]
    fn single_urls_and_tls_settings() {
        assert!(!RedisTarget::single("redis://127.0.0.1:6379").unwrap().tls);
        let tls = RedisTarget::single("rediss://:pw@cache.example:6380/2").unwrap();
        assert!(tls.tls && tls.url_has_credentials());
        assert_eq!(tls.describe(), "cache.example:6380, TLS");
        assert!(!format!("{tls:?}").contains("pw"));
        assert!(RedisTarget::single("http://x").is_err());
        assert!(RedisTarget::single("not a url").is_err());
        // A CA without TLS, or a file that holds no certificate.
        let plain = RedisTarget::single("redis://a").unwrap();
        assert!(plain.with_ca_pem(b"x".to_vec()).is_err());
        let err = RedisTarget::single("rediss://a")
            .unwrap()
            .with_ca_pem(b"not pem".to_vec())
            .unwrap_err();
        assert_eq!(err.to_string(), "holds no PEM certificate");
        assert!(
            RedisTarget::single("redis://a")
                .unwrap()
                .with_username("two words")
                .is_err()
        );
    }
}
