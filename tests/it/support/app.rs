//! A real switchboard server on a free port, on either engine, and [`Api`],
//! typed helpers for the HTTP API of any node (in-process or a process).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::Server;
use switchboard::config::{self, Config, MasterKey};
use switchboard::limits;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::redis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EngineKind {
    Redis,
    Embedded,
    /// The shared 3-master Redis Cluster ([`redis::cluster::shared`]).
    Cluster,
    /// The shared Sentinel set ([`redis::sentinel::shared`]).
    Sentinel,
}

/// The settings that point a node at `kind`'s Redis form, and a fresh
/// prefix; none for the embedded engine.
pub(crate) fn redis_env(kind: EngineKind) -> Vec<(&'static str, String)> {
    let form = match kind {
        EngineKind::Embedded => return Vec::new(),
        EngineKind::Redis => vec![(config::ENV_REDIS_URL, redis::shared().url())],
        EngineKind::Cluster => vec![(
            config::ENV_REDIS_CLUSTER_NODES,
            redis::cluster::shared().seeds(),
        )],
        EngineKind::Sentinel => vec![
            (
                config::ENV_REDIS_SENTINELS,
                redis::sentinel::shared().sentinels(),
            ),
            (
                config::ENV_REDIS_SENTINEL_MASTER,
                redis::sentinel::MASTER_NAME.to_owned(),
            ),
        ],
    };
    let mut env = form;
    env.push((config::ENV_REDIS_PREFIX, super::unique_prefix()));
    env
}

/// The rates per client address that [`Setup::new`] lifts.
pub(crate) const PER_ADDRESS_LIMITS: [&str; 2] = [
    limits::ENV_SESSIONS_PER_ADDRESS,
    limits::ENV_CONVERSATIONS_PER_ADDRESS,
];

/// Limits every test node runs with unless a test asks for the shipped
/// ones: all of a test's visitors come from 127.0.0.1, and its visitors and
/// agents write as fast as the machine lets them, which the defaults would
/// (rightly) take for abuse; a test would otherwise wait out a rate window
/// between two steps. The tests of those limits set or restore them.
pub(crate) fn lifted_limits() -> Vec<(&'static str, &'static str)> {
    let mut lifted: Vec<(&str, &str)> = PER_ADDRESS_LIMITS
        .iter()
        .map(|name| (*name, "1000000/s"))
        .collect();
    lifted.push((limits::ENV_QUEUED_PER_ADDRESS, "10000"));
    lifted.push((limits::ENV_GUEST_MESSAGES, "1000000/s"));
    lifted.push((limits::ENV_AGENT_MESSAGES, "1000000/s"));
    lifted.push((limits::ENV_ORG_AGENT_MESSAGES, "1000000/s"));
    lifted
}

/// Settings that survive a restart: the same data, keys and prefix.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    pub env: HashMap<String, String>,
    /// Keeps the embedded engine's directory alive for the whole test.
    pub data_dir: Arc<tempfile::TempDir>,
}

