//! G1: `config.json` decodes as the SDK's `DeploymentConfig`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::on_both_engines;
use crate::support::app::{EngineKind, TestApp};

async fn config_json_decodes_under_sdk_rules(kind: EngineKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin().await;
    let with_everything = published(
        &app,
        &admin,
        configuration(
            None,
            json!({
                "launcherButton": { "visibility": "OnDemand" },
                "apps": { "conversations": {
                    "autoStart": { "enabled": true },
                    "conversationDisconnect": { "enabled": true, "type": "ReadOnly" },
                    "notifications": { "enabled": true, "notificationContentType": "IncludeMessagesContent" },
                } },
                "fileUpload": { "enableAttachments": false,
                    "modes": [{ "fileTypes": ["image/png"], "maxFileSizeKB": 100 }] },
            }),
        ),
    )
    .await;
    let id = deployment(&app, &admin, &with_everything, json!({})).await;
    let path = format!("/webdeployments/v1/deployments/{id}/config.json");
    // The SDK fetches it from api-cdn.<domain>: the same route on any host.
    let response = app
        .http
        .get(app.url(&path))
        .header("host", "api-cdn.chat.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let raw: Value = response.json().await.unwrap();
    assert_no_nulls(&raw, "config");
    let config: sdk::DeploymentConfig = decode(&raw);
    assert_eq!(config.id, id);
    assert_eq!(config.version, "1");
    assert_eq!(config.status, sdk::Status::Active);
    assert_eq!(config.languages, ["en-us"]);
    assert_eq!(config.default_language, "en-us");
    assert!(config.api_endpoint.starts_with("http://"));
    assert!(!config.auth.enabled && !config.auth.allow_session_upgrade);
    assert!(!config.journey_events.enabled);
    let messenger = &config.messenger;
    assert!(messenger.enabled);
    assert_eq!(messenger.launcher_button.visibility, "OnDemand");
    assert!(messenger.styles.primary_color.starts_with('#'));
    let conversations = &messenger.apps.conversations;
    assert!(conversations.messaging_endpoint.starts_with("ws://"));
    assert!(conversations.auto_start.enabled);
    assert!(conversations.conversation_disconnect.enabled);
    assert_eq!(
        conversations.conversation_disconnect.kind,
        sdk::DisconnectType::ReadOnly
    );
    assert!(conversations.notifications.enabled);
    assert_eq!(
        conversations.notifications.notification_content_type,
        sdk::NotificationContentType::IncludeMessagesContent
    );
    // Attachments off: the SDK takes its (empty) profile from the session,
    // and no file types are offered.
    assert_eq!(messenger.file_upload.enable_attachments, Some(false));
    assert!(messenger.file_upload.modes.is_empty());

    // Defaults: the launcher on, no notifications block; attachments on
    // offer their modes.
    let plain = published(
        &app,
        &admin,
        configuration(
            None,
            json!({ "fileUpload": { "enableAttachments": true,
                "modes": [{ "fileTypes": ["image/png"], "maxFileSizeKB": 100 }] } }),
        ),
    )
    .await;
    let id = deployment(&app, &admin, &plain, json!({})).await;
    let raw = app
        .call(
            Method::GET,
            &format!("/webdeployments/v1/deployments/{id}/config.json"),
            None,
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_no_nulls(&raw, "config");
    assert!(
        raw["messenger"]["apps"]["conversations"]
            .get("notifications")
            .is_none()
    );
    let config: sdk::DeploymentConfig = decode(&raw);
    assert_eq!(config.messenger.launcher_button.visibility, "On");
    assert!(!config.messenger.apps.conversations.notifications.enabled);
    let modes = &config.messenger.file_upload.modes;
    if kind == EngineKind::Embedded {
        assert_eq!(modes.len(), 1);
        assert_eq!(modes[0].file_types, ["image/png"]);
        assert_eq!(modes[0].max_file_size_kb, 100);
    } else {
        // Redis without object storage keeps no files: none are offered.
        assert_eq!(config.messenger.file_upload.enable_attachments, Some(false));
        assert!(modes.is_empty());
    }

    // Values the SDK does not know are refused at the edge.
    app.post(
        "/api/v2/webdeployments/configurations",
        &admin,
        configuration(
            None,
            json!({ "launcherButton": { "visibility": "Sometimes" } }),
        ),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    app.post(
        "/api/v2/webdeployments/configurations",
        &admin,
        configuration(
            None,
            json!({ "apps": { "conversations": { "notifications": { "notificationContentType": "All" } } } }),
        ),
    )
    .await
    .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid");
}
on_both_engines!(config_json_decodes_under_sdk_rules);
