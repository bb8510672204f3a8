//! A real OpenID Provider for the tests: `tests/idp/server.mjs`, the
//! certified `oidc-provider` npm package under the machine's Node, on a free
//! loopback port.
//!
//! It has one static confidential client, accepts any login at its
//! development login form, pre-approves grants and requires PKCE. Logins are
//! driven by plain HTTP ([`TestIdp::login`]); `POST /__rotate` swaps its
//! signing keys behind the same port ([`TestIdp::rotate_keys`]).
//!
//! The node process is killed when the handle drops, and it watches the test
//! process's pid and exits by itself once that is gone, so even a test binary
//! killed with SIGKILL leaves no IdP behind.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use url::Url;

/// How long node may take to print its port.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The redirect URI registered for the client: on the origin the test
/// deployments allow. Nothing listens there; logins stop at the redirect.
pub(crate) const REDIRECT_URI: &str = "https://shop.example.com/callback";
/// The origin of [`REDIRECT_URI`].
pub(crate) const SHOP_ORIGIN: &str = "https://shop.example.com";

/// The IdP shared by the tests of this process that do not rotate keys.
pub(crate) fn shared() -> &'static TestIdp {
    static SHARED: OnceLock<TestIdp> = OnceLock::new();
    SHARED.get_or_init(TestIdp::start)
}

#[derive(Debug)]
pub(crate) struct TestIdp {
    /// `http://127.0.0.1:<port>`, exactly as its discovery document says.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    child: Mutex<Option<Child>>,
}

/// Where a login ended: the query of the redirect to the client's
/// redirect URI.
#[derive(Debug, Clone)]
pub(crate) struct Callback {
    pub params: HashMap<String, String>,
}

impl Callback {
    pub(crate) fn code(&self) -> &str {
        self.param("code")
    }

    pub(crate) fn state(&self) -> &str {
        self.param("state")
    }

    pub(crate) fn iss(&self) -> Option<&str> {
        self.params.get("iss").map(String::as_str)
    }

    #[track_caller]
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("the IdP's callback has no {name}: {:?}", self.params))
    }
}

impl TestIdp {
    /// Starts a private IdP and waits until it listens.
    pub(crate) fn start() -> TestIdp {
        Self::start_with_redirect(REDIRECT_URI)
    }

    /// Starts a private IdP whose client's one redirect URI is
    /// `redirect_uri` (a test app's own `/auth/callback`, say); [`login`]
    /// stops there.
    ///
    /// [`login`]: TestIdp::login
    pub(crate) fn start_with_redirect(redirect_uri: &str) -> TestIdp {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test IdP's packages are missing: run `npm ci --prefix tests/idp` (scripts/test does)"
        );
        let client_id = format!("switchboard-{}", uuid::Uuid::new_v4().simple());
        let client_secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let mut child = Command::new(node())
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .env("IDP_PORT", "0")
            .env("IDP_CLIENT_ID", &client_id)
            .env("IDP_CLIENT_SECRET", &client_secret)
            .env("IDP_REDIRECT_URIS", redirect_uri)
            .env("IDP_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning node for the test IdP");
        let stdout = child.stdout.take().expect("the IdP's stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the port, then keeps draining stdout so the IdP never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Ok(port) = line.trim().parse::<u16>() {
                    let _ = tx.send(port);
                    sent = true;
                }
            }
        });
        let port = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the test IdP did not print its port: {e}");
            }
        };
        TestIdp {
            issuer: format!("http://127.0.0.1:{port}"),
            client_id,
            client_secret,
            redirect_uri: redirect_uri.to_owned(),
            child: Mutex::new(Some(child)),
        }
    }

    /// Replaces the IdP's signing keys with a fresh key set, behind the same
    /// port. Answers the new key id.
    pub(crate) async fn rotate_keys(&self) -> String {
        let reply: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/__rotate", self.issuer))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["kid"].as_str().unwrap().to_owned()
    }

    /// Signs `login` in through the IdP's login form, starting at
    /// `authorize_url`, and answers the callback's parameters without
    /// following the last redirect (nothing listens at the redirect URI).
    /// A fresh cookie jar per call: every login is a new browser.
    pub(crate) async fn login(&self, authorize_url: &str, login: &str) -> Callback {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .unwrap();
        let mut url = Url::parse(authorize_url).unwrap();
        let mut form: Option<Url> = None;
        for _ in 0..10 {
            let response = match form.take() {
                Some(action) => browser
                    .post(action)
                    .form(&[("prompt", "login"), ("login", login), ("password", "any")])
                    .send()
                    .await
                    .unwrap(),
                None => browser.get(url.clone()).send().await.unwrap(),
            };
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .expect("a redirect without Location");
                let next = url.join(location).unwrap();
                if next.as_str().starts_with(&self.redirect_uri) {
                    return Callback {
                        params: next.query_pairs().into_owned().collect(),
                    };
                }
                url = next;
                continue;
            }
            let body = response.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "the IdP answered: {body}");
            let action = form_action(&body)
                .unwrap_or_else(|| panic!("no login form on the IdP's page: {body}"));
            form = Some(url.join(&action).unwrap());
        }
        panic!("the login did not reach the redirect URI within 10 steps");
    }

    /// Stops the IdP. Idempotent.
    pub(crate) fn stop(&self) {
        let taken = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/bin/node` where the machine has it, else `node` on PATH.
fn node() -> PathBuf {
    let system = PathBuf::from("/usr/bin/node");
    if system.exists() {
        system
    } else {
        PathBuf::from("node")
    }
}

/// The `action` of the page's form, HTML entities undone.
fn form_action(html: &str) -> Option<String> {
    let start = html.find("<form")?;
    let rest = html.get(start..)?;
    let at = rest.find("action=\"")? + "action=\"".len();
    let rest = rest.get(at..)?;
    let end = rest.find('"')?;
    Some(
        rest.get(..end)?
            .replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&quot;", "\"")
            .replace("&#39;", "'"),
    )
}
