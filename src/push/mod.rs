//! Push notifications: when an agent writes to a visitor whose app is in
//! the background (a push device registered for the session, no socket
//! open), the app gets a notification through FCM or APNs.
//!
//! The agent's message is logged first; a notification is a job in an
//! outbox of the engine (`Collection::PushOutbox`, ordered by when it is
//! due), written by the node that logged the message. One node at a time
//! sends: the holder of [`Space::PushLease`]. A job leaves the outbox once
//! its push was accepted by the service, refused for good (an unregistered
//! device is removed with it), or found unnecessary (the visitor came back,
//! the device is gone, notifications were turned off); otherwise it is
//! retried with a growing backoff. A node that dies mid-send leaves the job
//! for the next holder: a push is delivered at least once, and no two
//! nodes send the same job.
//!
//! Whether a visitor is here is [`Space::GuestOnline`], kept by the guest
//! sockets of deployments with notifications on (refreshed with their
//! pings). It is read when the job would be written (a visitor who saw the
//! message is not told of it after leaving) and again when it is sent (a
//! visitor who came back in between gets the message on the socket only).

mod apns;
mod fcm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::PushConfig;
use crate::engine::{
    Collection, Commit, Expect, Home, Kind, Lease, Put, RecordKey, Space, StashMode,
};
use crate::routing::model::{Conversation, EventBody, LogEvent};
use crate::store::push_devices::PushProvider;
use crate::store::records::NotificationContentType;
use crate::store::types::OrgId;
use crate::store::{Store, StoreError};

/// How long a guest socket's presence lasts without a refresh: a little
/// over two of its ping intervals.
pub const ONLINE_TTL: Duration = Duration::from_secs(70);
/// How often the outbox is looked at by the node holding it.
const POLL: Duration = Duration::from_secs(1);
/// The outbox lease: renewed every poll, lost this long after its holder
/// stopped.
const LEASE_TTL: Duration = Duration::from_secs(15);
const LEASE_ID: &str = "outbox";
/// Jobs read per poll, and sent at once.
const BATCH: u64 = 100;
const CONCURRENT_SENDS: usize = 16;
/// Attempts before a job is given up.
const MAX_ATTEMPTS: u32 = 10;
/// The first retry's wait; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a deployment's notifications setting is believed.
const SETTING_TTL: Duration = Duration::from_secs(30);
/// How long one request to a push service may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest message text a notification carries.
const MAX_BODY_CHARS: usize = 180;
/// The notification of a message whose text it may not show.
const WITHOUT_CONTENT: &str = "You have a new message";
const TITLE: &str = "New message";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push: {0}")]
    Setup(String),
}

/// What one notification says, and what the app needs to open the chat.
#[derive(Clone, Debug)]
pub(crate) struct Note {
    pub title: String,
    pub body: String,
    pub deployment_id: Uuid,
    pub conversation_id: Uuid,
    pub sequence: u64,
}

/// What a push service made of one request.
#[derive(Debug)]
pub(crate) enum Sent {
    Delivered,
    /// The device token is no longer valid: remove the device.
    Unregistered,
    /// Try again later (after the service's `Retry-After`, when it gave
    /// one).
    Retry(Option<Duration>, String),
    /// Refused for a reason a retry does not fix.
    Rejected(String),
}

/// A notification waiting in the outbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    org_id: OrgId,
    conversation_id: Uuid,
    sequence: u64,
    due_at: DateTime<Utc>,
    attempts: u32,
}

impl Job {
    fn key(&self) -> RecordKey {
        RecordKey::new(
            Home::Org(self.org_id.0),
            Kind::Setting,
            format!("pushjob/{}/{}", self.conversation_id, self.sequence),
        )
    }
}

/// The node's push delivery; a no-op when no service is configured.
#[derive(Clone, Debug)]
pub struct Pusher(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    store: Store,
    fcm: Option<fcm::Fcm>,
    apns: Option<apns::Apns>,
    /// Whether a deployment sends notifications, and since when known.
    settings: Mutex<HashMap<Uuid, (bool, Instant)>>,
    /// This node's lease holder id.
    holder: Vec<u8>,
}

