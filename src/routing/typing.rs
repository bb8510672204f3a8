//! Typing indicators: announced on the conversation's channel, never
//! logged (a lost one costs nothing).

use uuid::Uuid;

use super::events::agent_participant;
use super::model::{Notice, Participant};
use super::{AgentIdentity, Routing};
use crate::engine::Channel;

impl Routing {
    /// Tells the agents of `conversation` that the visitor is typing.
    pub async fn visitor_typing(&self, conversation: Uuid, visitor: &Participant) {
        self.typing(conversation, visitor.clone()).await;
    }

    /// Tells the visitor (and the other agents) of `conversation` that
    /// `agent` is typing.
    pub async fn agent_typing(&self, agent: &AgentIdentity, conversation: Uuid) {
        self.typing(conversation, agent_participant(agent)).await;
    }

    async fn typing(&self, conversation: Uuid, from: Participant) {
        self.notify(
            &Channel::Conversation(conversation),
            &Notice::Typing {
                conversation_id: conversation,
                from,
            },
        )
        .await;
    }
}
