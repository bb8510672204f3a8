//! The `switchboard` binary: parses arguments, sets up logging, binds, serves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use switchboard::config::{self, Config, LogFormat};
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
    /// The version of this binary and of the records it writes.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration (file and environment) without starting;
    /// exits non-zero with one line naming the setting that is wrong.
    CheckConfig {
        #[arg(long)]
        json: bool,
    },
    /// Chat as a website visitor from the terminal (the guest protocol).
    Chat(switchboard::cli::chat::ChatArgs),
    /// Answer conversations as an agent from the terminal.
    Agent(switchboard::cli::agent::AgentArgs),
    /// Staff members and their roles: `grant` on the configured engine
    /// (with the embedded engine, while the service is stopped), `list` and
    /// `revoke` through the admin API.
    #[command(subcommand)]
    Members(switchboard::cli::members::MembersCommand),
    /// Organizations, through the admin API (the bootstrap token).
    #[command(subcommand)]
    Orgs(switchboard::cli::admin::OrgsCommand),
    /// API clients (machine credentials), through the admin API.
    #[command(subcommand)]
    Clients(switchboard::cli::admin::ClientsCommand),
    /// Copy the running node's embedded database (consistent while it
    /// serves) and its master key into a directory.
    Backup(switchboard::cli::backup::BackupArgs),
    /// Put a backup into an empty data directory (the node stopped).
    Restore(switchboard::cli::backup::RestoreArgs),
    /// Real traffic against running nodes: burst, steady, idle.
    Loadtest(Box<switchboard::cli::loadtest::LoadtestArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal clients talk to a server: they need none of its
    // configuration, and stdout is their screen, not a log.
    let command = match cli.command.unwrap_or(Command::Serve) {
        // The terminal clients read stdin on a thread of their own that
        // would hold the runtime open until another line came: they end the
        // process as soon as they are done.
        Command::Chat(args) => exit_now(report(switchboard::cli::chat::run(args).await)),
        Command::Agent(args) => exit_now(report(switchboard::cli::agent::run(args).await)),
        Command::Loadtest(args) => return report(switchboard::cli::loadtest::run(*args).await),
        Command::Version { json } => {
            answer(&version(json));
            return ExitCode::SUCCESS;
        }
        command => command,
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            if let Command::CheckConfig { json: true } = command {
                answer(&serde_json::json!({ "ok": false, "error": e.to_string() }).to_string());
            }
            // The configuration chooses the log format; when it cannot be
            // read, the environment still tells whether a collector expects
            // JSON.
            return refuse(LogFormat::from_env_hint(), &e.to_string());
        }
    };
    // stdout is the commands' answer, for scripts: no log lines there.
    match command {
        Command::CheckConfig { json } => {
            answer(&check_config(&config, json));
            return ExitCode::SUCCESS;
        }
        Command::Members(command) => return report(members(&config, command).await),
        Command::Orgs(command) => {
            return report(
                switchboard::cli::admin::orgs(&config, command)
                    .await
                    .map(|done| answer(&done.render())),
            );
        }
        Command::Clients(command) => {
            return report(
                switchboard::cli::admin::clients(&config, command)
                    .await
                    .map(|done| answer(&done.render())),
            );
        }
        Command::Backup(args) => return report(backup(&config, args).await),
        Command::Restore(args) => return report(restore(&config, args).await),
        _ => {}
    }
    let format = config.log_format;
    // Only `serve` exports traces: a probe is not worth a span.
    let traces = match command {
        Command::Probe => None,
        _ => config.telemetry.traces.clone(),
    };
    let (mut flush_on_exit, log_level) =
        match telemetry::init_logging(format, &config.log_level, traces.as_ref()) {
            Ok(logging) => logging,
            Err(e) => return refuse(format, &e.to_string()),
        };
    let result = match command {
        Command::Probe => probe(&config.listen).await,
        // `serve` (every other command returned above).
        _ => serve(config, cli.config, log_level).await,
    };
    flush_on_exit.finish().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = one_line(&e);
            match format {
                LogFormat::Json => tracing::error!(error = %message, "cannot serve"),
                LogFormat::Pretty => stderr_line(&format!("error: {message}")),
            }
            ExitCode::FAILURE
        }
    }
}

/// Ends a command that is not `serve`: its error on stderr, as a terminal
/// user expects.
fn report<E: Into<anyhow::Error>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            stderr_line(&format!("switchboard: {}", one_line(&e.into())));
            ExitCode::FAILURE
        }
    }
}

/// Ends the process with `code` at once (see the terminal clients above).
fn exit_now(code: ExitCode) -> ! {
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 })
}

/// An error and its causes on one line, each cause once: what an operator
/// reads first, and what a log collector keeps as one entry.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn backup(config: &Config, args: switchboard::cli::backup::BackupArgs) -> anyhow::Result<()> {
    let done = switchboard::cli::backup::backup(config, args).await?;
    eprintln!(
        "backed up {} bytes to {}",
        done.bytes,
        done.database.display()
    );
    match &done.master_key {
        Some(key) => eprintln!("master key copied to {}", key.display()),
        None => eprintln!(
            "the master key comes from {}: keep that value with this backup",
            config::ENV_MASTER_KEY
        ),
    }
    Ok(())
}

