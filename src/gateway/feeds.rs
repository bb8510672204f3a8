//! A socket's bus subscriptions, keyed by what each is for, read as one
//! stream in the socket's `select!`.
//!
//! An agent follows every conversation it holds, dozens of them, and most
//! are quiet at any moment. A map that polls every subscription whenever the
//! task wakes (tokio's `StreamMap`) pays a lock per subscription per wake, so
//! an agent's cost per message grew with its conversations. Here each
//! subscription has a waker of its own that queues its slot: a wake polls
//! only the subscriptions that have something, whatever their number.
//!
//! Removing a key (or subscribing it again) drops its subscription at once,
//! so the node unsubscribes as soon as no socket needs the channel.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use futures::{FutureExt, Stream};

use crate::engine::{BusMessage, Channel, Engine, EngineResult};

/// `Sync`, because a socket's state is borrowed across awaits in a task
/// that must be `Send`.
type BusStream = Pin<Box<dyn Stream<Item = BusMessage> + Send + Sync>>;

pub struct Feeds<K> {
    /// Subscriptions by slot; a removed one leaves `None` for the next.
    slots: Vec<Option<Feed<K>>>,
    woken: Arc<Woken>,
    /// The woken slots being polled (kept to reuse its allocation).
    polling: Vec<usize>,
}

struct Feed<K> {
    key: K,
    stream: BusStream,
    waker: Arc<SlotWaker>,
}

/// The slots whose subscription woke, in order, and the socket's task.
#[derive(Default)]
struct Woken {
    slots: Mutex<Vec<usize>>,
    task: AtomicWaker,
}

impl Woken {
    fn push(&self, slot: usize) {
        self.requeue(slot);
        self.task.wake();
    }

    /// Queues `slot` without waking the task: for the poll itself, which
    /// is answering a message, so its caller polls again anyway.
    fn requeue(&self, slot: usize) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot);
    }

    /// Swaps the woken slots, oldest first, for `empty`.
    fn take(&self, empty: &mut Vec<usize>) {
        std::mem::swap(
            &mut *self.slots.lock().unwrap_or_else(PoisonError::into_inner),
            empty,
        );
    }
}

/// One subscription's waker: queues its slot once until it is polled.
struct SlotWaker {
    slot: usize,
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.woken.push(self.slot);
        }
    }
}

impl<K> std::fmt::Debug for Feeds<K>
where
    K: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().flatten().map(|feed| &feed.key))
            .finish()
    }
}

impl<K> Default for Feeds<K> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            woken: Arc::default(),
            polling: Vec::new(),
        }
    }
}

impl<K: Clone + Eq> Feeds<K> {
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
        self.remove(&key);
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let waker = Arc::new(SlotWaker {
            slot,
            queued: AtomicBool::new(false),
            woken: self.woken.clone(),
        });
        // A new subscription is polled once, which registers its waker.
        waker.wake_by_ref();
        if let Some(place) = self.slots.get_mut(slot) {
            *place = Some(Feed { key, stream, waker });
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(place) = self
            .slots
            .iter_mut()
            .find(|place| place.as_ref().is_some_and(|feed| feed.key == *key))
        {
            *place = None;
        }
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.slots.iter().flatten().any(|feed| feed.key == *key)
    }

