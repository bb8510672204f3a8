//! The `switchboard` binary: parses arguments, sets up logging, binds, serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use switchboard::config::Config;
use switchboard::{Server, telemetry};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Authenticated web messaging backend"
)]
struct Cli {
    /// A TOML config file; environment variables override it.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Exit 0 when the node on SWITCHBOARD_LISTEN reports ready: a container
    /// health check that needs no curl in the image.
    Probe,
    /// Chat as a website visitor from the terminal (the guest protocol).
    Chat(switchboard::cli::chat::ChatArgs),
    /// Answer conversations as an agent from the terminal.
    Agent(switchboard::cli::agent::AgentArgs),
    /// Staff members and their roles, on the configured engine (with the
    /// embedded engine, while the service is stopped).
    #[command(subcommand)]
    Members(switchboard::cli::members::MembersCommand),
    /// Real traffic against running nodes: burst, steady, idle.
    Loadtest(switchboard::cli::loadtest::LoadtestArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The terminal clients talk to a server: they need none of its
    // configuration, and stdout is their screen, not a log.
    let command = match cli.command.unwrap_or(Command::Serve) {
        Command::Chat(args) => return Ok(switchboard::cli::chat::run(args).await?),
        Command::Agent(args) => return Ok(switchboard::cli::agent::run(args).await?),
        Command::Loadtest(args) => return Ok(switchboard::cli::loadtest::run(args).await?),
        command => command,
    };
    let config = Config::load(cli.config.as_deref())?;
    // stdout is the member id, for scripts: no log lines there.
    if let Command::Members(command) = command {
        return members(&config, command).await;
    }
    let log_level = telemetry::init_logging(config.log_format, &config.log_level);
    match command {
        Command::Probe => probe(&config.listen).await,
        // `serve` (the terminal clients returned above).
        _ => serve(config, cli.config, log_level).await,
    }
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    log_level: telemetry::LogLevel,
) -> anyhow::Result<()> {
    // From here on SIGHUP reloads instead of ending the process.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let server = Server::build(config).await?;
    if let Some(token) = server.generated_bootstrap_token() {
        #[expect(
            clippy::print_stdout,
            reason = "shown once, on the terminal, not through the log pipeline"
        )]
        {
            println!(
                "\nFirst start: the bootstrap token (admin of the default organization) is\n\n    {}\n\n\
                 It is shown only now; keep it, or set SWITCHBOARD_BOOTSTRAP_TOKEN.\n",
                token.expose_secret()
            );
        }
    }
    let reloads = server.reloads().clone();
    reloads.register("log level", move |config| log_level.set(&config.log_level));
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(hangups, reloads, config_path));
    #[cfg(not(unix))]
    let _ = (reloads, config_path);
    tracing::info!(address = %listener.local_addr()?, public_url = %server.state().config.public_url, "listening");
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn members(
    config: &Config,
    command: switchboard::cli::members::MembersCommand,
) -> anyhow::Result<()> {
    let granted = switchboard::cli::members::run(config, command).await?;
    let roles: Vec<String> = granted
        .roles
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let done = match granted.outcome {
        switchboard::auth::staff::GrantOutcome::Created => "created",
        switchboard::auth::staff::GrantOutcome::Updated => "updated",
        switchboard::auth::staff::GrantOutcome::Unchanged => "unchanged",
    };
    eprintln!(
        "member {} {done}; roles: {}",
        granted.member_id,
        roles.join(", ")
    );
    #[expect(clippy::print_stdout, reason = "the command's answer, for scripts")]
    {
        println!("{}", granted.member_id);
    }
    Ok(())
}

async fn probe(listen: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A wildcard bind address is reached on loopback.
    let address = listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(2), exchange)
        .await
        .context("no answer in 2 s")??;
    anyhow::ensure!(head.ends_with(b" 200"), "not ready");
    Ok(())
}

/// On every SIGHUP: reads the configuration again (file and environment)
/// and hands it to what can change while running. An invalid file changes
/// nothing.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloads: switchboard::serve::Reloads,
    config_path: Option<PathBuf>,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        match Config::load(config_path.as_deref()) {
            Ok(config) => {
                reloads.reload_and_log(&config);
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: the configuration is not valid; nothing changed");
            }
        }
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
