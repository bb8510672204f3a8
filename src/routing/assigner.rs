//! Who assigns a queue: one node at a time, holding the queue's lease.
//!
//! Offers used to be made by whichever request caused them (a visitor's
//! first message, an agent going available), on every node at once. Under a
//! burst every node then raced for the same agent records, and the
//! compare-and-set retries serialized the requests that waited on them. Now
//! a wake-up only pokes this node's assigner for the queue and returns; the
//! assigner makes the offers in the background:
//!
//! - **One assigner per queue.** It holds the queue's lease in the engine
//!   ([`Space::AssignLease`], value: this node's id, time to live
//!   [`RoutingConfig::assign_lease`](super::RoutingConfig), renewed every
//!   third of it). Any node can take a free lease; a lease whose holder
//!   died expires and the next node that wants it takes it.
//! - **Wakes coalesce.** A poke while the assigner runs a pass makes one
//!   more pass, however many pokes came: each pass drains the whole waiting
//!   list (see `assignment.rs`).
//! - **Wakes reach the holder on another node.** A node that finds the
//!   lease held marks the queue in the engine ([`Space::AssignWake`]) and
//!   publishes on the queue's channel; the holder, subscribed while it
//!   holds, makes a pass. It takes the mark before each pass and looks for
//!   it after letting go, so a wake that raced with its last look is never
//!   lost; a lost bus notice is found on the next renewal.
//! - **Standing by.** The node that found the lease held waits until it
//!   should have run out. If its mark is still there then, nobody took it:
//!   the holder is gone, and this node takes the lease over.
//! - **Lingering.** After a pass the holder keeps its lease: while
//!   conversations wait (for agents to free up, for a decline cool-down or
//!   a wait limit to run out, whichever comes first, and at least every
//!   [`RECHECK`]), and for a moment when none do, so the next arrival finds
//!   an assigner ready.
//!
//! The lease is about speed, not safety: every offer is still a versioned
//! commit of the conversation and the agent, so two nodes that both believe
//! they hold a lease (a paused process, a clock jump) cannot double-book an
//! agent; they only contend as nodes did before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Routing, RoutingResult};
use crate::engine::{Channel, Lease, Space, StashMode, Subscription};
use crate::store::StoreError;
use crate::store::types::OrgId;

/// How long a holder with nothing waiting keeps its lease for the next
/// arrival before it lets go.
const LINGER: Duration = Duration::from_secs(2);
/// How long a wake mark lives: well past any lease, so a node standing by
/// still finds it when the lease it waits for runs out.
const WAKE_TTL: Duration = Duration::from_secs(60);
/// A node standing by looks again this long after the holder's lease
/// should have run out.
const TAKEOVER_MARGIN: Duration = Duration::from_millis(50);
/// How long an assigner waits after a failed pass before the next.
const RETRY: Duration = Duration::from_secs(1);
/// While conversations wait, the holder looks again at least this often
/// unwoken: some changes wake nobody (an admin raising a queue's capacity or
/// adding a member to it), and a wake can be lost with a node.
const RECHECK: Duration = Duration::from_secs(10);
/// What a wake notice on a queue's channel carries: only that it came.
const WAKE_NOTICE: &[u8] = b"wake";

/// This node's assigners, one task per queue it assigns or stands by for.
#[derive(Debug)]
pub(super) struct Assigners {
    /// This node's name in the leases it holds.
    holder: String,
    slots: Mutex<HashMap<Uuid, Slot>>,
    /// Told whenever a slot rests or goes, for [`Routing::settled`].
    settled: Notify,
    /// The node shuts down: assigners let go of their leases and end.
    closed: watch::Sender<bool>,
    /// Passes made on this node, for the tests that count them.
    #[cfg(test)]
    pub(super) passes: std::sync::atomic::AtomicUsize,
}

/// One queue's assigner task, as the node's other tasks see it.
#[derive(Debug)]
struct Slot {
    /// Woken since its last pass began.
    poked: bool,
    /// Has work this node has not done yet: poked, or in a pass.
    busy: bool,
    /// Wakes the task where it waits; a wake while it is busy is kept, so
    /// it makes one more pass.
    wake: Arc<Notify>,
}

