//! `switchboard chat`: a website visitor in a terminal, over the guest
//! protocol (spec/guest-protocol.md), as a widget or app would speak it.
//!
//! It mints a session token (a random UUID), configures the session (as an
//! authenticated one when given a session JWT from the token exchange),
//! sends each typed line as a text message and prints the agent's
//! messages, typing and presence. `/quit` or end of input leaves.

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use super::{ClientError, Ended, RECONNECT_AFTER, Socket, at, next_json, refused, say, send_json, stdin_lines, ws_url};

/// `switchboard chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The server, e.g. http://localhost:8080.
    #[arg(long)]
    pub url: String,
    /// The web deployment to chat through.
    #[arg(long)]
    pub deployment: Uuid,
    /// A session JWT from the token exchange: chat as an authenticated
    /// visitor.
    #[arg(long, env = "SWITCHBOARD_CHAT_JWT", hide_env_values = true)]
    pub jwt: Option<String>,
    /// The Origin to present, one of the deployment's allowed domains
    /// (e.g. https://shop.example.com).
    #[arg(long)]
    pub origin: Option<String>,
}

pub async fn run(args: ChatArgs) -> Result<(), ClientError> {
    let url = ws_url(
        &args.url,
        &format!("/v1?deploymentId={}&application=switchboard-chat", args.deployment),
    )?;
    // The session token names this visitor's session; reconnects keep it.
    let token = Uuid::new_v4().to_string();
    let mut input = stdin_lines();
    let mut connected_once = false;
    loop {
        let socket = match connect(&url, args.origin.as_deref()).await {
            Ok(socket) => socket,
            Err(e @ ClientError::Refused { .. }) => return Err(e),
            Err(e) if !connected_once => return Err(e),
            Err(e) => {
                say(format!("(reconnect failed: {e}; retrying)"));
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        connected_once = true;
        match session(socket, &args, &token, &mut input).await {
            Ended::Quit => return Ok(()),
            Ended::Lost => {
                say("(connection lost; reconnecting)");
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        }
    }
}

async fn connect(url: &str, origin: Option<&str>) -> Result<Socket, ClientError> {
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        let value =
            HeaderValue::from_str(origin).map_err(|_| ClientError::Url("the origin is not a valid header value".to_owned()))?;
        request.headers_mut().insert("origin", value);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await.map_err(refused)?;
    Ok(socket)
}

async fn session(mut socket: Socket, args: &ChatArgs, token: &str, input: &mut mpsc::Receiver<String>) -> Ended {
    let configure = match &args.jwt {
        Some(jwt) => json!({
            "action": "configureAuthenticatedSession",
            "deploymentId": args.deployment,
            "token": token,
            "data": { "code": jwt },
        }),
        None => json!({ "action": "configureSession", "deploymentId": args.deployment, "token": token }),
    };
    if let Err(ended) = send_json(&mut socket, &configure).await {
        return ended;
    }
    loop {
        tokio::select! {
            frame = next_json(&mut socket) => match frame {
                Ok(frame) => {
                    if let Some(ended) = show(&frame) {
                        let _ = socket.close(None).await;
                        return ended;
                    }
                }
                Err(ended) => return ended,
            },
            line = input.recv() => {
                let Some(line) = line else {
                    let _ = socket.close(None).await;
                    return Ended::Quit;
                };
                let line = line.trim();
                if line == "/quit" || line == "/exit" {
                    let _ = socket.close(None).await;
                    return Ended::Quit;
                }
                if line.is_empty() {
                    continue;
                }
                let message = json!({
                    "action": "onMessage",
                    "token": token,
                    "message": { "type": "Text", "text": line },
                });
                if let Err(ended) = send_json(&mut socket, &message).await {
                    return ended;
                }
            }
        }
    }
}

/// Prints a server frame. Answers `Some` when the session is over.
fn show(frame: &Value) -> Option<Ended> {
    let body = at(frame, "/body");
    let code = at(frame, "/code").as_u64().unwrap_or(200);
    match at(frame, "/class").as_str().unwrap_or_default() {
        "SessionResponse" if at(body, "/connected") == true => {
            let new = if at(body, "/newSession") == true { " (new session)" } else { "" };
            let read_only = if at(body, "/readOnly") == true {
                "; the conversation has ended and is read-only"
            } else {
                ""
            };
            say(format!("connected{new}{read_only}; type to chat, /quit to leave"));
        }
        "StructuredMessage" if at(body, "/direction") == "Outbound" => show_outbound(body),
        "StructuredMessage" => {}
        "LogoutEvent" => {
            say("(logged out)");
            return Some(Ended::Quit);
        }
        "SessionExpiredEvent" => {
            say("(the session expired)");
            return Some(Ended::Quit);
        }
        "ConnectionClosedEvent" => {
            say("(the session was closed elsewhere)");
            return Some(Ended::Quit);
        }
        "SessionClearedEvent" => say("(the conversation was cleared)"),
        "TooManyRequestsErrorMessage" => say(format!(
            "(slow down: retry after {} s)",
            at(body, "/retryAfter").as_u64().unwrap_or(1)
        )),
        _ if code >= 400 => say(format!("error {code}: {}", text(body))),
        _ => {}
    }
    None
}

fn show_outbound(body: &Value) {
    let from = at(body, "/channel/from");
    let who = at(from, "/nickname")
        .as_str()
        .or_else(|| at(from, "/firstName").as_str())
        .unwrap_or("agent");
    if let Some(message) = at(body, "/text").as_str().filter(|t| !t.is_empty()) {
        say(format!("{who}: {message}"));
    }
    for event in at(body, "/events").as_array().into_iter().flatten() {
        match at(event, "/eventType").as_str().unwrap_or_default() {
            "Typing" => say(format!("{who} is typing…")),
            "Presence" => {
                let what = match at(event, "/presence/type").as_str().unwrap_or_default() {
                    "Join" => "joined",
                    "Leave" => "left",
                    "Disconnect" => "ended the conversation",
                    "Clear" => "cleared the conversation",
                    "SignIn" => "signed in",
                    other => other,
                };
                say(format!("{who} {what}"));
            }
            _ => {}
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
