//! The agents of a run: each goes available, accepts every offer as it
//! comes, records the visitor messages it is given and, in the steady
//! scenario, echoes each one at once. At the end it ends the conversations
//! it holds, so nothing of the run waits in a queue afterwards.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::LoadError;
use super::frames::{self, AgentFrame};
use super::net::{self, Incoming, Target, Ws};
use super::stats::{Clock, Errors, Slot, deliver, stamp_once};

/// How long an agent waits for the answers to its `end`s when the run is over.
const END_WITHIN: Duration = Duration::from_secs(10);

/// What agents share with the run.
#[derive(Clone, Debug)]
pub(super) struct AgentContext {
    pub clock: Clock,
    pub slots: Arc<[Slot]>,
    /// Echo every visitor message (steady) or only take it (burst).
    pub echo: bool,
    pub errors: Arc<Mutex<Errors>>,
    /// Becomes true when the run is over.
    pub stop: watch::Receiver<bool>,
}

/// What one agent saw, read after the run.
#[derive(Debug, Default)]
pub(super) struct AgentReport {
    /// Each offer: the conversation and when it arrived (clock time).
    pub offers: Vec<(u128, u64)>,
    pub accepted: usize,
    /// Conversations ended at the end of the run.
    pub ended: usize,
    /// The socket went away before the run was over.
    pub closed_early: bool,
}