impl Assigners {
    pub(super) fn new() -> Self {
        Self {
            holder: Uuid::new_v4().to_string(),
            slots: Mutex::new(HashMap::new()),
            settled: Notify::new(),
            closed: watch::Sender::new(false),
            #[cfg(test)]
            passes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// This node's name in the leases it holds (the retention sweep's too).
    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the queue's task; answers its wake-up when there is none yet
    /// and one must be started.
    fn poke(&self, queue: Uuid) -> Option<Arc<Notify>> {
        if *self.closed.borrow() {
            return None;
        }
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&queue) {
            slot.poked = true;
            slot.busy = true;
            slot.wake.notify_one();
            return None;
        }
        let wake = Arc::new(Notify::new());
        slots.insert(
            queue,
            Slot {
                poked: true,
                busy: true,
                wake: wake.clone(),
            },
        );
        Some(wake)
    }

    /// Whether the task was woken since it last looked; it looks now.
    fn take_poke(&self, queue: Uuid) -> bool {
        self.slots()
            .get_mut(&queue)
            .is_some_and(|slot| std::mem::take(&mut slot.poked))
    }

    /// A pass begins: it covers every wake so far.
    fn begin_pass(&self, queue: Uuid) {
        if let Some(slot) = self.slots().get_mut(&queue) {
            slot.poked = false;
            slot.busy = true;
        }
    }

    /// The task has done what it was woken for (or handed it on), unless
    /// woken again meanwhile.
    fn rest(&self, queue: Uuid) {
        if let Some(slot) = self.slots().get_mut(&queue) {
            slot.busy = slot.poked;
        }
        self.settled.notify_waiters();
    }

    /// The task ends, unless it was woken since it last looked (then it
    /// goes on, and this answers false).
    fn finish(&self, queue: Uuid) -> bool {
        let mut slots = self.slots();
        if slots.get(&queue).is_some_and(|slot| slot.poked) {
            return false;
        }
        slots.remove(&queue);
        drop(slots);
        self.settled.notify_waiters();
        true
    }

    /// The task ends whatever happened meanwhile (the node shuts down).
    fn forget(&self, queue: Uuid) {
        self.slots().remove(&queue);
        self.settled.notify_waiters();
    }

    /// Whether this node has a task for the queue.
    pub(super) fn has(&self, queue: Uuid) -> bool {
        self.slots().contains_key(&queue)
    }

    fn all_resting(&self) -> bool {
        self.slots().values().all(|slot| !slot.busy)
    }

    /// Stops every assigner: they let go of their leases and end, and no
    /// new one starts.
    pub(super) fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// How an assigner's hold on its lease ended.
enum Hold {
    /// It let go (nothing to do, or the node shuts down).
    Released,
    /// Another node has it now (this one could not renew in time).
    Lost,
}

/// Keeps a lease renewed while an assigner works: [`LeaseKeeper::keep`]
/// between steps of a pass.
#[derive(Debug)]
pub(super) struct LeaseKeeper<'a> {
    routing: Option<&'a Routing>,
    queue: Uuid,
    renewed: Instant,
}

impl<'a> LeaseKeeper<'a> {
    /// The lease just taken (or renewed) for `queue`.
    fn taken(routing: &'a Routing, queue: Uuid) -> Self {
        Self {
            routing: Some(routing),
            queue,
            renewed: Instant::now(),
        }
    }

    /// No lease at all: a pass run directly (by the tests of routing).
    #[cfg(test)]
    pub(super) fn none(queue: Uuid) -> Self {
        Self {
            routing: None,
            queue,
            renewed: Instant::now(),
        }
    }

    /// When the lease is due for renewal.
    fn due(&self) -> Option<Instant> {
        let routing = self.routing?;
        Some(self.renewed + routing.config.assign_lease / 3)
    }

    /// Renews the lease once a third of it has gone. Answers whether it is
    /// still held: an assigner that lost it stops at once.
    pub(super) async fn keep(&mut self) -> RoutingResult<bool> {
        match self.due() {
            Some(due) if due <= Instant::now() => self.renew().await,
            _ => Ok(true),
        }
    }

    async fn renew(&mut self) -> RoutingResult<bool> {
        let Some(routing) = self.routing else {
            return Ok(true);
        };
        let started = Instant::now();
        let held = routing.take_lease(self.queue).await? == Lease::Held;
        if held {
            self.renewed = started;
        }
        Ok(held)
    }
}

impl Routing {
    /// Tells the queue's assigner that something changed (a conversation
    /// waits, an agent freed up). Returns at once: the offers are made by
    /// this node's assigner task, or by the node holding the queue's lease.
    pub(super) fn wake_queue(&self, org: OrgId, queue: Uuid) {
        if let Some(wake) = self.assigners.poke(queue) {
            let routing = self.clone();
            tokio::spawn(async move { routing.assigner(org, queue, wake).await });
        }
    }

