//! Ephemeral values a crash may lose, in memory.
//!
//! Leases, wake marks, presence and the counters behind abuse bounds
//! ([`Space::outlives_a_crash`] is false for their spaces) are rebuilt or
//! done without by a restarted node, and on one node nobody else reads
//! them. Kept in the database, each cost a write transaction, and redb runs
//! one at a time: in a burst of arrivals every visitor's counters queued
//! behind the log writer's fsyncs, and first messages waited over a second
//! for their acknowledgement while the disk caught up (docs/benchmarks.md).
//! Here one costs a lock and a map entry.
//!
//! [`Space::outlives_a_crash`]: crate::engine::Space::outlives_a_crash

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::engine::EngineResult;

/// The fewest entries the map holds before it is swept of expired ones.
const MIN_SWEEP: usize = 1024;

/// What an ephemeral operation needs of where its values live: the redb
/// table for values that must outlive a crash (its side is in
/// `ephemeral`), [`Volatile`]'s map for the others. Operations are written
/// once, against this.
pub(super) trait Slots {
    /// The value at `key` with its expiry (Unix milliseconds), unless it
    /// has expired at `now`.
    fn live(&self, key: &str, now: u64) -> EngineResult<Option<(u64, Vec<u8>)>>;
    fn put(&mut self, key: &str, expires: u64, value: &[u8]) -> EngineResult<()>;
    fn remove(&mut self, key: &str) -> EngineResult<()>;
}

/// The values of the spaces a crash may lose.
#[derive(Debug, Default)]
pub(super) struct Volatile {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Key → (expiry in Unix milliseconds, value).
    map: HashMap<String, (u64, Vec<u8>)>,
    /// The size at which the map is next swept: twice what the last sweep
    /// left, so sweeping costs O(1) per write on average and the map stays
    /// within twice its live entries.
    sweep_at: usize,
}

impl Slots for State {
    fn live(&self, key: &str, now: u64) -> EngineResult<Option<(u64, Vec<u8>)>> {
        Ok(self
            .map
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(expires, value)| (*expires, value.clone())))
    }

    fn put(&mut self, key: &str, expires: u64, value: &[u8]) -> EngineResult<()> {
        match self.map.get_mut(key) {
            Some(entry) => {
                entry.0 = expires;
                entry.1.clear();
                entry.1.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_owned(), (expires, value.to_vec()));
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: &str) -> EngineResult<()> {
        self.map.remove(key);
        Ok(())
    }
}

impl State {
    /// Drops every entry expired at `now`; answers how many.
    fn sweep(&mut self, now: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, (expires, _)| *expires > now);
        self.sweep_at = self.map.len().saturating_mul(2);
        before - self.map.len()
    }
}

impl Volatile {
    /// Runs `work` on the map at `now`, under its lock: atomic like a
    /// transaction, and as short as the work, which reads and writes a few
    /// entries (and now and then sweeps the map first).
    pub(super) fn with<T>(
        &self,
        now: u64,
        work: impl FnOnce(&mut dyn Slots, u64) -> EngineResult<T>,
    ) -> EngineResult<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.map.len() >= state.sweep_at.max(MIN_SWEEP) {
            state.sweep(now);
        }
        work(&mut *state, now)
    }

    /// Drops every entry expired at `now` (the engine's periodic sweep);
    /// answers how many.
    pub(super) fn sweep(&self, now: u64) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(now)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_invisible_and_swept_as_the_map_grows() {
        let volatile = Volatile::default();
        let now = 1_000_000;
        let fill = |prefix: &str, expires: u64| {
            volatile
                .with(now, |slots, _| {
                    for i in 0..MIN_SWEEP {
                        slots.put(&format!("{prefix}:{i}"), expires, b"x")?;
                    }
                    Ok(())
                })
                .unwrap();
        };
        fill("old", now + 10);
        let later = now + 20;
        let seen = volatile.with(later, |slots, now| slots.live("old:1", now));
        assert_eq!(seen.unwrap(), None);
        // That access found the map at its threshold and swept it.
        assert_eq!(volatile.len(), 0);
        // Live entries survive a sweep, which then waits for twice as many.
        fill("live", later + 1000);
        volatile.with(later, |_, _| Ok(())).unwrap();
        assert_eq!(volatile.len(), MIN_SWEEP);
        fill("more", now + 10);
        assert_eq!(volatile.len(), 2 * MIN_SWEEP);
        volatile
            .with(later, |slots, now| slots.put("one", now + 10, b"y"))
            .unwrap();
        assert_eq!(volatile.len(), MIN_SWEEP + 1);
        let kept = volatile.with(later, |slots, now| slots.live("one", now));
        assert_eq!(kept.unwrap().map(|(_, v)| v), Some(b"y".to_vec()));
    }

    #[test]
    fn a_sweep_keeps_live_entries() {
        let volatile = Volatile::default();
        volatile
            .with(100, |slots, _| {
                slots.put("short", 150, b"a")?;
                slots.put("long", 500, b"b")
            })
            .unwrap();
        assert_eq!(volatile.sweep(200), 1);
        assert_eq!(volatile.len(), 1);
        let long = volatile.with(200, |slots, now| slots.live("long", now));
        assert!(long.unwrap().is_some());
    }
}
