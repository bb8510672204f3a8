//! `switchboard loadtest`: real traffic against running nodes, measured
//! from one clock (docs/benchmarks.md, "The load tool").
//!
//! - `burst`: visitors arrive within a window and each sends a first
//!   message; agents on another node accept offers as they come.
//! - `steady`: visitors on one node send at a fixed rate, agents on another
//!   echo every message; latencies both ways, loss and duplicates by
//!   message index. `--saturate` ramps the rate to find the most the nodes
//!   carry with nothing lost or late.
//! - `idle`: many configured guest sockets held open; the node's resident
//!   memory per socket.
//! - `hostile`: `steady`'s honest traffic beside hostile clients (floods,
//!   session and conversation spam, oversized frames); the honest sessions
//!   must lose nothing, and the node's memory is read before and after.
//!
//! The tool sets up its own organization data through the admin API with
//! the bootstrap token, or takes an existing deployment and agent tokens
//! (which is how it runs against `benches/relay`). It prints a human
//! summary on stderr and one line of JSON on stdout, and exits non-zero when
//! the run was not clean (something lost, duplicated, an error, or not
//! finished in time).
//!
//! Everything is bounded: counts are checked against the open-files limit,
//! every phase has a deadline, the whole run a timeout, and only loopback
//! addresses are accepted as targets.
//!
//! Layout: `net` (sockets), `frames` (the protocol subset), `stats`
//! (clock, stamp table, percentiles), `setup` (admin API), `visitors` and
//! `agents` (the two kinds of client), and one module per scenario.

mod agents;
mod burst;
mod frames;
mod hostile;
mod idle;
mod net;
mod setup;
mod stats;
mod steady;
mod visitors;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use self::net::Target;
use self::stats::Errors;

pub use self::burst::BurstArgs;
pub use self::hostile::HostileArgs;
pub use self::idle::IdleArgs;
pub use self::steady::SteadyArgs;

/// `switchboard loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// Visitors arrive within one second; agents accept offers as they come.
    Burst(BurstArgs),
    /// Visitors send at a steady rate; agents echo each message.
    Steady(SteadyArgs),
    /// Configured guest sockets held open; node memory per socket.
    Idle(IdleArgs),
    /// Steady honest traffic beside hostile clients; nothing lost, memory
    /// flat.
    Hostile(HostileArgs),
}

/// What every scenario takes.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// A node, e.g. http://127.0.0.1:8081 (loopback only). Visitors use the
    /// first, agents the last: name two to go through two nodes.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// The operator's bootstrap token: the tool makes its own deployment,
    /// queue and agent clients through the admin API of the first --url.
    #[arg(long, env = "SWITCHBOARD_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,
    /// An existing guest deployment instead (needs --agent-token for
    /// scenarios with agents).
    #[arg(long)]
    pub deployment: Option<Uuid>,
    /// With --deployment: the queue agents take offers from (all of
    /// theirs when not given).
    #[arg(long)]
    pub queue: Option<Uuid>,
    /// Access tokens of existing agents (repeat, or comma-separated in the
    /// environment); one agent socket each.
    #[arg(
        long = "agent-token",
        env = "LOADTEST_AGENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub agent_tokens: Vec<String>,
    /// Organizations the run spreads over (with --bootstrap-token): each
    /// gets its own deployment, queue and share of the agents, and visitor
    /// `i` uses organization `i mod N`. One uses the default organization.
    /// On a Redis Cluster each organization's routing runs on the master
    /// of its own slot.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub organizations: u16,
    /// The Origin visitors present; none by default, as a native app.
    #[arg(long)]
    pub origin: Option<String>,
    /// How many loopback source addresses (127.0.0.1 upwards) client
    /// sockets are spread over.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..))]
    pub source_addresses: u8,
    /// Sockets opened at once while setting up (not in burst's arrivals).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// The whole run, setup included, stops after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}

/// Why the load tool stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error("setting up the organization: {0}")]
    Setup(String),
    #[error("{0}")]
    Connect(String),
    #[error("the run took longer than --timeout-seconds {0}")]
    Timeout(u64),
    #[error("the run was not clean: {0} (the summary says more)")]
    NotClean(String),
}

/// Where a run goes and who takes part, resolved from [`Common`].
#[derive(Debug)]
pub struct Run {
    pub visitors: Target,
    pub agents: Target,
    pub urls: Vec<String>,
    /// The deployments visitors open sessions in: visitor `i` uses
    /// `deployments[i % len]`.
    pub deployments: Vec<String>,
    /// Each agent's access token and the queue it goes available on (all
    /// of its own when `None`).
    pub agent_tokens: Vec<(String, Option<String>)>,
    pub origin: Option<String>,
    pub concurrency: usize,
    pub errors: Arc<Mutex<Errors>>,
}

