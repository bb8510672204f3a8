//! A throwaway Sentinel set: a master, a replica, and three Sentinels
//! watching them, from `redis-server` processes on free ports (a Sentinel is
//! `redis-server <config> --sentinel`).

use std::ffi::OsString;
use std::process::Child;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use switchboard::engine::RedisTarget;

use super::{base_args, cli, free_port, kill, spawn_args_ready, wait_until};

/// The name the Sentinels know the master by.
pub(crate) const MASTER_NAME: &str = "switchboard";
/// How long the set may take to discover itself, or to fail over.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The set shared by every test of this process. Tests keep apart by key
/// prefix; never kill one of its servers (start a private set for that).
pub(crate) fn shared() -> &'static SentinelSet {
    static SHARED: OnceLock<SentinelSet> = OnceLock::new();
    SHARED.get_or_init(|| SentinelSet::start(1))
}

pub(crate) struct SentinelSet {
    /// Master and replica (which may swap roles in a failover).
    servers: Vec<Proc>,
    sentinels: Vec<Proc>,
    _dir: tempfile::TempDir,
}

struct Proc {
    port: u16,
    child: Mutex<Option<Child>>,
}

impl Proc {
    fn start(args: impl Fn(u16) -> Vec<OsString>) -> Proc {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_args_ready(port, &args(port)) {
                Ok(child) => {
                    return Proc {
                        port,
                        child: Mutex::new(Some(child)),
                    };
                }
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!("could not start redis-server: {}", failures.join("; "));
    }

    fn stop(&self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            kill(child);
        }
    }
}

impl SentinelSet {
    /// Starts a master with `replicas` replicas and three Sentinels, and
    /// waits until every Sentinel knows the master, the replicas and the
    /// other two Sentinels, so that a failover can happen.
    pub(crate) fn start(replicas: usize) -> SentinelSet {
        let dir = tempfile::tempdir().expect("sentinel directory");
        let path = dir.path().to_owned();
        let master = Proc::start(|port| base_args(port, "no", &path));
        let master_port = master.port;
        let mut servers = vec![master];
        for _ in 0..replicas {
            servers.push(Proc::start(|port| {
                let mut args = base_args(port, "no", &path);
                args.extend(
                    ["--replicaof", "127.0.0.1", &master_port.to_string()].map(OsString::from),
                );
                args
            }));
        }
        let sentinels: Vec<Proc> = (0..3)
            .map(|_| {
                Proc::start(|port| {
                    let conf = path.join(format!("sentinel-{port}.conf"));
                    let text = format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = path.display()
                    );
                    std::fs::write(&conf, text).expect("sentinel config");
                    vec![conf.into_os_string(), OsString::from("--sentinel")]
                })
            })
            .collect();
        let set = SentinelSet {
            servers,
            sentinels,
            _dir: dir,
        };
        wait_until(
            "the Sentinels know each other and the replica",
            SETTLE_TIMEOUT,
            || {
                set.sentinels.iter().all(|sentinel| {
                    let info = cli(sentinel.port, &["SENTINEL", "MASTER", MASTER_NAME]);
                    field(&info, "num-other-sentinels") == Some("2")
                        && field(&info, "num-slaves") == Some(replicas.to_string().as_str())
                })
            },
        );
        set
    }

    /// `127.0.0.1:<port>,...` of the three Sentinels.
    pub(crate) fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget::sentinel(&self.sentinels(), MASTER_NAME).expect("sentinel target")
    }

    /// The port of the master the first live Sentinel names.
    pub(crate) fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|s| {
                let out = cli(
                    s.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
                );
                out.lines().nth(1)?.trim().parse().ok()
            })
            .expect("a Sentinel names the master")
    }

    /// Kills the current master and waits until the Sentinels name a
    /// replica instead, and the remaining replicas (if any) follow it.
    /// Answers the new master's port.
    pub(crate) fn fail_over(&self) -> u16 {
        let old = self.master_port();
        for server in &self.servers {
            if server.port == old {
                server.stop();
            }
        }
        wait_until("the Sentinels promote the replica", SETTLE_TIMEOUT, || {
            self.master_port() != old
        });
        let new = self.master_port();
        wait_until("the new master takes writes", SETTLE_TIMEOUT, || {
            cli(new, &["ROLE"]).starts_with("master")
        });
        let others = self.servers.len().saturating_sub(2);
        wait_until(
            "the other replicas follow the new master",
            SETTLE_TIMEOUT,
            || {
                let info = cli(new, &["INFO", "replication"]);
                info.matches("state=online").count() >= others
            },
        );
        new
    }
}

/// The value after `name` in a flat `redis-cli` answer of name/value lines.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = info.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            return lines.next().map(str::trim);
        }
    }
    None
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for proc in self.sentinels.iter().chain(&self.servers) {
            proc.stop();
        }
    }
}
