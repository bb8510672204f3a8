//! The node-local side of the bus: subscriptions and their fan-out.
//!
//! A [`LocalHub`] keeps one broadcast sender per channel that has at least
//! one local [`Subscription`], so a node subscribes to each channel once
//! however many sockets watch it. Subscriptions are counted: when the last
//! one of a channel is dropped the hub forgets the channel and tells its
//! backend (the Redis bus unsubscribes; the embedded engine has nothing to
//! tell).
//!
//! Subscriptions hold the hub weakly, so once every clone of the engine is
//! gone the senders go with it and [`Subscription::recv`] answers `None`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{broadcast, mpsc};

use super::{BusMessage, Channel};

/// How far one subscriber may fall behind its channel before it is told to
/// resync instead: bounds the memory a stalled socket can pin. Every channel
/// allocates its ring up front and most have one subscriber (a session, a
/// conversation), so this is per-socket memory (64 bytes a slot): 8 slots
/// hold the bursts a conversation sees (a message, its echo, a typing
/// notice or two), and a burst beyond them costs one log read, not a
/// message.
const CHANNEL_CAPACITY: usize = 8;

/// A session's or sign-in's channel carries a notice now and then (another
/// socket opened a conversation, signed in, logged out), never a stream, and
/// every idle visitor holds one: 4 slots, and a burst beyond them costs one
/// re-read of the session.
const NOTICE_CHANNEL_CAPACITY: usize = 4;

fn capacity(channel: &Channel) -> usize {
    match channel {
        Channel::Session(_) | Channel::TokenFamily(_) => NOTICE_CHANNEL_CAPACITY,
        Channel::Conversation(_) | Channel::Agent(_) | Channel::Queue(_) => CHANNEL_CAPACITY,
    }
}

/// The channels this node has local subscribers for. Cheap to clone: clones
/// share one table.
#[derive(Clone, Debug, Default)]
pub(super) struct LocalHub {
    inner: Arc<HubInner>,
}

/// A hub held without keeping it alive, for the Redis bus task: the task
/// must end when the engine does.
#[derive(Clone, Debug)]
pub(super) struct WeakHub(Weak<HubInner>);

#[derive(Debug, Default)]
struct HubInner {
    channels: Mutex<HashMap<Channel, Entry>>,
    /// Told about each channel that lost its last local subscriber, so the
    /// Redis bus can unsubscribe. `None` when nobody needs to know.
    forgotten: Option<mpsc::UnboundedSender<Channel>>,
}

#[derive(Debug)]
struct Entry {
    sender: broadcast::Sender<BusMessage>,
    /// Live [`Subscription`]s; the receivers alone cannot tell, because a
    /// dropping subscription still holds its receiver while it reports.
    subscribers: usize,
}