impl Setup {
    pub(crate) fn new(kind: EngineKind) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        let mut env = HashMap::new();
        env.insert(
            config::ENV_MASTER_KEY.to_owned(),
            MasterKey::generate().to_base64(),
        );
        env.insert(
            config::ENV_BOOTSTRAP_TOKEN.to_owned(),
            format!("sbb_test_{}", Uuid::new_v4().simple()),
        );
        env.insert(
            config::ENV_DATA_DIR.to_owned(),
            data_dir.path().display().to_string(),
        );
        env.insert(
            config::ENV_OIDC_ALLOW_INSECURE.to_owned(),
            "true".to_owned(),
        );
        // Every test's visitors come from 127.0.0.1: the limits per client
        // address would otherwise turn one test's many sessions into an
        // abuse. The tests of those limits unset these.
        for (name, value) in lifted_limits() {
            env.insert(name.to_owned(), value.to_owned());
        }
        // Stopping a test's node need not wait for a load balancer.
        env.insert(config::serve::ENV_DRAIN_SECONDS.to_owned(), "0".to_owned());
        for (name, value) in redis_env(kind) {
            env.insert(name.to_owned(), value);
        }
        Self { env, data_dir }
    }

    pub(crate) fn set(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn unset(mut self, name: &str) -> Self {
        self.env.remove(name);
        self
    }

    /// Every limit as shipped (see [`lifted_limits`]).
    pub(crate) fn shipped_limits(mut self) -> Self {
        for (name, _) in lifted_limits() {
            self.env.remove(name);
        }
        self
    }

    /// With the limits per client address at their defaults (see
    /// [`Setup::new`]).
    pub(crate) fn address_limits(mut self) -> Self {
        for name in PER_ADDRESS_LIMITS {
            self.env.remove(name);
        }
        self.env.remove(limits::ENV_QUEUED_PER_ADDRESS);
        self
    }

    pub(crate) fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    pub(crate) fn config(&self, listen: SocketAddr) -> Config {
        let mut env = self.env.clone();
        env.insert(config::ENV_LISTEN.to_owned(), listen.to_string());
        env.entry(config::ENV_PUBLIC_URL.to_owned())
            .or_insert_with(|| format!("http://{listen}"));
        Config::load_with(None, |name| env.get(name).cloned()).unwrap()
    }
}

/// An in-process node. Dereferences to its [`Api`], so `app.post(..)`,
/// `app.base` and the socket and site helpers work on it directly.
pub(crate) struct TestApp {
    pub setup: Setup,
    pub addr: SocketAddr,
    api: Api,
    pub bootstrap: String,
    /// The node's state, for tests that call services directly; dropped by
    /// `stop`, so a restart can reopen the embedded engine's database.
    state: Option<switchboard::app::AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

/// Binds `addr`, waiting while it is in use: after a restart, the stopped
/// server's listener may live on for a moment in a child that another
/// test's thread forked while it was open (until the child execs).
async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

impl TestApp {
    pub(crate) async fn spawn(kind: EngineKind) -> TestApp {
        Self::spawn_with(Setup::new(kind)).await
    }

    pub(crate) async fn spawn_with(setup: Setup) -> TestApp {
        // Not port 0: a restart binds the same port again (see `free_port`).
        let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        Self::spawn_on(setup, addr).await
    }

    async fn spawn_on(setup: Setup, addr: SocketAddr) -> TestApp {
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let config = setup.config(addr);
        let server = Server::build(config).await.unwrap();
        let generated_bootstrap = server
            .generated_bootstrap_token()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).to_owned());
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let bootstrap = setup
            .env
            .get(config::ENV_BOOTSTRAP_TOKEN)
            .cloned()
            .or(generated_bootstrap)
            .unwrap_or_default();
        TestApp {
            api: Api::new(format!("http://{addr}")),
            setup,
            addr,
            bootstrap,
            state: Some(state),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits until it has let go of its engine.
    pub(crate) async fn stop(&mut self) {
        self.state = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
            if !self.setup.env.contains_key(config::ENV_REDIS_PREFIX) {
                self.await_embedded_closed().await;
            }
        }
    }

