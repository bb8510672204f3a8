//! G3: refresh with `{"refreshToken"}` alone, with and without rotation.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

/// A signed-in app on a deployment whose integration rotates refresh tokens
/// or not: the deployment and the exchange's answer.
async fn signed_in_app(app: &TestApp, rotation: bool) -> (String, String, sdk::AuthJwt) {
    let idp = idp::shared();
    let admin = app.admin().await;
    let integration = integration(app, &admin, idp, rotation).await;
    let configuration = published(app, &admin, configuration(Some(&integration), json!({}))).await;
    let id = deployment(app, &admin, &configuration, json!({})).await;
    let body = app_login(idp, &id, "rhea").await;
    let pair = post(app, EXCHANGE, &body).await.expect(StatusCode::OK);
    (admin, id, decode(&pair))
}

/// What the SDK sends: the refresh token and nothing else.
fn sdk_refresh(token: &str) -> Value {
    json!({ "refreshToken": token })
}

async fn refresh_without_rotation(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (_, id, first) = signed_in_app(&app, false).await;
    let original = first.refresh_token.unwrap();
    let mut revocations = app.state().visitor_tokens.subscribe();

    // The SDK presents its first refresh token every time.
    let mut jwts = vec![first.jwt];
    for _ in 0..5 {
        let answer = post(&app, REFRESH, &sdk_refresh(&original))
            .await
            .expect(StatusCode::OK);
        let answer: sdk::AuthJwt = decode(&answer);
        assert_eq!(answer.refresh_token.as_deref(), Some(original.as_str()));
        app.state()
            .visitor_tokens
            .verify(&answer.jwt, id.parse().unwrap(), chrono::Utc::now())
            .await
            .unwrap();
        assert!(!jwts.contains(&answer.jwt));
        jwts.push(answer.jwt);
    }
    assert!(
        revocations.try_recv().is_err(),
        "no session was revoked by refreshing"
    );

    // With the deployment named, it must be the token's.
    post(
        &app,
        REFRESH,
        &json!({ "refreshToken": original, "deploymentId": id }),
    )
    .await
    .expect(StatusCode::OK);
    post(
        &app,
        REFRESH,
        &json!({ "refreshToken": original, "deploymentId": Uuid::new_v4() }),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "deployment_not_found");
    post(&app, REFRESH, &sdk_refresh("sbr_made_up"))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_grant");
    post(&app, REFRESH, &json!({}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    // Logout ends it.
    app.http
        .delete(app.url(REVOKE))
        .header("authorization", format!("bearer {}", jwts.last().unwrap()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    post(&app, REFRESH, &sdk_refresh(&original))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_revoked");
}
on_both_engines!(refresh_without_rotation);

async fn refresh_with_rotation(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let (admin, id, first) = signed_in_app(&app, true).await;
    let original = first.refresh_token.unwrap();
    let mut revocations = app.state().visitor_tokens.subscribe();

    // `{"refreshToken"}` alone works, and answers the next token.
    let second = post(&app, REFRESH, &sdk_refresh(&original))
        .await
        .expect(StatusCode::OK);
    let second: sdk::AuthJwt = decode(&second);
    let next = second.refresh_token.unwrap();
    assert_ne!(next, original);

    // Switching rotation off keeps spent tokens spent: the newest works as
    // often as presented, the spent one is still a reuse.
    let integration_path = {
        let deployment = app
            .get(&format!("/api/v2/webdeployments/deployments/{id}"), &admin)
            .await
            .expect(StatusCode::OK);
        let configuration = app
            .get(
                &format!(
                    "/api/v2/webdeployments/configurations/{}",
                    deployment["configuration"]["id"].as_str().unwrap()
                ),
                &admin,
            )
            .await
            .expect(StatusCode::OK);
        format!(
            "/api/v2/integrations/oidc/{}",
            configuration["authenticationSettings"]["integrationId"]
                .as_str()
                .unwrap()
        )
    };
    let mut integration = app
        .get(&integration_path, &admin)
        .await
        .expect(StatusCode::OK);
    assert_eq!(integration["refreshTokenRotation"], true);
    integration["refreshTokenRotation"] = json!(false);
    let updated = app
        .put(&integration_path, &admin, integration)
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["refreshTokenRotation"], false);
    for _ in 0..3 {
        let answer = post(&app, REFRESH, &sdk_refresh(&next))
            .await
            .expect(StatusCode::OK);
        let answer: sdk::AuthJwt = decode(&answer);
        assert_eq!(answer.refresh_token.as_deref(), Some(next.as_str()));
    }

    // The SDK's pattern under rotation (the first token again) is a reuse:
    // the whole session is revoked, and its sockets are told.
    post(&app, REFRESH, &sdk_refresh(&original))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
    let revoked = tokio::time::timeout(Duration::from_secs(5), revocations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.deployment.to_string(), id);
    post(&app, REFRESH, &sdk_refresh(&next))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_revoked");

    // With rotation on from the start, a second presentation is a reuse.
    let (_, _, fresh) = signed_in_app(&app, true).await;
    let token = fresh.refresh_token.unwrap();
    post(&app, REFRESH, &sdk_refresh(&token))
        .await
        .expect(StatusCode::OK);
    post(&app, REFRESH, &sdk_refresh(&token))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "refresh_token_reused");
}
on_both_engines!(refresh_with_rotation);
