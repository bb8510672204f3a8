//! Operating switchboard through its binary: backup and restore of a
//! running node, the master key checked at start, start-up errors on one
//! line, the admin commands, and the terminal clients' exits.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::guest::new_token;
use crate::support::node::{Node, free_port};
use crate::support::site::SiteSpec;

const BOOTSTRAP: &str = "sbb_operate-test-bootstrap-token";

fn embedded_env(data_dir: &Path) -> HashMap<String, String> {
    HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN".to_owned(),
            BOOTSTRAP.to_owned(),
        ),
    ])
}

/// The binary with exactly `env` (plus PATH), stdin closed.
fn switchboard(env: &HashMap<String, String>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end (off the async runtime).
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failed start: non-zero, and exactly one line on stderr, which is
/// answered.
fn one_line_failure(output: &Output) -> String {
    assert!(!output.status.success(), "it started: {}", stdout(output));
    let text = stderr(output);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {text}");
    lines[0].to_owned()
}

/// The history a guest of `deployment` with session `token` sees on `node`.
async fn history(node: &Node, deployment: &str, token: &str) -> Vec<String> {
    let api = node.api();
    let mut guest = api.configured_guest(deployment, token).await;
    let jwt = guest.jwt().await;
    let page = api
        .get("/api/v2/webmessaging/messages", &jwt)
        .await
        .expect(StatusCode::OK);
    page["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_node_restores_into_a_new_data_directory() {
    let data = tempfile::tempdir().unwrap();
    let env = embedded_env(data.path());
    let node = Node::start(&env).ready().await;
    let api = node.api();

    // The walk-through: a site, a guest's conversation, an API client.
    let site = api.site_as(BOOTSTRAP, &SiteSpec::new()).await;
    let token = new_token();
    let mut guest = api.configured_guest(&site.deployment, &token).await;
    guest.deliver("hello before the backup", "m1").await;
    guest.deliver("a second message", "m2").await;
    let (client, _) = api.client(BOOTSTRAP, "ops", &["admin"]).await;

    // Backed up while the node serves.
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("b1");
    let mut cli_env = env.clone();
    cli_env.insert("SWITCHBOARD_URL".to_owned(), node.base.clone());
    cli_env.insert("SWITCHBOARD_TOKEN".to_owned(), BOOTSTRAP.to_owned());
    let output = run(switchboard(
        &cli_env,
        &["backup", "--to", backup.to_str().unwrap()],
    ))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["switchboard.redb", "master.key"] {
            let mode = std::fs::metadata(backup.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let mode = std::fs::metadata(data.path().join("switchboard.redb"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the live database");
    }
    // The node went on serving.
    guest.deliver("after the backup", "m3").await;

    // An API client token cannot take a backup: it holds every
    // organization.
    let access = api.client_token(BOOTSTRAP, &["admin"]).await;
    let refused = api.post("/api/v2/backup", &access, json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Restored into a new data directory, a new node serves the state.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_env = embedded_env(&restored_dir.path().join("data"));
    let output = run(switchboard(
        &restored_env,
        &["restore", "--from", backup.to_str().unwrap()],
    ))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    // A second restore over it is refused.
    let again = run(switchboard(
        &restored_env,
        &["restore", "--from", backup.to_str().unwrap()],
    ))
    .await;
    assert!(one_line_failure(&again).contains("SWITCHBOARD_DATA_DIR"));

    let restored = Node::start(&restored_env).ready().await;
    let rapi = restored.api();
    for path in site.record_paths() {
        rapi.get(&path, BOOTSTRAP).await.expect(StatusCode::OK);
    }
    rapi.get(&format!("/api/v2/oauth/clients/{client}"), BOOTSTRAP)
        .await
        .expect(StatusCode::OK);
    let texts = history(&restored, &site.deployment, &token).await;
    assert!(
        texts.contains(&"hello before the backup".to_owned())
            && texts.contains(&"a second message".to_owned()),
        "{texts:?}"
    );
    assert!(
        !texts.contains(&"after the backup".to_owned()),
        "the backup is the state of one instant: {texts:?}"
    );
    drop(guest);
    restored.terminate();
    node.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_master_key_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let env = embedded_env(data.path());
    let node = Node::start(&env).ready().await;
    let api = node.api();
    api.post(
        "/api/v2/integrations/oidc",
        BOOTSTRAP,
        json!({ "name": "IdP", "issuer": "https://idp.example.com", "clientId": "web", "clientSecret": "sealed-secret" }),
    )
    .await
    .expect(StatusCode::CREATED);
    node.terminate();

    // The key given in the environment is not the one in the data.
    let mut other = env.clone();
    other.insert(
        "SWITCHBOARD_MASTER_KEY".to_owned(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
    );
    other.insert(
        "SWITCHBOARD_LISTEN".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    );
    let line = one_line_failure(&run(switchboard(&other, &["serve"])).await);
    assert!(line.contains("SWITCHBOARD_MASTER_KEY"), "{line}");
    assert!(line.contains("does not open"), "{line}");

    // The key file replaced by another.
    let key_file = data.path().join("master.key");
    let original = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    std::fs::write(&key_file, "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let mut listen = env.clone();
    listen.insert(
        "SWITCHBOARD_LISTEN".to_owned(),
        format!("127.0.0.1:{}", free_port()),
    );
    let line = one_line_failure(&run(switchboard(&listen, &["serve"])).await);
    assert!(line.contains("master.key"), "{line}");

    // The right key starts again.
    std::fs::write(&key_file, original).unwrap();
    Node::start(&env).ready().await.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_are_one_line_naming_the_setting() {
    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut env = embedded_env(data.path());
    env.insert("SWITCHBOARD_LISTEN".to_owned(), address.clone());
    let line = one_line_failure(&run(switchboard(&env, &["serve"])).await);
    assert!(
        line.contains("SWITCHBOARD_LISTEN") && line.contains(&address),
        "{line}"
    );
    drop(taken);

    // The config file is missing.
    let line = one_line_failure(
        &run(switchboard(
            &HashMap::new(),
            &["--config", "/nonexistent/switchboard.toml", "serve"],
        ))
        .await,
    );
    assert!(
        line.contains("SWITCHBOARD_CONFIG") && line.contains("/nonexistent/switchboard.toml"),
        "{line}"
    );

    // Redis does not answer: the variable and the address, not the password.
    let dead = free_port();
    let env = HashMap::from([
        (
            "REDIS_URL".to_owned(),
            format!("redis://:hunter2-secret@127.0.0.1:{dead}"),
        ),
        (
            "SWITCHBOARD_MASTER_KEY".to_owned(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        ),
        (
            "SWITCHBOARD_LISTEN".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
    ]);
    let line = one_line_failure(&run(switchboard(&env, &["serve"])).await);
    assert!(
        line.contains("REDIS_URL") && line.contains(&format!("127.0.0.1:{dead}")),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_check_config() {
    let output = run(switchboard(&HashMap::new(), &["version", "--json"])).await;
    assert!(output.status.success());
    let version: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["schemaVersion"].as_u64().unwrap() >= 1);

    let data = tempfile::tempdir().unwrap();
    let output = run(switchboard(
        &embedded_env(data.path()),
        &["check-config", "--json"],
    ))
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let checked: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(checked["ok"], true);
    assert_eq!(checked["engine"], "embedded");
    assert!(
        !stdout(&output).contains(BOOTSTRAP),
        "a secret in the answer"
    );
    // Nothing was created: checking is not starting.
    assert!(!data.path().join("switchboard.redb").exists());

    let bad = HashMap::from([("SWITCHBOARD_LISTEN".to_owned(), "no-port".to_owned())]);
    let output = run(switchboard(&bad, &["check-config", "--json"])).await;
    assert!(!output.status.success());
    let checked: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(checked["ok"], false);
    assert!(
        checked["error"]
            .as_str()
            .unwrap()
            .starts_with("SWITCHBOARD_LISTEN"),
        "{checked}"
    );
    assert!(one_line_failure(&output).contains("SWITCHBOARD_LISTEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_speak_the_admin_api() {
    let data = tempfile::tempdir().unwrap();
    let env = embedded_env(data.path());
    let node = Node::start(&env).ready().await;
    let mut cli = HashMap::from([
        ("SWITCHBOARD_URL".to_owned(), node.base.clone()),
        ("SWITCHBOARD_TOKEN".to_owned(), BOOTSTRAP.to_owned()),
    ]);
    let json_of = |output: &Output| -> Value {
        assert!(output.status.success(), "{}", stderr(output));
        serde_json::from_str(&stdout(output)).unwrap()
    };

    // API clients: create (secret once), rotate (old secret dead), delete.
    let created = json_of(
        &run(switchboard(
            &cli,
            &[
                "clients", "create", "--name", "ci", "--role", "admin", "--json",
            ],
        ))
        .await,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    let api = node.api();
    api.access_token(&id, &first).await;
    let rotated = json_of(&run(switchboard(&cli, &["clients", "rotate", &id, "--json"])).await);
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let old = reqwest::Client::new()
        .post(format!("{}/oauth/token", node.base))
        .basic_auth(&id, Some(&first))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let access = api.access_token(&id, &second).await;
    let listed = json_of(&run(switchboard(&cli, &["clients", "list", "--json"])).await);
    assert!(listed.as_array().unwrap().iter().any(|c| c["id"] == id));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("secret").is_none()),
        "a listing never shows a secret: {listed}"
    );

    // Organizations (the bootstrap token).
    let org = json_of(
        &run(switchboard(
            &cli,
            &["orgs", "create", "--name", "Second", "--json"],
        ))
        .await,
    );
    assert_eq!(org["organization"]["name"], "Second");
    let orgs = json_of(&run(switchboard(&cli, &["orgs", "list", "--json"])).await);
    assert_eq!(orgs.as_array().unwrap().len(), 2);

    // Members with an API access token: grant on the API, list, revoke a
    // role, remove.
    cli.insert("SWITCHBOARD_TOKEN".to_owned(), access.clone());
    let member = api
        .post(
            "/api/v2/members",
            &access,
            json!({ "issuer": "https://staff.example.com", "subject": "ada", "displayName": "Ada", "roles": ["admin", "agent"] }),
        )
        .await
        .expect(StatusCode::CREATED);
    let member_id = member["id"].as_str().unwrap().to_owned();
    let members = json_of(&run(switchboard(&cli, &["members", "list", "--json"])).await);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == member_id)
    );
    let revoked = json_of(
        &run(switchboard(
            &cli,
            &["members", "revoke", &member_id, "--role", "admin", "--json"],
        ))
        .await,
    );
    assert_eq!(revoked["roles"], json!(["agent"]));
    let output = run(switchboard(&cli, &["members", "revoke", &member_id])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    api.get(&format!("/api/v2/members/{member_id}"), &access)
        .await
        .expect(StatusCode::NOT_FOUND);

    // A refusal is one line with the API's code, and non-zero.
    let output = run(switchboard(&cli, &["orgs", "list"])).await;
    assert!(one_line_failure(&output).contains("403"));

    // Deleting the client ends its tokens.
    cli.insert("SWITCHBOARD_TOKEN".to_owned(), BOOTSTRAP.to_owned());
    let output = run(switchboard(&cli, &["clients", "delete", &id])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        api.get("/api/v2/oauth/clients", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    node.terminate();
}

/// Waits for a child to exit, at most `within`; answers its output.
async fn exited_within(mut child: std::process::Child, within: Duration) -> Output {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("still running: {} {}", stdout(&output), stderr(&output));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_clients_exit_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(&embedded_env(data.path())).ready().await;
    let api = node.api();

    // The agent leaves on /quit at once, with stdin still open.
    let token = api.client_token(BOOTSTRAP, &["agent"]).await;
    let mut agent = switchboard(
        &HashMap::new(),
        &["agent", "--url", &node.base, "--token", &token],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut input = agent.stdin.take().unwrap();
    input.write_all(b"/quit\n").unwrap();
    input.flush().unwrap();
    let output = exited_within(agent, Duration::from_secs(30)).await;
    assert!(output.status.success(), "{}", stderr(&output));
    drop(input);

    // The visitor's chat on a sign-in deployment explains 401 once and
    // fails, however many lines are typed.
    let site = api.site_as(BOOTSTRAP, &SiteSpec::shop_idp()).await;
    let mut chat = switchboard(
        &HashMap::new(),
        &[
            "chat",
            "--url",
            &node.base,
            "--deployment",
            &site.deployment,
            "--origin",
            crate::support::idp::SHOP_ORIGIN,
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut input = chat.stdin.take().unwrap();
    input.write_all(b"hello\nhello again\n").unwrap();
    input.flush().unwrap();
    let output = exited_within(chat, Duration::from_secs(30)).await;
    drop(input);
    assert!(!output.status.success());
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(all.matches("401").count(), 1, "{all}");
    assert!(all.contains("--jwt"), "{all}");
    node.terminate();
}
