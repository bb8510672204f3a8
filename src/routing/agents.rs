//! Agents: presence (a heartbeat per live socket), status, and the directory
//! an agent transfers to.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::decide;
use super::model::{AgentState, AgentStatus, Notice};
use super::{
    AgentIdentity, Directory, DirectoryAgent, DirectoryQueue, Routing, RoutingError, RoutingResult,
};
use crate::engine::{Channel, Collection, Space, StashMode};
use crate::store::records::Queue;
use crate::store::types::OrgId;
use crate::store::{Record, StoreError, collection_of};

impl Routing {
    pub async fn agent_state(&self, org: OrgId, agent: Uuid) -> RoutingResult<Option<AgentState>> {
        Ok(self.store.find::<AgentState>(org, agent).await?)
    }

    /// Records that one of the agent's sockets is alive. Called when a
    /// socket opens and then periodically while it lives.
    pub async fn heartbeat(
        &self,
        agent: &AgentIdentity,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        self.engine()
            .stash(
                Space::AgentAlive,
                &agent.id.to_string(),
                b"1",
                self.config.agent_grace,
                StashMode::Replace,
            )
            .await
            .map_err(StoreError::from)?;
        self.read_modify_commit(
            move || async move { Ok(self.store.find::<AgentState>(agent.org, agent.id).await?) },
            |found, writes| {
                let (mut state, changed) = decide::arrive(found, agent, now);
                if changed {
                    writes.put(&mut state, now)?;
                }
                Ok(state)
            },
        )
        .await
    }

    /// The queues an agent takes offers from: a member's are those listing
    /// them; an API client names its own within its organization (all of
    /// them when it names none).
    pub async fn agent_queues(
        &self,
        agent: &AgentIdentity,
        requested: &[Uuid],
    ) -> RoutingResult<Vec<Uuid>> {
        let queues = self
            .store
            .list_all::<Queue>(&collection_of(Queue::KIND, agent.org))
            .await?;
        let queues = queues
            .into_iter()
            .filter(|queue| !agent.is_member || queue.member_ids.contains(&agent.id))
            .filter(|queue| requested.is_empty() || requested.contains(&queue.meta.id))
            .map(|queue| queue.meta.id)
            .collect();
        Ok(queues)
    }

    /// Where an agent may transfer a conversation: every queue of its
    /// organization, and the organization's other agents that are
    /// connected (available or away), by name.
    pub async fn directory(&self, agent: &AgentIdentity) -> RoutingResult<Directory> {
        let mut queues: Vec<DirectoryQueue> = self
            .store
            .list_all::<Queue>(&collection_of(Queue::KIND, agent.org))
            .await?
            .into_iter()
            .map(|q| DirectoryQueue {
                id: q.meta.id,
                name: q.name,
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let mut agents: Vec<DirectoryAgent> = self
            .store
            .list_all::<AgentState>(&Collection::OnlineAgents(agent.org.0))
            .await?
            .into_iter()
            .filter(|a| a.meta.id != agent.id)
            .filter(|a| a.status != AgentStatus::Offline)
            .map(|a| DirectoryAgent {
                id: a.meta.id,
                name: a.display_name,
                status: a.status,
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Directory { queues, agents })
    }

    /// Sets an agent available for the queues it named, or away.
    pub async fn set_status(
        &self,
        agent: &AgentIdentity,
        status: AgentStatus,
        queues: Vec<Uuid>,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        self.change_status(agent, status, queues, false, now).await
    }

    /// Sets an agent available without naming queues: for every queue that
    /// is its own, `queues` today and any that become its own later (a
    /// queue created afterwards, or one that lists the member later).
    pub async fn set_available_everywhere(
        &self,
        agent: &AgentIdentity,
        queues: Vec<Uuid>,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        self.change_status(agent, AgentStatus::Available, queues, true, now)
            .await
    }

    async fn change_status(
        &self,
        agent: &AgentIdentity,
        status: AgentStatus,
        queues: Vec<Uuid>,
        all_queues: bool,
        now: DateTime<Utc>,
    ) -> RoutingResult<AgentState> {
        let state = self
            .update_agent(agent.org, agent.id, now, |state| {
                decide::set_status(state, agent, status, &queues, all_queues, now);
            })
            .await?;
        self.notify(&Channel::Agent(agent.id), &Notice::AgentChanged)
            .await;
        if status == AgentStatus::Available {
            for queue in &state.queues {
                self.wake_queue(agent.org, *queue);
            }
        }
        Ok(state)
    }

    /// Applies `change` to a connected agent's state.
    pub(super) async fn update_agent(
        &self,
        org: OrgId,
        id: Uuid,
        now: DateTime<Utc>,
        mut change: impl FnMut(&mut AgentState),
    ) -> RoutingResult<AgentState> {
        self.read_modify_commit(
            move || async move {
                self.store
                    .find::<AgentState>(org, id)
                    .await?
                    .ok_or(RoutingError::NotAllowed("the agent is not connected"))
            },
            |mut state, writes| {
                change(&mut state);
                writes.put(&mut state, now)?;
                Ok(state)
            },
        )
        .await
    }
}
