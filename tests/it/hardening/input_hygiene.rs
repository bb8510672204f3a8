//! Hostile input an admin form could carry: names with control characters,
//! wildcard origins that match more (or less) than they say, and an
//! integration whose client secret is wrong but which "tests fine".

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::new_token;
use crate::support::idp;
use crate::support::site::{SiteSpec, idp_integration_body};
use crate::support::ws::refused;

/// Names that would forge a log line, drive a terminal or read backwards
/// are refused on every record that has one; the record is not created.
async fn names_with_control_characters_are_refused(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    for name in [
        "Support\nlevel=ERROR msg=\"forged\"",
        "Sup\rport",
        "bell\u{7}",
        "\u{1b}[31mred",
        "nul\u{0}",
        "c1\u{85}x",
        "tab\tbed",
        "\u{202e}gnp.exe",
        "isolate\u{2066}",
        "line\u{2028}separator",
    ] {
        let reply = app
            .post("/api/v2/routing/queues", &admin, json!({ "name": name }))
            .await;
        reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let reply = app
            .post(
                "/api/v2/oauth/clients",
                &admin,
                json!({ "name": name, "roles": ["agent"] }),
            )
            .await;
        reply.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let queues = app
        .get("/api/v2/routing/queues", &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(queues["total"], 0, "{queues}");
    // Plain names, in any script, pass.
    app.post(
        "/api/v2/routing/queues",
        &admin,
        json!({ "name": "Support – Ünïcødé 支持 🎧" }),
    )
    .await
    .expect(StatusCode::CREATED);
}
on_both_engines!(names_with_control_characters_are_refused);

/// `https://*.example.com` admits the subdomains, at any depth, and
/// nothing else: not the apex, not a name that merely ends the same way,
/// not another scheme or port. Malformed wildcards are refused with a
/// message that shows the form.
async fn wildcard_origins_admit_subdomains_only(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let site = app
        .site(&SiteSpec::new().origins(&["https://*.shop.example.com", "https://shop.example.com"]))
        .await;
    assert_eq!(
        site.record["allowedDomains"],
        json!(["https://*.shop.example.com", "https://shop.example.com"])
    );
    for origin in [
        "https://shop.example.com",
        "https://www.shop.example.com",
        "https://a.b.shop.example.com",
    ] {
        let mut guest = app
            .guest_from(&site.deployment, &new_token(), Some(origin))
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        guest.configure().await;
    }
    for origin in [
        "https://evilshop.example.com",
        "https://shop.example.com.evil.com",
        "https://www.shop.example.com.evil.com",
        "http://www.shop.example.com",
        "https://www.shop.example.com:8443",
        "https://.shop.example.com",
        "https://WWW.shop.example.com",
        "null",
    ] {
        let upgrade = app
            .guest_from(&site.deployment, &new_token(), Some(origin))
            .await;
        assert_eq!(refused(upgrade), StatusCode::FORBIDDEN, "{origin}");
    }
    // The wildcard alone does not cover the apex.
    let only = app
        .site(&SiteSpec::new().origins(&["https://*.shop.example.com"]))
        .await;
    let upgrade = app
        .guest_from(
            &only.deployment,
            &new_token(),
            Some("https://shop.example.com"),
        )
        .await;
    assert_eq!(refused(upgrade), StatusCode::FORBIDDEN);

    let path = format!("/api/v2/webdeployments/deployments/{}", only.deployment);
    let mut body: Value = app.get(&path, &only.admin).await.expect(StatusCode::OK);
    for bad in [
        "https://*.com",
        "https://*.*.example.com",
        "https://a.*.example.com",
        "https://*example.com",
        "https://*.10.0.0.1",
        "*.example.com",
    ] {
        body["allowedDomains"] = json!([bad]);
        let error = app
            .put(&path, &only.admin, body.clone())
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("allowedDomains"),
            "{bad}: {error}"
        );
    }
}
on_both_engines!(wildcard_origins_admit_subdomains_only);

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {report}"))
}

/// The integration test endpoint asks the real IdP's token endpoint with
/// a made-up code: `invalid_grant` means the client id and secret were
/// accepted, `invalid_client` that they were not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integration_test_tells_a_wrong_client_secret() {
    let idp = idp::shared();
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let admin = app.admin().await;
    let test = |id: String| {
        let app = &app;
        let admin = &admin;
        async move {
            app.post(
                &format!("/api/v2/integrations/oidc/{id}/test"),
                admin,
                json!({}),
            )
            .await
            .expect(StatusCode::OK)
        }
    };

    let good = app
        .create(
            "/api/v2/integrations/oidc",
            &admin,
            idp_integration_body(idp),
        )
        .await;
    let report = test(good).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(step(&report, "client")["ok"], true, "{report}");
    assert!(
        step(&report, "client")["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{report}"
    );

    let mut body = idp_integration_body(idp);
    body["name"] = json!("Wrong secret");
    body["clientSecret"] = json!("not-the-client-secret-at-all");
    let wrong = app.create("/api/v2/integrations/oidc", &admin, body).await;
    let report = test(wrong).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(step(&report, "client")["ok"], false, "{report}");
    assert_eq!(report["problem"]["code"], "idp_error", "{report}");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_client"),
        "{report}"
    );
    assert!(!report.to_string().contains("not-the-client-secret-at-all"));
}
