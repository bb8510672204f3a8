//! The agent WebSocket end to end: authentication on the upgrade, hostile
//! frames and reconnects ([`socket`]); presence, offers, accept and
//! decline, messages, typing, transfers, ending with a wrap-up, timeouts
//! and lost agents ([`flows`]); who may read what ([`access`]); and the
//! terminal clients ([`terminal`]). Visitors are driven through routing
//! directly, so these tests do not depend on the guest socket.

mod access;
mod flows;
mod socket;
mod terminal;

use serde_json::{Value, json};
use switchboard::routing::model::{ConversationState, EventBody, VisitorIdentity};
use switchboard::store::records::Deployment;
use uuid::Uuid;

use crate::support::agent::Agent;
use crate::support::app::{Api, EngineKind, Setup, TestApp};
use crate::support::site::SiteSpec;

/// An organization's setup: an admin, a queue and a deployment routing to it.
struct Scene {
    app: TestApp,
    admin: String,
    queue: Uuid,
    deployment: Deployment,
}

impl Scene {
    async fn new(kind: EngineKind) -> Scene {
        Self::with(Setup::new(kind), json!({ "name": "Support" })).await
    }

    /// A node started with `setup`, and a site whose new queue is `queue`.
    async fn with(setup: Setup, queue: Value) -> Scene {
        let app = TestApp::spawn_with(setup).await;
        let site = app.site(&SiteSpec::new().queue(queue)).await;
        let deployment = app.deployment_record(site.deployment_id()).await;
        Scene {
            admin: site.admin.clone(),
            queue: site.queue_id(),
            deployment,
            app,
        }
    }

    /// An API client with `roles`: its id and an access token.
    async fn client(&self, name: &str, roles: &[&str]) -> (Uuid, String) {
        self.app.client(&self.admin, name, roles).await
    }

    async fn agent(&self, name: &str) -> (Uuid, String) {
        self.client(name, &["agent"]).await
    }

    /// A new agent `name`'s socket, its first snapshot read.
    async fn socket(&self, name: &str) -> Agent {
        let (_, token) = self.agent(name).await;
        self.app.agent(&token).await.0
    }

    /// A visitor's first message, which opens a conversation in the
    /// deployment's queue. Answers the conversation's id.
    async fn visitor(&self, text: &str, identity: Option<VisitorIdentity>) -> Uuid {
        self.app
            .visitor_opens(&self.deployment, text, identity)
            .await
    }
}

async fn create_queue(api: &Api, admin: &str, body: Value) -> Uuid {
    api.create("/api/v2/routing/queues", admin, body)
        .await
        .parse()
        .unwrap()
}

fn verified_visitor() -> VisitorIdentity {
    VisitorIdentity {
        issuer: "https://idp.example.com/".to_owned(),
        subject: "user-42".to_owned(),
        email: Some("ada@example.com".to_owned()),
        email_verified: Some(true),
        name: Some("Ada Lovelace".to_owned()),
        given_name: Some("Ada".to_owned()),
        family_name: Some("Lovelace".to_owned()),
    }
}

async fn conversation_state(app: &TestApp, id: Uuid) -> ConversationState {
    app.state()
        .routing
        .conversation(app.org(), id)
        .await
        .unwrap()
        .unwrap()
        .state
}

/// The conversation's log as the visitor's side would read it.
async fn log_of(app: &TestApp, id: Uuid) -> Vec<EventBody> {
    app.state()
        .routing
        .events_after(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.body)
        .collect()
}
