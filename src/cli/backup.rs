//! `switchboard backup` and `switchboard restore` for the embedded engine.
//!
//! A backup is a directory: `switchboard.redb`, a consistent copy the
//! running node takes of its database (`POST /api/v2/backup`), and
//! `master.key`, the key its secrets are sealed with, copied from the data
//! directory on this machine (when the key comes from
//! `SWITCHBOARD_MASTER_KEY` instead, it is not written: keep that value
//! with the backup). Both files are owner-only, like the originals.
//!
//! `restore` puts such a directory into an empty data directory, for a node
//! that is not running yet. The next start checks the key against the data
//! and runs any migrations (docs/upgrade.md).

use std::path::{Path, PathBuf};

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;

use super::admin::local_address;
use crate::config::Config;

const DATABASE: &str = "switchboard.redb";
const MASTER_KEY: &str = "master.key";

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The directory to write (created; must not hold a backup already).
    #[arg(long)]
    pub to: PathBuf,
    /// The node's base URL; by default SWITCHBOARD_LISTEN on this machine.
    #[arg(long, env = "SWITCHBOARD_URL")]
    pub url: Option<String>,
    /// The operator's bootstrap token.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: SecretString,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory `switchboard backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{url}: {message}")]
    Node { url: String, message: String },
    #[error("the node refused the backup: HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error(
        "{} {dir} already holds a database: restore into an empty data directory, with the node stopped",
        crate::config::ENV_DATA_DIR
    )]
    NotEmpty { dir: String },
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// What a backup wrote, for the terminal.
#[derive(Debug)]
pub struct BackedUp {
    pub database: PathBuf,
    pub bytes: u64,
    /// `None` when the key comes from the environment or config file.
    pub master_key: Option<PathBuf>,
}

pub async fn backup(config: &Config, args: BackupArgs) -> Result<BackedUp, BackupError> {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", local_address(&config.listen)),
    };
    tokio::fs::create_dir_all(&args.to)
        .await
        .map_err(file_error(&args.to))?;
    restrict_dir(&args.to)?;
    let database = args.to.join(DATABASE);
    let node_error = |e: reqwest::Error| BackupError::Node {
        url: base.clone(),
        message: e.without_url().to_string(),
    };
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v2/backup"))
        .bearer_auth(args.token.expose_secret())
        .send()
        .await
        .map_err(node_error)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or(body);
        return Err(BackupError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    let mut file = private_file(&database).await?;
    let mut bytes = 0u64;
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(node_error)? {
        bytes += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(file_error(&database))?;
    }
    file.sync_all().await.map_err(file_error(&database))?;
    let master_key = match config.master_key {
        Some(_) => None,
        None => {
            let source = config.data_dir.join(MASTER_KEY);
            let dest = args.to.join(MASTER_KEY);
            let key = tokio::fs::read(&source)
                .await
                .map_err(file_error(&source))?;
            let mut out = private_file(&dest).await?;
            out.write_all(&key).await.map_err(file_error(&dest))?;
            out.sync_all().await.map_err(file_error(&dest))?;
            Some(dest)
        }
    };
    Ok(BackedUp {
        database,
        bytes,
        master_key,
    })
}

/// What a restore wrote, for the terminal.
#[derive(Debug)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub master_key: bool,
}

pub async fn restore(config: &Config, args: RestoreArgs) -> Result<Restored, BackupError> {
    let dir = &config.data_dir;
    let target = dir.join(DATABASE);
    if tokio::fs::try_exists(&target).await.unwrap_or(true) {
        return Err(BackupError::NotEmpty {
            dir: dir.display().to_string(),
        });
    }
    let source = args.from.join(DATABASE);
    // Checked before anything is written: a wrong --from leaves no trace.
    tokio::fs::metadata(&source)
        .await
        .map_err(file_error(&source))?;
    let key_source = args.from.join(MASTER_KEY);
    let key_target = dir.join(MASTER_KEY);
    let with_key =
        config.master_key.is_none() && tokio::fs::try_exists(&key_source).await.unwrap_or(false);
    if with_key && tokio::fs::try_exists(&key_target).await.unwrap_or(true) {
        return Err(BackupError::NotEmpty {
            dir: dir.display().to_string(),
        });
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(file_error(dir))?;
    copy_private(&source, &target).await?;
    if with_key {
        copy_private(&key_source, &key_target).await?;
    }
    Ok(Restored {
        data_dir: dir.clone(),
        master_key: with_key,
    })
}

async fn copy_private(source: &Path, dest: &Path) -> Result<(), BackupError> {
    let mut input = tokio::fs::File::open(source)
        .await
        .map_err(file_error(source))?;
    let mut output = private_file(dest).await?;
    tokio::io::copy(&mut input, &mut output)
        .await
        .map_err(file_error(dest))?;
    output.sync_all().await.map_err(file_error(dest))
}

/// A new file only its owner may read: refuses to overwrite anything.
async fn private_file(path: &Path) -> Result<tokio::fs::File, BackupError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await.map_err(file_error(path))
}

fn restrict_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(file_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
