//! A real S3-compatible server for the tests: `moto_server` (PyPI's
//! `moto[server]`, installed by scripts/test into a virtualenv at
//! `target/s3-tools`), on a free loopback port, shared by the test process
//! and killed by the same watchdog as the Redis servers. Each test gets a
//! bucket of its own.
//!
//! A missing `moto_server` fails the test that needs it, saying how to
//! install it: never a silent skip.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use switchboard::config::{self, S3Config};

use super::app::Setup;
use super::redis::{POLL_INTERVAL, WATCHDOG_SCRIPT, free_port};

/// The access key the tests sign with (moto takes any).
const ACCESS_KEY: &str = "switchboard-test";
const SECRET_KEY: &str = "switchboard-test-secret";
const REGION: &str = "us-east-1";

/// Where scripts/test installs moto; `SWITCHBOARD_TEST_MOTO_SERVER` names
/// another `moto_server`.
fn moto_server() -> PathBuf {
    if let Ok(path) = std::env::var("SWITCHBOARD_TEST_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("s3-tools/bin/moto_server")
}

/// A `moto_server` child on `127.0.0.1:port`.
#[derive(Debug)]
pub(crate) struct S3Server {
    port: u16,
    _child: Mutex<Child>,
}

/// The server shared by every test of this process, started on first use.
pub(crate) fn shared() -> &'static S3Server {
    static SHARED: OnceLock<S3Server> = OnceLock::new();
    SHARED.get_or_init(S3Server::start)
}

impl S3Server {
    fn start() -> S3Server {
        let binary = moto_server();
        assert!(
            binary.exists(),
            "the S3 tests need moto_server at {} (install it with scripts/test, or: \
             python3 -m venv target/s3-tools && target/s3-tools/bin/pip install 'moto[server]==5.2.5'; \
             or set SWITCHBOARD_TEST_MOTO_SERVER)",
            binary.display()
        );
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            match spawn_ready(&binary, port) {
                Ok(child) => {
                    return S3Server {
                        port,
                        _child: Mutex::new(child),
                    };
                }
                Err(e) => failures.push(e),
            }
        }
        panic!("could not start moto_server: {}", failures.join("; "));
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn spawn_ready(binary: &std::path::Path, port: u16) -> Result<Child, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("switchboard-test-s3")
        .arg(std::process::id().to_string())
        .arg(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning moto_server: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Python starts slowly on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("moto_server exited ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("moto_server did not listen within 60s".to_owned());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A fresh bucket on the shared server, and the settings that point a
/// node at it.
pub(crate) async fn bucket() -> Vec<(&'static str, String)> {
    let server = tokio::task::spawn_blocking(shared).await.unwrap();
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let s3 = S3Config {
        bucket: name.clone(),
        endpoint: server.endpoint().parse().unwrap(),
        region: REGION.to_owned(),
        access_key_id: ACCESS_KEY.to_owned(),
        secret_access_key: SECRET_KEY.to_owned().into(),
        path_style: true,
    };
    switchboard::attachments::s3::S3Client::new(s3)
        .unwrap()
        .ensure_bucket()
        .await
        .unwrap();
    vec![
        (config::ENV_S3_BUCKET, name),
        (config::ENV_S3_ENDPOINT, server.endpoint()),
        (config::ENV_S3_REGION, REGION.to_owned()),
        (config::ENV_S3_ACCESS_KEY_ID, ACCESS_KEY.to_owned()),
        (config::ENV_S3_SECRET_ACCESS_KEY, SECRET_KEY.to_owned()),
        (config::ENV_S3_PATH_STYLE, "true".to_owned()),
    ]
}

impl Setup {
    /// Object storage in a fresh bucket of the shared S3 server.
    pub(crate) async fn with_s3(mut self) -> Self {
        for (name, value) in bucket().await {
            self = self.set(name, &value);
        }
        self
    }
}