/// Connects an agent, goes available and waits for the answer.
pub(super) async fn connect(
    target: &Target,
    token: &str,
    queue: Option<&str>,
) -> Result<Ws, LoadError> {
    let mut ws = target
        .connect(
            "/api/v2/agent/ws",
            Some(("authorization", &format!("Bearer {token}"))),
        )
        .await?;
    net::send(&mut ws, frames::set_available(queue)).await?;
    let answer = async {
        loop {
            let text = match net::next(&mut ws).await {
                Incoming::Text(text) => text,
                Incoming::Closed => {
                    return Err(LoadError::Connect(
                        "the agent socket closed before setPresence was answered".to_owned(),
                    ));
                }
                Incoming::Other => continue,
            };
            let Ok(frame) = serde_json::from_str::<AgentFrame<'_>>(text.as_str()) else {
                continue;
            };
            if frame.kind == "response" && frame.request_id.as_deref() == Some("presence") {
                return match (frame.ok, frame.error) {
                    (Some(true), _) => Ok(()),
                    (_, Some(error)) => Err(LoadError::Connect(format!(
                        "setPresence: {} {}",
                        error.code, error.message
                    ))),
                    _ => Err(LoadError::Connect("setPresence refused".to_owned())),
                };
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| LoadError::Connect("no answer to setPresence in 10 s".to_owned()))??;
    Ok(ws)
}

/// Runs one connected agent until the run stops.
/// A run's agents, taking offers (and echoing, in steady chat) until told
/// to stop.
pub(super) struct Agents {
    pub stop: watch::Sender<bool>,
    pub tasks: Vec<JoinHandle<AgentReport>>,
}

/// Starts one task per agent socket; answers the agents and the stop
/// signal the visitors watch too.
pub(super) fn start(
    sockets: Vec<Ws>,
    clock: Clock,
    slots: Arc<[Slot]>,
    echo: bool,
    errors: Arc<Mutex<Errors>>,
) -> (Agents, watch::Receiver<bool>) {
    let (stop_tx, stop) = watch::channel(false);
    let context = AgentContext {
        clock,
        slots,
        echo,
        errors,
        stop: stop.clone(),
    };
    let tasks = sockets
        .into_iter()
        .map(|ws| spawn(ws, context.clone()))
        .collect();
    (
        Agents {
            stop: stop_tx,
            tasks,
        },
        stop,
    )
}

fn spawn(ws: Ws, context: AgentContext) -> JoinHandle<AgentReport> {
    tokio::spawn(async move {
        let mut agent = Agent {
            context,
            report: AgentReport::default(),
            held: HashSet::new(),
        };
        agent.run(ws).await;
        agent.report
    })
}

struct Agent {
    context: AgentContext,
    report: AgentReport,
    /// Conversations connected to this agent, ended at the end of the run.
    held: HashSet<Uuid>,
}

impl Agent {
    async fn run(&mut self, mut ws: Ws) {
        let mut stop = self.context.stop.clone();
        loop {
            tokio::select! {
                incoming = net::next(&mut ws) => match incoming {
                    Incoming::Text(text) => {
                        if let Err(e) = self.handle(&mut ws, text.as_str()).await {
                            self.error(e);
                            self.report.closed_early = true;
                            return;
                        }
                    }
                    Incoming::Closed => {
                        self.report.closed_early = true;
                        self.error("an agent socket closed during the run");
                        return;
                    }
                    Incoming::Other => {}
                },
                () = super::stopped(&mut stop) => break,
            }
        }
        self.end_all(&mut ws).await;
        let _ = ws.close(None).await;
    }

    async fn handle(&mut self, ws: &mut Ws, text: &str) -> Result<(), LoadError> {
        let frame: AgentFrame<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error(format!("an agent frame did not parse: {e}"));
                return Ok(());
            }
        };
        match frame.kind.as_ref() {
            "offer" => {
                let now = self.context.clock.now();
                let Some(conversation) = frame.conversation else {
                    return Ok(());
                };
                if let Ok(id) = Uuid::parse_str(&conversation.id) {
                    self.report.offers.push((id.as_u128(), now));
                    net::send(ws, frames::accept(&id.to_string())).await?;
                }
            }
            "event" => {
                if let (Some(conversation), Some(text)) = (&frame.conversation_id, &frame.text) {
                    self.visitor_message(ws, conversation, text).await?;
                }
            }
            "snapshot" => {
                // Every conversation held is listed; one missing is gone.
                self.held.clear();
                for conversation in &frame.conversations {
                    self.held_conversation(ws, conversation).await?;
                }
            }
            // After the snapshot, what changed: one conversation added or
            // changed, or one gone.
            "conversation" => {
                if let Some(conversation) = &frame.conversation {
                    self.held_conversation(ws, conversation).await?;
                }
            }
            "removed" | "offerRevoked" => {
                if let Some(id) = frame
                    .conversation_id
                    .as_deref()
                    .and_then(|id| Uuid::parse_str(id).ok())
                {
                    self.held.remove(&id);
                }
            }
            "response" => self.response(&frame),
            _ => {}
        }
        Ok(())
    }

    /// A conversation as a snapshot or a `conversation` frame shows it:
    /// held once connected, and its events read.
    async fn held_conversation(
        &mut self,
        ws: &mut Ws,
        conversation: &frames::SnapshotConversation<'_>,
    ) -> Result<(), LoadError> {
        if conversation.state == "connected"
            && let Ok(id) = Uuid::parse_str(&conversation.id)
        {
            self.held.insert(id);
        }
        for event in &conversation.events {
            if let Some(text) = &event.text {
                self.visitor_message(ws, &conversation.id, text).await?;
            }
        }
        Ok(())
    }

    /// A visitor message reached this agent: counted, and echoed in steady.
    async fn visitor_message(
        &mut self,
        ws: &mut Ws,
        conversation: &str,
        text: &str,
    ) -> Result<(), LoadError> {
        let Some(k) = frames::visitor_tag(text) else {
            return Ok(());
        };
        let now = self.context.clock.now();
        let Some(slot) = self.context.slots.get(k) else {
            self.error(format!("a visitor message with an unknown index {k}"));
            return Ok(());
        };
        deliver(&slot.agent_got, &slot.agent_got_count, now);
        if self.context.echo && frames::plain(conversation) {
            stamp_once(&slot.agent_sent, self.context.clock.now());
            net::send(ws, frames::agent_send(conversation, k)).await?;
        }
        Ok(())
    }

    fn response(&mut self, frame: &AgentFrame<'_>) {
        let request = frame.request_id.as_deref().unwrap_or_default();
        if frame.ok != Some(true) {
            let (code, message) = frame
                .error
                .as_ref()
                .map(|e| (e.code.as_ref(), e.message.as_ref()))
                .unwrap_or_default();
            self.error(format!("agent request {request}: {code} {message}"));
            return;
        }
        match request {
            "accept" => self.report.accepted += 1,
            "end" => self.report.ended += 1,
            _ => {
                if let Ok(k) = request.parse::<usize>()
                    && let Some(slot) = self.context.slots.get(k)
                {
                    stamp_once(&slot.agent_acked, self.context.clock.now());
                }
            }
        }
    }

    /// Ends every held conversation and waits (bounded) for the answers.
    async fn end_all(&mut self, ws: &mut Ws) {
        let held: Vec<Uuid> = self.held.drain().collect();
        for id in &held {
            if net::send(ws, frames::end(&id.to_string())).await.is_err() {
                return;
            }
        }
        let ended_before = self.report.ended;
        let mut answered = 0;
        let wait = async {
            while answered < held.len() {
                let text = match net::next(ws).await {
                    Incoming::Text(text) => text,
                    Incoming::Closed => return,
                    Incoming::Other => continue,
                };
                if let Ok(frame) = serde_json::from_str::<AgentFrame<'_>>(text.as_str())
                    && frame.kind == "response"
                    && frame.request_id.as_deref() == Some("end")
                {
                    answered += 1;
                    if frame.ok == Some(true) {
                        self.report.ended += 1;
                    }
                }
            }
        };
        if tokio::time::timeout(END_WITHIN, wait).await.is_err() {
            self.error(format!(
                "{} of {} conversations not ended within {} s",
                held.len() - (self.report.ended - ended_before),
                held.len(),
                END_WITHIN.as_secs()
            ));
        }
    }

    fn error(&self, error: impl ToString) {
        self.context
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(error);
    }
}