impl Pusher {
    pub fn new(store: Store, config: &PushConfig) -> Result<Self, PushError> {
        if !config.any() {
            return Ok(Self(None));
        }
        let fcm = config.fcm.clone().map(fcm::Fcm::new).transpose()?;
        let apns = config.apns.clone().map(apns::Apns::new).transpose()?;
        Ok(Self(Some(Arc::new(Inner {
            store,
            fcm,
            apns,
            settings: Mutex::new(HashMap::new()),
            holder: Uuid::new_v4().as_bytes().to_vec(),
        }))))
    }

    /// Whether this node delivers pushes at all.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Marks `session` as having a socket open (for [`ONLINE_TTL`]).
    pub async fn online(&self, session: Uuid) {
        if let Some(inner) = &self.0 {
            let engine = inner.store.engine();
            if let Err(e) = engine
                .stash(
                    Space::GuestOnline,
                    &session.to_string(),
                    b"1",
                    ONLINE_TTL,
                    StashMode::Replace,
                )
                .await
            {
                tracing::debug!(error = %e, "cannot mark a guest session online");
            }
        }
    }

    /// Marks `session` as having no socket open on this node any more.
    pub async fn offline(&self, session: Uuid) {
        if let Some(inner) = &self.0
            && let Err(e) = inner
                .store
                .engine()
                .discard(Space::GuestOnline, &session.to_string())
                .await
        {
            tracing::debug!(error = %e, "cannot mark a guest session offline");
        }
    }

    /// An agent's message `sequence` was logged in conversation `to`: queue
    /// its notification when the deployment sends them. Never fails the
    /// message: a job that cannot be written is logged and lost.
    pub async fn agent_message(&self, to: &Conversation, sequence: u64) {
        let Some(inner) = &self.0 else { return };
        let conversation = to.meta.id;
        // A visitor who is here sees the message on their socket; one who
        // leaves right after must not be told of it again.
        if !inner.notifies(to.deployment_id).await || inner.is_online(to.session_id).await {
            return;
        }
        let job = Job {
            org_id: to.org_id,
            conversation_id: conversation,
            sequence,
            due_at: Utc::now(),
            attempts: 0,
        };
        if let Err(e) = inner.put(&job, Expect::Absent).await
            && !matches!(e, StoreError::Conflict(_))
        {
            tracing::warn!(error = %e, %conversation, "cannot queue a push notification");
        }
    }

    /// Sends due notifications whenever this node holds the outbox lease,
    /// until `stop` resolves.
    pub async fn deliver_until(self, stop: impl Future<Output = ()>) {
        let Some(inner) = self.0 else { return };
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => inner.poll().await,
            }
        }
        let _ = inner
            .store
            .engine()
            .release(Space::PushLease, LEASE_ID, &inner.holder)
            .await;
    }
}

impl Inner {
    async fn notifies(&self, deployment: Uuid) -> bool {
        if let Ok(settings) = self.settings.lock()
            && let Some((on, at)) = settings.get(&deployment)
            && at.elapsed() < SETTING_TTL
        {
            return *on;
        }
        let on = match self.store.active_deployment(deployment).await {
            Ok((_, published)) => {
                published
                    .content
                    .messenger
                    .apps
                    .conversations
                    .notifications
                    .enabled
            }
            Err(_) => false,
        };
        if let Ok(mut settings) = self.settings.lock() {
            if settings.len() > 10_000 {
                settings.clear();
            }
            settings.insert(deployment, (on, Instant::now()));
        }
        on
    }

    /// Whether a socket of `session` is open, as far as presence tells; a
    /// presence that cannot be read counts as away (a push too many rather
    /// than one missing).
    async fn is_online(&self, session: Uuid) -> bool {
        matches!(
            self.store
                .engine()
                .peek(Space::GuestOnline, &session.to_string())
                .await,
            Ok(Some(_))
        )
    }

