//! switchboard nodes as separate processes, so a test can kill one with
//! SIGKILL the way a machine dies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use super::app::Api;

pub(crate) use super::free_port;

/// A running `switchboard serve` process.
pub(crate) struct Node {
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
    /// Each stream's lines alone (`output` has both, in arrival order).
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout and stderr into `output`; they end when
    /// the process has exited and the pipes are drained.
    readers: Vec<std::thread::JoinHandle<()>>,
    pub base: String,
    env: HashMap<String, String>,
}

impl Node {
    /// Starts a node with exactly `env` (plus PATH) on a free port.
    pub(crate) fn start(env: &HashMap<String, String>) -> Node {
        Self::start_on(env, free_port())
    }

    pub(crate) fn start_on(env: &HashMap<String, String>, port: u16) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // Stopping a test's node need not wait for a load balancer.
            .env("SWITCHBOARD_DRAIN_SECONDS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                stdout.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), stderr.clone()),
        ]
        .into_iter()
        .map(|(stream, own)| {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    own.lock().unwrap().push(line.clone());
                    output.lock().unwrap().push(line);
                }
            })
        })
        .collect();
        Node {
            child: Some(child),
            output,
            stdout,
            stderr,
            readers,
            base: format!("http://127.0.0.1:{port}"),
            env: env.clone(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub(crate) async fn ready(self) -> Node {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return self;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node not ready: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's HTTP API.
    pub(crate) fn api(&self) -> Api {
        Api::new(self.base.clone())
    }

    /// The bootstrap token the node was started with.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.env["SWITCHBOARD_BOOTSTRAP_TOKEN"]
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The lines the node wrote to stderr.
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The lines the node wrote to stdout (its log stream).
    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Dies at once, like a machine losing power.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// As [`Node::terminate`], answering stdout's and stderr's lines apart.
    pub(crate) fn terminate_split(self) -> (Vec<String>, Vec<String>) {
        let (stdout, stderr) = (self.stdout.clone(), self.stderr.clone());
        self.terminate();
        let lines = |stream: Arc<Mutex<Vec<String>>>| stream.lock().unwrap().clone();
        (lines(stdout), lines(stderr))
    }

    /// Sends `signal` (`TERM`, `HUP`) and returns at once.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the node was stopped");
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the process exits (after a signal sent with
    /// [`Node::signal`]) and answers its exit status and output.
    pub(crate) fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("the node was stopped");
        let exit = child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (exit, self.lines())
    }

    /// Waits until a line of output satisfies `matches`, up to `within`.
    pub(crate) async fn await_line(
        &self,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such line in the output: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit and answers the output.
    pub(crate) fn terminate(mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(status.success());
            let exit = child.wait().unwrap();
            assert!(exit.success(), "exit status {exit:?}: {:?}", self.lines());
        }
        // The process is gone: the readers end once they drained the pipes.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.lines()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
