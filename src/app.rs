//! The composition root: the node's shared state, its shutdown signal, and
//! the one router that puts the HTTP surface and the WebSocket gateway
//! together.
//!
//! Everything below this module takes only what it needs: handlers name a
//! narrower piece of [`AppState`] through [`FromRef`], and no module under
//! `engine`, `store`, `routing` or `auth` knows that HTTP exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use tokio::sync::{Notify, watch};

use crate::auth::Auth;
use crate::auth::oidc::OidcClients;
use crate::auth::visitor_token::VisitorTokens;
use crate::config::Config;
use crate::limits::Limiter;
use crate::routing::Routing;
use crate::store::Store;
use crate::telemetry::Metrics;

/// The whole node: what every handler and socket can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Auth,
    pub metrics: Metrics,
    /// The OIDC relying party: cached discovery and keys per integration.
    pub oidc: OidcClients,
    /// Visitors' session JWTs and refresh tokens.
    pub visitor_tokens: VisitorTokens,
    /// Conversations, queues and agents.
    pub routing: Routing,
    /// Rates, sizes and caps in force, and the buckets behind rates.
    pub limits: Limiter,
    /// Notifications to apps whose visitor is away.
    pub push: crate::push::Pusher,
    /// Files in conversations: rules, signed URLs, bytes and records.
    pub attachments: crate::attachments::Attachments,
    /// Tells sockets the node is shutting down, and counts them out.
    pub shutdown: Shutdown,
    /// What SIGHUP reloads: each part of the node that can change while
    /// running registers itself here.
    pub reloads: crate::serve::Reloads,
}

/// The node's router: the HTTP surface and the gateway's sockets, behind
/// the layers every request passes.
pub fn router(state: AppState) -> Router {
    // Compression for the HTTP answers only: a WebSocket upgrade has no
    // body to compress.
    let routes = crate::http::router()
        .layer(crate::http::compression())
        .merge(crate::gateway::router());
    crate::http::layered(routes, state)
}

macro_rules! substate {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.$field.clone()
            }
        }
    )*};
}

substate!(
    config: Arc<Config>,
    store: Store,
    auth: Auth,
    metrics: Metrics,
    oidc: OidcClients,
    visitor_tokens: VisitorTokens,
    routing: Routing,
    limits: Limiter,
    shutdown: Shutdown,
);

/// The node's shutdown as sockets see it: a signal to close (with 1001, so
/// clients reconnect elsewhere) and a count of sockets still open.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Set on SIGTERM: readiness answers 503 while the node still serves.
    draining: Arc<std::sync::atomic::AtomicBool>,
    signal: Arc<watch::Sender<bool>>,
    open: Arc<(AtomicUsize, Notify)>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            signal: Arc::new(watch::channel(false).0),
            open: Arc::new((AtomicUsize::new(0), Notify::new())),
        }
    }

    /// The drain before closing: readiness turns 503, so load balancers
    /// stop sending new clients, while everything still works.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is draining or closing.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || *self.signal.borrow()
    }

    /// Tells every socket to close.
    pub fn begin(&self) {
        self.begin_drain();
        self.signal.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn signalled(self) {
        let mut rx = self.signal.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Registers an open socket until the guard is dropped.
    pub fn guard(&self) -> SocketGuard {
        self.open.0.fetch_add(1, Ordering::SeqCst);
        SocketGuard {
            open: self.open.clone(),
        }
    }

    /// Waits until every socket has closed, or ten seconds at most: a client
    /// that never answers the close must not hold the node up.
    pub async fn drained(&self) {
        let wait = async {
            loop {
                let notified = self.open.1.notified();
                if self.open.0.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }

    pub fn open_sockets(&self) -> usize {
        self.open.0.load(Ordering::SeqCst)
    }
}

/// Held by a socket task for as long as its socket is open.
#[derive(Debug)]
pub struct SocketGuard {
    open: Arc<(AtomicUsize, Notify)>,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.open.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.open.1.notify_waiters();
        }
    }
}
