//! Terminal clients: `switchboard chat` plays a website visitor over the
//! guest protocol, `switchboard agent` an agent over the agent protocol, so
//! two terminals can chat through switchboard (through two nodes, even,
//! when they share a Redis).
//!
//! Both read commands and messages from stdin, print what happens on
//! stdout, and reconnect when the server goes away (a node shutting down
//! closes its sockets with 1001; the conversation continues on another).

pub mod admin;
pub mod agent;
pub mod backup;
pub mod chat;
pub mod loadtest;
pub mod members;

use std::fmt::Display;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

/// Why a terminal client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--url must be an http:// or ws:// URL: {0}")]
    Url(String),
    #[error("the server refused the connection: HTTP {status} {body}")]
    Refused { status: u16, body: String },
    #[error("cannot connect: {0}")]
    Connect(Box<tungstenite::Error>),
    /// The deployment wants a signed-in visitor (or the session token sent
    /// was refused): retrying the same way cannot help.
    #[error(
        "the server answered 401 ({0}): this deployment lets only signed-in visitors chat; \
         pass --jwt with a session token from its sign-in"
    )]
    SignInRequired(String),
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        ClientError::Connect(Box::new(e))
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait before reconnecting after the server went away.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The WebSocket URL for `path` on the server at `base` (`http://host:port`).
/// Plain `ws:` only: put a TLS proxy in front for anything but a demo.
fn ws_url(base: &str, path_and_query: &str) -> Result<String, ClientError> {
    let url = Url::parse(base).map_err(|e| ClientError::Url(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        other => {
            return Err(ClientError::Url(format!(
                "the {other} scheme is not supported"
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::Url("no host".to_owned()))?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}{path_and_query}"))
}

/// The servers a client may use (nodes of one contact center), and where
/// it is in trying them: a lost connection moves on to the next one.
#[derive(Debug)]
struct Servers {
    urls: Vec<String>,
    next: usize,
    /// Failed attempts since the last successful connect.
    failures: usize,
    connected_once: bool,
}

impl Servers {
    fn new(bases: &[String], path_and_query: &str) -> Result<Self, ClientError> {
        let urls = bases
            .iter()
            .map(|base| ws_url(base, path_and_query))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ClientError::Url("name at least one --url".to_owned()));
        }
        Ok(Self {
            urls,
            next: 0,
            failures: 0,
            connected_once: false,
        })
    }

    fn current(&self) -> &str {
        self.urls
            .get(self.next % self.urls.len().max(1))
            .map_or("", String::as_str)
    }

    fn connected(&mut self) {
        self.failures = 0;
        self.connected_once = true;
    }

    /// After a failed connect: gives up (a refused credential, or no server
    /// answering at start), or waits and moves on to the next server.
    async fn failed(&mut self, error: ClientError) -> Result<(), ClientError> {
        self.failures += 1;
        if matches!(error, ClientError::Refused { .. })
            || (!self.connected_once && self.failures >= self.urls.len())
        {
            return Err(error);
        }
        say(format!("(cannot connect: {error}; retrying)"));
        self.next += 1;
        tokio::time::sleep(RECONNECT_AFTER).await;
        Ok(())
    }

    /// After a lost connection: waits and moves on to the next server.
    async fn lost(&mut self) {
        say("(connection lost; reconnecting)");
        self.next += 1;
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// Turns a refused handshake into an error that says what the server said.
fn refused(error: tungstenite::Error) -> ClientError {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            ClientError::Refused {
                status: response.status().as_u16(),
                body,
            }
        }
        other => ClientError::from(other),
    }
}

/// Lines typed on stdin, read by a task of their own so that a reconnect
/// does not lose what was typed meanwhile. Closed at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Prints one line for the person at the terminal.
fn say(line: impl Display) {
    // The terminal clients' user interface is stdout.
    #[expect(
        clippy::print_stdout,
        reason = "the terminal clients speak to their user on stdout"
    )]
    {
        println!("{line}");
    }
}

/// What happened to one connection.
enum Ended {
    /// The user is done (end of input, or `/quit`).
    Quit,
    /// The connection was lost or closed by the server: reconnect.
    Lost,
    /// The server refused the session for good: stop, saying why.
    Refused(ClientError),
}

/// Sends one JSON frame. A failure means the connection is gone.
async fn send_json(socket: &mut Socket, frame: &serde_json::Value) -> Result<(), Ended> {
    socket
        .send(Message::text(frame.to_string()))
        .await
        .map_err(|_| Ended::Lost)
}

/// The next JSON frame from the server, `Err` when the connection ended.
async fn next_json(socket: &mut Socket) -> Result<serde_json::Value, Ended> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(value) => return Ok(value),
                Err(_) => say(format!("(unreadable frame: {})", text.as_str())),
            },
            Some(Ok(Message::Close(frame))) => {
                if let Some(frame) = frame {
                    say(format!(
                        "(the server closed the connection: {} {})",
                        u16::from(frame.code),
                        frame.reason
                    ));
                }
                return Err(Ended::Lost);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(Ended::Lost),
        }
    }
}

/// The value at a JSON pointer (`/conversation/id`), or null: frames from
/// the server are read leniently.
fn at<'a>(value: &'a serde_json::Value, pointer: &str) -> &'a serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    value.pointer(pointer).unwrap_or(&NULL)
}