impl Run {
    /// Checks the targets and the socket budget, then sets up (or takes)
    /// the organization data: `visitors` and `agents` spread over
    /// `--organizations`, each queue with room for its share.
    async fn prepare(
        common: &Common,
        scenario: &str,
        sockets: usize,
        visitors_count: usize,
        agents: usize,
    ) -> Result<Run, LoadError> {
        let (Some(first), Some(last)) = (common.url.first(), common.url.last()) else {
            return Err(LoadError::Usage("name at least one --url".to_owned()));
        };
        let visitors = Target::new(first, common.source_addresses)?;
        let agents_target = Target::new(last, common.source_addresses)?;
        let limit = raise_open_files_limit();
        // Headroom for the HTTP client, stdio and the runtime.
        let budget = limit.saturating_sub(128);
        if sockets as u64 > budget {
            return Err(LoadError::Usage(format!(
                "{sockets} sockets do not fit in the open-files limit of {limit} (ulimit -n); use fewer"
            )));
        }
        let (deployments, agent_tokens) = match common.deployment {
            Some(deployment) => {
                if agents > 0 && common.agent_tokens.is_empty() {
                    return Err(LoadError::Usage(
                        "with --deployment, name the agents with --agent-token".to_owned(),
                    ));
                }
                if common.organizations > 1 {
                    return Err(LoadError::Usage(
                        "--organizations needs --bootstrap-token, not --deployment".to_owned(),
                    ));
                }
                let queue = common.queue.map(|q| q.to_string());
                let tokens = common
                    .agent_tokens
                    .iter()
                    .map(|t| (t.clone(), queue.clone()))
                    .collect();
                (vec![deployment.to_string()], tokens)
            }
            None => {
                let bootstrap = common.bootstrap_token.as_deref().ok_or_else(|| {
                    LoadError::Usage(
                        "give --bootstrap-token (or SWITCHBOARD_BOOTSTRAP_TOKEN), or --deployment and --agent-token"
                            .to_owned(),
                    )
                })?;
                let organizations = usize::from(common.organizations);
                if agents > 0 && agents < organizations {
                    return Err(LoadError::Usage(format!(
                        "{organizations} organizations need at least as many agents"
                    )));
                }
                // The busiest organization's share: visitors and agents
                // are dealt out round the organizations.
                let most_visitors = visitors_count.div_ceil(organizations);
                let fewest_agents = (agents / organizations).max(1);
                let capacity = most_visitors.div_ceil(fewest_agents).max(1);
                if agents > 0 && capacity > setup::MAX_AGENT_CAPACITY {
                    return Err(LoadError::Usage(format!(
                        "{visitors_count} visitors need at least {} agents (a queue takes at most {} conversations per agent)",
                        visitors_count.div_ceil(setup::MAX_AGENT_CAPACITY),
                        setup::MAX_AGENT_CAPACITY
                    )));
                }
                let made = setup::organizations(
                    &visitors.base,
                    bootstrap,
                    scenario,
                    organizations,
                    agents,
                    capacity,
                )
                .await?;
                let deployments = made.iter().map(|o| o.deployment.clone()).collect();
                // Agent `j` of the run is agent `j / N` of organization
                // `j mod N`, so each organization's agents answer its
                // visitors.
                let mut tokens = Vec::with_capacity(agents);
                for j in 0..agents {
                    if let Some(org) = made.get(j % organizations)
                        && let Some(token) = org.agent_tokens.get(j / organizations)
                    {
                        tokens.push((token.clone(), Some(org.queue.clone())));
                    }
                }
                (deployments, tokens)
            }
        };
        Ok(Run {
            visitors,
            agents: agents_target,
            urls: common.url.clone(),
            deployments,
            agent_tokens,
            origin: common.origin.clone(),
            concurrency: common.concurrency.max(1),
            errors: Arc::default(),
        })
    }

    /// Where visitor `i` opens its session.
    fn site(&self, i: usize) -> visitors::Site<'_> {
        let deployment = self
            .deployments
            .get(i % self.deployments.len().max(1))
            .map_or("", String::as_str);
        visitors::Site {
            target: &self.visitors,
            deployment,
            origin: self.origin.as_deref(),
        }
    }

    fn error(&self, error: impl ToString) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(error);
    }

    /// Connects every agent (a few at a time) and makes each available.
    async fn connect_agents(&self) -> Result<Vec<net::Ws>, LoadError> {
        let mut sockets = Vec::with_capacity(self.agent_tokens.len());
        for chunk in self.agent_tokens.chunks(self.concurrency) {
            let connecting = chunk
                .iter()
                .map(|(token, queue)| agents::connect(&self.agents, token, queue.as_deref()));
            for socket in futures::future::join_all(connecting).await {
                sockets.push(socket?);
            }
        }
        Ok(sockets)
    }
}

