//! A conversation's events: the log first, the bus second. A message counts
//! as sent once it is in the log; the bus only tells sockets to look.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{
    Conversation, ConversationState, EventBody, LogEvent, Notice, Participant, PresenceKind,
    SequencedEvent,
};
use super::{AgentIdentity, NewEvent, Routing, RoutingError, RoutingResult};
use crate::engine::{Appended, Channel, Meter, Metered};
use crate::store::StoreError;

impl Routing {
    /// Appends an event to a conversation's log, which announces it (see
    /// [`crate::engine::EntryNotice`]). Answers the sequenced event and
    /// whether it was a resend of one already logged (then nothing was
    /// appended).
    pub async fn append(
        &self,
        conversation: Uuid,
        from: Participant,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        match self.log_event(conversation, from, event, None, now).await? {
            Ok(posted) => Ok(posted),
            Err(_) => unreachable_refusal(),
        }
    }

    /// Posts a visitor's event to `conversation` without reading anything
    /// first: the caller knows it is the session's live conversation and
    /// `from` is the visitor as the conversation knows them (the guest
    /// socket's posting cache says why it may). The session's message rate
    /// (`meter`, kept beside the log), the dedup check, the append and its
    /// notice are one engine step: one round trip on Redis. A message
    /// over the rate is [`RoutingError::Limited`], and nothing is logged.
    pub async fn visitor_post_live(
        &self,
        conversation: Uuid,
        from: Participant,
        event: NewEvent,
        meter: Meter<'_>,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        self.log_event(conversation, from, event, Some(meter), now)
            .await?
            .map_err(|retry_after| RoutingError::Limited {
                what: "messages",
                retry_after,
            })
    }

    /// The event logged (and whether it was a resend), or how long the
    /// meter asks to wait.
    async fn log_event(
        &self,
        conversation: Uuid,
        from: Participant,
        event: NewEvent,
        meter: Option<Meter<'_>>,
        now: DateTime<Utc>,
    ) -> RoutingResult<Result<(SequencedEvent, bool), Duration>> {
        let logged = LogEvent {
            id: Uuid::now_v7(),
            time: now,
            from,
            body: event.body,
        };
        let body = crate::store::encode(&logged)?;
        let dedup = event.dedup.as_deref();
        let engine = self.engine();
        let appended = match meter {
            None => engine.append(conversation, &body, dedup).await,
            Some(meter) => match engine
                .append_metered(conversation, &body, dedup, meter)
                .await
            {
                Ok(Metered::Appended(appended)) => Ok(appended),
                Ok(Metered::Refused { retry_after }) => return Ok(Err(retry_after)),
                Err(e) => Err(e),
            },
        };
        let Appended { seq, duplicate } = appended.map_err(StoreError::from)?;
        if duplicate {
            // Answer with the event as first logged.
            let first = engine
                .read_log(conversation, seq.saturating_sub(1), 1)
                .await
                .map_err(StoreError::from)?;
            let event = first
                .into_iter()
                .next()
                .and_then(|entry| serde_json::from_slice::<LogEvent>(&entry.body).ok())
                .unwrap_or(logged);
            return Ok(Ok((
                SequencedEvent {
                    conversation_id: conversation,
                    seq,
                    event,
                },
                true,
            )));
        }
        Ok(Ok((
            SequencedEvent {
                conversation_id: conversation,
                seq,
                event: logged,
            },
            false,
        )))
    }

