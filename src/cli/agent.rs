//! `switchboard agent`: an agent in a terminal, over the agent protocol
//! (docs/agent-protocol.md).
//!
//! It goes available on connect and prints offers, messages, typing and
//! presence. Typed lines are commands (`/accept <id>`, `/decline <id>`,
//! `/end [<id>] [wrap-up]`, `/transfer <id> queue:<id>|agent:<id>`, `/use
//! <id>`, `/history <id>`, `/available`, `/away`, `/quit`) or, otherwise, a
//! reply to the current conversation. Conversation ids may be shortened to
//! any unique prefix.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use super::{
    ClientError, Ended, Servers, Socket, at, next_json, refused, say, send_json, stdin_lines,
};

/// `switchboard agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The server, e.g. http://localhost:8080. Repeat it to name several
    /// nodes: a lost connection moves on to the next.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// An access token of an API client with the agent role.
    #[arg(long, env = "SWITCHBOARD_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A queue to take offers from (repeatable); all of yours when none.
    #[arg(long = "queue")]
    pub queues: Vec<Uuid>,
}

const HELP: &str = "commands: /accept <id>  /decline <id>  /end [<id>] [wrap-up]  \
/transfer <id> queue:<id>|agent:<id>  /use <id>  /history <id>  /available  /away  /quit; \
anything else is a reply to the current conversation";

pub async fn run(args: AgentArgs) -> Result<(), ClientError> {
    let mut servers = Servers::new(&args.url, "/api/v2/agent/ws")?;
    let mut input = stdin_lines();
    let mut terminal = Terminal::default();
    loop {
        let socket = match connect(servers.current(), &args.token).await {
            Ok(socket) => socket,
            Err(e) => {
                servers.failed(e).await?;
                continue;
            }
        };
        if !servers.connected_once {
            say(HELP);
        }
        servers.connected();
        // The first snapshot after a reconnect brings back everything the
        // agent holds; the terminal prints only what it had not printed.
        match terminal.session(socket, &mut input, &args.queues).await {
            Ended::Quit => return Ok(()),
            Ended::Refused(error) => return Err(error),
            Ended::Lost => servers.lost().await,
        }
    }
}

async fn connect(url: &str, token: &str) -> Result<Socket, ClientError> {
    let mut request = url.into_client_request()?;
    let value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ClientError::Url("the token is not a valid header value".to_owned()))?;
    request.headers_mut().insert("authorization", value);
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(refused)?;
    Ok(socket)
}

/// What the terminal knows: the conversations shown, the one replies go
/// to, and the last sequence printed for each (no line printed twice).
#[derive(Debug, Default)]
struct Terminal {
    /// Held conversations (id → state), from the last snapshot.
    held: Vec<(Uuid, String)>,
    current: Option<Uuid>,
    printed: HashMap<Uuid, u64>,
}

/// What a typed line asks for.
enum Command {
    Frame(Value),
    Quit,
    Nothing,
}

impl Terminal {
    async fn session(
        &mut self,
        mut socket: Socket,
        input: &mut mpsc::Receiver<String>,
        queues: &[Uuid],
    ) -> Ended {
        let presence = json!({ "type": "setPresence", "requestId": "presence", "status": "available", "queueIds": queues });
        if let Err(ended) = send_json(&mut socket, &presence).await {
            return ended;
        }
        loop {
            tokio::select! {
                frame = next_json(&mut socket) => match frame {
                    Ok(frame) => self.show(&frame),
                    Err(ended) => return ended,
                },
                line = input.recv() => {
                    let command = match line {
                        Some(line) => self.command(line.trim()),
                        None => Command::Quit,
                    };
                    match command {
                        Command::Frame(frame) => {
                            if let Err(ended) = send_json(&mut socket, &frame).await {
                                return ended;
                            }
                        }
                        Command::Quit => {
                            let _ = socket.close(None).await;
                            return Ended::Quit;
                        }
                        Command::Nothing => {}
                    }
                }
            }
        }
    }

    /// A conversation id, or a unique prefix of one this terminal knows.
    fn resolve(&self, text: &str) -> Option<Uuid> {
        if let Ok(id) = Uuid::parse_str(text) {
            return Some(id);
        }
        if text.is_empty() {
            return None;
        }
        let mut matches = self
            .held
            .iter()
            .map(|(id, _)| *id)
            .chain(self.printed.keys().copied())
            .filter(|id| id.to_string().starts_with(text));
        let first = matches.next()?;
        matches.all(|other| other == first).then_some(first)
    }

