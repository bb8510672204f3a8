//! `/api/v2/routing/queues`: where conversations wait for agents.

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{Resource, crud_routes, in_range, name};
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::records::{DEFAULT_DECLINE_COOLDOWN_SECONDS, Meta, Queue};
use crate::store::types::{OrgId, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueInput {
    name: String,
    /// Seconds an agent has to accept an offer (5 to 600, default 30).
    offer_timeout_seconds: Option<u32>,
    /// Conversations one agent handles at once (1 to 50, default 3).
    agent_capacity: Option<u32>,
    #[serde(default)]
    member_ids: Vec<Uuid>,
    /// Seconds a decline (or a lapsed offer) keeps a conversation from that
    /// agent; after it every agent may be offered it again (1 to 3600,
    /// default 60).
    decline_cooldown_seconds: Option<u32>,
    /// Seconds a conversation may wait for an agent before it ends and the
    /// visitor is told (1 to 86400); none: no limit.
    max_wait_seconds: Option<u32>,
    /// Required on update: the version read.
    version: Option<u64>,
}

impl Resource for Queue {
    type Input = QueueInput;
    type View = Queue;
    const READ_ROLE: Role = Role::Supervisor;

    fn input_version(input: &QueueInput) -> Option<u64> {
        input.version
    }

    fn build(
        input: QueueInput,
        org: OrgId,
        meta: Meta,
        _: Option<&Queue>,
        state: &AppState,
    ) -> Result<Queue, ApiError> {
        let most = state.limits.current().agent_capacity;
        let mut member_ids = input.member_ids;
        member_ids.sort();
        member_ids.dedup();
        Ok(Queue {
            meta,
            org_id: org,
            name: name("name", &input.name)?,
            offer_timeout_seconds: in_range(
                "offerTimeoutSeconds",
                input.offer_timeout_seconds.unwrap_or(30),
                5..=600,
            )?,
            agent_capacity: in_range(
                "agentCapacity",
                input.agent_capacity.unwrap_or(3.min(most)),
                1..=most,
            )?,
            member_ids,
            decline_cooldown_seconds: in_range(
                "declineCooldownSeconds",
                input
                    .decline_cooldown_seconds
                    .unwrap_or(DEFAULT_DECLINE_COOLDOWN_SECONDS),
                1..=3600,
            )?,
            max_wait_seconds: input
                .max_wait_seconds
                .map(|s| in_range("maxWaitSeconds", s, 1..=86_400))
                .transpose()?,
        })
    }

    fn view(self, _: &AppState) -> Queue {
        self
    }
}

crud_routes! {
    resource = Queue,
    input = QueueInput,
    view = Queue,
    path = "/api/v2/routing/queues",
    item = "/api/v2/routing/queues/{id}",
    tag = "queues",
}
