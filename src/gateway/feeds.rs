//! A socket's bus subscriptions, keyed by what each is for, read as one
//! stream (tokio's `StreamMap`) in the socket's `select!`. Removing a key,
//! or subscribing it again, drops its subscription at once, so the node
//! unsubscribes as soon as no socket needs the channel.
//!
//! `StreamMap` polls every subscription whenever the task wakes, a lock per
//! subscription: an agent holding dozens of conversations pays that on
//! every message (docs/benchmarks.md). A map with a waker per subscription
//! was measured cheaper, but lost a wake-up in two runs in five of the full
//! suite (an agent never shown an offer), and was taken out until that is
//! understood.

use std::hash::Hash;
use std::pin::Pin;

use futures::{FutureExt, Stream};
use tokio_stream::{StreamExt, StreamMap};

use crate::engine::{BusMessage, Channel, Engine, EngineResult};

/// `Sync`, because a socket's state is borrowed across awaits in a task
/// that must be `Send`.
type BusStream = Pin<Box<dyn Stream<Item = BusMessage> + Send + Sync>>;

pub struct Feeds<K> {
    map: StreamMap<K, BusStream>,
}

impl<K> std::fmt::Debug for Feeds<K>
where
    K: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.map.keys()).finish()
    }
}

impl<K> Default for Feeds<K> {
    fn default() -> Self {
        Self {
            map: StreamMap::new(),
        }
    }
}

impl<K: Clone + Unpin + Eq + Hash> Feeds<K> {
    /// Subscribes to `channel` under `key`, replacing what `key` had.
    pub async fn subscribe(
        &mut self,
        engine: &Engine,
        key: K,
        channel: Channel,
    ) -> EngineResult<()> {
        let subscription = engine.subscribe(channel).await?;
        let stream = futures::stream::unfold(subscription, |mut subscription| async move {
            let message = subscription.recv().await?;
            Some((message, subscription))
        });
        self.insert(key, Box::pin(stream));
        Ok(())
    }

    fn insert(&mut self, key: K, stream: BusStream) {
        self.map.insert(key, stream);
    }

    pub fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// The next message of any subscription, with its key. `None` at once
    /// when there is no subscription, so a `select!` branch on it must
    /// match `Some`.
    pub async fn next(&mut self) -> Option<(K, BusMessage)> {
        self.map.next().await
    }

    /// A message that is already waiting, if any.
    pub fn ready(&mut self) -> Option<(K, BusMessage)> {
        self.map.next().now_or_never().flatten()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// A stream fed by hand.
    fn fed() -> (mpsc::UnboundedSender<BusMessage>, BusStream) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (tx, Box::pin(stream))
    }

    fn payload(text: &'static str) -> BusMessage {
        BusMessage::Payload(bytes::Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn messages_come_in_order_and_keys_are_replaced_and_removed() {
        let mut feeds = Feeds::default();
        let (a, stream) = fed();
        feeds.insert("a", stream);
        let (b, stream) = fed();
        feeds.insert("b", stream);
        a.send(payload("1")).unwrap();
        a.send(payload("2")).unwrap();
        b.send(payload("3")).unwrap();
        let mut got = Vec::new();
        while let Some(next) = feeds.ready() {
            got.push(next);
        }
        // Each subscription's messages in order.
        let of = |key: &str| -> Vec<BusMessage> {
            got.iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, m)| m.clone())
                .collect()
        };
        assert_eq!(of("a"), vec![payload("1"), payload("2")]);
        assert_eq!(of("b"), vec![payload("3")]);

        // Subscribing a key again drops the old subscription at once.
        let (a2, stream) = fed();
        feeds.insert("a", stream);
        assert!(a.is_closed());
        a2.send(payload("4")).unwrap();
        assert_eq!(feeds.next().await, Some(("a", payload("4"))));

        feeds.remove(&"b");
        assert!(b.is_closed());
        assert!(!feeds.contains(&"b"));
        assert!(feeds.contains(&"a"));
        feeds.remove(&"a");
        assert_eq!(feeds.next().await, None, "no subscription: None at once");
    }

    #[tokio::test]
    async fn an_ended_subscription_is_dropped() {
        let mut feeds = Feeds::default();
        let (a, stream) = fed();
        feeds.insert(1, stream);
        drop(a);
        assert_eq!(feeds.next().await, None);
        assert!(!feeds.contains(&1));
    }
}