    fn command(&mut self, line: &str) -> Command {
        if line.is_empty() {
            return Command::Nothing;
        }
        let Some(command) = line.strip_prefix('/') else {
            let Some(current) = self.current else {
                say("(no current conversation: /accept an offer or /use one)");
                return Command::Nothing;
            };
            return Command::Frame(json!({
                "type": "send",
                "requestId": "send",
                "conversationId": current,
                "text": line,
                "id": Uuid::new_v4().to_string(),
            }));
        };
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let first = words.next();
        let rest: Vec<&str> = words.collect();
        let conversation = first.and_then(|w| self.resolve(w));
        let needs_id = |name: &str| {
            say(format!("(/{name} needs a conversation id)"));
            Command::Nothing
        };
        match verb {
            "accept" | "decline" => {
                let Some(id) = conversation else {
                    return needs_id(verb);
                };
                if verb == "accept" {
                    self.current = Some(id);
                }
                Command::Frame(
                    json!({ "type": verb, "requestId": format!("{verb}:{id}"), "conversationId": id }),
                )
            }
            "end" => {
                // `/end <id> [wrap-up]`, or `/end [wrap-up]` for the current one.
                let (id, wrap_up) = match conversation {
                    Some(id) => (Some(id), rest.join(" ")),
                    None => (
                        self.current,
                        first.into_iter().chain(rest).collect::<Vec<_>>().join(" "),
                    ),
                };
                let Some(id) = id else { return needs_id(verb) };
                let mut frame = json!({ "type": "end", "requestId": format!("end:{id}"), "conversationId": id });
                if !wrap_up.is_empty()
                    && let Some(fields) = frame.as_object_mut()
                {
                    fields.insert("wrapUp".to_owned(), json!(wrap_up));
                }
                Command::Frame(frame)
            }
            "transfer" => {
                let Some(id) = conversation else {
                    return needs_id(verb);
                };
                let target = rest.first().copied().unwrap_or_default();
                let (field, target) = match target.split_once(':') {
                    Some(("queue", t)) => ("queueId", t),
                    Some(("agent", t)) => ("agentId", t),
                    _ => {
                        say("(/transfer <id> queue:<queue id> or agent:<agent id>)");
                        return Command::Nothing;
                    }
                };
                Command::Frame(json!({
                    "type": "transfer",
                    "requestId": format!("transfer:{id}"),
                    "conversationId": id,
                    field: target,
                }))
            }
            "use" => {
                let Some(id) = conversation else {
                    return needs_id(verb);
                };
                self.current = Some(id);
                say(format!("(replies now go to {id})"));
                Command::Nothing
            }
            "history" => {
                let Some(id) = conversation else {
                    return needs_id(verb);
                };
                Command::Frame(
                    json!({ "type": "history", "requestId": "history", "conversationId": id, "limit": 500 }),
                )
            }
            "available" => Command::Frame(
                json!({ "type": "setPresence", "requestId": "presence", "status": "available" }),
            ),
            "away" => Command::Frame(
                json!({ "type": "setPresence", "requestId": "presence", "status": "away" }),
            ),
            "quit" | "exit" => Command::Quit,
            _ => {
                say(HELP);
                Command::Nothing
            }
        }
    }

    fn show(&mut self, frame: &Value) {
        match at(frame, "/type").as_str().unwrap_or_default() {
            "response" => self.show_response(frame),
            "snapshot" => self.show_snapshot(frame),
            "conversation" => {
                let c = at(frame, "/conversation");
                if let Some(id) = at(c, "/id")
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                {
                    let state = text(at(c, "/state"));
                    match self.held.iter_mut().find(|(held, _)| *held == id) {
                        Some(held) => held.1 = state,
                        None => self.held.push((id, state)),
                    }
                }
                self.show_conversation(c);
                self.pick_current();
            }
            "removed" | "offerRevoked" => {
                let id = at(frame, "/conversationId");
                if at(frame, "/type") == "removed" {
                    say(format!("conversation {} is no longer yours", text(id)));
                } else {
                    say(format!("offer {} withdrawn", text(id)));
                }
                self.held
                    .retain(|(held, _)| id.as_str() != Some(held.to_string().as_str()));
                self.pick_current();
            }
            "offer" => {
                let c = at(frame, "/conversation");
                say(format!(
                    "offer {} from {} ({}): /accept {} or /decline {}",
                    text(at(c, "/id")),
                    text(at(c, "/visitor/displayName")),
                    identity(at(c, "/visitor")),
                    short(at(c, "/id")),
                    short(at(c, "/id")),
                ));
            }
            "event" => self.show_event(frame),
            "typing" => say(format!(
                "[{}] {} is typing…",
                short(at(frame, "/conversationId")),
                text(at(frame, "/from/name"))
            )),
            "presence" => say(format!("you are now {}", text(at(frame, "/status")))),
            _ => {}
        }
    }

