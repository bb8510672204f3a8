//! The `switchboard` binary as an operator runs it: first start, the
//! one-time bootstrap token, a restart on the same data, graceful shutdown,
//! and logs that never carry a secret.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// SIGTERM: readiness turns 503 for the drain period while the node still
/// serves, then the node closes and exits 0; a connection that never sends
/// its headers does not hold it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_cleanly() {
    use tokio::io::AsyncWriteExt;
    let data = tempfile::tempdir().unwrap();
    let mut env = embedded_env(data.path());
    env.insert("RUST_LOG".to_owned(), "info".to_owned());
    env.insert("SWITCHBOARD_DRAIN_SECONDS".to_owned(), "5".to_owned());
    env.insert(
        "SWITCHBOARD_HEADER_TIMEOUT_SECONDS".to_owned(),
        "3600".to_owned(),
    );
    let node = Node::start(&env).ready().await;
    let address = node.base.trim_start_matches("http://").to_owned();
    let mut half_sent = tokio::net::TcpStream::connect(&address).await.unwrap();
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    node.signal("TERM");
    let api = node.api();
    api.await_status(
        "/readyz",
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(30),
    )
    .await;
    // Still serving while the load balancer takes it out.
    let health = reqwest::get(format!("{}/healthz", node.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (exit, lines) = tokio::task::spawn_blocking(move || node.wait_exit())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("draining")), "{lines:?}");
    drop(half_sent);
}

/// SIGHUP reloads what can change (here the log level from the config
/// file), says so, and the node stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("switchboard.toml");
    std::fs::write(&file, "log_level = \"info\"\n").unwrap();
    let mut env = embedded_env(data.path());
    // The setting, not RUST_LOG, decides the level (empty is unset).
    env.insert("RUST_LOG".to_owned(), String::new());
    env.insert("SWITCHBOARD_CONFIG".to_owned(), file.display().to_string());
    let node = Node::start(&env).ready().await;

    std::fs::write(&file, "log_level = \"debug\"\n").unwrap();
    node.signal("HUP");
    let line = node
        .await_line(Duration::from_secs(30), |l| l.contains("\"reloaded\""))
        .await;
    assert!(line.contains("log level: info -> debug"), "{line}");
    let health = reqwest::get(format!("{}/healthz", node.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // An invalid file changes nothing and does not stop the node.
    std::fs::write(&file, "log_level = \"info,[=\"\n").unwrap();
    node.signal("HUP");
    node.await_line(Duration::from_secs(30), |l| l.contains("nothing changed"))
        .await;
    let health = reqwest::get(format!("{}/healthz", node.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    node.terminate();
}

/// `check-config` takes each Redis form and refuses a wrong one with one
/// line that starts with the setting to fix.
#[test]
fn check_config_names_the_wrong_redis_setting() {
    let check = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("check-config")
            .env_clear()
            .env(
                "SWITCHBOARD_MASTER_KEY",
                switchboard::config::MasterKey::generate().to_base64(),
            )
            .stdin(Stdio::null());
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let ok = check(&[
        (
            "SWITCHBOARD_REDIS_CLUSTER_NODES",
            "10.0.0.1:7000,10.0.0.2:7000",
        ),
        ("SWITCHBOARD_REDIS_PASSWORD", "s3cr3t-pw"),
    ]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(
        stdout.contains("cluster via 10.0.0.1:7000,10.0.0.2:7000"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    let ok = check(&[
        ("SWITCHBOARD_REDIS_SENTINELS", "s1:26379,s2:26379,s3:26379"),
        ("SWITCHBOARD_REDIS_SENTINEL_MASTER", "mymaster"),
    ]);
    assert!(ok.status.success());
    for (vars, setting) in [
        (
            vec![("SWITCHBOARD_REDIS_SENTINELS", "s1:26379")],
            "SWITCHBOARD_REDIS_SENTINEL_MASTER",
        ),
        (
            vec![("SWITCHBOARD_REDIS_CLUSTER_NODES", "redis://u:s3cr3t-pw@a:1")],
            "SWITCHBOARD_REDIS_CLUSTER_NODES",
        ),
        (
            vec![
                ("REDIS_URL", "redis://a"),
                ("SWITCHBOARD_REDIS_TLS_CA_FILE", "/nonexistent"),
            ],
            "SWITCHBOARD_REDIS_TLS_CA_FILE",
        ),
    ] {
        let output = check(&vars);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(setting), "{stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
}
