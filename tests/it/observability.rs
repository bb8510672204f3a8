//! What an operator watches, on the `switchboard` binary: `/metrics`
//! through `promtool` with every label from a closed set, on its own
//! listener; the dashboard and alert rules in deployments/ against the
//! metrics a node exposes; JSON log lines (an access line per request, the
//! request id carried into socket events, start-up errors included); a log
//! output that never blocks the service; a loud refusal of an invalid
//! `RUST_LOG`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::guest::new_token;
use crate::support::node::{Node, free_port};
use crate::support::site::SiteSpec;

const EXCHANGE: &str = "/api/v2/webdeployments/token/oauthcodegrantjwtexchange";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `promtool` with `args` (and `input` on stdin): success and output.
fn promtool(args: &[&str], input: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The HTTP series of an exposition: each sample's name and labels.
fn http_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("switchboard_http_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

/// The metric families an exposition declares, with the sample names of
/// each (a histogram's `_bucket`, `_sum` and `_count`).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The metric names a PromQL text mentions (ours and the process ones).
fn metrics_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("switchboard_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Every `expr` in a Grafana dashboard.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// Requests with made-up methods, on known and unknown paths.
async fn made_up_methods(http: &reqwest::Client, base: &str, range: std::ops::Range<u32>) {
    for i in range {
        let method = Method::from_bytes(format!("FROB{i}").as_bytes()).unwrap();
        for path in ["/healthz".to_owned(), format!("/no/such/path/{i}")] {
            let status = http
                .request(method.clone(), format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_client_error(), "{method} {path}: {status}");
        }
    }
}

/// Polls `url` until `done` holds for its exposition (the node counts a
/// closed socket when its task ends, after the client has gone).
async fn scrape_until(http: &reqwest::Client, url: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(http, url).await;
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_logs_dashboard_and_alerts_an_operator_relies_on() {
    let data = tempfile::tempdir().unwrap();
    let token_file = data.path().join("bootstrap-token");
    let metrics_port = free_port();
    let env = HashMap::from([
        (
            "SWITCHBOARD_DATA_DIR".to_owned(),
            data.path().join("data").display().to_string(),
        ),
        (
            "SWITCHBOARD_METRICS_LISTEN".to_owned(),
            format!("127.0.0.1:{metrics_port}"),
        ),
        (
            "SWITCHBOARD_BOOTSTRAP_TOKEN_OUTPUT".to_owned(),
            token_file.display().to_string(),
        ),
    ]);
    let node = Node::start(&env).ready().await;
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");

    // The generated bootstrap token went to its file, owner-only, and
    // nowhere else.
    let bootstrap = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(bootstrap.starts_with("sbb_"), "{bootstrap}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(node.stderr_lines().is_empty(), "{:?}", node.stderr_lines());

    // A conversation: messages accepted from both sides and delivered to
    // both; then both sockets go away.
    let api = node.api();
    let site = api.site_as(&bootstrap, &SiteSpec::new()).await;
    let (_, agent_token) = api.client(&bootstrap, "Grace", &["agent"]).await;
    let (mut agent, _) = api.agent(&agent_token).await;
    agent.available().await;
    let mut visitor = api.configured_guest(&site.deployment, &new_token()).await;
    visitor.deliver("hello", "m1").await;
    let conversation = agent.accept_first_offer().await;
    agent.say(&conversation, "hi there").await;
    visitor.until_text("hi there").await;
    // A message the agent receives live (not in a snapshot) is counted as
    // delivered to it once its frame is sent: wait for it before leaving.
    visitor.deliver("thanks", "m2").await;
    agent.find_text("thanks").await;
    drop(visitor);
    drop(agent);

    // A token exchange the node refuses, and request ids: a sane one is
    // kept, anything else replaced.
    let refused = http
        .post(format!("{}{EXCHANGE}", node.base))
        .header("x-request-id", "ops-check-7")
        .json(&json!({
            "deploymentId": uuid::Uuid::new_v4(),
            "oauth": { "code": "c", "redirectUri": "https://shop.example/cb" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(refused.headers()["x-request-id"], "ops-check-7");
    let forged = "x\",\"level\":\"ERROR";
    let replaced = http
        .get(format!("{}/healthz", node.base))
        .header("x-request-id", forged)
        .send()
        .await
        .unwrap();
    let replaced_id = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(replaced_id, forged);
    assert!(uuid::Uuid::parse_str(&replaced_id).is_ok(), "{replaced_id}");

    // Metrics live on their own listener only.
    let public = http
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);

    // Made-up methods and paths: the first batch may add the `other` and
    // `unmatched` series; ten times as many add nothing.
    made_up_methods(&http, &node.base, 0..20).await;
    let first = scrape(&http, &metrics_url).await;
    made_up_methods(&http, &node.base, 20..220).await;
    let second = scrape_until(&http, &metrics_url, |text| {
        text.contains(r#"switchboard_websockets_closed_total{side="guest""#)
            && text.contains(r#"switchboard_websockets_closed_total{side="agent""#)
    })
    .await;
    assert_eq!(http_series(&first), http_series(&second));
    assert!(second.contains(r#"method="other",route="unmatched",status="404""#));
    assert!(!second.contains("FROB"));

    let (ok, report) = promtool(&["check", "metrics"], Some(&second));
    assert!(ok, "promtool check metrics:\n{report}\n{second}");

    for expected in [
        "switchboard_build_info{version=",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        r#"switchboard_engine_operation_duration_seconds_count{engine="embedded",op="append"}"#,
        r#"switchboard_token_exchanges_total{endpoint="exchange",outcome="deployment_not_found"} 1"#,
        r#"switchboard_messages_accepted_total{side="guest"} 2"#,
        r#"switchboard_messages_accepted_total{side="agent"} 1"#,
        r#"switchboard_messages_delivered_total{side="guest"}"#,
        r#"switchboard_messages_delivered_total{side="agent"}"#,
        r#"switchboard_websockets_open{side="guest"} 0"#,
    ] {
        assert!(second.contains(expected), "no {expected} in\n{second}");
    }

    // Prometheus asks for OpenMetrics and gets it.
    let open = http
        .get(&metrics_url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    // The alert rules are valid, their unit tests pass, and they and the
    // dashboard only use metrics a node exposes.
    let rules = repo_file("deployments/prometheus/alerts.yml");
    let (ok, report) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules:\n{report}");
    let rule_tests = repo_file("deployments/prometheus/alerts.test.yml");
    let (ok, report) = promtool(&["test", "rules", rule_tests.to_str().unwrap()], None);
    assert!(ok, "promtool test rules:\n{report}");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deployments/grafana/switchboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let exposed = sample_names(&second);
    let mut used = metrics_in(&std::fs::read_to_string(&rules).unwrap());
    for expr in &exprs {
        used.extend(metrics_in(expr));
    }
    for name in &used {
        assert!(exposed.contains(name), "{name} is not exposed: {exposed:?}");
    }

    // Every log line is one flat JSON object; each request has its access
    // line; the request id is a top-level field, socket events included.
    let (stdout, stderr) = node.terminate_split();
    assert!(stderr.is_empty(), "{stderr:?}");
    let lines: Vec<Value> = stdout
        .iter()
        .map(|line| {
            assert!(!line.contains("Some("), "Debug syntax: {line}");
            assert!(!line.contains(&bootstrap), "the token was logged: {line}");
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect();
    let access = lines
        .iter()
        .find(|l| l["message"] == "request" && l["request_id"] == "ops-check-7")
        .unwrap_or_else(|| panic!("no access line: {stdout:#?}"));
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["route"], EXCHANGE);
    assert_eq!(access["status"], 404);
    assert!(access["duration_ms"].is_f64(), "{access}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "request" && l["request_id"] == replaced_id.as_str())
    );
    assert!(
        !stdout.iter().any(|l| l.contains("level\\\":\\\"ERROR")),
        "a forged request id reached the log"
    );
    let socket_open = lines
        .iter()
        .find(|l| l["message"] == "agent socket open")
        .unwrap_or_else(|| panic!("no socket event: {stdout:#?}"));
    assert!(
        socket_open["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{socket_open}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "agent socket closed"
            && l["request_id"] == socket_open["request_id"])
    );
}

/// A node process on `port`, logging as JSON at `trace`, with stdout piped
/// and stderr discarded.
fn spawn_node(data_dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATA_DIR", data_dir.display().to_string())
        .env(
            "SWITCHBOARD_BOOTSTRAP_TOKEN",
            format!("sbb_test_{}", uuid::Uuid::new_v4().simple()),
        )
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the process has exited; panics if it is still running
/// after a generous deadline (a hung shutdown).
async fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_log_reader_holds_up_neither_requests_nor_sigterm() {
    // A reader that stopped reading (the pipe fills up), and one that is
    // gone (every write fails).
    for reader_gone in [false, true] {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = spawn_node(data.path(), port);
        let stdout = child.stdout.take().unwrap();
        let _stalled = if reader_gone {
            drop(stdout);
            None
        } else {
            Some(stdout)
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            assert!(tokio::time::Instant::now() < deadline, "node not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // At trace level each request logs several lines: far more than a
        // pipe holds (64 KiB) unread.
        for _ in 0..500 {
            let response = http.get(&ready).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let killed = Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let status = exit_status(&mut child).await;
        assert!(status.success(), "reader gone: {reader_gone}: {status:?}");
    }
}

#[test]
fn an_invalid_rust_log_is_refused_loudly() {
    let data = tempfile::tempdir().unwrap();
    let run = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .env_clear()
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("SWITCHBOARD_DATA_DIR", data.path().display().to_string())
            .env("SWITCHBOARD_LOG_FORMAT", format)
            .env("RUST_LOG", "switchboard=loud")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let pretty = run("pretty");
    assert!(!pretty.status.success());
    let stderr = String::from_utf8_lossy(&pretty.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("RUST_LOG"), "{stderr}");

    let json = run("json");
    assert!(!json.status.success());
    let stdout = String::from_utf8_lossy(&json.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"].as_str().unwrap().contains("RUST_LOG"),
        "{line}"
    );
}

#[test]
fn start_up_errors_are_json_lines_when_json_is_chosen() {
    let data = tempfile::tempdir().unwrap();
    let run = |listen: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .env_clear()
            .env("SWITCHBOARD_LISTEN", listen)
            .env("SWITCHBOARD_DATA_DIR", data.path().display().to_string())
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // A configuration error, before logging exists; then a port in use,
    // after.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    for (listen, expected) in [
        ("no-port", "SWITCHBOARD_LISTEN"),
        (in_use.as_str(), &in_use),
    ] {
        let output = run(listen);
        assert!(!output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let error = lines
            .iter()
            .find(|l| l["level"] == "ERROR")
            .unwrap_or_else(|| panic!("no error line: {stdout}"));
        assert!(
            error["error"].as_str().unwrap().contains(expected),
            "{error}"
        );
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
