//! What switchboard serves for the web snippet: the widget script, the
//! loader in every deployment's `snippet`, the demo page, and the sign-in
//! popup's callback page, which hands a code only to the login's
//! deployment's origins. (The widget itself is tested in a browser:
//! tests/browser.)

use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::idp::{self, SHOP_ORIGIN};
use crate::support::site::{SiteSpec, idp_integration_body};

const LOADER: &str = include_str!("../../web-snippet/loader.html");

/// An active deployment of a published configuration (signing in at the
/// shared IdP when `sign_in`) on `origins`: its record.
async fn deployment(app: &TestApp, token: &str, origins: &[&str], sign_in: bool) -> Value {
    let mut spec = SiteSpec::new().origins(origins);
    if sign_in {
        spec = spec.integration(idp_integration_body(idp::shared()));
    }
    app.site_as(token, &spec).await.record
}

/// The origins a callback page posts to.
fn targets(page: &str) -> Vec<String> {
    let (_, rest) = page
        .split_once("<script type=\"application/json\" id=\"targets\">")
        .unwrap();
    let (json, _) = rest.split_once("</script>").unwrap();
    serde_json::from_str(json).unwrap()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

/// A request with `etag` as If-None-Match is answered 304, without a body.
async fn assert_revalidates(app: &TestApp, path: &str, etag: &str) {
    let again = app
        .http
        .get(app.url(path))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    assert!(again.bytes().await.unwrap().is_empty(), "{path}");
}

fn header_of<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_script_is_served_to_any_site_and_revalidated_by_etag() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let response = get(&app, "/web-snippet/widget.js").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header_of(&response, "access-control-allow-origin"), "*");
    assert_eq!(header_of(&response, "cache-control"), "public, max-age=300");
    let etag = header_of(&response, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        body.as_ref(),
        include_bytes!("../../web-snippet/dist/widget.js")
    );

    assert_revalidates(&app, "/web-snippet/widget.js", &etag).await;
}

