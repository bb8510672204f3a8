//! Native TLS: the certificate chain and key from PEM files, swapped in
//! without dropping a connection when the files change (a renewal by
//! certbot or an ACME client) or on SIGHUP. A new connection gets the
//! newest certificate; open ones keep theirs.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::serve::TlsFiles;

/// How often the files are checked for a change. A renewal lands well
/// before the old certificate expires, so seconds do not matter.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

/// The node's TLS configuration, replaced whole on a reload.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Loaded>,
    /// The files' modification times and sizes last seen, loaded or not,
    /// so a file halfway through being replaced is retried once, not
    /// warned about every tick.
    seen: Mutex<Option<Stamp>>,
}

#[derive(Debug, Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

type Stamp = [(Option<SystemTime>, u64); 2];

impl Tls {
    /// Loads the files; a node with unusable TLS files does not start.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp(&files);
        let loaded = load(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(loaded),
            seen: Mutex::new(Some(stamp)),
        }))
    }

    /// The acceptor for a new connection: the newest certificate.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let current = self.current.read().ok()?;
        Some(TlsAcceptor::from(current.config.clone()))
    }

    /// The SHA-256 fingerprint of the leaf certificate being served.
    pub fn fingerprint(&self) -> String {
        self.current
            .read()
            .map(|c| c.fingerprint.clone())
            .unwrap_or_default()
    }

    /// Reads the files again. Answers the new fingerprint when the
    /// certificate changed, `None` when it is the same; on an error the
    /// old certificate stays.
    pub fn reload(&self) -> Result<Option<String>, TlsError> {
        let stamp = stamp(&self.files);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(stamp);
        }
        let loaded = load(&self.files)?;
        let mut current = self
            .current
            .write()
            .map_err(|_| TlsError::Config("poisoned".to_owned()))?;
        if current.fingerprint == loaded.fingerprint {
            return Ok(None);
        }
        let change = format!("{} -> {}", current.fingerprint, loaded.fingerprint);
        *current = loaded;
        Ok(Some(change))
    }

    /// Checks the files every [`WATCH_INTERVAL`] until `stop` resolves,
    /// and reloads when they changed.
    pub async fn watch(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&self.files);
            let changed = self.seen.lock().map(|s| *s != Some(now)).unwrap_or(false);
            if !changed {
                continue;
            }
            match self.reload() {
                Ok(Some(change)) => {
                    tracing::info!(certificate = %change, "TLS certificate reloaded: its files changed");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files changed but cannot be loaded; serving the previous certificate");
                }
            }
        }
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |path: &Path| match std::fs::metadata(path) {
        Ok(meta) => (meta.modified().ok(), meta.len()),
        Err(_) => (None, 0),
    };
    [one(&files.cert), one(&files.key)]
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(file_error(
            &files.cert,
            "holds no PEM certificate".to_owned(),
        ));
    };
    let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error(&files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError::Config(format!(
                "{} and {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    // WebSockets upgrade over HTTP/1.1; the node speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
    })
}
