//! A throwaway Redis Cluster from `redis-server` processes on free ports,
//! joined with `redis-cli --cluster create`, as an operator would.
//!
//! Each node listens on a port below 55536, because Redis Cluster also takes
//! the port 10000 above for its bus. The nodes keep their cluster state in a
//! temporary directory and die with the test process (the same watchdog as
//! the single servers).

use std::ffi::OsString;
use std::process::Child;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use switchboard::engine::RedisTarget;

use super::{base_args, cli, free_port, kill, port_is_free, spawn_args_ready, wait_until};

/// How long the cluster may take to agree on its slots after creation or a
/// failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster shared by every test of this process: 3 masters, no
/// replicas. Tests keep apart by key prefix; never stop one of its nodes.
pub(crate) fn shared() -> &'static RedisCluster {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| RedisCluster::start(3, 0))
}

/// See the module docs.
pub(crate) struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

struct Node {
    port: u16,
    child: Mutex<Option<Child>>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits
    /// until every node reports the cluster ok.
    pub(crate) fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("cluster directory");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            nodes.push(start_node(dir.path()));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_settled();
        if replicas > 0 {
            wait_until("replicas in sync", SETTLE_TIMEOUT, || {
                cluster
                    .masters()
                    .iter()
                    .all(|&port| cli(port, &["INFO", "replication"]).contains("state=online"))
            });
        }
        cluster
    }

    /// `127.0.0.1:<port>,...` of every node: the seed list an operator
    /// would set.
    pub(crate) fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget::cluster(&self.seeds()).expect("cluster target")
    }

    /// The ports of the running nodes that are masters now.
    pub(crate) fn masters(&self) -> Vec<u16> {
        self.running()
            .into_iter()
            .filter(|&port| cli(port, &["ROLE"]).starts_with("master"))
            .collect()
    }

    fn running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| {
                node.child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some()
            })
            .map(|node| node.port)
            .collect()
    }

    /// Kills the node on `port` (SIGKILL, as a machine dies).
    pub(crate) fn kill(&self, port: u16) {
        for node in &self.nodes {
            if node.port == port
                && let Some(child) = node
                    .child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
            {
                kill(child);
            }
        }
    }

    /// Waits until every running node says the cluster is ok and has every
    /// slot served by a running master.
    pub(crate) fn wait_settled(&self) {
        wait_until("cluster_state:ok on every node", SETTLE_TIMEOUT, || {
            let running = self.running();
            running.iter().all(|&port| {
                cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && masters_in_slots(port)
                        .iter()
                        .all(|master| running.contains(master))
            })
        });
    }

    /// The port of the master serving `key`'s slot now.
    pub(crate) fn master_of(&self, key: &str) -> u16 {
        let running = self.running();
        let port = running.first().copied().expect("a running node");
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        let nodes = cli(port, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter(|line| line.contains("master") && !line.contains("fail"))
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let serves = fields.iter().skip(8).any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(s), Ok(e)) if (s..=e).contains(&slot))
                });
                let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
                serves.then(|| port.parse().ok()).flatten()
            })
            .expect("a master serves the slot")
    }

    /// Waits until every replica has everything its master has.
    pub(crate) fn wait_replicated(&self) {
        wait_until("replicas caught up", SETTLE_TIMEOUT, || {
            self.masters().into_iter().all(|port| {
                let info = cli(port, &["INFO", "replication"]);
                let offset = info
                    .lines()
                    .find_map(|line| line.strip_prefix("master_repl_offset:"))
                    .map(str::trim);
                info.lines()
                    .filter(|line| line.starts_with("slave") && line.contains("offset="))
                    .all(|line| {
                        line.split(',')
                            .find_map(|kv| kv.strip_prefix("offset="))
                            .is_some_and(|o| Some(o) == offset)
                    })
            })
        });
    }
}

/// The ports of the masters `port`'s slot table names.
fn masters_in_slots(port: u16) -> Vec<u16> {
    cli(port, &["CLUSTER", "NODES"])
        .lines()
        .filter(|line| line.contains("master") && !line.contains("fail"))
        .filter_map(|line| {
            let addr = line.split(' ').nth(1)?;
            let port = addr.split('@').next()?.rsplit(':').next()?;
            port.parse().ok()
        })
        .collect()
}

/// A free port whose cluster bus port (10000 above) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55536 && port_is_free(port + 10000) {
            return port;
        }
    }
}

fn start_node(dir: &std::path::Path) -> Node {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let port = cluster_port();
        let mut args = base_args(port, "no", dir);
        for arg in [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
        ] {
            args.push(OsString::from(arg));
        }
        match spawn_args_ready(port, &args) {
            Ok(child) => {
                return Node {
                    port,
                    child: Mutex::new(Some(child)),
                };
            }
            Err(e) => failures.push(format!("port {port}: {e}")),
        }
    }
    panic!("could not start a cluster node: {}", failures.join("; "));
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(child) = node
                .child
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                kill(child);
            }
        }
    }
}