impl LocalHub {
    /// A hub that reports forgotten channels on the returned receiver.
    pub(super) fn with_forget_hook() -> (Self, mpsc::UnboundedReceiver<Channel>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = HubInner {
            channels: Mutex::default(),
            forgotten: Some(tx),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    pub(super) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Adds a local subscriber. Whatever is delivered to `channel` from now
    /// on reaches it.
    pub(super) fn subscribe(&self, channel: Channel) -> Subscription {
        let mut channels = self.inner.lock();
        let entry = channels.entry(channel.clone()).or_insert_with(|| Entry {
            sender: broadcast::channel(capacity(&channel)).0,
            subscribers: 0,
        });
        entry.subscribers = entry.subscribers.saturating_add(1);
        let rx = entry.sender.subscribe();
        Subscription {
            channel,
            rx,
            hub: Arc::downgrade(&self.inner),
        }
    }

    /// Hands `message` to every local subscriber of `channel`, if any.
    pub(super) fn deliver(&self, channel: &Channel, message: BusMessage) {
        if let Some(entry) = self.inner.lock().get(channel) {
            // Fails only when no receiver is left, which a dropping
            // subscription is about to report anyway.
            let _ = entry.sender.send(message);
        }
    }

    /// Tells every local subscriber that messages may have been missed.
    pub(super) fn resync_all(&self) {
        for entry in self.inner.lock().values() {
            let _ = entry.sender.send(BusMessage::Resync);
        }
    }

    pub(super) fn contains(&self, channel: &Channel) -> bool {
        self.inner.lock().contains_key(channel)
    }

    /// The channels with local subscribers right now.
    pub(super) fn channels(&self) -> Vec<Channel> {
        self.inner.lock().keys().cloned().collect()
    }
}

impl WeakHub {
    pub(super) fn upgrade(&self) -> Option<LocalHub> {
        self.0.upgrade().map(|inner| LocalHub { inner })
    }
}

impl HubInner {
    /// The table stays consistent whatever a panicking holder did: every
    /// change to it is a single insert, remove or counter update.
    fn lock(&self) -> MutexGuard<'_, HashMap<Channel, Entry>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, channel: &Channel) {
        let forgotten = {
            let mut channels = self.lock();
            match channels.get_mut(channel) {
                Some(entry) if entry.subscribers > 1 => {
                    entry.subscribers = entry.subscribers.saturating_sub(1);
                    false
                }
                Some(_) => channels.remove(channel).is_some(),
                None => false,
            }
        };
        if forgotten && let Some(tx) = &self.forgotten {
            // Fails only when the bus task has ended, and then there is
            // nothing left to unsubscribe.
            let _ = tx.send(channel.clone());
        }
    }
}

/// A live subscription to one channel. Dropping it unsubscribes this node
/// when no other local subscriber of the channel remains.
#[derive(Debug)]
pub struct Subscription {
    pub channel: Channel,
    rx: broadcast::Receiver<BusMessage>,
    hub: Weak<HubInner>,
}

impl Subscription {
    /// The next message; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        match self.rx.recv().await {
            Ok(message) => Some(message),
            // Missed messages: the subscriber catches up from the log.
            Err(broadcast::error::RecvError::Lagged(_)) => Some(BusMessage::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.release(&self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(text: &'static str) -> BusMessage {
        BusMessage::Payload(bytes::Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn counts_subscribers_and_reports_the_last_drop() {
        let (hub, mut forgotten) = LocalHub::with_forget_hook();
        let channel = Channel::Queue(uuid::Uuid::new_v4());
        let mut a = hub.subscribe(channel.clone());
        let b = hub.subscribe(channel.clone());
        hub.deliver(&channel, payload("x"));
        assert_eq!(a.recv().await, Some(payload("x")));

        drop(b);
        assert!(hub.contains(&channel));
        assert!(forgotten.try_recv().is_err());
        drop(a);
        assert!(!hub.contains(&channel));
        assert_eq!(forgotten.try_recv().unwrap(), channel);

        // Delivering to a forgotten channel is a no-op.
        hub.deliver(&channel, payload("y"));
        assert!(hub.channels().is_empty());
    }

    #[tokio::test]
    async fn lagging_subscriber_resyncs_and_engine_drop_ends_it() {
        let hub = LocalHub::default();
        let channel = Channel::Session(uuid::Uuid::new_v4());
        let mut sub = hub.subscribe(channel.clone());
        for _ in 0..=capacity(&channel) {
            hub.deliver(&channel, payload("m"));
        }
        assert_eq!(sub.recv().await, Some(BusMessage::Resync));
        // The rest is still there; then a resync comes after it.
        let mut kept = 0;
        while let Ok(message) = sub.rx.try_recv() {
            assert_eq!(message, payload("m"));
            kept += 1;
        }
        assert_eq!(kept, NOTICE_CHANNEL_CAPACITY);
        hub.resync_all();
        assert_eq!(sub.recv().await, Some(BusMessage::Resync));
        drop(hub);
        assert_eq!(sub.recv().await, None);
    }
}