/// The JSON line: what every scenario reports, then its own figures.
#[derive(Debug, Serialize)]
struct Summary<T: Serialize> {
    scenario: &'static str,
    urls: Vec<String>,
    /// Nothing lost, nothing duplicated, no errors, everything finished
    /// in time.
    ok: bool,
    lost: u64,
    duplicated: u64,
    errors: u64,
    error_samples: Vec<String>,
    elapsed_s: f64,
    #[serde(flatten)]
    figures: T,
}

/// What a scenario hands back: its figures and the totals.
#[derive(Debug)]
pub struct Outcome<T> {
    pub figures: T,
    pub lost: u64,
    pub duplicated: u64,
    /// Everything the scenario waits for happened before its deadline.
    pub complete: bool,
    /// The human summary, for stderr.
    pub lines: Vec<String>,
}

pub async fn run(args: LoadtestArgs) -> Result<(), LoadError> {
    let started = Instant::now();
    let (name, timeout) = match &args.scenario {
        Scenario::Burst(a) => ("burst", a.common.timeout_seconds),
        Scenario::Steady(a) => ("steady", a.common.timeout_seconds),
        Scenario::Idle(a) => ("idle", a.common.timeout_seconds),
        Scenario::Hostile(a) => ("hostile", a.steady.common.timeout_seconds),
    };
    let scenario = async {
        match args.scenario {
            Scenario::Burst(a) => report(name, started, burst::run(&a).await?),
            Scenario::Steady(a) => report(name, started, steady::run(&a).await?),
            Scenario::Idle(a) => report(name, started, idle::run(&a).await?),
            Scenario::Hostile(a) => report(name, started, hostile::run(&a).await?),
        }
    };
    tokio::time::timeout(Duration::from_secs(timeout), scenario)
        .await
        .map_err(|_| LoadError::Timeout(timeout))?
}

/// Prints the summary (stderr for people, one JSON line on stdout).
fn report<T: Serialize>(
    scenario: &'static str,
    started: Instant,
    (run, outcome): (Run, Outcome<T>),
) -> Result<(), LoadError> {
    let errors = std::mem::take(&mut *run.errors.lock().unwrap_or_else(PoisonError::into_inner));
    let ok = outcome.complete && outcome.lost == 0 && outcome.duplicated == 0 && errors.count == 0;
    let summary = Summary {
        scenario,
        urls: run.urls,
        ok,
        lost: outcome.lost,
        duplicated: outcome.duplicated,
        errors: errors.count,
        error_samples: errors.samples,
        elapsed_s: stats::round3(started.elapsed().as_secs_f64()),
        figures: outcome.figures,
    };
    eprintln!("loadtest {scenario}:");
    for line in &outcome.lines {
        eprintln!("  {line}");
    }
    eprintln!(
        "  lost {}, duplicated {}, errors {}{}",
        summary.lost,
        summary.duplicated,
        summary.errors,
        if summary.error_samples.is_empty() {
            String::new()
        } else {
            format!(" ({})", summary.error_samples.join("; "))
        }
    );
    let line = serde_json::to_string(&summary).map_err(|e| LoadError::Usage(e.to_string()))?;
    #[expect(
        clippy::print_stdout,
        reason = "stdout carries the one JSON line, for scripts"
    )]
    {
        println!("{line}");
    }
    if ok {
        Ok(())
    } else if summary.errors > 0 && outcome.lost == 0 && outcome.duplicated == 0 {
        Err(LoadError::NotClean(format!("{} errors", summary.errors)))
    } else if !outcome.complete {
        Err(LoadError::NotClean(
            "not everything finished in time".to_owned(),
        ))
    } else {
        Err(LoadError::NotClean(format!(
            "{} lost, {} duplicated",
            outcome.lost, outcome.duplicated
        )))
    }
}

/// Raises the soft open-files limit to the hard one (where allowed) and
/// answers the limit in force: each client socket is a file.
fn raise_open_files_limit() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), maximum) = (limit.current, limit.maximum)
            && maximum.is_none_or(|m| m > current)
        {
            // Refused (a container may forbid it): the current one stands.
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: maximum,
                    maximum,
                },
            );
        }
        getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// Waits until `done()` or the deadline; answers whether it was done.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resolves once the run is over (or its sender is gone). The guard
/// `wait_for` answers is dropped here: it may not live across an await.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
}