    fn show_response(&mut self, frame: &Value) {
        if at(frame, "/ok") != true {
            say(format!(
                "error ({}): {}",
                text(at(frame, "/error/code")),
                text(at(frame, "/error/message"))
            ));
            return;
        }
        let request = at(frame, "/requestId").as_str().unwrap_or_default();
        let result = at(frame, "/result");
        match request.split_once(':').map_or(request, |(verb, _)| verb) {
            "presence" => {
                let queues = at(result, "/queues").as_array().map_or(0, Vec::len);
                say(format!(
                    "you are {} (queues: {queues})",
                    text(at(result, "/status"))
                ));
            }
            "accept" => say(format!(
                "accepted {}; type to reply",
                text(at(result, "/conversation/id"))
            )),
            "decline" => say(format!("declined {}", text(at(result, "/conversation/id")))),
            "end" => say(format!("ended {}", text(at(result, "/conversation/id")))),
            "transfer" => say(format!(
                "transferred {}",
                text(at(result, "/conversation/id"))
            )),
            "history" => {
                for event in at(result, "/events").as_array().into_iter().flatten() {
                    say(event_line(event));
                }
            }
            _ => {}
        }
    }

    fn show_snapshot(&mut self, frame: &Value) {
        let conversations = at(frame, "/conversations")
            .as_array()
            .cloned()
            .unwrap_or_default();
        self.held = conversations
            .iter()
            .filter_map(|c| {
                Some((
                    Uuid::parse_str(at(c, "/id").as_str()?).ok()?,
                    text(at(c, "/state")),
                ))
            })
            .collect();
        for c in &conversations {
            self.show_conversation(c);
        }
        self.pick_current();
    }

    /// A held conversation of a snapshot or a `conversation` frame: named
    /// the first time, then its events not shown yet.
    fn show_conversation(&mut self, c: &Value) {
        let Some(id) = at(c, "/id")
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return;
        };
        if let Entry::Vacant(first_time) = self.printed.entry(id) {
            say(format!(
                "conversation {id} ({}) with {} ({})",
                text(at(c, "/state")),
                text(at(c, "/visitor/displayName")),
                identity(at(c, "/visitor"))
            ));
            first_time.insert(0);
        }
        for event in at(c, "/events").as_array().into_iter().flatten() {
            self.show_event(event);
        }
    }

    /// Replies keep going where they went while that conversation is held
    /// (an accept typed a moment ago may not show yet); otherwise to a
    /// connected one.
    fn pick_current(&mut self) {
        let still_held = |id: &Uuid| self.held.iter().any(|(held, _)| held == id);
        if !self.current.as_ref().is_some_and(still_held) {
            self.current = self
                .held
                .iter()
                .find(|(_, state)| state == "connected")
                .map(|(id, _)| *id);
        }
    }

    fn show_event(&mut self, event: &Value) {
        let Some(id) = at(event, "/conversationId")
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return;
        };
        let sequence = at(event, "/sequence").as_u64().unwrap_or_default();
        let printed = self.printed.entry(id).or_default();
        if sequence <= *printed {
            return;
        }
        *printed = sequence;
        say(event_line(event));
    }
}

fn event_line(event: &Value) -> String {
    let conversation = short(at(event, "/conversationId"));
    let who = text(at(event, "/from/name"));
    match at(event, "/kind").as_str().unwrap_or_default() {
        "message" => format!("[{conversation}] {who}: {}", text(at(event, "/text"))),
        "presence" => {
            let what = match at(event, "/presence").as_str().unwrap_or_default() {
                "Join" => "joined",
                "Leave" => "left",
                "Disconnect" => "disconnected",
                "SignIn" => "signed in",
                "Clear" => "cleared the conversation",
                other => other,
            };
            format!("[{conversation}] {who} {what}")
        }
        "transfer" => {
            let to = match (
                at(event, "/queueId").as_str(),
                at(event, "/agentId").as_str(),
            ) {
                (Some(queue), _) => format!("queue {queue}"),
                (_, Some(agent)) => format!("agent {agent}"),
                _ => "elsewhere".to_owned(),
            };
            format!("[{conversation}] {who} transferred it to {to}")
        }
        "ended" => match at(event, "/wrapUp").as_str() {
            Some(wrap_up) => format!("[{conversation}] {who} ended it ({wrap_up})"),
            None => format!("[{conversation}] {who} ended it"),
        },
        other => format!("[{conversation}] {who}: ({other})"),
    }
}

/// What the agent knows about who the visitor is.
fn identity(visitor: &Value) -> String {
    if at(visitor, "/authenticated") != true {
        return "guest, not verified".to_owned();
    }
    let mut parts = vec!["verified".to_owned()];
    if let Some(email) = at(visitor, "/email").as_str() {
        parts.push(email.to_owned());
    } else if let Some(email) = at(visitor, "/unverifiedEmail").as_str() {
        parts.push(format!("{email} (email not verified by the IdP)"));
    }
    if let (Some(issuer), Some(subject)) = (
        at(visitor, "/issuer").as_str(),
        at(visitor, "/subject").as_str(),
    ) {
        parts.push(format!("{subject} at {issuer}"));
    }
    parts.join(", ")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The first block of a UUID: enough to type, given prefixes resolve.
fn short(value: &Value) -> String {
    let id = text(value);
    id.split('-').next().unwrap_or_default().to_owned()
}
