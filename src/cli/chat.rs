//! `switchboard chat`: a website visitor in a terminal, over the guest
//! protocol (docs/guest-protocol.md), as a widget or app would speak it.
//!
//! It mints a session token (a random UUID), configures the session (as an
//! authenticated one when given a session JWT from the token exchange),
//! sends each typed line as a text message and prints the agent's
//! messages, typing and presence. `/quit` or end of input leaves.
//!
//! A lost connection is resumed, on the next `--url` when several are
//! given: the same session token, the last sequence seen (so the server
//! replays what was missed, and nothing is printed twice), and the messages
//! not yet acknowledged are sent again with their ids (so none is lost or
//! logged twice).

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use super::{
    ClientError, Ended, Servers, Socket, at, next_json, refused, say, send_json, stdin_lines,
};

/// `switchboard chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The server, e.g. http://localhost:8080. Repeat it to name several
    /// nodes: a lost connection resumes on the next.
    #[arg(long, required = true)]
    pub url: Vec<String>,
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
    let mut servers = Servers::new(
        &args.url,
        &format!(
            "/v1?deploymentId={}&application=switchboard-chat",
            args.deployment
        ),
    )?;
    let mut input = stdin_lines();
    let mut visitor = Visitor {
        token: Uuid::new_v4().to_string(),
        conversation: None,
        last_sequence: 0,
        unacknowledged: Vec::new(),
    };
    loop {
        let socket = match connect(servers.current(), args.origin.as_deref()).await {
            Ok(socket) => socket,
            Err(e) => {
                servers.failed(e).await?;
                continue;
            }
        };
        servers.connected();
        match visitor.session(socket, &args, &mut input).await {
            Ended::Quit => return Ok(()),
            Ended::Refused(error) => return Err(error),
            Ended::Lost => servers.lost().await,
        }
    }
}

async fn connect(url: &str, origin: Option<&str>) -> Result<Socket, ClientError> {
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        let value = HeaderValue::from_str(origin)
            .map_err(|_| ClientError::Url("the origin is not a valid header value".to_owned()))?;
        request.headers_mut().insert("origin", value);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(refused)?;
    Ok(socket)
}

/// What survives a reconnect.
#[derive(Debug)]
struct Visitor {
    /// Names the guest session: the same token resumes the same session.
    token: String,
    /// The conversation whose events were seen, and the newest sequence.
    conversation: Option<String>,
    last_sequence: u64,
    /// Messages sent but not acknowledged: (client id, text).
    unacknowledged: Vec<(String, String)>,
}

impl Visitor {
    async fn session(
        &mut self,
        mut socket: Socket,
        args: &ChatArgs,
        input: &mut mpsc::Receiver<String>,
    ) -> Ended {
        let mut configure = match &args.jwt {
            Some(jwt) => json!({
                "action": "configureAuthenticatedSession",
                "deploymentId": args.deployment,
                "token": self.token,
                "data": { "code": jwt },
            }),
            None => {
                json!({ "action": "configureSession", "deploymentId": args.deployment, "token": self.token })
            }
        };
        if let (Some(conversation), Some(fields)) = (&self.conversation, configure.as_object_mut())
        {
            // Resume: replay what came after the last event seen.
            fields.insert("conversationId".to_owned(), json!(conversation));
            fields.insert("lastSequence".to_owned(), json!(self.last_sequence));
        }
        if let Err(ended) = send_json(&mut socket, &configure).await {
            return ended;
        }
        loop {
            tokio::select! {
                frame = next_json(&mut socket) => match frame {
                    Ok(frame) => {
                        if let Some(ended) = self.show(&frame) {
                            let _ = socket.close(None).await;
                            return ended;
                        }
                        if at(&frame, "/class") == "SessionResponse" && at(&frame, "/body/connected") == true {
                            // Sent again with the same ids: logged once.
                            for (id, text) in self.unacknowledged.clone() {
                                if let Err(ended) = send_json(&mut socket, &self.message(&id, &text)).await {
                                    return ended;
                                }
                            }
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
                    let id = Uuid::new_v4().to_string();
                    self.unacknowledged.push((id.clone(), line.to_owned()));
                    if let Err(ended) = send_json(&mut socket, &self.message(&id, line)).await {
                        return ended;
                    }
                }
            }
        }
    }

    fn message(&self, id: &str, text: &str) -> Value {
        json!({
            "action": "onMessage",
            "token": self.token,
            "message": { "type": "Text", "text": text, "id": id },
        })
    }

    /// Whether a logged event is new to this terminal; remembers it.
    fn first_sight(&mut self, body: &Value) -> bool {
        let (Some(conversation), Some(sequence)) = (
            at(body, "/conversationId").as_str(),
            at(body, "/sequence").as_u64(),
        ) else {
            // Not logged (typing): always new.
            return true;
        };
        if self.conversation.as_deref() != Some(conversation) {
            self.conversation = Some(conversation.to_owned());
            self.last_sequence = 0;
        }
        if sequence <= self.last_sequence {
            return false;
        }
        self.last_sequence = sequence;
        true
    }

    /// Prints a server frame. Answers `Some` when the session is over.
    fn show(&mut self, frame: &Value) -> Option<Ended> {
        let body = at(frame, "/body");
        if at(frame, "/class") == "StructuredMessage" {
            if let Some(id) = at(body, "/clientMessageId").as_str() {
                self.unacknowledged.retain(|(sent, _)| sent != id);
            }
            if !self.first_sight(body) {
                return None;
            }
        }
        show(frame)
    }
}

/// Prints a server frame. Answers `Some` when the session is over.
fn show(frame: &Value) -> Option<Ended> {
    let body = at(frame, "/body");
    let code = at(frame, "/code").as_u64().unwrap_or(200);
    match at(frame, "/class").as_str().unwrap_or_default() {
        "SessionResponse" if at(body, "/connected") == true => {
            let new = if at(body, "/newSession") == true {
                " (new session)"
            } else {
                ""
            };
            let read_only = if at(body, "/readOnly") == true {
                "; the conversation has ended and is read-only"
            } else {
                ""
            };
            say(format!(
                "connected{new}{read_only}; type to chat, /quit to leave"
            ));
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
        // Said once, and the client stops: every further line would only
        // be refused the same way.
        _ if code == 401 => {
            return Some(Ended::Refused(ClientError::SignInRequired(text(body))));
        }
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
