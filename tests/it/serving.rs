//! How a node serves connections: slow and greedy clients (header and
//! idle timeouts, the per-address cap, a shutdown that does not wait for
//! them), native TLS with certificate reload, compression, caching and the
//! security headers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use switchboard::config::serve as settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::{EngineKind, Setup, TestApp};

/// Long enough for any step on a loaded machine; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection, and answers what it sent.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    received
}

/// A connection that sent part of a request head and then nothing.
async fn half_sent(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

/// One request on `stream`, kept alive: answers the status line.
async fn request(stream: &mut TcpStream) -> String {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    // The body ("ok") may come with the head or after it; read it so the
    // next request starts clean.
    let text = String::from_utf8_lossy(&head).into_owned();
    if text.contains("200 OK") && !text.ends_with("ok") {
        let mut body = [0u8; 2];
        let _ = tokio::time::timeout(PATIENCE, stream.read_exact(&mut body)).await;
    }
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let setup = Setup::new(EngineKind::Embedded).set(settings::ENV_HEADER_TIMEOUT_SECONDS, "1");
    let app = TestApp::spawn_with(setup).await;
    let mut slow = half_sent(&app).await;
    let answer = closed_by_server(&mut slow).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a half-sent request was served"
    );
    // The node serves others meanwhile and after.
    let mut other = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(request(&mut other).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_coming_is_cut_off_when_idle() {
    let setup = Setup::new(EngineKind::Embedded).set(settings::ENV_IDLE_TIMEOUT_SECONDS, "1");
    let app = TestApp::spawn_with(setup).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /oauth/token HTTP/1.1\r\nHost: switchboard\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant",
        )
        .await
        .unwrap();
    let answer = closed_by_server(&mut stream).await;
    // Whatever the node answered (nothing, or a refusal of the truncated
    // body), the connection did not wait for the rest forever.
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_half_sent_requests() {
    // Headers may take an hour: only the shutdown can close these.
    let setup = Setup::new(EngineKind::Embedded).set(settings::ENV_HEADER_TIMEOUT_SECONDS, "3600");
    let mut app = TestApp::spawn_with(setup).await;
    let mut slow = half_sent(&app).await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    assert_eq!(request(&mut idle).await, "HTTP/1.1 200 OK");
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("the node stopped with a half-sent request open");
    closed_by_server(&mut slow).await;
    closed_by_server(&mut idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let setup = Setup::new(EngineKind::Embedded)
        .set(settings::ENV_MAX_CONNECTIONS_PER_ADDRESS, "3")
        // Loopback is exempt by default (a local proxy); not here.
        .set(settings::ENV_UNCAPPED_ADDRESSES, "none");
    let app = TestApp::spawn_with(setup).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        assert_eq!(request(&mut stream).await, "HTTP/1.1 200 OK");
        open.push(stream);
    }
    // The fourth is closed without an answer.
    let mut fourth = TcpStream::connect(app.addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: switchboard\r\n\r\n")
        .await;
    let answer = closed_by_server(&mut fourth).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    // A connection that closes frees its place.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut again = TcpStream::connect(app.addr).await.unwrap();
        if request(&mut again).await == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The console page's digest-named asset URLs.
fn asset_urls(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|part| part.starts_with("/console/console.") && part.contains("?v="))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_compressed_and_cached_and_the_demo_runs_under_a_strict_policy() {
    let setup = Setup::new(EngineKind::Embedded).set(
        switchboard::config::ENV_PUBLIC_URL,
        "https://chat.example.com",
    );
    let app = TestApp::spawn_with(setup).await;
    let http = reqwest::Client::new();

    // gzip and brotli, as asked; the widget shrinks by more than half.
    let plain = http
        .get(app.url("/web-snippet/widget.js"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.unwrap().len();
    for (accept, encoding) in [("gzip", "gzip"), ("br", "br"), ("br;q=0.5, gzip", "gzip")] {
        let response = http
            .get(app.url("/web-snippet/widget.js"))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-encoding"], encoding, "{accept}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=300");
        let body = response.bytes().await.unwrap();
        assert!(
            body.len() * 2 < plain_len,
            "{accept}: {} of {plain_len}",
            body.len()
        );
        if encoding == "gzip" {
            assert_eq!(&body[..2], &[0x1f, 0x8b]);
        }
    }
    // JSON too.
    let openapi = http
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.headers()["content-encoding"], "gzip");

    // The console's script and stylesheet, under the digest-named URLs its
    // page uses, are immutable; under any other URL, revalidated.
    let page = http
        .get(app.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let urls = asset_urls(&page);
    assert_eq!(urls.len(), 2, "{page}");
    for url in &urls {
        let response = http.get(app.url(url)).send().await.unwrap();
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{url}"
        );
        let path = url.split('?').next().unwrap();
        let stale = http
            .get(app.url(&format!("{path}?v=0000000000000000")))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.headers()["cache-control"], "public, max-age=300");
    }

    // The demo page: no inline script or style, allowed by a policy that
    // allows none; no framing; HSTS, since the public URL is https.
    let site = app.guest_site().await.deployment;
    let demo = http
        .get(app.url(&format!("/demo?deploymentId={site}")))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), StatusCode::OK);
    let headers = demo.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self' https://chat.example.com",
        "style-src 'self' https://chat.example.com",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("nonce-"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    let body = demo.text().await.unwrap();
    assert!(!body.contains("<style"), "inline style: {body}");
    assert!(!body.contains("<script>"), "inline script: {body}");
    assert!(body.contains("<script src=\"/demo/demo.js\""), "{body}");
    for asset in ["/demo/demo.js", "/demo/demo.css"] {
        let response = http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hsts_over_plain_http() {
    let app = TestApp::spawn(EngineKind::Embedded).await;
    let response = reqwest::get(app.url("/healthz")).await.unwrap();
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
}

/// A self-signed certificate for 127.0.0.1 into `cert` and `key`.
pub(crate) fn certificate(cert: &Path, key: &Path, name: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl could not make a certificate");
}

/// The DER bytes of the first certificate in a PEM file.
fn der(cert: &Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_file(cert).unwrap().to_vec()
}

/// The certificate a TLS client is served at `addr`.
async fn served_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    // A moment between two renames may pair a new key with an old
    // certificate; the node keeps serving the old pair then, but a client
    // may catch the swap itself: it asks again.
    let Ok(response) = client.get(format!("https://{addr}/healthz")).send().await else {
        return Vec::new();
    };
    assert_eq!(response.status(), StatusCode::OK);
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    info.peer_certificate().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tls_serves_the_new_certificate_when_its_files_change() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed (scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    certificate(&cert, &key, "first");
    let first = der(&cert);
    let setup = Setup::new(EngineKind::Embedded)
        .set(settings::ENV_TLS_CERT_FILE, cert.to_str().unwrap())
        .set(settings::ENV_TLS_KEY_FILE, key.to_str().unwrap());
    let app = TestApp::spawn_with(setup).await;
    assert_eq!(served_certificate(app.addr).await, first);
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::get(format!("http://{}/healthz", app.addr)).await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);

    // A renewal: new files moved over the old ones, as ACME clients do.
    let next = tempfile::tempdir().unwrap();
    let (next_cert, next_key) = (next.path().join("cert.pem"), next.path().join("key.pem"));
    certificate(&next_cert, &next_key, "second");
    let second = der(&next_cert);
    assert_ne!(first, second);
    std::fs::copy(&next_key, dir.path().join("key.pem.new")).unwrap();
    std::fs::copy(&next_cert, dir.path().join("cert.pem.new")).unwrap();
    std::fs::rename(dir.path().join("key.pem.new"), &key).unwrap();
    std::fs::rename(dir.path().join("cert.pem.new"), &cert).unwrap();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while served_certificate(app.addr).await != second {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The reload hook (SIGHUP) finds nothing more to change.
    let config = app.setup.config(app.addr);
    let report = app.state().reloads.reload(&config);
    assert_eq!(report.unchanged, ["TLS certificate"], "{report:?}");
}
