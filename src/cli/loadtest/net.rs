//! Client sockets: loopback-only targets, spread over loopback source
//! addresses, `TCP_NODELAY`, small WebSocket buffers.
//!
//! One source address gives the kernel about 28,000 ephemeral ports, and
//! a port bound before connecting is taken for every destination; cycling
//! over `127.0.0.x` multiplies that, so thousands of sockets opened and
//! closed run after run never run out of 4-tuples.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use super::LoadError;

/// A client WebSocket of the load tool.
pub(super) type Ws = WebSocketStream<TcpStream>;

/// How long one connect plus handshake may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One node the tool talks to: its address and how to reach it.
#[derive(Debug)]
pub struct Target {
    /// `http://host:port`, for the admin API.
    pub base: String,
    address: SocketAddr,
    /// `host:port` as the Host header should say it.
    authority: String,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    config: WebSocketConfig,
}

impl Target {
    /// Parses `--url`; refuses anything that is not on this machine's
    /// loopback: a load test never sends traffic elsewhere.
    pub fn new(url: &str, source_addresses: u8) -> Result<Self, LoadError> {
        Self::with(url, |ip| match ip {
            // 127.0.0.0/8 is all loopback on Linux.
            IpAddr::V4(_) => (1..=source_addresses.max(1))
                .map(|x| IpAddr::V4(Ipv4Addr::new(127, 0, 0, x)))
                .collect(),
            IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
        })
    }

    /// As [`Target::new`], with client sockets from `sources` (IPv4
    /// targets; an IPv6 one uses its own address).
    pub fn with_sources(url: &str, sources: Vec<IpAddr>) -> Result<Self, LoadError> {
        Self::with(url, |ip| match ip {
            IpAddr::V4(_) => sources,
            IpAddr::V6(v6) => vec![IpAddr::V6(v6)],
        })
    }

    fn with(url: &str, sources: impl FnOnce(IpAddr) -> Vec<IpAddr>) -> Result<Self, LoadError> {
        let parsed = Url::parse(url).map_err(|e| LoadError::Usage(format!("--url {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "ws") {
            return Err(LoadError::Usage(format!(
                "--url {url}: only http:// or ws:// (loopback) targets"
            )));
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| LoadError::Usage(format!("--url {url}: no port")))?;
        let ip: IpAddr = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain("localhost")) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => {
                return Err(LoadError::Usage(format!(
                    "--url {url}: the host must be a loopback address or localhost"
                )));
            }
        };
        if !ip.is_loopback() {
            return Err(LoadError::Usage(format!(
                "--url {url}: {ip} is not a loopback address; load is only sent to this machine"
            )));
        }
        let address = SocketAddr::new(ip, port);
        let sources = sources(ip);
        let config = WebSocketConfig::default()
            // Thousands of client sockets: 4 KiB each rather than 128 KiB.
            .read_buffer_size(4096)
            // Each frame goes out when sent: latency is what is measured.
            .write_buffer_size(0);
        Ok(Self {
            base: format!("http://{address}"),
            authority: address.to_string(),
            address,
            sources,
            next_source: AtomicUsize::new(0),
            config,
        })
    }

    /// Opens a WebSocket to `path_and_query`, with an optional header
    /// (`origin` for guests, `authorization` for agents).
    pub async fn connect(
        &self,
        path_and_query: &str,
        header: Option<(&'static str, &str)>,
    ) -> Result<Ws, LoadError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now(path_and_query, header))
            .await
            .map_err(|_| LoadError::Connect("connect and handshake took over 10 s".to_owned()))?
    }

    async fn connect_now(
        &self,
        path_and_query: &str,
        header: Option<(&'static str, &str)>,
    ) -> Result<Ws, LoadError> {
        let index = self.next_source.fetch_add(1, Ordering::Relaxed);
        let source = self
            .sources
            .get(index % self.sources.len().max(1))
            .copied()
            .unwrap_or(self.address.ip());
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(connect_error)?;
        // Ports left in TIME_WAIT by an earlier run may be bound again.
        socket.set_reuseaddr(true).map_err(connect_error)?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(connect_error)?;
        let stream = socket.connect(self.address).await.map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let mut request = format!("ws://{}{path_and_query}", self.authority)
            .into_client_request()
            .map_err(|e| LoadError::Connect(e.to_string()))?;
        if let Some((name, value)) = header {
            let value = HeaderValue::from_str(value)
                .map_err(|_| LoadError::Usage(format!("the {name} is not a valid header value")))?;
            request.headers_mut().insert(name, value);
        }
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(self.config))
                .await
                .map_err(refused)?;
        Ok(ws)
    }
}

fn connect_error(e: std::io::Error) -> LoadError {
    LoadError::Connect(e.to_string())
}

/// A refused handshake says what the server answered.
fn refused(e: tungstenite::Error) -> LoadError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            LoadError::Connect(format!("HTTP {} {body}", response.status().as_u16()))
        }
        other => LoadError::Connect(other.to_string()),
    }
}

/// What a read from a socket gave.
pub(super) enum Incoming {
    /// A text frame (or JSON in a binary frame).
    Text(tungstenite::Utf8Bytes),
    /// The socket is closed or broken.
    Closed,
    /// A control frame: nothing to do (tungstenite answers pings itself).
    Other,
}

/// Reads the next frame.
pub(super) async fn next(ws: &mut Ws) -> Incoming {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Binary(bytes))) => match tungstenite::Utf8Bytes::try_from(bytes) {
            Ok(text) => Incoming::Text(text),
            Err(_) => Incoming::Other,
        },
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Incoming::Closed,
        Some(Ok(_)) => Incoming::Other,
    }
}

/// Sends one JSON text frame.
pub(super) async fn send(ws: &mut Ws, frame: String) -> Result<(), LoadError> {
    ws.send(Message::text(frame))
        .await
        .map_err(|e| LoadError::Connect(e.to_string()))
}
