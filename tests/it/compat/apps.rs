//! G2 and G4: native apps' Origins on the socket and history, the
//! deployment's app lists, and the code exchange with an app's redirect.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

async fn native_origins_on_socket_and_history(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let configuration = published(&app, &admin, configuration(None, json!({}))).await;
    let id = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedAppHosts": [APP_SOCKET_HOST, APP_DOMAIN] }),
    )
    .await;

    // The SDK's socket: `Origin: webmessaging.<domain>`, a bare host.
    let (mut ws, token) = guest(&app, &id, Some(APP_SOCKET_HOST)).await;
    let echo = request(
        &mut ws,
        json!({"token": token, "message": {"text": "hello", "type": "Text"},
               "tracingId": Uuid::new_v4().to_string(), "action": "onMessage"}),
        "StructuredMessage",
    )
    .await;
    let echo: sdk::Frame<sdk::StructuredMessage> = decode(&echo);
    assert_eq!(echo.body.direction, "Inbound");
    let jwt = request(
        &mut ws,
        json!({"token": token, "tracingId": Uuid::new_v4().to_string(), "action": "getJwt"}),
        "JwtResponse",
    )
    .await;
    let jwt: sdk::Frame<sdk::JwtResponse> = decode(&jwt);
    assert!(!jwt.body.jwt.is_empty() && jwt.body.exp > 0);
    assert_eq!(jwt.kind, "response");

    // Hosts the deployment does not list are refused, as is "null".
    for origin in [
        "webmessaging.other.example.com",
        "null",
        "chat.example.com:443",
    ] {
        assert_eq!(
            refused(connect(&app, &id, Some(origin)).await),
            403,
            "{origin}"
        );
    }
    // Web origins work as before.
    guest(&app, &id, Some(SHOP)).await;

    // History: `Authorization: bearer` (lowercase) and `Origin: <domain>`.
    let history = |origin: &'static str| {
        app.http
            .get(app.url(HISTORY))
            .header("authorization", format!("bearer {}", jwt.body.jwt))
            .header("origin", origin)
            .send()
    };
    let response = history(APP_DOMAIN).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let page: Value = response.json().await.unwrap();
    let page: sdk::MessageEntityList = decode(&page);
    assert_eq!((page.page_number, page.page_size), (1, 25));
    assert_eq!((page.total, page.page_count), (1, 1));
    assert_eq!(page.entities[0].kind, sdk::MessageType::Text);
    assert_eq!(page.entities[0].text.as_deref(), Some("hello"));
    assert!(!page.entities[0].id.is_empty());
    assert!(page.entities[0].content.is_empty() && page.entities[0].events.is_empty());
    let response = history("other.example.com").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // "Allow all" covers web origins only: an app's host must be listed.
    let open = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedDomains": [], "allowAllDomains": true }),
    )
    .await;
    assert_eq!(
        refused(connect(&app, &open, Some(APP_SOCKET_HOST)).await),
        403
    );
    guest(&app, &open, Some("https://anywhere.example.org")).await;
    guest(&app, &open, None).await;
}
on_both_engines!(native_origins_on_socket_and_history);

/// The app lists are validated at the edge, shown, and kept by an update
/// that leaves them out (the console's deployment form does).
async fn app_admission_is_validated(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let configuration = published(&app, &admin, configuration(None, json!({}))).await;
    let queue = queue(&app, &admin).await;
    let body = |extra: Value| {
        let mut body = json!({
            "name": "app",
            "configuration": { "id": configuration, "version": "1" },
            "queueId": queue,
        });
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        body
    };
    for bad in [
        json!({ "allowedAppHosts": ["https://chat.example.com"] }),
        json!({ "allowedAppHosts": ["chat.example.com:443"] }),
        json!({ "allowedAppHosts": ["null"] }),
        json!({ "allowedAppHosts": ["*.example.com"] }),
        json!({ "allowedAppRedirectSchemes": ["myapp"] }),
        json!({ "allowedAppRedirectSchemes": ["https"] }),
        json!({ "allowedAppRedirectSchemes": ["com.example.app:/callback"] }),
    ] {
        app.post(
            "/api/v2/webdeployments/deployments",
            &admin,
            body(bad.clone()),
        )
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let created = app
        .post(
            "/api/v2/webdeployments/deployments",
            &admin,
            body(json!({
                "allowedAppHosts": ["WebMessaging.Chat.Example.com", APP_DOMAIN, APP_DOMAIN],
                "allowedAppRedirectSchemes": ["Com.Example.App"],
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        created["allowedAppHosts"],
        json!([APP_DOMAIN, APP_SOCKET_HOST])
    );
    assert_eq!(created["allowedAppRedirectSchemes"], json!([APP_SCHEME]));
    let path = format!(
        "/api/v2/webdeployments/deployments/{}",
        created["id"].as_str().unwrap()
    );
    let mut update = body(json!({ "name": "renamed" }));
    update["version"] = created["version"].clone();
    let updated = app.put(&path, &admin, update).await.expect(StatusCode::OK);
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["allowedAppHosts"], created["allowedAppHosts"]);
    assert_eq!(
        updated["allowedAppRedirectSchemes"],
        created["allowedAppRedirectSchemes"]
    );
    let mut clear = body(json!({ "allowedAppHosts": [], "allowedAppRedirectSchemes": [] }));
    clear["version"] = updated["version"].clone();
    let cleared = app.put(&path, &admin, clear).await.expect(StatusCode::OK);
    assert_eq!(cleared["allowedAppHosts"], json!([]));
    assert_eq!(cleared["allowedAppRedirectSchemes"], json!([]));
}
on_both_engines!(app_admission_is_validated);

// ---- G4: the exchange with an app's redirect ------------------------------

/// An IdP whose client is a native app redirecting to [`APP_REDIRECT`].
fn app_idp() -> &'static TestIdp {
    static IDP: OnceLock<TestIdp> = OnceLock::new();
    IDP.get_or_init(|| TestIdp::start_with_redirect(APP_REDIRECT))
}

async fn exchange_with_app_redirect(kind: EngineKind) {
    let idp = app_idp();
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let integration = integration(&app, &admin, idp, false).await;
    let configuration = published(&app, &admin, configuration(Some(&integration), json!({}))).await;
    let id = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedAppRedirectSchemes": [APP_SCHEME] }),
    )
    .await;

    let body = app_login(idp, &id, "nora").await;
    assert_eq!(body["oauth"]["redirectUri"], APP_REDIRECT);
    let pair = post(&app, EXCHANGE, &body).await.expect(StatusCode::OK);
    let pair: sdk::AuthJwt = decode(&pair);
    assert!(pair.refresh_token.is_some());
    let claims = app
        .state()
        .visitor_tokens
        .verify(&pair.jwt, id.parse().unwrap(), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(claims.identity.subject, "nora");

    // Not listed (even with every web origin allowed), or with a fragment:
    // refused before the code is redeemed.
    let open = deployment(
        &app,
        &admin,
        &configuration,
        json!({ "allowedDomains": [], "allowAllDomains": true }),
    )
    .await;
    let mut other = app_login(idp, &open, "nora").await;
    post(&app, EXCHANGE, &other)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "redirect_uri_not_allowed");
    other["deploymentId"] = json!(id);
    other["oauth"]["redirectUri"] = json!(format!("{APP_REDIRECT}#frag"));
    post(&app, EXCHANGE, &other)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "redirect_uri_not_allowed");
    other["oauth"]["redirectUri"] = json!("org.evil.app:/callback");
    post(&app, EXCHANGE, &other)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "redirect_uri_not_allowed");
}
on_both_engines!(exchange_with_app_redirect);
