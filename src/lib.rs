//! switchboard: a self-hosted backend for authenticated web messaging.
//!
//! Website visitors and app users chat with contact-center agents; a
//! deployment can require that visitors first prove who they are at the
//! brand's own OpenID Connect IdP. switchboard keeps the admin records,
//! verifies ID tokens, holds the WebSocket sessions and routes conversations
//! through Redis, so any number of stateless nodes serve one contact center.
//! Without Redis it runs as one node on an embedded engine.
//!
//! # Layout
//!
//! From the edge down; a module uses only those below it (see
//! docs/architecture.md).
//!
//! - [`app`]: the composition root: the node's state ([`app::AppState`]),
//!   its shutdown signal, and the one router that puts the HTTP surface and
//!   the WebSocket gateway behind the same layers.
//! - [`http`]: every HTTP route (the admin API by resource, tokens, the
//!   guest token endpoints and history, `config.json`, staff sign-in, the
//!   console and snippet pages, health and metrics), the one HTTP error
//!   type, the extractors and the CORS helper.
//! - [`gateway`]: the two WebSocket protocols, guest (Genesys-compatible)
//!   and agent: one task per socket, frames parsed at the edge, delivery in
//!   sequence through a cursor; sockets decide nothing and ask routing.
//! - [`routing`]: conversations between visitors and agents: guest
//!   sessions, logs and notices, agents' presence, offers and assignment,
//!   the sweeper; every transition a pure decision committed with a version
//!   check. The only module that publishes bus notices.
//! - [`auth`]: who is calling: credentials and principals, the OIDC relying
//!   party, visitors' session JWTs and refresh tokens, staff sign-in, secrets
//!   at rest.
//! - [`store`]: typed admin records on the engine, per organization, with
//!   the published configuration a deployment runs.
//! - [`engine`]: storage and fan-out, on Redis or embedded, with one
//!   behaviour; the only place storage keys are spelled.
//! - [`limits`]: every rate, size and cap as a setting (per organization
//!   where a tenant's own traffic is concerned), the token buckets that
//!   enforce rates on every node alike, and the client address behind
//!   trusted proxies.
//! - [`serve`]: the accept loop (timeouts, the per-address cap, shutdown
//!   that does not wait for idle clients), native TLS with certificate
//!   reload, and the registry of what SIGHUP reloads.
//! - [`push`]: notifications to apps in the background (FCM, APNs) from an
//!   outbox in the engine, sent by one node at a time.
//! - [`attachments`]: files in conversations: the upload rules, content
//!   sniffing, signed short-lived URLs, and the bytes in the data directory
//!   or an S3-compatible bucket.
//! - [`config`]: the TOML file and environment variables a node starts from.
//! - [`telemetry`]: the log pipeline (pretty or JSON lines, never
//!   blocking) and the Prometheus metrics registry.
//! - [`cli`]: the terminal clients `switchboard chat` (a visitor) and
//!   `switchboard agent`, and the admin commands.
//!
//! [`Server::build`] turns a [`config::Config`] into a ready service;
//! [`Server::serve`] runs it on a bound listener until a shutdown future
//! resolves, then drains and closes. `main` only parses arguments, sets up
//! logging, binds, wires signals and calls these.

pub mod app;
pub mod attachments;
pub mod auth;
pub mod cli;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod push;
pub mod routing;
pub mod serve;
pub mod store;
pub mod telemetry;

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::net::TcpListener;