    /// A task the server spawned may hold the embedded database a moment
    /// after `serve` returned (a real node's process exits instead). The
    /// file is free once this process can open it itself; then a command
    /// run in another process (the CLI) can too.
    async fn await_embedded_closed(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match switchboard::engine::EmbeddedEngine::open(&self.setup.data_path()).await {
                Ok(engine) => return drop(engine),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the stopped server still holds its embedded database: {e}"),
            }
        }
    }

    /// A new server on the same data (and, on Redis, the same prefix).
    pub(crate) async fn restart(mut self) -> TestApp {
        self.stop().await;
        let bootstrap = self.bootstrap.clone();
        // The same address, so the public URL (the issuer of access tokens)
        // stays the same, as it does for a real node.
        let mut app = Self::spawn_on(self.setup.clone(), self.addr).await;
        app.bootstrap = bootstrap;
        app
    }

    /// The running node's state (services such as `sessions`).
    /// The default organization, where the tests' records live unless
    /// they make another.
    pub(crate) fn org(&self) -> switchboard::store::types::OrgId {
        self.state().auth.default_org()
    }

    pub(crate) fn state(&self) -> &switchboard::app::AppState {
        self.state.as_ref().expect("the app was stopped")
    }

    /// An admin access token of the default organization.
    pub(crate) async fn admin(&self) -> String {
        let bootstrap = self.bootstrap.clone();
        self.client_token(&bootstrap, &["admin"]).await
    }

    /// A new organization (the operator adds it): an access token of its
    /// first admin API client.
    pub(crate) async fn other_organization(&self, name: &str) -> String {
        let created = self
            .post(
                "/api/v2/organizations",
                &self.bootstrap.clone(),
                json!({ "name": name }),
            )
            .await
            .expect(StatusCode::CREATED);
        let client = &created["client"];
        self.access_token(
            client["id"].as_str().unwrap(),
            client["secret"].as_str().unwrap(),
        )
        .await
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The HTTP API of one node: its address and a client.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            // A node that stops answering fails the test in a minute, as
            // the socket helpers' waits do, instead of holding the suite.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// Sends raw bytes as a JSON body.
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        Reply::from(request.send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// The same address with the WebSocket scheme, and `path`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http", "ws", 1))
    }

    /// POSTs `body` to `path` through `token`, expects 201 Created and
    /// answers the new record's id.
    pub(crate) async fn create(&self, path: &str, token: &str, body: Value) -> String {
        let created = self
            .post(path, token, body)
            .await
            .expect(StatusCode::CREATED);
        created["id"].as_str().unwrap().to_owned()
    }

    /// Creates an API client `name` with `roles` through `token`: its id
    /// and an access token for it.
    pub(crate) async fn client(&self, token: &str, name: &str, roles: &[&str]) -> (Uuid, String) {
        let created = self
            .post(
                "/api/v2/oauth/clients",
                token,
                json!({ "name": name, "roles": roles }),
            )
            .await
            .expect(StatusCode::CREATED);
        let id = created["id"].as_str().unwrap();
        let access = self
            .access_token(id, created["secret"].as_str().unwrap())
            .await;
        (id.parse().unwrap(), access)
    }

    /// Creates an API client with `roles` through `token` and returns an
    /// access token for it.
    pub(crate) async fn client_token(&self, token: &str, roles: &[&str]) -> String {
        self.client(token, "test client", roles).await.1
    }

    pub(crate) async fn access_token(&self, id: &str, secret: &str) -> String {
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await.expect(StatusCode::OK);
        assert_eq!(reply["token_type"], "bearer");
        reply["access_token"].as_str().unwrap().to_owned()
    }

    /// Polls `GET path` until it answers `status`, for at most `within`.
    pub(crate) async fn await_status(&self, path: &str, status: StatusCode, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let reply = self.call(Method::GET, path, None, None).await;
            if reply.status == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never answered {status} within {within:?}: {} {}",
                reply.status,
                reply.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub(crate) async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub(crate) fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self.json
    }

    /// Asserts an error answer: status and machine code.
    #[track_caller]
    pub(crate) fn expect_error(self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert_eq!(self.json["code"], code, "unexpected error: {}", self.text);
        assert!(
            self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
        self.json
    }
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.json[key]
    }
}

/// Runs one async test body against both engines and the other Redis
/// forms: a 3-master cluster and a Sentinel set.
#[macro_export]
macro_rules! on_every_engine {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name($crate::support::app::EngineKind::Redis).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::support::app::EngineKind::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$name($crate::support::app::EngineKind::Cluster).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sentinel() {
                super::$name($crate::support::app::EngineKind::Sentinel).await;
            }
        }
    };
}

/// Runs one async test body against both engines.
#[macro_export]
macro_rules! on_both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name($crate::support::app::EngineKind::Redis).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::support::app::EngineKind::Embedded).await;
            }
        }
    };
}