/// The console page loads its script and stylesheet by a digest of their
/// contents, allows nothing inline and no framing, and is never cached
/// without revalidation; the files themselves are the committed build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_under_a_strict_policy() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let response = get(&app, "/console").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    let csp = header_of(&response, "content-security-policy").to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header_of(&response, "x-frame-options"), "DENY");
    assert_eq!(header_of(&response, "cache-control"), "no-cache");
    let page = response.text().await.unwrap();
    assert!(!page.contains("{{"), "{page}");
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let (path, version) = script.split_once("?v=").unwrap();
    assert_eq!(path, "/console/console.js");
    assert!(
        version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit()),
        "{version}"
    );
    assert!(page.contains(&format!("/console/console.css?v={version}")));

    for (path, kind, built) in [
        (
            script.as_str(),
            "text/javascript; charset=utf-8",
            include_bytes!("../../web-snippet/dist/console.js").as_slice(),
        ),
        (
            "/console/console.css",
            "text/css; charset=utf-8",
            include_bytes!("../../web-snippet/dist/console.css").as_slice(),
        ),
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header_of(&response, "content-type"), kind);
        // Only the widget is for other sites.
        assert_eq!(header_of(&response, "access-control-allow-origin"), "");
        let etag = header_of(&response, "etag").to_owned();
        assert_eq!(response.bytes().await.unwrap().as_ref(), built, "{path}");
        assert_revalidates(&app, path, &etag).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_snippet_is_the_loader_the_widget_expects() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;
    let record = deployment(&app, &token, &[SHOP_ORIGIN], false).await;
    let id = record["id"].as_str().unwrap();
    let expected = LOADER
        .replace("{{ENDPOINT}}", &app.base)
        .replace("{{DEPLOYMENT_ID}}", id);
    assert_eq!(record["snippet"].as_str().unwrap(), expected.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_hosts_the_snippet_and_says_what_is_wrong() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let token = app.admin().await;

    for query in [
        "",
        "?deploymentId=",
        "?deploymentId=%3Cscript%3Ealert(1)%3C/script%3E",
    ] {
        let response = get(&app, &format!("/demo{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let page = response.text().await.unwrap();
        assert!(
            page.contains("a UUID") && !page.contains("<script>alert"),
            "{page}"
        );
    }

    let unknown = get(
        &app,
        &format!("/demo?deploymentId={}", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("No deployment has this id.")
    );

    // A deployment that does not allow switchboard's own origin: the page
    // says the widget cannot connect here, and how to fix it.
    let elsewhere = deployment(&app, &token, &[SHOP_ORIGIN], false).await;
    let response = get(
        &app,
        &format!("/demo?deploymentId={}", elsewhere["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains(&format!("does not allow the origin {}", app.base))
            && page.contains("allowedDomains"),
        "{page}"
    );

    // One that does: no warning, the snippet itself, and the config.json
    // check that reports an unreachable configuration.
    let here = deployment(&app, &token, &[&app.base], false).await;
    let page = get(
        &app,
        &format!("/demo?deploymentId={}", here["id"].as_str().unwrap()),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!page.contains("class=\"problem\" role=\"alert\""), "{page}");
    // The snippet is shown, and run from the page's script (no inline
    // script), which checks config.json and reports an unreachable one.
    let id = here["id"].as_str().unwrap();
    assert!(page.contains("Switchboard"), "{page}");
    assert!(
        page.contains(&format!("data-deployment-id=\"{id}\""))
            && page.contains(&format!("data-endpoint=\"{}\"", app.base))
            && page.contains("config.json"),
        "{page}"
    );
    let script = get(&app, "/demo/demo.js").await.text().await.unwrap();
    assert!(
        script.contains("cannot be read") && script.contains("/web-snippet/widget.js"),
        "{script}"
    );
}

/// The callback page posts the IdP's answer only to the origins of the
/// deployment whose login it is (found by `state`, without using the login
/// up), never to whoever opened the popup.
async fn the_callback_page_hands_the_code_only_to_the_deployments_origins(kind: EngineKind) {
    let idp = idp::shared();
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let site = deployment(&app, &token, &[SHOP_ORIGIN, &app.base], true).await;
    let id = site["id"].as_str().unwrap();
    let started = app
        .call(
            reqwest::Method::POST,
            "/api/v2/webdeployments/token/oauth/start",
            None,
            Some(json!({ "deploymentId": id, "redirectUri": idp.redirect_uri })),
        )
        .await
        .expect(StatusCode::OK);
    let state = started["state"].as_str().unwrap();

    let response = get(
        &app,
        &format!("/web-snippet/callback?code=c0de&state={state}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "cache-control"), "no-store");
    assert_eq!(header_of(&response, "referrer-policy"), "no-referrer");
    let csp = header_of(&response, "content-security-policy").to_owned();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let page = response.text().await.unwrap();
    let mut origins = targets(&page);
    origins.sort();
    assert_eq!(origins, [app.base.clone(), SHOP_ORIGIN.to_owned()]);
    // The code is read by the page from its address, not written into it.
    assert!(!page.contains("c0de"));

    // An unknown (or used, or expired) login: nobody gets anything.
    let page = get(&app, "/web-snippet/callback?code=c0de&state=forged")
        .await
        .text()
        .await
        .unwrap();
    assert!(targets(&page).is_empty(), "{page}");

    // The page did not use the login up: it completes.
    let callback = idp
        .login(started["authorizeUrl"].as_str().unwrap(), "erin")
        .await;
    app.call(
        reqwest::Method::POST,
        "/api/v2/webdeployments/token/oauth/complete",
        None,
        Some(json!({
            "deploymentId": id, "code": callback.code(), "state": callback.state(), "iss": callback.iss(),
        })),
    )
    .await
    .expect(StatusCode::OK);
}
on_both_engines!(the_callback_page_hands_the_code_only_to_the_deployments_origins);

/// The popup posts the IdP's answer only to the origin of the page that
/// started the login (bound to the login at start): another allowed origin
/// gets nothing, and with "allow all domains" the answer never goes to
/// `"*"` (a site that opens the popup for another site's login gets
/// nothing). The deployment answer warns the admin about "allow all".
async fn the_callback_page_posts_only_to_the_origin_that_started_the_login(kind: EngineKind) {
    let idp = idp::shared();
    let app = TestApp::spawn(kind).await;
    let token = app.admin().await;
    let site = deployment(
        &app,
        &token,
        &[SHOP_ORIGIN, "https://*.brand.example.com"],
        true,
    )
    .await;
    assert!(site.get("warnings").is_none(), "{site}");
    let id = site["id"].as_str().unwrap().to_owned();
    let start = |origin: Option<&'static str>| {
        let app = &app;
        let id = id.clone();
        async move {
            let mut request = app
                .http
                .post(app.url("/api/v2/webdeployments/token/oauth/start"))
                .json(&json!({ "deploymentId": id, "redirectUri": idp.redirect_uri }));
            if let Some(origin) = origin {
                request = request.header(header::ORIGIN, origin);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            body["state"].as_str().unwrap().to_owned()
        }
    };
    let callback_targets = |state: String| {
        let app = &app;
        async move {
            let page = get(
                app,
                &format!("/web-snippet/callback?code=c0de&state={state}"),
            )
            .await
            .text()
            .await
            .unwrap();
            targets(&page)
        }
    };

    let state = start(Some(SHOP_ORIGIN)).await;
    assert_eq!(callback_targets(state).await, [SHOP_ORIGIN]);
    let state = start(Some("https://chat.brand.example.com")).await;
    assert_eq!(
        callback_targets(state).await,
        ["https://chat.brand.example.com"]
    );

    // "Allow all": warned, and still bound to the starting origin.
    let path = format!("/api/v2/webdeployments/deployments/{id}");
    let mut record = app.get(&path, &token).await.expect(StatusCode::OK);
    record["allowedDomains"] = json!([]);
    record["allowAllDomains"] = json!(true);
    let updated = app.put(&path, &token, record).await.expect(StatusCode::OK);
    let warnings = updated["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("allowAllDomains"),
        "{updated}"
    );
    let state = start(Some("https://anywhere.example.org")).await;
    assert_eq!(
        callback_targets(state).await,
        ["https://anywhere.example.org"]
    );
    // Started without an Origin (not a browser page): nobody, never "*".
    let state = start(None).await;
    assert!(callback_targets(state).await.is_empty());
}
on_both_engines!(the_callback_page_posts_only_to_the_origin_that_started_the_login);
