//! `POST /api/v2/integrations/oidc/{id}/test`, and the authorization
//! endpoint in a deployment's `config.json`.

use super::*;

async fn create_integration(app: &TestApp, token: &str, issuer: &str) -> String {
    let created = app
        .post(
            "/api/v2/integrations/oidc",
            token,
            json!({
                "name": "Hostile",
                "issuer": issuer,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    created["id"].as_str().unwrap().to_owned()
}

async fn diagnose(app: &TestApp, token: &str, id: &str) -> Value {
    app.post(
        &format!("/api/v2/integrations/oidc/{id}/test"),
        token,
        json!({}),
    )
    .await
    .expect(StatusCode::OK)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_reports_a_good_idp() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let idp = HostileIdp::start().await;
    let id = create_integration(&app, &token, &idp.issuer).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], true, "{report}");
    for name in ["discovery", "issuer", "jwks", "algorithms", "client"] {
        assert_eq!(step(&report, name)["ok"], true, "{report}");
    }
    assert_eq!(report["issuer"], idp.issuer);
    assert_eq!(
        report["authorizationEndpoint"],
        format!("{}/authorize", idp.issuer)
    );
    assert_eq!(report["tokenEndpoint"], format!("{}/token", idp.issuer));
    assert!(
        report["algorithmsOffered"]
            .as_array()
            .unwrap()
            .contains(&json!("RS256"))
    );
    assert!(report.get("problem").is_none());
    assert!(!report.to_string().contains(CLIENT_SECRET));

    // Only admins may test.
    let viewer = app.client_token(&app.bootstrap, &["supervisor"]).await;
    let reply = app
        .post(
            &format!("/api/v2/integrations/oidc/{id}/test"),
            &viewer,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v2/integrations/oidc/{id}/test"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    app.post(
        &format!("/api/v2/integrations/oidc/{}/test", uuid::Uuid::new_v4()),
        &token,
        json!({}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_explains_what_is_wrong() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let idp = HostileIdp::start().await;

    // Trailing slash.
    let id = create_integration(&app, &token, &format!("{}/", idp.issuer)).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(step(&report, "discovery")["ok"], true);
    assert_eq!(step(&report, "issuer")["ok"], false);
    assert_eq!(report["problem"]["code"], "issuer_mismatch");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("trailing slash")
    );

    // Entra's multi-tenant endpoint.
    idp.set_discovery_issuer("https://login.microsoftonline.com/{tenantid}/v2.0");
    let id = create_integration(&app, &token, &format!("{}/common/v2.0", idp.issuer)).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["problem"]["code"], "issuer_mismatch");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant"),
        "{report}"
    );
    idp.set_discovery_issuer(&idp.issuer);

    // No usable keys.
    idp.set_keys(&[]);
    let id = create_integration(&app, &token, &idp.issuer).await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(step(&report, "jwks")["ok"], false, "{report}");
    assert_eq!(report["problem"]["code"], "no_signing_keys");

    // Keys, but none for the allowed algorithms.
    let ec = TestKey::ec_a();
    idp.set_keys(&[&ec]);
    let created = app
        .post(
            "/api/v2/integrations/oidc",
            &token,
            json!({
                "name": "RSA only",
                "issuer": idp.issuer,
                "clientId": CLIENT_ID,
                "allowedAlgorithms": ["RS256", "PS256"],
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    let report = diagnose(&app, &token, created["id"].as_str().unwrap()).await;
    assert_eq!(step(&report, "algorithms")["ok"], false, "{report}");
    assert_eq!(report["problem"]["code"], "algorithm_not_allowed");

    // Unreachable.
    let id = create_integration(&app, &token, "http://127.0.0.1:1").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(step(&report, "discovery")["ok"], false);
    assert_eq!(report["problem"]["code"], "idp_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_endpoint_refuses_inward_addresses_without_allow_insecure() {
    let setup = crate::support::app::Setup::new(EngineKind::Embedded)
        .unset(switchboard::config::ENV_OIDC_ALLOW_INSECURE);
    let app = TestApp::spawn_with(setup).await;
    let token = app.admin().await;
    let id = create_integration(&app, &token, "https://169.254.169.254/").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"]["code"], "idp_address_refused");
    let id = create_integration(&app, &token, "https://localhost/").await;
    let report = diagnose(&app, &token, &id).await;
    assert_eq!(report["problem"]["code"], "idp_address_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_json_names_the_authorization_endpoint_when_discovery_works() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let fixture = app.site_as(&token, &SiteSpec::shop_idp()).await;
    // idp.example.com does not resolve here: config.json is served without it.
    let config = app
        .public_config(&fixture.deployment)
        .await
        .expect(StatusCode::OK);
    assert!(config["auth"]["oidc"].is_object(), "{config}");
    assert!(
        config["auth"]["oidc"]
            .get("authorizationEndpoint")
            .is_none()
    );

    // Pointed at a reachable IdP, the endpoint appears.
    let idp = HostileIdp::start().await;
    let item = format!("/api/v2/integrations/oidc/{}", fixture.integration_id());
    let current = app.get(&item, &token).await.expect(StatusCode::OK);
    let mut body = integration_body("Shop IdP");
    body["issuer"] = json!(idp.issuer);
    body["version"] = current["version"].clone();
    app.put(&item, &token, body).await.expect(StatusCode::OK);
    let config = app
        .public_config(&fixture.deployment)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        config["auth"]["oidc"]["authorizationEndpoint"],
        format!("{}/authorize", idp.issuer),
        "{config}"
    );
}
