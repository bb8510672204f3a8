//! `switchboard loadtest` with tiny numbers against an in-process node: each
//! scenario runs to its end, prints one complete JSON summary line, and
//! reports nothing lost and nothing duplicated. Behaviour, not timings: the
//! figures themselves are for docs/benchmarks.md, on a quiet machine.

use serde_json::Value;
use switchboard::limits;

use crate::support::app::{EngineKind, Setup, TestApp};

/// Runs the load tool (the real binary, in its own process) and answers
/// its JSON summary; panics with its stderr when it failed.
async fn loadtest(app: &TestApp, args: &[&str]) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("loadtest")
        .args(args)
        .args(["--url", &app.base, "--bootstrap-token", &app.bootstrap])
        .args(["--timeout-seconds", "120"])
        .env_remove("SWITCHBOARD_BOOTSTRAP_TOKEN")
        .env_remove("LOADTEST_AGENT_TOKENS")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadtest {args:?} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {stdout}");
    let summary: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(summary["ok"], true, "{summary}\n{stderr}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicated"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}\n{stderr}");
    assert_eq!(summary["urls"][0], app.base.as_str());
    assert!(summary["elapsed_s"].as_f64().is_some(), "{summary}");
    summary
}

/// A latency figure with `count` samples, each percentile a number.
#[track_caller]
fn latency(value: &Value, count: u64) {
    assert_eq!(value["count"], count, "{value}");
    for field in ["p50_ms", "p99_ms", "max_ms"] {
        assert!(value[field].as_f64().is_some(), "{field}: {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_gives_every_visitor_an_agent() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let summary = loadtest(
        &app,
        &[
            "burst",
            "--visitors",
            "20",
            "--agents",
            "2",
            "--window-ms",
            "200",
        ],
    )
    .await;
    assert_eq!(summary["scenario"], "burst");
    assert_eq!(summary["parameters"]["visitors"], 20);
    for count in ["configured", "acknowledged", "offered", "assigned"] {
        assert_eq!(summary[count], 20, "{count}: {summary}");
    }
    assert_eq!(summary["reoffers"], 0, "{summary}");
    for figure in ["connect", "first_message_ack", "offer", "assignment"] {
        latency(&summary[figure], 20);
    }
    assert!(summary["all_assigned_s"].as_f64().is_some(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_delivers_every_message_and_echo_once() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    // The node runs in this process: its CPU is this process's.
    let node = format!("node={}", std::process::id());
    let summary = loadtest(
        &app,
        &[
            "steady",
            "--visitors",
            "20",
            "--agents",
            "2",
            "--messages",
            "3",
            "--rate",
            "1.5",
            "--cpu-pid",
            &node,
        ],
    )
    .await;
    assert_eq!(summary["scenario"], "steady");
    assert_eq!(summary["conversations"], 20);
    assert_eq!(summary["sent"], 60);
    assert_eq!(summary["echoed"], 60);
    for field in [
        "lost_visitor_to_agent",
        "lost_agent_to_visitor",
        "duplicated_visitor_to_agent",
        "duplicated_agent_to_visitor",
    ] {
        assert_eq!(summary[field], 0, "{field}: {summary}");
    }
    let step = &summary["steps"][0];
    assert_eq!(step["passed"], true, "{step}");
    assert_eq!(step["late"], 0, "{step}");
    assert!(
        step["achieved_msgs_per_s"].as_f64().unwrap() > 0.0,
        "{step}"
    );
    for figure in [
        "visitor_ack",
        "visitor_to_agent",
        "agent_ack",
        "agent_to_visitor",
        "round_trip",
    ] {
        latency(&step[figure], 60);
    }
    // CPU per step for the named processes, and the tool's own beside them.
    for name in ["node", "loadtest"] {
        let cpu = &step["cpu"][name];
        assert!(
            cpu["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{name}: {step}"
        );
        assert!(cpu["us_per_msg"].as_f64().is_some(), "{name}: {step}");
        // And what each wrote to storage (a log on tmpfs writes nothing).
        for figure in ["written_kib", "written_per_msg"] {
            assert!(
                cpu[figure].as_f64().is_some_and(|n| n >= 0.0),
                "{name} {figure}: {step}"
            );
        }
    }
    assert_eq!(step["cpu"].as_object().unwrap().len(), 2, "{step}");
}

/// `--organizations 3`: three new organizations, each with its deployment,
/// queue and agent; every visitor gets its own organization's agent (an
/// agent on another organization's queue would never be offered it, and
/// the run would not finish clean).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_spreads_over_organizations() {
    let app = TestApp::spawn(EngineKind::Redis).await;
    let before = app
        .get("/api/v2/organizations", &app.bootstrap)
        .await
        .expect(reqwest::StatusCode::OK)["total"]
        .as_u64()
        .unwrap();
    let summary = loadtest(
        &app,
        &[
            "steady",
            "--organizations",
            "3",
            "--visitors",
            "12",
            "--agents",
            "3",
            "--messages",
            "2",
            "--rate",
            "1.5",
        ],
    )
    .await;
    assert_eq!(summary["conversations"], 12, "{summary}");
    assert_eq!(summary["echoed"], 24, "{summary}");
    let after = app
        .get("/api/v2/organizations", &app.bootstrap)
        .await
        .expect(reqwest::StatusCode::OK)["total"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturate_ramps_and_reports_the_best_step() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let summary = loadtest(
        &app,
        &[
            "steady",
            "--saturate",
            "--visitors",
            "10",
            "--agents",
            "2",
            "--start-rate",
            "1",
            "--max-rate",
            "1.5",
            "--step-seconds",
            "2",
            // Timings are not the point here: a busy machine must not fail it.
            "--slo-p99-ms",
            "60000",
        ],
    )
    .await;
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{summary}");
    assert_eq!(steps[0]["rate"], 1.0);
    assert_eq!(steps[1]["rate"], 1.5);
    assert!(steps.iter().all(|s| s["passed"] == true), "{summary}");
    assert!(
        summary["max_msgs_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert_eq!(summary["sent"], summary["echoed"], "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_sockets_and_reads_node_memory() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    // The node runs in this process.
    let pid = std::process::id().to_string();
    let summary = loadtest(
        &app,
        &[
            "idle",
            "--sockets",
            "20",
            "--hold-seconds",
            "1",
            "--node-pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(summary["scenario"], "idle");
    assert_eq!(summary["opened"], 20);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["dropped"], 0);
    latency(&summary["connect"], 20);
    for side in ["node", "tool"] {
        for field in ["before_kib", "open_kib", "end_kib", "per_socket_kib"] {
            assert!(
                summary[side][field].as_f64().is_some(),
                "{side}.{field}: {summary}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_take_nothing_from_the_honest_ones() {
    // The per-address limits and the guest message rate at their
    // defaults: the hostile clients come from 127.0.1.x, the honest ones
    // from 127.0.0.x.
    let setup = Setup::new(EngineKind::Embedded)
        .address_limits()
        .unset(limits::ENV_GUEST_MESSAGES);
    let app = TestApp::spawn_with(setup).await;
    // The node runs in this process: its memory is this process's.
    let pid = std::process::id().to_string();
    let summary = loadtest(
        &app,
        &[
            "hostile",
            "--node-pid",
            &pid,
            "--rss-interval-seconds",
            "1",
            "--visitors",
            "4",
            "--agents",
            "2",
            "--messages",
            "6",
            "--rate",
            "1",
            "--deadline-ms",
            "30000",
            "--flooders",
            "1",
            "--session-spammers",
            "1",
            "--conversation-spammers",
            "1",
            "--oversized",
            "1",
            "--oversized-bytes",
            "200000",
        ],
    )
    .await;
    assert_eq!(summary["scenario"], "hostile");
    let honest = &summary["honest"];
    assert_eq!(honest["conversations"], 4, "{summary}");
    assert_eq!(honest["sent"], 24, "{summary}");
    assert_eq!(honest["lost_visitor_to_agent"], 0, "{summary}");
    assert_eq!(honest["lost_agent_to_visitor"], 0, "{summary}");
    let hostile = &summary["hostile"];
    let count = |name: &str| hostile[name].as_u64().unwrap();
    // The flood and the session spam met their limits; oversized frames
    // closed their sockets; conversations waiting from the hostile
    // addresses stayed within the bound (20 per address, 4 addresses).
    assert!(count("flood_refused") > 0, "{summary}");
    assert!(count("sessions_refused") > 0, "{summary}");
    assert!(count("oversized_closed") > 0, "{summary}");
    assert!(count("conversations_opened") <= 4 * 20, "{summary}");
    // The honest sessions' loss is reported on its own, and the node's
    // memory over the run: a sample at the start, at the end, and between.
    assert_eq!(summary["honest_loss"]["lost"], 0, "{summary}");
    assert_eq!(summary["honest_loss"]["duplicated"], 0, "{summary}");
    let node = &summary["node"];
    let samples = node["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{summary}");
    assert!(
        samples
            .windows(2)
            .all(|w| w[0]["at_s"].as_f64() <= w[1]["at_s"].as_f64()),
        "{summary}"
    );
    let peak = node["peak_kib"].as_u64().unwrap();
    assert!(samples.iter().all(|s| s["kib"].as_u64().unwrap() <= peak));
    assert!(node["start_kib"].as_u64().unwrap() > 0, "{summary}");
}
