//! A load generator against a real node: what an idle guest socket costs in
//! server memory, and message throughput and acknowledgement latency, on the
//! embedded engine and on Redis in one run. `cargo bench --bench sockets`;
//! figures in docs/benchmarks.md.
//!
//! The node is the release binary in its own process, so its resident
//! memory (VmRSS) is measured alone. Redis is a throwaway redis-server on a
//! free port. Sizes: `SOCKETS` (default 2000), `SENDERS` (default 200).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    reason = "a benchmark that cannot go on should stop loudly"
)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ORIGIN: &str = "https://shop.example.com";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> (Process, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Process(child), format!("redis://127.0.0.1:{port}/"))
}

struct Node {
    process: Process,
    base: String,
    boot: String,
}

async fn node(redis_url: Option<&str>, data: &std::path::Path) -> Node {
    let port = free_port();
    let boot = format!("sbb_bench_{}", uuid::Uuid::new_v4().simple());
    let mut env: HashMap<&str, String> = HashMap::from([
        ("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}")),
        ("SWITCHBOARD_DATA_DIR", data.display().to_string()),
        ("SWITCHBOARD_BOOTSTRAP_TOKEN", boot.clone()),
        (
            "SWITCHBOARD_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        ),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    if let Some(url) = redis_url {
        env.insert("REDIS_URL", url.to_owned());
    }
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Node {
        process: Process(child),
        base,
        boot,
    }
}

impl Node {
    /// Resident memory of the node process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.boot)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A guest deployment.
    async fn deployment(&self) -> String {
        let c = self
            .post(
                "/api/v2/webdeployments/configurations",
                json!({ "name": "bench" }),
            )
            .await;
        let c = c["id"].as_str().unwrap().to_owned();
        self.post(
            &format!("/api/v2/webdeployments/configurations/{c}/versions/draft/publish"),
            json!({}),
        )
        .await;
        let q = self
            .post("/api/v2/routing/queues", json!({ "name": "bench" }))
            .await;
        let d = self
            .post(
                "/api/v2/webdeployments/deployments",
                json!({ "name": "bench", "configuration": { "id": c, "version": "1" },
                        "allowedDomains": [ORIGIN], "queueId": q["id"] }),
            )
            .await;
        d["id"].as_str().unwrap().to_owned()
    }
}

async fn next_text(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

async fn guest(base: &str, deployment: &str) -> (Ws, String) {
    let mut request = format!(
        "{}/v1?deploymentId={deployment}",
        base.replacen("http", "ws", 1)
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("origin", ORIGIN.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let token = uuid::Uuid::new_v4().to_string();
    let frame = json!({ "action": "configureSession", "deploymentId": deployment, "token": token });
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let answer = next_text(&mut ws).await;
    assert_eq!(answer["class"], "SessionResponse", "{answer}");
    (ws, token)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn run(label: &str, redis_url: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let node = node(redis_url, data.path()).await;
    let deployment = node.deployment().await;
    let sockets = env_usize("SOCKETS", 2000);
    let senders = env_usize("SENDERS", 200).min(sockets);

    // Memory: idle, configured sessions.
    let (_warm, _) = guest(&node.base, &deployment).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = node.rss_kib();
    let mut open = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        open.push(guest(&node.base, &deployment).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = node.rss_kib();
    let per_socket = (after.saturating_sub(before)) as f64 / sockets as f64;

    // Throughput: `senders` sessions send 10 messages each at the guest rate
    // limit (2 a second per session, so one every 600 ms); every send waits for its
    // acknowledgement, which comes once the message is in the log.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut ws, token) in open.drain(..senders) {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..10 {
                let frame = json!({ "action": "onMessage", "token": token,
                    "message": { "type": "Text", "text": format!("message {i}") } });
                let sent = Instant::now();
                loop {
                    ws.send(Message::Text(frame.to_string().into()))
                        .await
                        .unwrap();
                    let answer = loop {
                        let answer = next_text(&mut ws).await;
                        if answer["type"] == "response" {
                            break answer;
                        }
                    };
                    if answer["code"] == 429 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    assert_eq!(answer["class"], "StructuredMessage", "{answer}");
                    break;
                }
                latencies.push(sent.elapsed());
                // Under the limit of two a second, with room for the window.
                tokio::time::sleep(Duration::from_millis(600).saturating_sub(sent.elapsed())).await;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{label:>9}: {sockets} idle sockets add {:.1} MiB RSS = {per_socket:.1} KiB per socket (node RSS {before} → {after} KiB)",
        (after - before) as f64 / 1024.0
    );
    println!(
        "{label:>9}: {} messages from {senders} sessions in {:.2} s = {:.0} msg/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and only checks that this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run("embedded", None).await;
        let (_redis, url) = redis();
        run("redis", Some(&url)).await;
    });
}
