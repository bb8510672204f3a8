//! The committed proxy configurations in front of nodes: nginx
//! (`deployments/nginx/switchboard.conf`) with TLS before one node, the
//! three Genesys host names resolved to it, and config.json, history and a
//! guest socket through it; Caddy (`deployments/caddy/Caddyfile`) before
//! two nodes on Redis, a visitor on one and an agent on the other.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, protocol::Role};

use crate::support::app::{EngineKind, TestApp};
use crate::support::guest::{assert_session, new_token};

const CONF: &str = include_str!("../../deployments/nginx/switchboard.conf");
const DOMAIN: &str = "chat.example.com";
/// RFC 6455 1.3's example key and the accept value it must produce.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An nginx process (one process: `master_process off`, so killing it
/// leaves no worker behind), stopped when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `tool` can be started at all (its exit status does not matter).
fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Replaces `from` (which must occur) with `to`.
fn substitute(conf: &str, from: &str, to: &str) -> String {
    assert!(conf.contains(from), "the committed config lost `{from}`");
    conf.replace(from, to)
}

/// A self-signed certificate for the three host names.
fn certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("fullchain.pem").display().to_string();
    let key = dir.join("privkey.pem").display().to_string();
    let san =
        format!("subjectAltName=DNS:webmessaging.{DOMAIN},DNS:api.{DOMAIN},DNS:api-cdn.{DOMAIN}");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={DOMAIN}"), "-addext", &san])
        .args(["-keyout", &key, "-out", &cert])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// Starts nginx on the committed config, with only the listen port, the
