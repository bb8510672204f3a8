//! The `switchboard` binary as an operator runs it: first start, the
//! one-time bootstrap token, a restart on the same data, graceful shutdown,
//! and logs that never carry a secret.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::node::{Node, free_port};

fn embedded_env(data_dir: &std::path::Path) -> HashMap<String, String> {
    HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
        // As much logging as there is: nothing secret may appear even so.
        (
            "RUST_LOG".to_owned(),
            "trace,h2=info,hyper=info,reqwest=info".to_owned(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_restart_and_logs_without_secrets() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Node::start_on(&embedded_env(data.path()), port)
        .ready()
        .await;

    // The first start prints a bootstrap token once, on stderr, alone; the
    // log says where it went.
    let stderr = node.stderr_lines();
    assert_eq!(stderr.len(), 1, "stderr: {stderr:?}");
    let bootstrap = stderr[0].trim().to_owned();
    assert!(bootstrap.starts_with("sbb_"), "{bootstrap}");
    let lines = node.lines();
    assert!(
        node.stdout_lines()
            .iter()
            .any(|l| l.contains("bootstrap token") && l.contains("stderr")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("engine: embedded")),
        "the first log lines name the engine: {lines:?}"
    );

    let api = node.api();
    let client = api
        .post(
            "/api/v2/oauth/clients",
            &bootstrap,
            json!({ "name": "ops", "roles": ["admin"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let client_secret = client["secret"].as_str().unwrap().to_owned();
    let access = api
        .access_token(client["id"].as_str().unwrap(), &client_secret)
        .await;
    let integration = api
        .post(
            "/api/v2/integrations/oidc",
            &access,
            json!({
                "name": "IdP", "issuer": "https://idp.example.com", "clientId": "web",
                "clientSecret": "do-not-log-this-client-secret",
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    // A failed login attempt with a wrong bearer must not log it either.
    let wrong = api
        .get("/api/v2/routing/queues", "sbb_wrong-bearer-value")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let (lines, _) = node.terminate_split();
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
    let secrets = [
        client_secret.as_str(),
        access.as_str(),
        "do-not-log-this-client-secret",
        "sbb_wrong-bearer-value",
    ];
    for line in &lines {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "a secret reached the output: {line}"
            );
        }
        assert!(
            !line.contains(&bootstrap),
            "the bootstrap token reached a log line: {line}"
        );
        // Every log line is one JSON object, as configured.
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.is_object(), "{line}");
        assert!(
            !line.contains("Some("),
            "Debug syntax in a log line: {line}"
        );
    }

    // A restart on the same data keeps the records and the bootstrap token,
    // and prints no new one.
    let node = Node::start_on(&embedded_env(data.path()), port)
        .ready()
        .await;
    assert!(node.stderr_lines().is_empty(), "{:?}", node.stderr_lines());
    let read = node
        .api()
        .get(
            &format!(
                "/api/v2/integrations/oidc/{}",
                integration["id"].as_str().unwrap()
            ),
            &bootstrap,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(read["clientSecretSet"], true);
    node.terminate();
}

#[test]
fn bad_configuration_is_refused_with_its_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_MASTER_KEY"), "{stderr}");
}
