//! Push device registration as the SDK calls it, and its error body.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

fn push_path(deployment: &str, token: &str) -> String {
    format!(
        "/api/v2/webmessaging/deployments/{deployment}/pushdevices/{}",
        token.to_lowercase()
    )
}

/// A push device request as the SDK's Ktor client sends it: the JSON
/// content type always, the body as given (`""` on DELETE).
async fn push(app: &TestApp, method: Method, path: &str, body: &str) -> Reply {
    let response = app
        .http
        .request(method, app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

/// The SDK's register body (field order as it encodes it).
fn register_body(device_token: &str) -> String {
    json!({
        "deviceToken": device_token,
        "language": "en-us",
        "deviceType": "android",
        "notificationProvider": "FCM",
    })
    .to_string()
}

/// Decodes a failure as the SDK does, and answers its code.
#[track_caller]
fn push_error(reply: Reply, status: StatusCode) -> sdk::PushErrorResponse {
    assert_eq!(reply.status, status, "{}", reply.text);
    let error: sdk::PushErrorResponse = decode(&reply.json);
    assert_eq!(error.status, i32::from(status.as_u16()));
    assert!(!error.message.is_empty());
    assert!(error.context_id.as_ref().is_some_and(|c| !c.is_empty()));
    assert!(error.details.is_empty());
    error
}

async fn push_devices(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let notifying = published(
        &app,
        &admin,
        configuration(
            None,
            json!({ "apps": { "conversations": { "notifications": { "enabled": true } } } }),
        ),
    )
    .await;
    let id = deployment(&app, &admin, &notifying, json!({})).await;
    let (_ws, token) = guest(&app, &id, None).await;
    let path = push_path(&id, &token);

    // Register, as the SDK does after its SessionResponse.
    push(&app, Method::POST, &path, &register_body("fcm-token-1"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let device = app
        .state()
        .store
        .push_device(app.org(), id.parse().unwrap(), session_of(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.device_token.as_str(), "fcm-token-1");
    assert_eq!(device.provider, PushProvider::FCM);
    assert_eq!(device.device_type, DeviceType::Android);
    assert!(device.expires_at > chrono::Utc::now() + chrono::Duration::days(80));
    // A second registration: the SDK updates instead.
    let error = push_error(
        push(&app, Method::POST, &path, &register_body("fcm-token-1")).await,
        StatusCode::CONFLICT,
    );
    assert_eq!(error.code, "device.already.registered");

    // Update: a new token and language (the SDK's body).
    push(
        &app,
        Method::PATCH,
        &path,
        r#"{"deviceToken":"fcm-token-2","language":"en-GB"}"#,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let device = app
        .state()
        .store
        .push_device(app.org(), id.parse().unwrap(), session_of(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.device_token.as_str(), "fcm-token-2");
    assert_eq!(device.language.as_str(), "en-gb");
    assert_eq!(device.provider, PushProvider::FCM);
    let error = push_error(
        push(&app, Method::PATCH, &path, r#"{"deviceToken":"x"}"#).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error.code, "update.fields.missing");

    // Delete with the SDK's empty body, twice: the second is device.not.found,
    // which the SDK counts as done; an update then asks for a registration.
    push(&app, Method::DELETE, &path, "")
        .await
        .expect(StatusCode::NO_CONTENT);
    for method in [Method::DELETE, Method::PATCH] {
        let body = r#"{"deviceToken":"fcm-token-2","language":"en-us"}"#;
        let error = push_error(push(&app, method, &path, body).await, StatusCode::NOT_FOUND);
        assert_eq!(error.code, "device.not.found");
    }

    // Inputs parsed at the edge.
    let (_ws2, other) = guest(&app, &id, None).await;
    let other_path = push_path(&id, &other);
    let error = push_error(
        push(
            &app,
            Method::POST,
            &other_path,
            r#"{"deviceToken":"t","language":"en-us","deviceType":"ios"}"#,
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error.code, "required.fields.missing");
    for bad in [
        r#"{"deviceToken":"t","language":"en-us","deviceType":"ios","notificationProvider":"GCM"}"#,
        r#"{"deviceToken":"t","language":"en-us","deviceType":"web","notificationProvider":"APNS"}"#,
        r#"{"deviceToken":"a b","language":"en-us","deviceType":"ios","notificationProvider":"APNS"}"#,
        r#"{"deviceToken":"t","language":"","deviceType":"ios","notificationProvider":"APNS"}"#,
        r#"{"deviceToken":null,"language":"en-us","deviceType":"ios","notificationProvider":"APNS"}"#,
        "not json",
    ] {
        let error = push_error(
            push(&app, Method::POST, &other_path, bad).await,
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(error.code, "bad.request", "{bad}");
    }
    push(
        &app,
        Method::POST,
        &other_path,
        r#"{"deviceToken":"apns-1","language":"fr-fr","deviceType":"ios","notificationProvider":"APNS"}"#,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let error = push_error(
        push(
            &app,
            Method::POST,
            &format!("/api/v2/webmessaging/deployments/not-a-uuid/pushdevices/{other}"),
            &register_body("t"),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error.code, "invalid.path.parameter");
    assert_ne!(error.message, MISMATCH);

    // A token no session has.
    let error = push_error(
        push(
            &app,
            Method::POST,
            &push_path(&id, &Uuid::new_v4().to_string()),
            &register_body("t"),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(error.code, "session.not.found");

    // A session of this deployment presented on another: the SDK's
    // DeploymentIdMismatch.
    let elsewhere = deployment(&app, &admin, &notifying, json!({})).await;
    let error = push_error(
        push(
            &app,
            Method::POST,
            &push_path(&elsewhere, &token),
            &register_body("t"),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(error.code, "invalid.path.parameter");
    assert_eq!(error.message, MISMATCH);

    // Notifications off in the configuration: FeatureUnavailable for the
    // SDK, and nothing to delete.
    let quiet = published(&app, &admin, configuration(None, json!({}))).await;
    let quiet = deployment(&app, &admin, &quiet, json!({})).await;
    let (_ws3, third) = guest(&app, &quiet, None).await;
    let error = push_error(
        push(
            &app,
            Method::POST,
            &push_path(&quiet, &third),
            &register_body("t"),
        )
        .await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(error.code, "feature.toggle.disabled");
    let error = push_error(
        push(&app, Method::DELETE, &push_path(&quiet, &third), "").await,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(error.code, "device.not.found");
}
on_both_engines!(push_devices);

/// The guest session id a session token names.
fn session_of(token: &str) -> Uuid {
    switchboard::routing::model::session_id(token)
}