/// upstream and the certificate paths changed, and waits for its port.
async fn start_nginx(dir: &Path, upstream: SocketAddr) -> (Nginx, SocketAddr) {
    let (cert, key) = certificate(dir);
    let port = crate::support::free_port();
    let conf = substitute(
        CONF,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    let conf = substitute(
        &conf,
        "server 127.0.0.1:8080;",
        &format!("server {upstream};"),
    );
    let conf = substitute(&conf, "/etc/ssl/chat.example.com/fullchain.pem", &cert);
    let conf = substitute(&conf, "/etc/ssl/chat.example.com/privkey.pem", &key);
    std::fs::write(dir.join("switchboard.conf"), conf).unwrap();
    let d = dir.display();
    let main = format!(
        "master_process off;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         include {d}/switchboard.conf;\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-g")
        .arg(format!("daemon off; pid {d}/nginx.pid; error_log stderr;"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut nginx = Nginx(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (nginx, addr);
        }
        if let Some(status) = nginx.0.try_wait().unwrap() {
            panic!("nginx exited with {status} (its errors are above)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not listen on {addr}");
}

#[tokio::test]
async fn committed_nginx_config_serves_the_three_host_names() {
    if !installed("nginx") || !installed("openssl") {
        eprintln!("SKIPPED: nginx or openssl is not installed (scripts/test installs both)");
        return;
    }
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let site = app.guest_site().await;
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, addr) = start_nginx(dir.path(), app.addr).await;

    let webmessaging = format!("webmessaging.{DOMAIN}");
    let api = format!("api.{DOMAIN}");
    let api_cdn = format!("api-cdn.{DOMAIN}");
    // As the SDK connects: TLS on 443 (here the test port), no port in the
    // URL, the host names resolving to the proxy.
    let client = reqwest::Client::builder()
        .resolve(&webmessaging, addr)
        .resolve(&api, addr)
        .resolve(&api_cdn, addr)
        .danger_accept_invalid_certs(true)
        .http1_only()
        .build()
        .unwrap();

    // api-cdn: the deployment's config.json.
    let config = client
        .get(format!(
            "https://{api_cdn}/webdeployments/v1/deployments/{}/config.json",
            site.deployment
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
    let config: Value = config.json().await.unwrap();
    assert_eq!(config["id"], site.deployment, "{config}");
    assert_eq!(config["status"], "Active", "{config}");

    // api: history, refused by switchboard (its `{code, message}` body,
    // not an nginx page) for want of a session JWT.
    let history = client
        .get(format!(
            "https://{api}/api/v2/webmessaging/messages?pageNumber=1&pageSize=25"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), StatusCode::UNAUTHORIZED);
    let body: Value = history.json().await.unwrap();
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );

    // webmessaging: the upgrade passes through, and the socket carries a
    // configureSession and its answer.
    let upgrade = client
        .get(format!(
            "https://{webmessaging}/v1?deploymentId={}&application=test",
            site.deployment
        ))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", WS_KEY)
        .header("Sec-WebSocket-Version", "13")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(upgrade.headers()["sec-websocket-accept"], WS_ACCEPT);
    let stream = upgrade.upgrade().await.unwrap();
    let mut socket = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    let token = new_token();
    let frame =
        json!({ "action": "configureSession", "token": token, "deploymentId": site.deployment });
    socket.send(Message::text(frame.to_string())).await.unwrap();
    let answer = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer through nginx")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    let session = assert_session(&answer);
    assert_eq!(session["connected"], true, "{answer}");
}

const CADDYFILE: &str = include_str!("../../deployments/caddy/Caddyfile");

/// A `caddy run` process, stopped when dropped.
struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Caddy on the committed Caddyfile, with only the site addresses
/// (plain http on `port`, plus 127.0.0.1 for the test's own clients) and
/// the upstreams changed, and waits for its port.
async fn start_caddy(dir: &Path, port: u16, upstreams: [SocketAddr; 2]) -> (Caddy, SocketAddr) {
    let sites = format!(
        "http://webmessaging.{DOMAIN}:{port}, http://api.{DOMAIN}:{port}, \
         http://api-cdn.{DOMAIN}:{port}, http://127.0.0.1:{port} {{"
    );
    let conf = substitute(
        CADDYFILE,
        &format!("webmessaging.{DOMAIN}, api.{DOMAIN}, api-cdn.{DOMAIN} {{"),
        &sites,
    );
    let conf = substitute(
        &conf,
        "reverse_proxy 127.0.0.1:8080 127.0.0.1:8081 {",
        &format!("reverse_proxy {} {} {{", upstreams[0], upstreams[1]),
    );
    // No admin endpoint: tests run side by side.
    let conf = format!("{{\n\tadmin off\n}}\n\n{conf}");
    let file = dir.join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new("caddy")
        .arg("run")
        .arg("--config")
        .arg(&file)
        .args(["--adapter", "caddyfile"])
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut caddy = Caddy(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (caddy, addr);
        }
        if let Some(status) = caddy.0.try_wait().unwrap() {
            panic!("caddy exited with {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("caddy did not listen on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_caddyfile_carries_a_conversation_across_two_nodes() {
    use crate::support::app::{Api, Setup};
    use crate::support::site::SiteSpec;

    if !installed("caddy") {
        eprintln!("SKIPPED: caddy is not installed (scripts/test installs it)");
        return;
    }
    let port = crate::support::node::free_port();
    let proxy_base = format!("http://127.0.0.1:{port}");
    // Two nodes on one Redis, one public URL: the proxy's.
    let setup = Setup::new(EngineKind::Redis).set(switchboard::config::ENV_PUBLIC_URL, &proxy_base);
    let a = TestApp::spawn_with(setup.clone()).await;
    let b = TestApp::spawn_with(setup).await;
    let dir = tempfile::tempdir().unwrap();
    let (_caddy, addr) = start_caddy(dir.path(), port, [a.addr, b.addr]).await;

    // The three host names reach the nodes (config.json on api-cdn).
    let proxy = Api::new(proxy_base);
    let site = proxy.site_as(&a.bootstrap, &SiteSpec::new()).await;
    for host in [
        format!("api-cdn.{DOMAIN}"),
        format!("api.{DOMAIN}"),
        format!("webmessaging.{DOMAIN}"),
    ] {
        let client = reqwest::Client::builder()
            .resolve(&host, addr)
            .build()
            .unwrap();
        let config = client
            .get(format!(
                "http://{host}:{port}/webdeployments/v1/deployments/{}/config.json",
                site.deployment
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(config.status(), StatusCode::OK, "{host}");
    }

    // The agent's socket lands on one node...
    let (_, agent_token) = proxy.client(&a.bootstrap, "Grace", &["agent"]).await;
    let (mut agent, _) = proxy.agent(&agent_token).await;
    agent.available().await;
    let sockets = |app: &TestApp| app.state().shutdown.open_sockets();
    let agent_on_a = sockets(&a) == 1;
    assert_eq!(sockets(&a) + sockets(&b), 1);
    let other = if agent_on_a { &b } else { &a };

    // ...and the visitor's, through the same proxy, on the other (the
    // proxy balances; a visitor that lands beside the agent tries again).
    let mut visitor = None;
    for _ in 0..20 {
        let mut guest = proxy.guest(&site.deployment, &new_token()).await;
        assert_session(&guest.configure().await);
        if sockets(other) == 1 {
            visitor = Some(guest);
            break;
        }
        drop(guest);
    }
    let mut visitor = visitor.expect("the proxy never sent a visitor to the other node");

    visitor.deliver("hello through the proxy", "p1").await;
    let conversation = agent.accept_first_offer().await;
    agent.find_text("hello through the proxy").await;
    agent.say(&conversation, "hello from the other node").await;
    let reply = visitor.until_text("hello from the other node").await;
    assert_eq!(reply["body"]["direction"], "Outbound");
}
