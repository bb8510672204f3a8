//! An IdP that misbehaves on purpose: an axum server on 127.0.0.1:0 serving
//! discovery (at any path ending in `/.well-known/openid-configuration`), a
//! key set, a token endpoint and UserInfo, each overridable per test, with
//! counters of what it was asked. Tokens are signed with throwaway keys
//! committed under tests/fixtures/oidc/.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub(crate) const RSA_A_PUBLIC_PEM: &[u8] = include_bytes!("../../fixtures/oidc/rsa-a.pub.pem");

/// A signing key of the test IdP, with its public JWK.
#[derive(Clone)]
pub(crate) struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    fn load(pem: &[u8], alg: Algorithm, kid: &str) -> TestKey {
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        };
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    pub(crate) fn rsa_a() -> TestKey {
        Self::load(
            include_bytes!("../../fixtures/oidc/rsa-a.pem"),
            Algorithm::RS256,
            "rsa-a",
        )
    }

    pub(crate) fn rsa_b() -> TestKey {
        Self::load(
            include_bytes!("../../fixtures/oidc/rsa-b.pem"),
            Algorithm::RS256,
            "rsa-b",
        )
    }

    /// A key the IdP never published.
    pub(crate) fn rsa_attacker() -> TestKey {
        Self::load(
            include_bytes!("../../fixtures/oidc/rsa-attacker.pem"),
            Algorithm::RS256,
            "rsa-attacker",
        )
    }

    pub(crate) fn ec_a() -> TestKey {
        Self::load(
            include_bytes!("../../fixtures/oidc/ec-a.pem"),
            Algorithm::ES256,
            "ec-a",
        )
    }

    /// The same key under another kid (an attacker reusing a known kid).
    pub(crate) fn with_kid(mut self, kid: &str) -> TestKey {
        self.kid = kid.to_owned();
        self.jwk["kid"] = json!(kid);
        self
    }
}

/// What discovery answers.
#[derive(Clone, Debug)]
pub(crate) enum DiscoveryMode {
    Normal,
    /// A redirect to the real document (never to be followed).
    Redirect,
    /// A document over the 1 MiB cap.
    Huge,
}

/// What the token endpoint answers.
#[derive(Clone, Debug)]
pub(crate) enum TokenAnswer {
    /// 200 with this ID token and an access token.
    IdToken(String),
    /// This status and JSON body.
    Raw(u16, Value),
}

/// A request the token endpoint received.
#[derive(Clone, Debug)]
pub(crate) struct TokenRequest {
    pub authorization: Option<String>,
    pub form: Vec<(String, String)>,
}

impl TokenRequest {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Behaviour {
    discovery_issuer: Option<String>,
    discovery_mode: DiscoveryMode,
    keys: Vec<Value>,
    token: TokenAnswer,
    userinfo: Value,
}

struct Shared {
    base: String,
    behaviour: Mutex<Behaviour>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    userinfo_calls: AtomicUsize,
    paths: Mutex<Vec<String>>,
    token_requests: Mutex<Vec<TokenRequest>>,
}

pub(crate) struct HostileIdp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub issuer: String,
    pub signer: TestKey,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for HostileIdp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl HostileIdp {
    /// An IdP that, until told otherwise, behaves: it publishes `rsa-a` and
    /// signs with it.
    pub(crate) async fn start() -> HostileIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let signer = TestKey::rsa_a();
        let shared = Arc::new(Shared {
            base: base.clone(),
            behaviour: Mutex::new(Behaviour {
                discovery_issuer: None,
                discovery_mode: DiscoveryMode::Normal,
                keys: vec![signer.jwk.clone()],
                token: TokenAnswer::Raw(400, json!({"error": "invalid_grant"})),
                userinfo: json!({"sub": "user-1"}),
            }),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            userinfo_calls: AtomicUsize::new(0),
            paths: Mutex::new(Vec::new()),
            token_requests: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        HostileIdp {
            issuer: base,
            signer,
            shared,
            shutdown: Some(tx),
        }
    }

    fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.behaviour.lock().unwrap());
    }