async fn restore(
    config: &Config,
    args: switchboard::cli::backup::RestoreArgs,
) -> anyhow::Result<()> {
    let done = switchboard::cli::backup::restore(config, args).await?;
    eprintln!(
        "restored into {}{}; start the node on it",
        done.data_dir.display(),
        if done.master_key {
            " with its master key"
        } else {
            ""
        }
    );
    Ok(())
}

/// Refuses to start before logging is set up: one JSON line on the log
/// stream when JSON was chosen, one line on stderr otherwise.
fn refuse(format: LogFormat, message: &str) -> ExitCode {
    match format {
        LogFormat::Json => {
            let line =
                telemetry::logging::json_line("ERROR", "cannot start", &[("error", message)]);
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        LogFormat::Pretty => stderr_line(&format!("error: {message}")),
    }
    ExitCode::FAILURE
}

/// A line on stderr; a closed stderr is no reason to panic.
fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Prints a command's answer on stdout.
fn answer(text: &str) {
    #[expect(clippy::print_stdout, reason = "the command's answer, for scripts")]
    {
        println!("{text}");
    }
}

fn version(json: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let schema = switchboard::store::migrations::SCHEMA_VERSION;
    if json {
        serde_json::json!({ "version": version, "schemaVersion": schema }).to_string()
    } else {
        format!("switchboard {version} (record schema {schema})")
    }
}

/// What a valid configuration amounts to; never a secret.
fn check_config(config: &Config, json: bool) -> String {
    let (engine, store) = match &config.redis {
        Some(target) => (
            "redis",
            format!(
                "{} {} (prefix {})",
                target.form(),
                target.describe(),
                config.redis_prefix
            ),
        ),
        None => ("embedded", config.data_dir.display().to_string()),
    };
    let master_key = match &config.master_key {
        Some(_) => config::ENV_MASTER_KEY.to_owned(),
        None => config.data_dir.join("master.key").display().to_string(),
    };
    if json {
        serde_json::json!({
            "ok": true,
            "listen": config.listen,
            "publicUrl": config.public_url.as_str(),
            "engine": engine,
            "store": store,
            "masterKey": master_key,
            "bootstrapTokenSet": config.bootstrap_token.is_some(),
            "logFormat": match config.log_format { LogFormat::Json => "json", LogFormat::Pretty => "pretty" },
            "oidcAllowInsecure": config.oidc_allow_insecure,
        })
        .to_string()
    } else {
        format!(
            "configuration is valid\n  listen: {}\n  public URL: {}\n  engine: {engine} ({store})\n  master key: {master_key}",
            config.listen, config.public_url
        )
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
        .with_context(|| format!("{} {}: cannot listen", config::ENV_LISTEN, config.listen))?;
    let format = config.log_format;
    let token_output = config.telemetry.bootstrap_token_output.clone();
    let server = Server::build(config).await?;
    if let Some(token) = server.generated_bootstrap_token() {
        hand_out_bootstrap_token(token, format, token_output.as_deref());
    }
    if let Some(address) = server.metrics_address() {
        tracing::info!(%address, "metrics on their own listener");
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

/// Gives the operator the bootstrap token a first start generated: written
/// to the configured file, or printed once on stderr; never a log line.
/// The log says where it went.
fn hand_out_bootstrap_token(token: &SecretString, format: LogFormat, output: Option<&Path>) {
    if let Some(path) = output {
        match write_owner_only(path, token.expose_secret()) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "first start: the bootstrap token (admin of the default organization) was written to a file; keep it, it is not shown again");
                return;
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the bootstrap token to its file; printing it on stderr");
            }
        }
    }
    tracing::warn!(
        "first start: the bootstrap token (admin of the default organization) is printed once on stderr; keep it, it is not shown again"
    );
    match format {
        // A collector reads stdout as JSON lines: stderr gets the token
        // alone.
        LogFormat::Json => stderr_line(token.expose_secret()),
        LogFormat::Pretty => stderr_line(&format!(
            "\nFirst start: the bootstrap token (admin of the default organization) is\n\n    {}\n\n\
             It is shown only now; keep it, or set SWITCHBOARD_BOOTSTRAP_TOKEN.\n",
            token.expose_secret()
        )),
    }
}

fn write_owner_only(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{contents}")?;
    file.sync_all()
}

async fn members(
    config: &Config,
    command: switchboard::cli::members::MembersCommand,
) -> anyhow::Result<()> {
    use switchboard::cli::members::MembersCommand;
    let args = match command {
        MembersCommand::Grant(args) => args,
        MembersCommand::List(api) => {
            answer(
                &switchboard::cli::admin::list_members(config, api)
                    .await?
                    .render(),
            );
            return Ok(());
        }
        MembersCommand::Revoke { id, roles, api } => {
            answer(
                &switchboard::cli::admin::revoke_member(config, id, roles, api)
                    .await?
                    .render(),
            );
            return Ok(());
        }
    };
    let json = args.json;
    let granted = switchboard::cli::members::run(config, args).await?;
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
    if json {
        answer(
            &serde_json::json!({ "memberId": granted.member_id, "outcome": done, "roles": roles })
                .to_string(),
        );
        return Ok(());
    }
    eprintln!(
        "member {} {done}; roles: {}",
        granted.member_id,
        roles.join(", ")
    );
    answer(&granted.member_id.to_string());
    Ok(())
}

async fn probe(listen: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = switchboard::cli::admin::local_address(listen);
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