    /// Polls the subscriptions that woke since the last poll, oldest first,
    /// until one has a message.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(K, BusMessage)>> {
        if self.slots.is_empty() {
            return Poll::Ready(None);
        }
        self.woken.task.register(cx.waker());
        let mut polling = std::mem::take(&mut self.polling);
        self.woken.take(&mut polling);
        let mut found = None;
        for (at, &slot) in polling.iter().enumerate() {
            // A slot's waker may outlive its subscription: the slot is
            // empty, or holds another one, which a spare poll does not hurt.
            let Some(Some(feed)) = self.slots.get_mut(slot) else {
                continue;
            };
            feed.waker.queued.store(false, Ordering::Release);
            let waker = Waker::from(feed.waker.clone());
            match feed
                .stream
                .as_mut()
                .poll_next(&mut Context::from_waker(&waker))
            {
                Poll::Ready(Some(message)) => {
                    found = Some((feed.key.clone(), message));
                    // The slots not reached go first next time, then this
                    // one, which may hold more: a busy conversation does not
                    // keep the others waiting.
                    let waker = feed.waker.clone();
                    for &rest in polling.get(at + 1..).unwrap_or_default() {
                        self.woken.requeue(rest);
                    }
                    if !waker.queued.swap(true, Ordering::AcqRel) {
                        self.woken.requeue(slot);
                    }
                    break;
                }
                Poll::Ready(None) => {
                    if let Some(place) = self.slots.get_mut(slot) {
                        *place = None;
                    }
                }
                Poll::Pending => {}
            }
        }
        polling.clear();
        self.polling = polling;
        match found {
            Some(found) => Poll::Ready(Some(found)),
            None if self.slots.iter().all(Option::is_none) => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// The next message of any subscription, with its key. `None` at once
    /// when there is no subscription, so a `select!` branch on it must
    /// match `Some`.
    pub async fn next(&mut self) -> Option<(K, BusMessage)> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// A message that is already waiting, if any.
    pub fn ready(&mut self) -> Option<(K, BusMessage)> {
        self.next().now_or_never().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::mpsc;

    use super::*;

    /// A stream fed by hand that counts its polls.
    fn counted(polls: Arc<AtomicUsize>) -> (mpsc::UnboundedSender<BusMessage>, BusStream) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stream = futures::stream::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            rx.poll_recv(cx)
        });
        (tx, Box::pin(stream))
    }

    fn payload(text: &'static str) -> BusMessage {
        BusMessage::Payload(bytes::Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn a_wake_polls_only_the_subscription_that_has_a_message() {
        let mut feeds = Feeds::default();
        let polls: Vec<_> = (0..50).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let mut senders = Vec::new();
        for (key, polls) in polls.iter().enumerate() {
            let (tx, stream) = counted(polls.clone());
            feeds.insert(key, stream);
            senders.push(tx);
        }
        assert_eq!(feeds.ready(), None);
        let before: Vec<usize> = polls.iter().map(|p| p.load(Ordering::Relaxed)).collect();

        let busy = [3, 17, 42];
        for round in 0..10 {
            let key = busy[round % busy.len()];
            senders[key].send(payload("m")).unwrap();
            assert_eq!(feeds.next().await, Some((key, payload("m"))));
        }
        let polled: Vec<usize> = (0..50)
            .filter(|&k| polls[k].load(Ordering::Relaxed) != before[k])
            .collect();
        assert_eq!(
            polled, busy,
            "only the subscriptions with messages are polled"
        );
    }

    #[tokio::test]
    async fn messages_come_in_order_and_keys_are_replaced_and_removed() {
        let mut feeds = Feeds::default();
        let (a, stream) = counted(Arc::default());
        feeds.insert("a", stream);
        let (b, stream) = counted(Arc::default());
        feeds.insert("b", stream);
        a.send(payload("1")).unwrap();
        a.send(payload("2")).unwrap();
        b.send(payload("3")).unwrap();
        let mut got = Vec::new();
        while let Some(next) = feeds.ready() {
            got.push(next);
        }
        // Each subscription's messages in order; a busy one waits its turn
        // behind the others that woke.
        assert_eq!(
            got,
            vec![
                ("a", payload("1")),
                ("b", payload("3")),
                ("a", payload("2"))
            ]
        );

        // Subscribing a key again drops the old subscription at once.
        let (a2, stream) = counted(Arc::default());
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
        let (a, stream) = counted(Arc::default());
        feeds.insert(1, stream);
        drop(a);
        assert_eq!(feeds.next().await, None);
        assert!(!feeds.contains(&1));
    }
}
