//! The other side of a conversation driven through routing directly, so a
//! socket test depends on one socket only: a visitor's first message for
//! the agent socket's tests, an agent who accepts for the guest socket's.

use chrono::Utc;
use serde_json::json;
use switchboard::engine::{Channel, Subscription};
use switchboard::routing::model::{
    AgentStatus, EventBody, Notice, Participant, VisitorIdentity, session_id,
};
use switchboard::routing::{AgentIdentity, NewEvent};
use switchboard::store::records::{ConfigurationContent, Deployment};
use uuid::Uuid;

use super::app::TestApp;

/// A text message, without a client message id.
pub(crate) fn text_event(text: &str) -> NewEvent {
    NewEvent {
        body: EventBody::text(text, None),
        dedup: None,
    }
}

/// The configuration content a visitor's post is checked against.
pub(crate) fn chat_content() -> ConfigurationContent {
    serde_json::from_value(json!({ "name": "Chat" })).unwrap()
}

impl TestApp {
    /// An agent of the default organization, not a member.
    pub(crate) fn agent_identity(&self, name: &str) -> AgentIdentity {
        AgentIdentity {
            id: Uuid::new_v4(),
            org: self.state().auth.default_org(),
            name: name.to_owned(),
            is_member: false,
        }
    }

    /// An agent "Ada", available on `queue`, who accepts `conversation`
    /// (waiting there).
    pub(crate) async fn agent_accepts(&self, queue: Uuid, conversation: Uuid) -> AgentIdentity {
        let routing = &self.state().routing;
        let ada = self.agent_identity("Ada");
        routing.heartbeat(&ada, Utc::now()).await.unwrap();
        routing
            .set_status(&ada, AgentStatus::Available, vec![queue], Utc::now())
            .await
            .unwrap();
        // Offers are made by the queue's assigner, after the call.
        routing.settled().await;
        routing
            .accept(&ada, conversation, Utc::now())
            .await
            .unwrap();
        ada
    }

    /// The deployment record `id`, as routing takes it.
    pub(crate) async fn deployment_record(&self, id: Uuid) -> Deployment {
        self.state()
            .store
            .locate::<Deployment>(id)
            .await
            .unwrap()
            .unwrap()
    }

    /// A new visitor's first message (as `identity`, when signed in),
    /// which opens a conversation in the deployment's queue. Answers the
    /// conversation's id.
    pub(crate) async fn visitor_opens(
        &self,
        deployment: &Deployment,
        text: &str,
        identity: Option<VisitorIdentity>,
    ) -> Uuid {
        let routing = &self.state().routing;
        let session = session_id(&Uuid::new_v4().to_string());
        routing
            .open_session(session, deployment, Utc::now())
            .await
            .unwrap();
        if let Some(identity) = identity {
            routing
                .update_session(deployment.org_id, session, |s| {
                    s.identity = Some(identity.clone());
                    Ok(())
                })
                .await
                .unwrap();
        }
        let (conversation, _, _) = routing
            .visitor_post(
                session,
                deployment,
                &chat_content(),
                text_event(text),
                Utc::now(),
            )
            .await
            .unwrap();
        conversation.meta.id
    }

    /// `from` types in `conversation`: the notice routing publishes.
    pub(crate) async fn typing(&self, conversation: Uuid, from: Participant) {
        self.state()
            .routing
            .notify(
                &Channel::Conversation(conversation),
                &Notice::Typing {
                    conversation_id: conversation,
                    from,
                },
            )
            .await;
    }

    /// A subscription to `conversation`'s channel on the node's bus.
    pub(crate) async fn watch(&self, conversation: Uuid) -> Subscription {
        self.state()
            .store
            .engine()
            .subscribe(Channel::Conversation(conversation))
            .await
            .unwrap()
    }
}
