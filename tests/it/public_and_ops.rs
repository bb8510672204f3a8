//! The public deployment config, secrets at rest, and the operational
//! endpoints.

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use switchboard::auth::crypto::Sealer;
use switchboard::config::{self, MasterKey};
use switchboard::engine::{EmbeddedEngine, Engine, Home, Kind, RecordKey, RedisEngine};

use crate::on_both_engines;
use crate::support::app::{EngineKind, Setup, TestApp};
use crate::support::redis::RedisServer;
use crate::support::site::{SiteSpec, deployment_body, integration_body};

async fn public_config_carries_no_secret_and_honours_cors(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let f = app.site_as(&token, &SiteSpec::shop_idp()).await;
    let path = format!(
        "/webdeployments/v1/deployments/{}/config.json",
        f.deployment
    );

    let allowed = app
        .http
        .get(app.url(&path))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let text = allowed.text().await.unwrap();
    assert!(!text.contains("integration-client-secret-value"), "{text}");
    assert!(!text.to_lowercase().contains("secret"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["id"], f.deployment);
    assert_eq!(body["version"], "1");
    assert_eq!(body["status"], "Active");
    assert_eq!(body["apiEndpoint"], app.base);
    assert_eq!(body["auth"]["enabled"], true);
    assert_eq!(body["auth"]["oidc"]["clientId"], "switchboard-web");
    assert_eq!(body["auth"]["oidc"]["issuer"], "https://idp.example.com/");
    assert_eq!(body["auth"]["oidc"]["authorizeParams"]["prompt"], "login");
    let conversations = &body["messenger"]["apps"]["conversations"];
    assert_eq!(
        conversations["messagingEndpoint"],
        app.base.replacen("http", "ws", 1)
    );
    assert_eq!(conversations["showAgentTypingIndicator"], true);
    assert_eq!(conversations["conversationDisconnect"]["type"], "ReadOnly");
    assert_eq!(body["defaultLanguage"], "en-us");

    // Another origin gets the document but no CORS grant, so a browser on
    // that site cannot read it.
    let other = app
        .http
        .get(app.url(&path))
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Inactive and unknown deployments are both 404.
    let mut inactive = deployment_body(&f.configuration, "1", &f.queue);
    inactive["status"] = json!("Inactive");
    inactive["version"] = json!(1);
    app.put(
        &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
        &token,
        inactive,
    )
    .await
    .expect(StatusCode::OK);
    app.call(Method::GET, &path, None, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.public_config(&uuid::Uuid::new_v4().to_string())
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}
on_both_engines!(public_config_carries_no_secret_and_honours_cors);

async fn client_secrets_are_sealed_at_rest(kind: EngineKind) {
    let master = MasterKey::generate();
    let setup = Setup::new(kind).set(config::ENV_MASTER_KEY, &master.to_base64());
    let mut app = TestApp::spawn_with(setup.clone()).await;
    let token = app.admin().await;
    let created = app
        .post("/api/v2/integrations/oidc", &token, integration_body("IdP"))
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        !created
            .to_string()
            .contains("integration-client-secret-value")
    );
    let read = app
        .get(&format!("/api/v2/integrations/oidc/{id}"), &token)
        .await;
    assert!(!read.text.contains("integration-client-secret-value"));
    assert!(
        !read.text.contains("xc1:"),
        "the sealed form is not shown either"
    );
    let org = app.org();
    app.stop().await;

    // Read the raw stored record below the API.
    let engine = match kind {
        EngineKind::Redis => Engine::Redis(
            RedisEngine::connect(
                &setup.env[config::ENV_REDIS_URL],
                &setup.env[config::ENV_REDIS_PREFIX],
            )
            .await
            .unwrap(),
        ),
        EngineKind::Embedded => {
            Engine::Embedded(EmbeddedEngine::open(&setup.data_path()).await.unwrap())
        }
        EngineKind::Cluster | EngineKind::Sentinel => panic!("runs on both engines only"),
    };
    let stored = engine
        .get(&RecordKey::new(
            Home::Org(org.0),
            Kind::OidcIntegration,
            id.clone(),
        ))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(stored.body).unwrap();
    assert!(!raw.contains("integration-client-secret-value"), "{raw}");
    let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let sealed = stored["sealedClientSecret"].as_str().unwrap();
    // It is the secret, sealed under the master key and bound to this record.
    let context = format!("oidc/{id}/clientSecret");
    let opened = Sealer::new(&master).open(sealed, &context).unwrap();
    assert_eq!(opened.expose_secret(), "integration-client-secret-value");
    assert!(
        Sealer::new(&MasterKey::generate())
            .open(sealed, &context)
            .is_err()
    );
}
on_both_engines!(client_secrets_are_sealed_at_rest);

async fn operational_endpoints(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(ready["ready"], true);
    assert_eq!(
        ready["engine"],
        if kind == EngineKind::Redis {
            "redis"
        } else {
            "embedded"
        }
    );

    let token = app.admin().await;
    app.get("/api/v2/routing/queues", &token)
        .await
        .expect(StatusCode::OK);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text
            .contains(r#"switchboard_http_requests_total{method="GET",route="/api/v2/routing/queues",status="200"} 1"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("switchboard_http_request_duration_seconds_bucket")
    );
    let engine = if kind == EngineKind::Redis {
        "redis"
    } else {
        "embedded"
    };
    assert!(
        metrics.text.contains(&format!(
            r#"switchboard_engine_operation_duration_seconds_count{{engine="{engine}",op="list"}}"#
        )),
        "{}",
        metrics.text
    );

    // Every response carries a request id.
    assert!(metrics.headers.get("x-request-id").is_some());

    let openapi = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK);
    let paths = openapi["paths"].as_object().unwrap();
    for path in [
        "/api/v2/webdeployments/configurations",
        "/api/v2/webdeployments/configurations/{id}",
        "/api/v2/webdeployments/configurations/{id}/versions",
        "/api/v2/webdeployments/configurations/{id}/versions/{version}",
        "/api/v2/webdeployments/configurations/{id}/versions/draft",
        "/api/v2/webdeployments/configurations/{id}/versions/draft/publish",
        "/api/v2/webdeployments/deployments",
        "/api/v2/webdeployments/deployments/{id}",
        "/api/v2/integrations/oidc",
        "/api/v2/integrations/oidc/{id}",
        "/api/v2/routing/queues",
        "/api/v2/routing/queues/{id}",
        "/api/v2/members",
        "/api/v2/members/{id}",
        "/api/v2/oauth/clients",
        "/api/v2/oauth/clients/{id}",
        "/api/v2/organizations",
        "/api/v2/audit",
        "/api/v2/conversations/{id}",
        "/api/v2/visitors/erase",
        "/oauth/token",
        "/webdeployments/v1/deployments/{id}/config.json",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    assert!(
        openapi["components"]["schemas"]["OidcIntegrationView"]["properties"]["clientSecretSet"]
            .is_object()
    );
    assert!(
        openapi["components"]["schemas"]["OidcIntegrationView"]["properties"]["clientSecret"]
            .is_null()
    );

    app.call(Method::GET, "/no/such/endpoint", None, None)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}
on_both_engines!(operational_endpoints);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis() {
    let redis = RedisServer::start();
    let app =
        TestApp::spawn_with(Setup::new(EngineKind::Redis).set(config::ENV_REDIS_URL, &redis.url()))
            .await;
    let token = app.admin().await;
    app.call(Method::GET, "/readyz", None, None)
        .await
        .expect(StatusCode::OK);

    redis.stop();
    let down = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text
    );
    assert_eq!(down["ready"], false);
    // Liveness does not depend on Redis.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    // Admin calls say the storage is away, and when to retry.
    let unavailable = app.get("/api/v2/routing/queues", &token).await;
    assert_eq!(
        unavailable.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        unavailable.text
    );
    assert!(unavailable.headers.get("retry-after").is_some());

    redis.restart();
    // The connection manager reconnects by itself; readiness returns without
    // a restart of the node.
    app.await_status(
        "/readyz",
        StatusCode::OK,
        std::time::Duration::from_secs(15),
    )
    .await;
}
