//! Token throughput: ID-token verification with cached IdP keys, and
//! session-JWT issue and verify. `cargo bench --bench auth`; figures in
//! docs/benchmarks.md.
//!
//! The IdP is a tiny in-process server that serves discovery and a key set
//! once; after the first (warm-up) verification every measured call works
//! from cached keys, as ID-token verification must on the hot path.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark that cannot go on should stop loudly"
)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm as JwtAlgorithm, EncodingKey, Header};
use serde_json::json;
use switchboard::auth::oidc::OidcClients;
use switchboard::auth::visitor_token::{SessionGrant, VisitorIdentity, VisitorTokens};
use switchboard::config::{Config, MasterKey};
use switchboard::engine::{EmbeddedEngine, Engine};
use switchboard::store::Store;
use switchboard::store::records::{Meta, OidcIntegration};
use switchboard::store::types::{Algorithm, OrgId};
use uuid::Uuid;

struct SigningKey {
    kid: &'static str,
    alg: JwtAlgorithm,
    encoding: EncodingKey,
}

fn keys() -> Vec<SigningKey> {
    let rsa =
        EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/oidc/rsa-a.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/oidc/ec-a.pem")).unwrap();
    vec![
        SigningKey {
            kid: "rsa",
            alg: JwtAlgorithm::RS256,
            encoding: rsa,
        },
        SigningKey {
            kid: "ec",
            alg: JwtAlgorithm::ES256,
            encoding: ec,
        },
    ]
}

/// Serves discovery and the key set on a free loopback port.
async fn idp(keys: &[SigningKey]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let jwks: Vec<_> = keys
        .iter()
        .map(|k| {
            let mut jwk =
                serde_json::to_value(Jwk::from_encoding_key(&k.encoding, k.alg).unwrap()).unwrap();
            jwk["kid"] = json!(k.kid);
            jwk["use"] = json!("sig");
            jwk
        })
        .collect();
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let d = discovery.clone();
                async move { axum::Json(d) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let k = json!({ "keys": jwks.clone() });
                async move { axum::Json(k) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

fn integration(issuer: &str) -> OidcIntegration {
    OidcIntegration {
        meta: Meta {
            version: 1,
            ..Meta::new(Utc::now())
        },
        org_id: OrgId(Uuid::new_v4()),
        name: "bench".to_owned(),
        issuer: issuer.to_owned(),
        client_id: "bench-client".to_owned(),
        sealed_client_secret: None,
        scopes: vec!["openid".to_owned()],
        authorize_params: BTreeMap::new(),
        allowed_algorithms: Algorithm::default_allowed(),
        max_refresh_token_lifetime_seconds: 86_400,
        refresh_token_rotation: true,
        active: true,
    }
}

fn id_token(issuer: &str, key: &SigningKey) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({
        "iss": issuer, "aud": "bench-client", "sub": "visitor-1", "email": "v@example.com",
        "iat": now, "exp": now + 3600,
    });
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let engine = runtime.block_on(EmbeddedEngine::open(data.path())).unwrap();
    let engine = Engine::Embedded(engine);
    let keys = keys();
    let issuer = runtime.block_on(idp(&keys));
    let integration = integration(&issuer);
    let clients = OidcClients::new(engine.clone(), true);

    let mut group = c.benchmark_group("id_token_verify_cached_keys");
    for key in &keys {
        let token = id_token(&issuer, key);
        // Warm-up: discovery and keys are fetched once, then cached.
        runtime
            .block_on(clients.verify_id_token(&integration, &token, None))
            .unwrap();
        group.bench_function(format!("{:?}", key.alg), |b| {
            b.to_async(&runtime).iter(|| async {
                clients
                    .verify_id_token(&integration, &token, None)
                    .await
                    .unwrap()
            });
        });
    }
    group.finish();

    let env: HashMap<&str, String> =
        HashMap::from([("SWITCHBOARD_DATA_DIR", data.path().display().to_string())]);
    let config = Config::load_with(None, |name| env.get(name).cloned()).unwrap();
    let master = MasterKey::generate();
    let sessions = VisitorTokens::new(&config, &master, Store::new(engine));
    let grant = SessionGrant {
        deployment: Uuid::new_v4(),
        org: OrgId(Uuid::new_v4()),
        identity: VisitorIdentity {
            issuer,
            subject: "visitor-1".to_owned(),
            email: Some("v@example.com".to_owned()),
            email_verified: Some(true),
            name: Some("Vera Visitor".to_owned()),
            given_name: None,
            family_name: None,
        },
        sid: Uuid::new_v4(),
        not_after: Utc::now() + chrono::Duration::hours(1),
    };
    let issued = runtime
        .block_on(sessions.issue(&grant, Utc::now()))
        .unwrap();
    let jwt = secrecy::ExposeSecret::expose_secret(&issued.jwt).to_owned();

    let mut group = c.benchmark_group("session_jwt");
    group.bench_function("issue_es256", |b| {
        b.to_async(&runtime)
            .iter(|| async { sessions.issue(&grant, Utc::now()).await.unwrap() });
    });
    // Verification includes the revocation check against the engine.
    group.bench_function("verify_es256", |b| {
        b.to_async(&runtime).iter(|| async {
            sessions
                .verify(&jwt, grant.deployment, Utc::now())
                .await
                .unwrap()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
