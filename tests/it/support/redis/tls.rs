//! A throwaway `redis-server` that speaks TLS, with a certificate signed by
//! a throwaway CA made with `openssl`: what `rediss://` and
//! `SWITCHBOARD_REDIS_TLS_CA_FILE` are tested against.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::{base_args, free_port, kill, spawn_args_ready};

pub(crate) struct TlsRedis {
    /// The TLS port; the plain port only serves the readiness probe.
    pub(crate) tls_port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    pub(crate) fn start() -> TlsRedis {
        let dir = tempfile::tempdir().expect("tls directory");
        make_certificates(dir.path());
        let tls_port = free_port();
        let path = dir.path().to_owned();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let mut args = base_args(port, "no", &path);
            for (flag, value) in [
                ("--tls-port", OsString::from(tls_port.to_string())),
                ("--tls-cert-file", path.join("server.pem").into()),
                ("--tls-key-file", path.join("server.key").into()),
                ("--tls-ca-cert-file", path.join("ca.pem").into()),
                ("--tls-auth-clients", "no".into()),
            ] {
                args.push(flag.into());
                args.push(value);
            }
            match spawn_args_ready(port, &args) {
                Ok(child) => {
                    return TlsRedis {
                        tls_port,
                        child: Some(child),
                        dir,
                    };
                }
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "could not start a TLS redis-server: {}",
            failures.join("; ")
        );
    }

    /// The CA certificate that signed the server's, in PEM.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill(child);
        }
    }
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509", "-nodes", "-days", "2"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=switchboard test CA",
        ],
    ]
    .concat());
    run(&[
        &["req", "-nodes"],
        &ec[..],
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}
