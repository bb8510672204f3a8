//! The accept loop: connections in, each served over HTTP/1.1 (with
//! WebSocket upgrades) on its own task, in plain text or native TLS.
//!
//! It owns what `axum::serve` leaves out and a node on the open internet
//! needs: a header-read timeout and an idle timeout, so a client that
//! dribbles bytes cannot hold a connection; a cap on open connections per
//! client address; and a shutdown that closes idle and half-sent
//! connections at once instead of waiting for their clients.

pub mod reload;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

pub use reload::{ReloadReport, Reloads};
pub use tls::Tls;

use crate::config::ServeSettings;

/// After the listener closed, how long requests in flight may take to
/// finish before their connections are dropped.
const FINISH_REQUESTS: Duration = Duration::from_secs(10);

/// At shutdown, how long a connection without a request in flight may
/// take to finish writing its last answer before it is dropped. Such a
/// connection is idle, or its client has not sent a whole request head:
/// neither may hold the node up.
const FLUSH: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` resolves; then stops accepting,
/// closes idle and half-sent connections, lets requests in flight finish
/// (within [`FINISH_REQUESTS`]) and answers.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    settings: &ServeSettings,
    tls: Option<Arc<Tls>>,
    stop: impl Future<Output = ()>,
) {
    let (closing, close) = watch::channel(false);
    let addresses = Arc::new(Addresses::new(settings));
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                };
                no_delay(&stream);
                let Some(slot) = addresses.admit(peer.ip()) else {
                    tracing::debug!(peer = %peer.ip(), "connection refused: this address holds its maximum of open connections");
                    drop(stream);
                    continue;
                };
                let connection = Connection {
                    app: app.clone(),
                    peer,
                    header_timeout: settings.header_timeout,
                    idle_timeout: settings.idle_timeout,
                    close: close.clone(),
                };
                let tls = match &tls {
                    Some(tls) => match tls.acceptor() {
                        Some(acceptor) => Some(acceptor),
                        None => continue,
                    },
                    None => None,
                };
                connections.spawn(connection.run(stream, slot, tls));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    closing.send_replace(true);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(FINISH_REQUESTS, finished)
        .await
        .is_err()
    {
        tracing::info!(
            connections = connections.len(),
            "closing connections whose requests did not finish in time"
        );
        connections.shutdown().await;
    }
}

/// Errors from `accept` are about one connection (reset before it was
/// taken) or about the process (out of file descriptors): the first are
/// skipped, the second wait a moment instead of spinning.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Frames go out as soon as they are written: without `TCP_NODELAY`, a
/// small frame that follows another (an answer, then its event) waits for
/// the peer's delayed ACK, some 40 ms.
pub fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    idle_timeout: Duration,
    close: watch::Receiver<bool>,
}

impl Connection {
    /// The slot travels with the stream: a connection upgraded to a
    /// WebSocket keeps counting against its address until the socket
    /// closes.
    async fn run(self, stream: TcpStream, slot: Slot, tls: Option<tokio_rustls::TlsAcceptor>) {
        let stream = Watched::new(stream, slot);
        let activity = stream.activity.clone();
        match tls {
            None => self.serve(stream, activity).await,
            Some(acceptor) => {
                // The handshake counts against the header timeout: a client
                // that opens a connection and says nothing is not served.
                match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => self.serve(stream, activity).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn serve<I>(mut self, io: I, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let peer = self.peer;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let requests = in_flight.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::new(requests.clone());
            let app = app.clone();
            async move {
                let _busy = busy;
                app.oneshot(request).await
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, peer = %peer.ip(), "connection ended");
                    }
                    return;
                }
                // Shutdown: a connection with a request in flight closes
                // after its answer; one without (idle, or a request head
                // not yet whole) closes now, once its last answer is out.
                changed = self.close.wait_for(|closing| *closing), if !closing => {
                    closing = true;
                    if changed.is_ok() {
                        connection.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep(FLUSH), if closing => {
                    if in_flight.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                }
                () = activity.idle(self.idle_timeout) => {
                    tracing::debug!(peer = %peer.ip(), "closing a connection idle for too long");
                    return;
                }
            }
        }
    }
}

/// Counts a request in flight on its connection until dropped.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Open connections by client address, for the per-address cap.
struct Addresses {
    cap: Option<usize>,
    settings: ServeSettings,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Addresses {
    fn new(settings: &ServeSettings) -> Self {
        Self {
            cap: settings.max_connections_per_address,
            settings: settings.clone(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `peer`, or `None` when it holds
    /// the maximum.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let Some(cap) = self.cap else {
            return Some(Slot(None));
        };
        if !self.settings.capped(peer) {
            return Some(Slot(None));
        }
        let mut open = self.open.lock().ok()?;
        let count = open.entry(peer).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Slot(Some((self.clone(), peer))))
    }
}

/// Held for as long as a counted connection is open.
struct Slot(Option<(Arc<Addresses>, IpAddr)>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((addresses, peer)) = self.0.take()
            && let Ok(mut open) = addresses.open.lock()
            && let Some(count) = open.get_mut(&peer)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&peer);
            }
        }
    }
}

/// When a byte last moved on a connection, either way.
struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let last = self.since + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records its activity, and holds its address's slot.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl<S> Watched<S> {
    fn new(inner: S, slot: Slot) -> Self {
        Self {
            inner,
            activity: Arc::new(Activity {
                since: Instant::now(),
                last: AtomicU64::new(0),
            }),
            _slot: slot,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        no_delay(&accepted);
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }

    #[test]
    fn the_cap_counts_per_address_and_frees_on_close() {
        let mut settings = crate::config::Config::load_with(None, |name| {
            (name == crate::config::serve::ENV_MAX_CONNECTIONS_PER_ADDRESS).then(|| "2".to_owned())
        })
        .unwrap()
        .serve;
        settings.uncapped.clear();
        let addresses = Arc::new(Addresses::new(&settings));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = addresses.admit(a).unwrap();
        let _second = addresses.admit(a).unwrap();
        assert!(addresses.admit(a).is_none(), "the third from one address");
        assert!(
            addresses.admit(b).is_some(),
            "another address is counted apart"
        );
        drop(first);
        assert!(
            addresses.admit(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}