    async fn put(&self, job: &Job, expect: Expect) -> Result<(), StoreError> {
        let put = Put {
            key: job.key(),
            expect,
            body: crate::store::encode(job)?,
            collection: Collection::PushOutbox(job.org_id.0),
            order: job.due_at.timestamp_millis(),
            refs: Vec::new(),
            unique: Vec::new(),
        };
        self.store.commit(Commit::new().put(put)).await
    }

    async fn poll(&self) {
        let engine = self.store.engine();
        match engine
            .lease(Space::PushLease, LEASE_ID, &self.holder, LEASE_TTL)
            .await
        {
            Ok(Lease::Held) => {}
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot take the push outbox lease");
                return;
            }
        }
        // Each organization keeps its outbox in its own home; a contact
        // center has few organizations, and most outboxes are empty.
        let orgs = match self.store.all_organizations().await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organizations for the push outbox");
                return;
            }
        };
        let now = Utc::now();
        let mut due: Vec<(Job, u64)> = Vec::new();
        for org in orgs {
            let page = match engine
                .list(&Collection::PushOutbox(org.meta.id), 0, BATCH)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the push outbox");
                    return;
                }
            };
            due.extend(page.records.into_iter().filter_map(|stored| {
                let job: Job = serde_json::from_slice(&stored.body).ok()?;
                (job.due_at <= now).then_some((job, stored.version))
            }));
        }
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENT_SENDS, |(job, version)| async move {
                self.attempt(job, version).await;
            })
            .await;
    }

    /// One try of one job, and what becomes of it.
    async fn attempt(&self, job: Job, version: u64) {
        let sent = self.send(&job).await;
        let done = match sent {
            Ok(Some(Sent::Delivered)) => {
                tracing::info!(conversation = %job.conversation_id, sequence = job.sequence, "push notification sent");
                true
            }
            Ok(None) => true,
            Ok(Some(Sent::Unregistered)) => true,
            Ok(Some(Sent::Rejected(why))) => {
                tracing::warn!(conversation = %job.conversation_id, reason = %why, "push notification refused; not retried");
                true
            }
            Ok(Some(Sent::Retry(after, why))) => {
                self.retry(job.clone(), version, after, &why).await;
                false
            }
            Err(e) => {
                self.retry(job.clone(), version, None, &e.to_string()).await;
                false
            }
        };
        if done
            && let Err(e) = self
                .store
                .commit(Commit::new().delete(job.key(), Expect::Version(version)))
                .await
        {
            tracing::debug!(error = %e, "cannot remove a finished push job");
        }
    }

    async fn retry(&self, mut job: Job, version: u64, after: Option<Duration>, why: &str) {
        job.attempts += 1;
        if job.attempts >= MAX_ATTEMPTS {
            tracing::warn!(conversation = %job.conversation_id, reason = %why, "push notification given up after {MAX_ATTEMPTS} attempts");
            let _ = self
                .store
                .commit(Commit::new().delete(job.key(), Expect::Version(version)))
                .await;
            return;
        }
        let wait = after
            .unwrap_or_else(|| backoff(job.attempts))
            .min(MAX_BACKOFF);
        tracing::debug!(conversation = %job.conversation_id, reason = %why, seconds = wait.as_secs(), "push notification to be retried");
        job.due_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        if let Err(e) = self.put(&job, Expect::Version(version)).await {
            tracing::debug!(error = %e, "cannot reschedule a push job");
        }
    }

    /// Sends `job`'s notification; `None` when none is needed any more.
    async fn send(&self, job: &Job) -> Result<Option<Sent>, StoreError> {
        let Some(conversation) = self
            .store
            .find::<Conversation>(job.org_id, job.conversation_id)
            .await?
        else {
            return Ok(None);
        };
        let session = conversation.session_id;
        if self.is_online(session).await {
            return Ok(None);
        }
        let Some(device) = self
            .store
            .push_device(conversation.org_id, conversation.deployment_id, session)
            .await?
            .filter(|d| d.live_at(Utc::now()))
        else {
            return Ok(None);
        };
        let content = match self
            .store
            .active_deployment(conversation.deployment_id)
            .await
        {
            Ok((_, published)) => published.content,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let notifications = content.messenger.apps.conversations.notifications;
        if !notifications.enabled {
            return Ok(None);
        }
        let body = match notifications.notification_content_type {
            NotificationContentType::ExcludeMessagesContent => WITHOUT_CONTENT.to_owned(),
            NotificationContentType::IncludeMessagesContent => self
                .text_of(job)
                .await?
                .unwrap_or_else(|| WITHOUT_CONTENT.to_owned()),
        };
        let note = Note {
            title: TITLE.to_owned(),
            body,
            deployment_id: conversation.deployment_id,
            conversation_id: conversation.meta.id,
            sequence: job.sequence,
        };
        let token = device.device_token.as_str();
        let sent = match device.provider {
            PushProvider::FCM => match &self.fcm {
                Some(fcm) => fcm.send(token, &note).await,
                None => Sent::Rejected("FCM is not configured on this node".to_owned()),
            },
            PushProvider::APNS => match &self.apns {
                Some(apns) => apns.send(token, &note).await,
                None => Sent::Rejected("APNs is not configured on this node".to_owned()),
            },
        };
        if let Sent::Unregistered = sent {
            tracing::info!(deployment = %conversation.deployment_id, "the push service no longer knows a device; its registration is removed");
            match self
                .store
                .delete_push_device(
                    conversation.org_id,
                    conversation.deployment_id,
                    session,
                    device.version,
                )
                .await
            {
                Ok(()) | Err(StoreError::NotFound | StoreError::Stale { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(sent))
    }

    /// The text of the message a job is about, shortened for a
    /// notification.
    async fn text_of(&self, job: &Job) -> Result<Option<String>, StoreError> {
        let events = self
            .store
            .engine()
            .read_log(job.conversation_id, job.sequence.saturating_sub(1), 1)
            .await?;
        let Some(entry) = events.into_iter().next() else {
            return Ok(None);
        };
        let Ok(event) = serde_json::from_slice::<LogEvent>(&entry.body) else {
            return Ok(None);
        };
        Ok(match event.body {
            EventBody::Message {
                text: Some(text), ..
            } if !text.trim().is_empty() => Some(shorten(&text)),
            _ => None,
        })
    }
}

/// A service credential (an access token, a provider token), reused
/// until it is due for renewal.
#[derive(Debug, Default)]
struct Credential(tokio::sync::Mutex<Option<(secrecy::SecretString, Instant)>>);

impl Credential {
    /// The held credential while it is good, else a new one from `make`,
    /// which answers it and when to renew it. Callers queue behind one
    /// renewal rather than each making their own.
    async fn get<F>(&self, make: impl FnOnce() -> F) -> Result<secrecy::SecretString, Sent>
    where
        F: Future<Output = Result<(secrecy::SecretString, Instant), Sent>>,
    {
        let mut held = self.0.lock().await;
        if let Some((credential, renew_at)) = held.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(credential.clone());
        }
        let (credential, renew_at) = make().await?;
        *held = Some((credential.clone(), renew_at));
        Ok(credential)
    }

    /// Drops the held credential: the service refused it.
    async fn forget(&self) {
        *self.0.lock().await = None;
    }
}

/// An HTTP client for a push service: bounded in time, no redirects.
fn service_client(http2_only: bool) -> Result<reqwest::Client, PushError> {
    let mut builder = reqwest::Client::builder()
        .timeout(SERVICE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().map_err(|e| PushError::Setup(e.to_string()))
}

fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_BODY_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_BODY_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert!(backoff(30).min(MAX_BACKOFF) == MAX_BACKOFF);
    }

    #[test]
    fn long_messages_are_cut_for_a_notification() {
        assert_eq!(shorten("  hi  "), "hi");
        let long = "é".repeat(500);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_BODY_CHARS);
        assert!(short.ends_with('…'));
    }
}
