//! Conversations between visitors and agents: sessions, queues, offers,
//! assignment, presence.
//!
//! Every transition reads the records it touches, decides with a pure
//! function over them and commits them with a check that none changed since
//! the read. So any number of nodes may act on the same conversation or agent
//! at once: one commit wins, the others see a stale version, read again and
//! decide again. Events go to the conversation's log first and are announced
//! on the bus second; a message counts as sent once it is in the log.
//!
//! - `admission`: limits on what visitors' traffic creates (new
//!   conversations per address and deployment, conversations waiting per
//!   address);
//! - `content`: what a message carries besides text (structured content,
//!   custom attributes), validated where it enters;
//! - `decide`: the decisions, as pure functions over the records;
//! - `commit`: read, decide, commit: the one helper every transition uses;
//! - `sessions`: guest sessions and where a visitor's messages go;
//! - `visitor`: what a visitor's socket asks, and the notices it causes
//!   (`typing`, `revoked`);
//! - `events`: the conversation logs and bus notices;
//! - `agents`: an agent's presence, status and directory;
//! - `assignment`: what agents do with a conversation, and the batch pass
//!   that offers a queue's waiting conversations to its agents;
//! - `assigner`: who runs that pass: one node per queue at a time, holding
//!   the queue's lease in the engine, woken by arrivals and agents freeing
//!   up (never on the request that caused the wake);
//! - `sweeper`: what no socket asks for (offer timeouts, lost agents,
//!   queues nobody is assigning), run on every node without a leader;
//! - `retention`: deleting what is past its retention (one node at a time,
//!   under a lease) and erasing a conversation or a visitor on request.

mod admission;
mod agents;
mod assigner;
mod assignment;
mod commit;
pub mod content;
mod decide;
mod events;
pub mod model;
mod retention;
mod revoked;
mod sessions;
mod sweeper;
#[cfg(test)]
mod tests;
mod typing;
pub mod visitor;

pub use retention::{Erased, Swept};

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::config::RetentionConfig;
use crate::engine::Engine;
use crate::limits::Limiter;
use crate::store::types::OrgId;
use crate::store::{Store, StoreError};
use model::{AgentStatus, EventBody};

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("no such conversation")]
    UnknownConversation,
    #[error("no such session")]
    UnknownSession,
    /// The caller may not act on this conversation in its current state.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// The conversation ended and the configuration makes it read-only.
    #[error("the conversation has ended and is read-only")]
    ReadOnly,
    #[error("too much contention, try again")]
    Contended,
    /// A limit refused it (see [`crate::limits`]): too many of `what`.
    #[error("too many {what}; try again later")]
    Limited {
        what: &'static str,
        retry_after: Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type RoutingResult<T> = Result<T, RoutingError>;

/// Timings of routing.
#[derive(Clone, Copy, Debug)]
pub struct RoutingConfig {
    /// How long an agent without a socket keeps its conversations.
    pub agent_grace: Duration,
    /// How often the sweeper runs.
    pub sweep_interval: Duration,
    /// How long a queue's assignment lease lasts unless its holder renews
    /// it (a third of the way through): how long the queue goes unassigned
    /// when the node holding it dies, before another node takes over.
    pub assign_lease: Duration,
    /// How long ended conversations, sessions, visitors' records and audit
    /// entries are kept where an organization or deployment sets nothing,
    /// and how soon a session without a conversation goes.
    pub retention: RetentionConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            agent_grace: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            assign_lease: Duration::from_secs(5),
            retention: RetentionConfig::default(),
        }
    }
}

/// Who an agent is, as the agent socket authenticated them.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub id: Uuid,
    pub org: OrgId,
    pub name: String,
    /// A staff member (queues from queue membership) or an API client
    /// (queues it names itself, within its organization).
    pub is_member: bool,
}

/// Where an agent sends a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferTarget {
    Queue(Uuid),
    Agent(Uuid),
}

/// Where an agent may transfer to: see [`Routing::directory`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Directory {
    pub queues: Vec<DirectoryQueue>,
    pub agents: Vec<DirectoryAgent>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectoryQueue {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DirectoryAgent {
    pub id: Uuid,
    pub name: String,
    pub status: AgentStatus,
}

/// A new event from a visitor or an agent, before it has a sequence.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub body: EventBody,
    pub dedup: Option<String>,
}

/// The routing service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Routing {
    store: Store,
    config: RoutingConfig,
    /// This node's assigner tasks, shared by every clone.
    assigners: Arc<assigner::Assigners>,
    /// Rates on new conversations and the bound on queued ones.
    limiter: Limiter,
    /// The files conversations carry, deleted with them; `None` in tests
    /// that run routing alone.
    attachments: Option<crate::attachments::Attachments>,
}

impl Routing {
    /// Routing with the default limits; see [`Routing::with_limiter`].
    pub fn new(store: Store, config: RoutingConfig) -> Self {
        Self {
            limiter: Limiter::new(store.clone(), crate::limits::Limits::default()),
            store,
            config,
            assigners: Arc::new(assigner::Assigners::new()),
            attachments: None,
        }
    }

    /// Routing that deletes conversations' attachments with them, and
    /// sweeps uploads never sent with the retention sweep.
    pub fn with_attachments(mut self, attachments: crate::attachments::Attachments) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// Routing under the node's limiter (shared with the gateway).
    pub fn with_limiter(mut self, limiter: Limiter) -> Self {
        self.limiter = limiter;
        self
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    fn engine(&self) -> &Engine {
        self.store.engine()
    }

    pub fn config(&self) -> RoutingConfig {
        self.config
    }
}