    /// The `issuer` the discovery document states (default: the URL's).
    pub(crate) fn set_discovery_issuer(&self, issuer: &str) {
        self.behave(|b| b.discovery_issuer = Some(issuer.to_owned()));
    }

    pub(crate) fn set_discovery_mode(&self, mode: DiscoveryMode) {
        self.behave(|b| b.discovery_mode = mode);
    }

    /// Publishes exactly these keys from now on.
    pub(crate) fn set_keys(&self, keys: &[&TestKey]) {
        let keys = keys.iter().map(|k| k.jwk.clone()).collect();
        self.behave(|b| b.keys = keys);
    }

    pub(crate) fn set_token_answer(&self, answer: TokenAnswer) {
        self.behave(|b| b.token = answer);
    }

    pub(crate) fn set_userinfo(&self, userinfo: Value) {
        self.behave(|b| b.userinfo = userinfo);
    }

    pub(crate) fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn userinfo_calls(&self) -> usize {
        self.shared.userinfo_calls.load(Ordering::SeqCst)
    }

    /// Every path (with query) the IdP was asked for.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.shared.paths.lock().unwrap().clone()
    }

    pub(crate) fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.token_requests.lock().unwrap().clone()
    }

    /// Claims of a valid ID token for `client_id`, issued now for 5 minutes.
    pub(crate) fn claims(&self, client_id: &str) -> Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": self.issuer,
            "sub": "user-1",
            "aud": client_id,
            "exp": now + 300,
            "iat": now,
            "email": "ada@example.com",
            "email_verified": true,
            "given_name": "Ada",
            "family_name": "Lovelace",
            "name": "Ada Lovelace",
        })
    }

    /// Signed with the IdP's current key, naming its kid.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        sign_with(&self.signer, claims)
    }
}

/// Signs with `key`, naming its kid.
pub(crate) fn sign_with(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// Signs with an arbitrary header and key material.
pub(crate) fn sign_header(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token whose header is exactly `header` (JSON) and whose signature is
/// `signature` (already base64url), for headers jsonwebtoken cannot write.
pub(crate) fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    shared.paths.lock().unwrap().push(path_and_query);
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();

    if method == Method::GET && path.ends_with("/.well-known/openid-configuration") {
        return discovery(&shared);
    }
    match (method, path.as_str()) {
        (Method::GET, "/jwks") => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let keys = shared.behaviour.lock().unwrap().keys.clone();
            axum::Json(json!({ "keys": keys })).into_response()
        }
        (Method::POST, "/token") => token(&shared, &headers, &body),
        (Method::GET, "/userinfo") => {
            shared.userinfo_calls.fetch_add(1, Ordering::SeqCst);
            let userinfo = shared.behaviour.lock().unwrap().userinfo.clone();
            axum::Json(userinfo).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn discovery(shared: &Shared) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let (issuer, mode) = {
        let b = shared.behaviour.lock().unwrap();
        (
            b.discovery_issuer
                .clone()
                .unwrap_or_else(|| shared.base.clone()),
            b.discovery_mode.clone(),
        )
    };
    let base = &shared.base;
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "PS256", "HS256", "ES512K"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
    });
    match mode {
        DiscoveryMode::Normal => axum::Json(document).into_response(),
        DiscoveryMode::Redirect => (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                format!("{base}/elsewhere/.well-known/openid-configuration"),
            )],
        )
            .into_response(),
        DiscoveryMode::Huge => {
            document["padding"] = json!("x".repeat(2 * 1024 * 1024));
            axum::Json(document).into_response()
        }
    }
}

fn token(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.token_requests.lock().unwrap().push(TokenRequest {
        authorization,
        form,
    });
    let answer = shared.behaviour.lock().unwrap().token.clone();
    match answer {
        TokenAnswer::IdToken(id_token) => axum::Json(json!({
            "access_token": "idp-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }))
        .into_response(),
        TokenAnswer::Raw(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
    }
}