use app::{AppState, Shutdown};
use auth::Auth;
use config::{Config, MasterKey};
use engine::{EmbeddedEngine, Engine, EngineError, RedisEngine};
use store::{Store, StoreError};
use telemetry::Metrics;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// Redis did not answer: names the setting and the address (never the
    /// password a URL may carry).
    #[error("{setting} {address}: {message}")]
    Redis {
        /// The setting that chose this Redis form.
        setting: &'static str,
        address: String,
        message: String,
    },
    /// The embedded database could not be opened.
    #[error("{} {dir}: {message}", config::ENV_DATA_DIR)]
    DataDir { dir: String, message: String },
    #[error("records: {0}")]
    Store(#[from] StoreError),
    #[error("records: {0}")]
    Migration(#[from] store::migrations::MigrationError),
    #[error("master key file {path}: {message}")]
    MasterKey { path: String, message: String },
    /// The master key is not the one the stored secrets were sealed with.
    #[error(
        "{source_name} {message}: start with the master key this data was written with \
         (the stored secrets cannot be opened with another)"
    )]
    MasterKeyMismatch {
        source_name: String,
        message: String,
    },
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Push(#[from] push::PushError),
    #[error("attachments: {0}")]
    Attachments(String),
    #[error("{} {address}: cannot listen: {source}", config::ENV_METRICS_LISTEN)]
    MetricsListen {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS (SWITCHBOARD_TLS_CERT_FILE, SWITCHBOARD_TLS_KEY_FILE): {0}")]
    Tls(#[from] serve::tls::TlsError),
}

/// A node, built and ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    generated_bootstrap_token: Option<SecretString>,
    /// The metrics' own listener, when they have one.
    metrics_listener: Option<TcpListener>,
    /// Native TLS, when configured.
    tls: Option<Arc<serve::Tls>>,
}

impl Server {
    /// Opens the engine, prepares the master key, the default organization
    /// and the bootstrap credential.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let engine = match &config.redis {
            Some(target) => {
                let engine = RedisEngine::open(target, &config.redis_prefix)
                    .await
                    .map_err(|e| StartError::Redis {
                        setting: redis_setting(target),
                        address: target.describe(),
                        message: e.to_string(),
                    })?;
                tracing::info!(prefix = %config.redis_prefix, redis = %target.describe(), form = target.form(), "engine: redis; nodes sharing this Redis serve one contact center");
                Engine::Redis(engine)
            }
            None => {
                let engine = EmbeddedEngine::open(&config.data_dir).await.map_err(|e| {
                    StartError::DataDir {
                        dir: config.data_dir.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
                tracing::info!(
                    data_dir = %config.data_dir.display(),
                    "engine: embedded (no REDIS_URL); this node alone serves, keeping its data in the data directory"
                );
                Engine::Embedded(engine)
            }
        };
        let master = match &config.master_key {
            Some(key) => key.clone(),
            None => load_or_create_master_key(&config.data_dir)?,
        };
        let metrics_listener = match &config.telemetry.metrics_listen {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|source| {
                StartError::MetricsListen {
                    address: address.clone(),
                    source,
                }
            })?),
            None => None,
        };
        let metrics = Metrics::new();
        let oidc = auth::oidc::OidcClients::new(engine.clone(), config.oidc_allow_insecure);
        let store = Store::new(engine);
        let migrated = store::migrations::migrate(&store).await?;
        if !migrated.ran.is_empty() {
            tracing::info!(
                from = migrated.from,
                to = migrated.to,
                "records migrated to this build's schema"
            );
        }
        let bootstrapped = Auth::bootstrap(&config, &master, store.clone()).await?;
        let visitor_tokens =
            auth::visitor_token::VisitorTokens::new(&config, &master, store.clone());
        check_master_key(&config, &store, bootstrapped.auth.sealer(), &visitor_tokens).await?;
        let store_for_routing = store.clone();
        let config_routing = routing::RoutingConfig {
            agent_grace: config.agent_grace,
            retention: config.retention,
            ..routing::RoutingConfig::default()
        };
        let oidc = oidc.with_sealer(bootstrapped.auth.sealer().clone());
        let limiter = limits::Limiter::new(store.clone(), config.limits.clone());
        if !config.limits.trusted_proxies.is_empty() {
            tracing::info!(
                proxies = %config.limits.trusted_proxies.describe(),
                header = %config.limits.trusted_proxies.header(),
                "client addresses are read from trusted proxies' forwarding header"
            );
        }
        let tls = match &config.serve.tls {
            Some(files) => {
                let tls = serve::Tls::load(files.clone())?;
                tracing::info!(cert = %files.cert.display(), fingerprint = %tls.fingerprint(), "serving native TLS");
                Some(tls)
            }
            None => None,
        };
        let reloads = serve::Reloads::default();
        if let Some(tls) = &tls {
            let tls = tls.clone();
            reloads.register("TLS certificate", move |_| {
                tls.reload().map_err(|e| e.to_string())
            });
        }
        let push = push::Pusher::new(store.clone(), &config.push)?;
        if push.enabled() {
            tracing::info!(
                fcm = config.push.fcm.is_some(),
                apns = config.push.apns.is_some(),
                "push notifications to apps in the background"
            );
        }
        let attachments = attachments::Attachments::new(&config, &master, store.clone())
            .map_err(|e| StartError::Attachments(e.to_string()))?;
        tracing::info!(storage = attachments.describe(), "attachments");
        let state = AppState {
            attachments: attachments.clone(),
            push,
            limits: limiter.clone(),
            config: Arc::new(config),
            store,
            auth: bootstrapped.auth,
            metrics,
            oidc,
            visitor_tokens,
            routing: routing::Routing::new(store_for_routing, config_routing)
                .with_limiter(limiter)
                .with_attachments(attachments),
            shutdown: Shutdown::new(),
            reloads,
        };
        Ok(Self {
            state,
            generated_bootstrap_token: bootstrapped.generated_bootstrap_token,
            metrics_listener,
            tls,
        })
    }

    /// The bootstrap token, when this start generated it. It is never
    /// available again: only its digest is kept.
    pub fn generated_bootstrap_token(&self) -> Option<&SecretString> {
        self.generated_bootstrap_token.as_ref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the metrics' own listener listens, when they have one.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// What SIGHUP reloads; register more with [`serve::Reloads::register`].
    pub fn reloads(&self) -> &serve::Reloads {
        &self.state.reloads
    }

    /// Serves on `listener` until `shutdown` resolves. Then readiness turns
    /// 503 for the drain period (load balancers take the node out while it
    /// still serves), sockets are told to close (1001, so clients reconnect
    /// to another node), idle and half-sent connections close at once, HTTP
    /// requests in flight finish, and the routing sweeper stops.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let sockets = self.state.shutdown.clone();
        let sweeper = tokio::spawn(
            self.state
                .routing
                .clone()
                .sweep_until(sockets.clone().signalled()),
        );
        let pushes = tokio::spawn(
            self.state
                .push
                .clone()
                .deliver_until(sockets.clone().signalled()),
        );
        let metrics = self.metrics_listener.map(|listener| {
            let stop = sockets.clone().signalled();
            let router = http::metrics_router(self.state.metrics.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        let tls_watch = self
            .tls
            .clone()
            .map(|tls| tokio::spawn(tls.watch(sockets.clone().signalled())));
        let settings = self.state.config.serve.clone();
        let drain = settings.drain;
        let app = app::router(self.state);
        let stop = async move {
            shutdown.await;
            sockets.begin_drain();
            if !drain.is_zero() {
                tracing::info!(
                    seconds = drain.as_secs(),
                    "draining: readiness answers 503 while the node still serves"
                );
                tokio::time::sleep(drain).await;
            }
            sockets.begin();
            sockets.drained().await;
        };
        serve::accept_loop(listener, app, &settings, self.tls, stop).await;
        let _ = sweeper.await;
        let _ = pushes.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(watch) = tls_watch {
            let _ = watch.await;
        }
        Ok(())
    }
}

/// Refuses to start when the master key does not open the stored secrets:
/// the visitors' signing keys (which also creates them on a new store), then
/// the check value of [`auth::key_check`].
async fn check_master_key(
    config: &Config,
    store: &Store,
    sealer: &auth::crypto::Sealer,
    visitor_tokens: &auth::visitor_token::VisitorTokens,
) -> Result<(), StartError> {
    let source_name = match config.master_key {
        Some(_) => config::ENV_MASTER_KEY.to_owned(),
        None => format!(
            "the master key file {}",
            config.data_dir.join("master.key").display()
        ),
    };
    let mismatch = |message: String| StartError::MasterKeyMismatch {
        source_name: source_name.clone(),
        message,
    };
    match visitor_tokens.jwks().await {
        Ok(_) => {}
        Err(auth::visitor_token::SessionError::Corrupt(message)) => {
            return Err(mismatch(format!(
                "does not open the data already stored ({message})"
            )));
        }
        Err(other) => {
            return Err(StartError::Store(StoreError::Unavailable(
                other.to_string(),
            )));
        }
    }
    auth::key_check::verify(store, sealer)
        .await
        .map_err(|e| match e {
            auth::key_check::KeyCheckError::Mismatch(_) => mismatch(e.to_string()),
            auth::key_check::KeyCheckError::Store(e) => StartError::Store(e),
        })
}

/// `host:port` of a Redis URL, for messages: never its credentials.
pub fn redis_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme().contains("unix") => parsed.path().to_owned(),
        Ok(parsed) => format!(
            "{}:{}",
            parsed.host_str().unwrap_or("?"),
            parsed.port().unwrap_or(6379)
        ),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The setting that chose `target`'s form, for errors that name it.
pub fn redis_setting(target: &engine::RedisTarget) -> &'static str {
    match target.form() {
        "cluster" => config::ENV_REDIS_CLUSTER_NODES,
        "sentinel" => config::ENV_REDIS_SENTINELS,
        _ => config::ENV_REDIS_URL,
    }
}

/// The embedded engine's master key lives beside its data, created on first
/// start with owner-only permissions. Losing it loses the sealed secrets.
fn load_or_create_master_key(data_dir: &Path) -> Result<MasterKey, StartError> {
    let path = data_dir.join("master.key");
    let err = |message: String| StartError::MasterKey {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::from_base64(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
            write_private(&path, &key.to_base64()).map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated a master key for secrets at rest");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