    /// Waits until this node's assigners have done what they were woken
    /// for (or handed it to the node holding the lease): after it, the
    /// offers due to a change made on this node have been made. For tests,
    /// which look at the records then.
    pub async fn settled(&self) {
        loop {
            let notified = self.assigners.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.assigners.all_resting() {
                return;
            }
            notified.await;
        }
    }

    /// One queue's assigner task: takes the lease (or stands by for it),
    /// assigns while it holds it, and ends when there is nothing to do.
    async fn assigner(self, org: OrgId, queue: Uuid, wake: Arc<Notify>) {
        let mut closed = self.assigners.closed.subscribe();
        // Subscribed before the lease is taken: a wake published while
        // this node holds it is heard.
        let mut notices = match self.engine().subscribe(Channel::Queue(queue)).await {
            Ok(subscription) => Some(subscription),
            Err(e) => {
                tracing::warn!(%queue, error = %e, "no wake-ups from other nodes for this assigner; it renews and looks on its own");
                None
            }
        };
        loop {
            if *closed.borrow() {
                self.assigners.forget(queue);
                return;
            }
            let poked = self.assigners.take_poke(queue);
            let mut lease = self.take_lease(queue).await;
            let mut fresh_mark = false;
            if poked && matches!(lease, Ok(Lease::Busy { .. })) {
                // For the holder: marked before asking again, so either this
                // node gets the lease now, or the holder still had it then
                // and finds the mark when it lets go.
                fresh_mark = self.mark(queue).await;
                lease = self.take_lease(queue).await;
            }
            let again = match lease {
                Ok(Lease::Held) => {
                    match self
                        .hold(org, queue, &wake, &mut notices, &mut closed)
                        .await
                    {
                        // A wake that came as it let go.
                        Hold::Released => self.take_mark(queue).await,
                        Hold::Lost => true,
                    }
                }
                Ok(Lease::Busy { remaining }) => {
                    // A mark already there has a notice on its way, and the
                    // holder takes it before its next read: one is enough.
                    if fresh_mark
                        && let Err(e) = self
                            .engine()
                            .publish(&Channel::Queue(queue), WAKE_NOTICE)
                            .await
                    {
                        tracing::warn!(%queue, error = %e, "cannot wake the queue's assigner; it finds the mark on its next renewal");
                    }
                    self.assigners.rest(queue);
                    self.stand_by(queue, &wake, &mut closed, remaining).await
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "cannot take the queue's lease; the sweeper tries again");
                    self.assigners.rest(queue);
                    false
                }
            };
            if !again && self.assigners.finish(queue) {
                return;
            }
        }
    }

    /// Another node holds the lease: waits for this node to be woken again,
    /// or for the lease to run out. Answers whether to try again: when woken,
    /// or when this node's mark is still there after the lease ran out (the
    /// holder did not take it: it is gone).
    async fn stand_by(
        &self,
        queue: Uuid,
        wake: &Notify,
        closed: &mut watch::Receiver<bool>,
        remaining: Duration,
    ) -> bool {
        tokio::select! {
            () = wake.notified() => true,
            () = tokio::time::sleep(remaining + TAKEOVER_MARGIN) => {
                match self.engine().peek(Space::AssignWake, &queue.to_string()).await {
                    Ok(mark) => mark.is_some(),
                    Err(e) => {
                        tracing::warn!(%queue, error = %e, "cannot look for the queue's wake mark; the sweeper looks later");
                        false
                    }
                }
            }
            _ = closed.changed() => false,
        }
    }