    /// Log entries of a conversation after `after`, decoded.
    pub async fn events_after(
        &self,
        conversation: Uuid,
        after: u64,
        limit: usize,
    ) -> RoutingResult<Vec<SequencedEvent>> {
        let entries = self
            .engine()
            .read_log(conversation, after, limit)
            .await
            .map_err(StoreError::from)?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let event = serde_json::from_slice::<LogEvent>(&entry.body)
                    .map_err(|e| tracing::error!(%conversation, seq = entry.seq, error = %e, "unreadable log entry"))
                    .ok()?;
                Some(SequencedEvent {
                    conversation_id: conversation,
                    seq: entry.seq,
                    event,
                })
            })
            .collect())
    }

    /// Up to `limit` log entries of a conversation below `before`, newest
    /// first, decoded (an unreadable entry is logged and skipped). Answers
    /// the events, how many entries were read (skipped ones included) and
    /// the sequence of the oldest, where the next page starts.
    pub async fn events_before(
        &self,
        conversation: Uuid,
        before: u64,
        limit: usize,
    ) -> RoutingResult<(Vec<SequencedEvent>, usize, Option<u64>)> {
        let entries = self
            .engine()
            .read_log_before(conversation, before, limit)
            .await
            .map_err(StoreError::from)?;
        let read = entries.len();
        let oldest = entries.last().map(|e| e.seq);
        let events = entries
            .into_iter()
            .filter_map(|entry| {
                let event = serde_json::from_slice::<LogEvent>(&entry.body)
                    .map_err(|e| tracing::error!(%conversation, seq = entry.seq, error = %e, "unreadable log entry"))
                    .ok()?;
                Some(SequencedEvent {
                    conversation_id: conversation,
                    seq: entry.seq,
                    event,
                })
            })
            .collect();
        Ok((events, read, oldest))
    }

    pub async fn last_seq(&self, conversation: Uuid) -> RoutingResult<u64> {
        Ok(self
            .engine()
            .last_seq(conversation)
            .await
            .map_err(StoreError::from)?)
    }

    /// Announces a notice. The bus is a hint (the logs are the truth), so a
    /// failed publish is logged, not returned.
    pub async fn notify(&self, channel: &Channel, notice: &Notice) {
        match serde_json::to_vec(notice) {
            Ok(payload) => {
                if let Err(e) = self.engine().publish(channel, &payload).await {
                    tracing::warn!(channel = %channel.name(), error = %e, "publish failed; subscribers catch up from the log");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a notice"),
        }
    }

    /// Posts an agent's event to a conversation the agent is connected to.
    pub async fn agent_post(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        let c = self
            .store
            .find::<Conversation>(agent.org, conversation)
            .await?
            .ok_or(RoutingError::UnknownConversation)?;
        match c.state {
            ConversationState::Connected { agent_id, .. } if agent_id == agent.id => {}
            _ => {
                return Err(RoutingError::NotAllowed(
                    "you are not connected to this conversation",
                ));
            }
        }
        self.agent_post_connected(agent, conversation, event, now)
            .await
    }

    /// Posts an agent's event without reading the conversation first: the
    /// caller knows the agent is connected to it (the agent socket's view,
    /// see `Agent::connected_to` in the gateway), so the append is the one
    /// engine step after the rate.
    pub async fn agent_post_connected(
        &self,
        agent: &AgentIdentity,
        conversation: Uuid,
        event: NewEvent,
        now: DateTime<Utc>,
    ) -> RoutingResult<(SequencedEvent, bool)> {
        self.append(conversation, agent_participant(agent), event, now)
            .await
    }

    /// Logs an agent's presence change (join, leave, disconnect).
    pub(super) async fn append_presence(
        &self,
        conversation: Uuid,
        agent: &AgentIdentity,
        presence: PresenceKind,
        now: DateTime<Utc>,
    ) -> RoutingResult<SequencedEvent> {
        let (event, _) = self
            .append(
                conversation,
                agent_participant(agent),
                NewEvent {
                    body: EventBody::presence(presence),
                    dedup: None,
                },
                now,
            )
            .await?;
        Ok(event)
    }
}

/// An unmetered append is never refused by a rate; were it so, it is a
/// transient failure to the caller, not a panic.
fn unreachable_refusal<T>() -> RoutingResult<T> {
    Err(StoreError::from(crate::engine::EngineError::Unavailable(
        "an unmetered append was refused".into(),
    ))
    .into())
}

pub(super) fn agent_participant(agent: &AgentIdentity) -> Participant {
    Participant::agent(agent.id, &agent.name)
}
