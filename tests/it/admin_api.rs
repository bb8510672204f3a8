//! The admin API end to end: every resource, every class of bad input, roles
//! and organizations, on both engines (the walk-through on every Redis form
//! too: one server, a cluster, Sentinel).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::app::{EngineKind, TestApp};
use crate::support::site::{SiteSpec, configuration_body, deployment_body, integration_body};
use crate::{on_both_engines, on_every_engine};

async fn walkthrough_survives_a_restart(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let f = app.site_as(&token, &SiteSpec::shop_idp()).await;

    let deployment = app
        .get(
            &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
            &token,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(deployment["version"], 1);
    assert_eq!(
        deployment["allowedDomains"],
        json!(["https://shop.example.com"])
    );
    let snippet = deployment["snippet"].as_str().unwrap();
    assert!(
        snippet.contains(&f.deployment) && snippet.contains(&app.base),
        "{snippet}"
    );

    let app = app.restart().await;
    // The access token is still valid: it is verified with keys derived from
    // the master key, which every start shares.
    for path in f.record_paths() {
        app.get(&path, &token).await.expect(StatusCode::OK);
    }
    let config = app
        .public_config(&f.deployment)
        .await
        .expect(StatusCode::OK);
    assert_eq!(config["id"], f.deployment);
}
on_every_engine!(walkthrough_survives_a_restart);

async fn every_resource_round_trips(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;

    // Members: create, read, update, list, delete.
    let member = app
        .post(
            "/api/v2/members",
            &token,
            json!({ "issuer": "https://idp.example.com/", "subject": "agent-1", "displayName": "Ada", "email": "ada@example.com", "roles": ["agent"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let member_id = member["id"].as_str().unwrap();
    assert_eq!(member["version"], 1);
    let updated = app
        .put(
            &format!("/api/v2/members/{member_id}"),
            &token,
            json!({ "issuer": "https://idp.example.com/", "subject": "agent-1", "displayName": "Ada L.", "roles": ["agent", "supervisor"], "version": 1 }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["roles"], json!(["supervisor", "agent"]));
    app.post(
        "/api/v2/members",
        &token,
        json!({ "issuer": "https://idp.example.com/", "subject": "agent-1", "displayName": "Copy" }),
    )
    .await
    .expect_error(StatusCode::CONFLICT, "duplicate");

    // Queues with members.
    let queue = app
        .post(
            "/api/v2/routing/queues",
            &token,
            json!({ "name": "Billing", "offerTimeoutSeconds": 20, "agentCapacity": 2, "memberIds": [member_id] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let queue_id = queue["id"].as_str().unwrap();
    assert_eq!(queue["offerTimeoutSeconds"], 20);
    // The member is in use by the queue.
    let refused = app
        .delete(&format!("/api/v2/members/{member_id}"), &token)
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");
    assert_eq!(refused["details"]["usedBy"][0]["id"], queue_id);
    app.put(
        &format!("/api/v2/routing/queues/{queue_id}"),
        &token,
        json!({ "name": "Billing", "memberIds": [], "version": 1 }),
    )
    .await
    .expect(StatusCode::OK);
    app.delete(&format!("/api/v2/members/{member_id}"), &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get(&format!("/api/v2/members/{member_id}"), &token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // API clients: the secret appears once.
    let client = app
        .post(
            "/api/v2/oauth/clients",
            &token,
            json!({ "name": "bot", "roles": ["agent"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let client_id = client["id"].as_str().unwrap();
    assert!(client["secret"].as_str().unwrap().starts_with("sbs_"));
    let read = app
        .get(&format!("/api/v2/oauth/clients/{client_id}"), &token)
        .await
        .expect(StatusCode::OK);
    assert!(read.get("secret").is_none());
    let listed = app
        .get("/api/v2/oauth/clients", &token)
        .await
        .expect(StatusCode::OK);
    assert!(
        !listed
            .to_string()
            .contains(client["secret"].as_str().unwrap())
    );
    app.put(
        &format!("/api/v2/oauth/clients/{client_id}"),
        &token,
        json!({ "name": "renamed bot", "roles": ["agent"], "version": 1 }),
    )
    .await
    .expect(StatusCode::OK);
    // The renamed client keeps its secret.
    app.access_token(client_id, client["secret"].as_str().unwrap())
        .await;
    app.delete(&format!("/api/v2/oauth/clients/{client_id}"), &token)
        .await
        .expect(StatusCode::NO_CONTENT);

    // Integrations: update without a secret keeps it; delete.
    let integration = app
        .post("/api/v2/integrations/oidc", &token, integration_body("IdP"))
        .await
        .expect(StatusCode::CREATED);
    let integration_id = integration["id"].as_str().unwrap();
    assert_eq!(integration["clientSecretSet"], true);
    assert_eq!(
        integration["allowedAlgorithms"],
        json!(["RS256", "ES256", "PS256"])
    );
    let mut without_secret = integration_body("IdP renamed");
    without_secret
        .as_object_mut()
        .unwrap()
        .remove("clientSecret");
    without_secret["version"] = json!(1);
    let updated = app
        .put(
            &format!("/api/v2/integrations/oidc/{integration_id}"),
            &token,
            without_secret,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["clientSecretSet"], true);
    assert_eq!(updated["name"], "IdP renamed");
    let listed = app
        .get("/api/v2/integrations/oidc", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["total"], 1);
    app.delete(
        &format!("/api/v2/integrations/oidc/{integration_id}"),
        &token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    // The caller's organization.
    let org = app
        .get("/api/v2/organizations/me", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(org["isDefault"], true);
}
on_both_engines!(every_resource_round_trips);

async fn configurations_publish_versions(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let f = app.site_as(&token, &SiteSpec::shop_idp()).await;
    let base = format!("/api/v2/webdeployments/configurations/{}", f.configuration);

    // Edit the draft and publish it as version 2; version 1 stays as it was.
    let draft = app
        .get(&format!("{base}/versions/draft"), &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(draft["latestVersion"], "1");
    let mut edited = configuration_body("Shop messenger v2", None);
    edited["version"] = draft["version"].clone();
    app.put(&format!("{base}/versions/draft"), &token, edited)
        .await
        .expect(StatusCode::OK);
    let v2 = app
        .post(&format!("{base}/versions/draft/publish"), &token, json!({}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(v2["version"], "2");
    assert_eq!(v2["name"], "Shop messenger v2");
    let v1 = app
        .get(&format!("{base}/versions/1"), &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(v1["name"], "Shop messenger");
    assert_eq!(v1["authenticationSettings"]["enabled"], true);
    let versions = app
        .get(&format!("{base}/versions"), &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(versions["total"], 2);
    assert_eq!(versions["entities"][0]["version"], "1");
    assert_eq!(versions["entities"][1]["version"], "2");
    app.get(&format!("{base}/versions/3"), &token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get(&format!("{base}/versions/nope"), &token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // A deployment cannot point at an unpublished version or a missing
    // configuration.
    let missing = uuid::Uuid::new_v4().to_string();
    for (configuration, version) in [
        (f.configuration.as_str(), "3"),
        (f.configuration.as_str(), "draft"),
        (missing.as_str(), "1"),
    ] {
        app.post(
            "/api/v2/webdeployments/deployments",
            &token,
            deployment_body(configuration, version, &f.queue),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }

    // Moving the deployment to version 2 changes what visitors get.
    let deployment = app
        .get(
            &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
            &token,
        )
        .await
        .expect(StatusCode::OK);
    let mut moved = deployment_body(&f.configuration, "2", &f.queue);
    moved["version"] = deployment["version"].clone();
    app.put(
        &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
        &token,
        moved,
    )
    .await
    .expect(StatusCode::OK);
    let public = app
        .public_config(&f.deployment)
        .await
        .expect(StatusCode::OK);
    assert_eq!(public["version"], "2");
    assert_eq!(public["auth"]["enabled"], false);

    // In use by the deployment: the configuration cannot go; once the
    // deployment is gone, the configuration and its versions go together.
    app.delete(&base, &token)
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");
    app.delete(
        &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
        &token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.delete(&base, &token)
        .await
        .expect(StatusCode::NO_CONTENT);
    app.get(&format!("{base}/versions/1"), &token)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // With no published version left using it, the integration can go.
    app.delete(
        &format!("/api/v2/integrations/oidc/{}", f.integration_id()),
        &token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
}
on_both_engines!(configurations_publish_versions);

async fn deleting_used_records_is_refused(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let f = app.site_as(&token, &SiteSpec::shop_idp()).await;

    let refused = app
        .delete(
            &format!("/api/v2/integrations/oidc/{}", f.integration_id()),
            &token,
        )
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&f.configuration),
        "{refused}"
    );
    let refused = app
        .delete(
            &format!("/api/v2/webdeployments/configurations/{}", f.configuration),
            &token,
        )
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");
    assert!(
        refused["message"].as_str().unwrap().contains(&f.deployment),
        "{refused}"
    );
    let refused = app
        .delete(&format!("/api/v2/routing/queues/{}", f.queue), &token)
        .await
        .expect_error(StatusCode::CONFLICT, "in_use");
    assert_eq!(refused["details"]["usedBy"][0]["type"], "deployment");
    assert_eq!(refused["details"]["usedBy"][0]["id"], f.deployment);

    // Nothing was deleted.
    app.get(&format!("/api/v2/routing/queues/{}", f.queue), &token)
        .await
        .expect(StatusCode::OK);
    app.delete(
        &format!("/api/v2/webdeployments/deployments/{}", f.deployment),
        &token,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.delete(&format!("/api/v2/routing/queues/{}", f.queue), &token)
        .await
        .expect(StatusCode::NO_CONTENT);
}
on_both_engines!(deleting_used_records_is_refused);

async fn bad_input_is_refused_and_changes_nothing(kind: EngineKind) {
    let app = TestApp::spawn_with(
        crate::support::app::Setup::new(kind).unset(switchboard::config::ENV_OIDC_ALLOW_INSECURE),
    )
    .await;
    let token = app.admin().await;
    let queue = app
        .post(
            "/api/v2/routing/queues",
            &token,
            json!({ "name": "Support" }),
        )
        .await
        .expect(StatusCode::CREATED);
    let queue_id = queue["id"].as_str().unwrap().to_owned();
    let queue_path = format!("/api/v2/routing/queues/{queue_id}");

    // Malformed JSON.
    app.call_raw(
        Method::POST,
        "/api/v2/routing/queues",
        &token,
        b"{\"name\": ".to_vec(),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    app.call_raw(Method::PUT, &queue_path, &token, b"not json".to_vec())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "malformed_json");
    // Wrong types and missing fields.
    for body in [
        json!({ "name": 7 }),
        json!({ "name": "x", "agentCapacity": "three" }),
        json!({ "name": "x", "agentCapacity": -1 }),
        json!({}),
        json!([]),
    ] {
        app.post("/api/v2/routing/queues", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    // Values out of range.
    for body in [
        json!({ "name": "" }),
        json!({ "name": "x", "agentCapacity": 0 }),
        json!({ "name": "x", "offerTimeoutSeconds": 100000 }),
        json!({ "name": "x", "memberIds": [uuid::Uuid::new_v4()] }),
    ] {
        app.post("/api/v2/routing/queues", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    // Invalid URLs: an http issuer (insecure IdPs are not allowed here), not
    // a URL at all, origins with paths or without a scheme.
    for issuer in [
        "http://idp.example.com",
        "idp.example.com",
        "ftp://idp.example.com",
        "https://idp.example.com/?q=1",
    ] {
        let mut body = integration_body("IdP");
        body["issuer"] = json!(issuer);
        app.post("/api/v2/integrations/oidc", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    for body in [
        json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "c", "scopes": ["email"] }),
        json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "c", "authorizeParams": { "nonce": "x" } }),
        json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "c", "allowedAlgorithms": ["none"] }),
        json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "c", "maxRefreshTokenLifetimeSeconds": 60 }),
    ] {
        app.post("/api/v2/integrations/oidc", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let configuration = app
        .post(
            "/api/v2/webdeployments/configurations",
            &token,
            configuration_body("c", None),
        )
        .await
        .expect(StatusCode::CREATED);
    let configuration_id = configuration["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/api/v2/webdeployments/configurations/{configuration_id}/versions/draft/publish"),
        &token,
        json!({}),
    )
    .await
    .expect(StatusCode::CREATED);
    for domains in [
        json!(["shop.example.com"]),
        json!(["https://shop.example.com/path"]),
        json!(["*.example.com"]),
    ] {
        let mut body = deployment_body(&configuration_id, "1", &queue_id);
        body["allowedDomains"] = domains;
        app.post("/api/v2/webdeployments/deployments", &token, body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let mut both = deployment_body(&configuration_id, "1", &queue_id);
    both["allowAllDomains"] = json!(true);
    app.post("/api/v2/webdeployments/deployments", &token, both)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // Authentication on without an integration.
    let mut auth_without_integration = configuration_body("c", None);
    auth_without_integration["authenticationSettings"]["enabled"] = json!(true);
    app.post(
        "/api/v2/webdeployments/configurations",
        &token,
        auth_without_integration,
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // A body over the limit.
    let huge = json!({ "name": "x".repeat(100 * 1024) });
    app.post("/api/v2/routing/queues", &token, huge)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Unknown ids, and ids that are not ids.
    for path in [
        format!("/api/v2/routing/queues/{}", uuid::Uuid::new_v4()),
        "/api/v2/routing/queues/not-a-uuid".to_owned(),
        format!(
            "/api/v2/webdeployments/deployments/{}",
            uuid::Uuid::new_v4()
        ),
    ] {
        app.get(&path, &token)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        app.delete(&path, &token)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    app.put(
        &format!("/api/v2/routing/queues/{}", uuid::Uuid::new_v4()),
        &token,
        json!({ "name": "x", "version": 1 }),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Update without a version, and with a stale one.
    app.put(&queue_path, &token, json!({ "name": "Renamed" }))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.put(
        &queue_path,
        &token,
        json!({ "name": "Renamed", "version": 1 }),
    )
    .await
    .expect(StatusCode::OK);
    let stale = app
        .put(
            &queue_path,
            &token,
            json!({ "name": "Lost update", "version": 1 }),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "version_conflict");
    assert_eq!(stale["details"]["currentVersion"], 2);
    // Bad paging.
    for query in ["pageSize=0", "pageSize=101", "pageNumber=0", "pageNumber=x"] {
        app.get(&format!("/api/v2/routing/queues?{query}"), &token)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    }

    // After all that: one queue, renamed once; one configuration; nothing else.
    let queues = app
        .get("/api/v2/routing/queues", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(queues["total"], 1);
    assert_eq!(queues["entities"][0]["name"], "Renamed");
    assert_eq!(queues["entities"][0]["version"], 2);
    for (path, total) in [
        ("/api/v2/integrations/oidc", 0),
        ("/api/v2/webdeployments/configurations", 1),
        ("/api/v2/webdeployments/deployments", 0),
    ] {
        let listed = app.get(path, &token).await.expect(StatusCode::OK);
        assert_eq!(listed["total"], total, "{path}");
    }
}
on_both_engines!(bad_input_is_refused_and_changes_nothing);

async fn credentials_and_roles_gate_the_api(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let supervisor = app.client_token(&admin, &["supervisor"]).await;
    let agent = app.client_token(&admin, &["agent"]).await;
    let f = app.site_as(&admin, &SiteSpec::shop_idp()).await;

    // No credential, a malformed one, a forged one.
    let none = app
        .call(Method::GET, "/api/v2/routing/queues", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(none.is_object());
    for bad in ["nope", "sbb_wrong", &format!("{admin}x")] {
        app.get("/api/v2/routing/queues", bad)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // Supervisors read queues and members, nothing else.
    app.get("/api/v2/routing/queues", &supervisor)
        .await
        .expect(StatusCode::OK);
    app.get(&format!("/api/v2/routing/queues/{}", f.queue), &supervisor)
        .await
        .expect(StatusCode::OK);
    app.get("/api/v2/members", &supervisor)
        .await
        .expect(StatusCode::OK);
    for path in [
        "/api/v2/integrations/oidc",
        "/api/v2/webdeployments/configurations",
        "/api/v2/webdeployments/deployments",
        "/api/v2/oauth/clients",
    ] {
        app.get(path, &supervisor)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    app.post(
        "/api/v2/routing/queues",
        &supervisor,
        json!({ "name": "x" }),
    )
    .await
    .expect_error(StatusCode::FORBIDDEN, "forbidden");
    app.delete(&format!("/api/v2/routing/queues/{}", f.queue), &supervisor)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Agents: none of the admin API.
    for path in [
        "/api/v2/routing/queues",
        "/api/v2/members",
        "/api/v2/integrations/oidc",
    ] {
        app.get(path, &agent)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Only the operator adds organizations.
    app.post("/api/v2/organizations", &admin, json!({ "name": "Other" }))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");

    // Deleting a client revokes its tokens at once.
    let clients = app
        .get("/api/v2/oauth/clients?pageSize=100", &admin)
        .await
        .expect(StatusCode::OK);
    for client in clients["entities"].as_array().unwrap() {
        if client["roles"] == json!(["supervisor"]) {
            app.delete(
                &format!("/api/v2/oauth/clients/{}", client["id"].as_str().unwrap()),
                &admin,
            )
            .await
            .expect(StatusCode::NO_CONTENT);
        }
    }
    app.get("/api/v2/routing/queues", &supervisor)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
on_both_engines!(credentials_and_roles_gate_the_api);

async fn token_endpoint_refuses_bad_requests(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let created = app
        .post(
            "/api/v2/oauth/clients",
            &app.bootstrap.clone(),
            json!({ "name": "c", "roles": ["admin"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let post = |form: Vec<(&'static str, String)>, basic: Option<(String, String)>| {
        let mut request = app.http.post(app.url("/oauth/token")).form(&form);
        if let Some((user, pass)) = basic {
            request = request.basic_auth(user, Some(pass));
        }
        async move { crate::support::app::Reply::from(request.send().await.unwrap()).await }
    };
    let grant = || vec![("grant_type", "client_credentials".to_owned())];
    post(grant(), Some((id.to_owned(), "sbs_wrong".to_owned())))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_client");
    post(
        grant(),
        Some((uuid::Uuid::new_v4().to_string(), secret.to_owned())),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_client");
    post(grant(), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_client");
    post(
        vec![("grant_type", "password".to_owned())],
        Some((id.to_owned(), secret.to_owned())),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    // Credentials in the form body work too (RFC 6749 2.3.1).
    let ok = post(
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", id.to_owned()),
            ("client_secret", secret.to_owned()),
        ],
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(ok["expires_in"], 3600);
}
on_both_engines!(token_endpoint_refuses_bad_requests);

async fn organizations_are_isolated(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin_a = app.admin().await;
    let a = app.site_as(&admin_a, &SiteSpec::shop_idp()).await;

    let created = app
        .post(
            "/api/v2/organizations",
            &app.bootstrap.clone(),
            json!({ "name": "Other Corp" }),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["organization"]["name"], "Other Corp");
    let client = &created["client"];
    assert_eq!(client["roles"], json!(["admin"]));
    let admin_b = app
        .access_token(
            client["id"].as_str().unwrap(),
            client["secret"].as_str().unwrap(),
        )
        .await;
    let org_b = app
        .get("/api/v2/organizations/me", &admin_b)
        .await
        .expect(StatusCode::OK);
    assert_eq!(org_b["id"], created["organization"]["id"]);
    let orgs = app
        .get("/api/v2/organizations", &app.bootstrap.clone())
        .await
        .expect(StatusCode::OK);
    assert_eq!(orgs["total"], 2);

    // B sees none of A's records, by list or by id, and cannot touch them.
    for path in [
        "/api/v2/integrations/oidc",
        "/api/v2/webdeployments/configurations",
        "/api/v2/webdeployments/deployments",
        "/api/v2/routing/queues",
        "/api/v2/members",
    ] {
        let listed = app.get(path, &admin_b).await.expect(StatusCode::OK);
        assert_eq!(listed["total"], 0, "{path}");
    }
    for path in a.record_paths() {
        app.get(&path, &admin_b)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        if !path.contains("/versions/") {
            app.delete(&path, &admin_b)
                .await
                .expect_error(StatusCode::NOT_FOUND, "not_found");
        }
    }
    // Published versions are immutable: there is no delete.
    app.delete(
        &format!(
            "/api/v2/webdeployments/configurations/{}/versions/1",
            a.configuration
        ),
        &admin_a,
    )
    .await
    .expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    app.put(
        &format!("/api/v2/routing/queues/{}", a.queue),
        &admin_b,
        json!({ "name": "hijacked", "version": 1 }),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.post(
        &format!(
            "/api/v2/webdeployments/configurations/{}/versions/draft/publish",
            a.configuration
        ),
        &admin_b,
        json!({}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");

    // B cannot build on A's records either.
    let b_queue = app
        .post(
            "/api/v2/routing/queues",
            &admin_b,
            json!({ "name": "B support" }),
        )
        .await
        .expect(StatusCode::CREATED);
    app.post(
        "/api/v2/webdeployments/deployments",
        &admin_b,
        deployment_body(&a.configuration, "1", b_queue["id"].as_str().unwrap()),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.post(
        "/api/v2/webdeployments/configurations",
        &admin_b,
        configuration_body("B", Some(a.integration_id())),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // A still has everything, unchanged.
    let queue = app
        .get(&format!("/api/v2/routing/queues/{}", a.queue), &admin_a)
        .await
        .expect(StatusCode::OK);
    assert_eq!(queue["name"], "Support");
    assert_eq!(queue["version"], 1);
    let listed = app
        .get("/api/v2/routing/queues", &admin_a)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["total"], 1);
}
on_both_engines!(organizations_are_isolated);

async fn lists_are_paged(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    for name in ["q1", "q2", "q3"] {
        app.post("/api/v2/routing/queues", &token, json!({ "name": name }))
            .await
            .expect(StatusCode::CREATED);
    }
    let first = app
        .get("/api/v2/routing/queues?pageSize=2&pageNumber=1", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["total"], 3);
    assert_eq!(first["pageCount"], 2);
    assert_eq!(first["pageSize"], 2);
    assert_eq!(first["entities"].as_array().unwrap().len(), 2);
    let second = app
        .get("/api/v2/routing/queues?pageSize=2&pageNumber=2", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(second["pageNumber"], 2);
    let names: Vec<&str> = first["entities"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["entities"].as_array().unwrap())
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["q1", "q2", "q3"]);
    let beyond = app
        .get("/api/v2/routing/queues?pageSize=2&pageNumber=5", &token)
        .await
        .expect(StatusCode::OK);
    assert_eq!(beyond["entities"], json!([]));
    assert_eq!(beyond["total"], 3);
}
on_both_engines!(lists_are_paged);