    /// Holds the lease: passes over the queue, and lingers between them
    /// until woken, until something falls due, or, with nothing waiting,
    /// for [`LINGER`]; then lets go.
    async fn hold(
        &self,
        org: OrgId,
        queue: Uuid,
        wake: &Notify,
        notices: &mut Option<Subscription>,
        closed: &mut watch::Receiver<bool>,
    ) -> Hold {
        let mut lease = LeaseKeeper::taken(self, queue);
        loop {
            // Wakes so far are covered by this pass: a wake-up they left
            // would only make an empty one after it.
            let _ = futures::FutureExt::now_or_never(wake.notified());
            drain(notices);
            self.assigners.begin_pass(queue);
            // Taken before the pass reads the queue: whatever sets it again
            // comes after that read, and gets a pass of its own.
            self.take_mark(queue).await;
            let started = Instant::now();
            #[cfg(test)]
            self.assigners
                .passes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let outcome = self.assign_pass(org, queue, Utc::now(), &mut lease).await;
            self.assigners.rest(queue);
            let (waiting, due) = match outcome {
                Ok(Some(outcome)) => (outcome.waiting, outcome.next_due),
                Ok(None) => {
                    tracing::warn!(%queue, "lost the queue's lease during a pass; its new holder goes on");
                    return Hold::Lost;
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "assigning failed; trying again");
                    (true, Some(Utc::now() + RETRY))
                }
            };
            tracing::debug!(%queue, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, waiting, "assignment pass");
            let due = due.map(|at| {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                Instant::now() + wait
            });
            let recheck = waiting.then(|| Instant::now() + RECHECK);
            let due = due.into_iter().chain(recheck).min();
            let idle_until = (!waiting).then(|| Instant::now() + LINGER);
            loop {
                let renew_at = lease.due().unwrap_or_else(Instant::now);
                tokio::select! {
                    () = wake.notified() => break,
                    heard = next_notice(notices) => {
                        if heard {
                            break;
                        }
                        // The subscription ended: renewals look instead.
                        *notices = None;
                    }
                    () = until(due) => break,
                    () = until(idle_until) => {
                        self.let_go(queue).await;
                        return Hold::Released;
                    }
                    _ = closed.changed() => {
                        self.let_go(queue).await;
                        return Hold::Released;
                    }
                    () = tokio::time::sleep_until(renew_at) => {
                        match lease.renew().await {
                            Ok(true) => {}
                            Ok(false) => return Hold::Lost,
                            Err(e) => {
                                tracing::warn!(%queue, error = %e, "cannot renew the queue's lease; trying again");
                                tokio::time::sleep(RETRY).await;
                            }
                        }
                        // A wake whose notice was lost on the bus.
                        if let Ok(Some(_)) = self.engine().peek(Space::AssignWake, &queue.to_string()).await {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Takes the queue's lease for this node, or renews it.
    async fn take_lease(&self, queue: Uuid) -> RoutingResult<Lease> {
        Ok(self
            .engine()
            .lease(
                Space::AssignLease,
                &queue.to_string(),
                self.assigners.holder.as_bytes(),
                self.config.assign_lease,
            )
            .await
            .map_err(StoreError::from)?)
    }

    /// Lets go of the lease, so the next node need not wait for it to run
    /// out.
    async fn let_go(&self, queue: Uuid) {
        let released = self
            .engine()
            .release(
                Space::AssignLease,
                &queue.to_string(),
                self.assigners.holder.as_bytes(),
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(%queue, error = %e, "cannot release the queue's lease; it runs out");
        }
    }

    /// Marks the queue as having news for whoever holds its lease. Answers
    /// whether the mark is new (or unknown): then the holder needs telling.
    async fn mark(&self, queue: Uuid) -> bool {
        let marked = self
            .engine()
            .stash(
                Space::AssignWake,
                &queue.to_string(),
                b"1",
                WAKE_TTL,
                StashMode::IfAbsent,
            )
            .await;
        marked.unwrap_or_else(|e| {
            tracing::warn!(%queue, error = %e, "cannot mark the queue for its assigner; the sweeper finds it");
            true
        })
    }

    /// Takes the queue's wake mark; answers whether there was one.
    async fn take_mark(&self, queue: Uuid) -> bool {
        match self
            .engine()
            .take(Space::AssignWake, &queue.to_string())
            .await
        {
            Ok(mark) => mark.is_some(),
            Err(e) => {
                tracing::warn!(%queue, error = %e, "cannot read the queue's wake mark");
                false
            }
        }
    }
}

/// The next message on the queue's channel (any message is a wake); false
/// when the subscription ended. Never resolves without a subscription.
async fn next_notice(notices: &mut Option<Subscription>) -> bool {
    match notices {
        Some(subscription) => subscription.recv().await.is_some(),
        None => std::future::pending().await,
    }
}

/// Drops the notices already heard: the pass about to begin covers them.
fn drain(notices: &mut Option<Subscription>) {
    while let Some(subscription) = notices.as_mut() {
        match futures::FutureExt::now_or_never(subscription.recv()) {
            Some(Some(_)) => {}
            Some(None) => *notices = None,
            None => return,
        }
    }
}

/// Sleeps until `at`, or forever.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
