//! Rate buckets on the embedded engine, in memory.
//!
//! One node holds every socket, so a bucket needs no storage shared with
//! anyone, and none survives a restart on Redis's side either unless Redis
//! persists: losing them only refills them. Kept in the database they cost
//! a write transaction each, and redb takes one writer at a time, so every
//! message's rate (a visitor's, an agent's and its organization's) queued
//! behind the log writer's durable commits. Here a bucket costs a lock and
//! a map entry, which expires when the bucket is full again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::ephemeral::{now_micros, now_millis};
use crate::engine::{Admission, Bucket, gcra};

/// The fewest entries the map holds before it is swept of full buckets.
const MIN_SWEEP: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Buckets {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Key → (Unix milliseconds after which the bucket is full again, its
    /// theoretical arrival time in microseconds).
    map: HashMap<String, (u64, u64)>,
    /// The size at which the map is next swept: twice what the last sweep
    /// left, so sweeping costs O(1) per event on average.
    sweep_at: usize,
}

impl Buckets {
    /// One event from the bucket `key` (see [`gcra`]).
    pub(super) fn take(&self, key: String, bucket: Bucket) -> Admission {
        self.take_all(&[(key, bucket)])
            .map_or(Admission::Allowed, |(_, refused)| refused)
    }

    /// One event from every bucket, or from none: `None` when all admitted,
    /// else the index of the bucket with the longest wait and its refusal.
    pub(super) fn take_all(&self, buckets: &[(String, Bucket)]) -> Option<(usize, Admission)> {
        let now_ms = now_millis();
        let now = now_micros().max(now_ms.saturating_mul(1000));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wait: Option<(usize, std::time::Duration)> = None;
        let mut taken = Vec::with_capacity(buckets.len());
        for (index, (key, bucket)) in buckets.iter().enumerate() {
            let stored = state
                .map
                .get(key)
                .filter(|(full_at, _)| *full_at > now_ms)
                .map(|(_, tat)| *tat);
            match gcra(stored, now, *bucket) {
                (Admission::Refused { retry_after }, _) => {
                    if wait.is_none_or(|(_, longest)| retry_after > longest) {
                        wait = Some((index, retry_after));
                    }
                }
                (Admission::Allowed, next) => taken.push((key, next)),
            }
        }
        if let Some((index, retry_after)) = wait {
            return Some((index, Admission::Refused { retry_after }));
        }
        for (key, next) in taken {
            if let Some((tat, ahead)) = next {
                state
                    .map
                    .insert(key.clone(), (now_ms.saturating_add(ahead / 1000 + 1), tat));
            }
        }
        if state.map.len() >= state.sweep_at.max(MIN_SWEEP) {
            state.map.retain(|_, (full_at, _)| *full_at > now_ms);
            state.sweep_at = state.map.len().saturating_mul(2);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_and_keys_are_apart() {
        let buckets = Buckets::default();
        let bucket = Bucket {
            interval_micros: 3_600_000_000,
            burst: 2,
        };
        assert_eq!(buckets.take("a".into(), bucket), Admission::Allowed);
        assert_eq!(buckets.take("a".into(), bucket), Admission::Allowed);
        assert!(matches!(
            buckets.take("a".into(), bucket),
            Admission::Refused { retry_after } if retry_after.as_secs() > 3000
        ));
        assert_eq!(buckets.take("b".into(), bucket), Admission::Allowed);
    }

    #[test]
    fn full_buckets_are_swept() {
        let buckets = Buckets::default();
        // Full again a millisecond after each event.
        let bucket = Bucket {
            interval_micros: 1,
            burst: 1,
        };
        for n in 0..MIN_SWEEP - 1 {
            buckets.take(format!("k{n}"), bucket);
        }
        // Once the clock has moved on, every one of them is full.
        let taken = now_millis();
        while now_millis() <= taken + 1 {
            std::thread::yield_now();
        }
        // The first of these fills the map to the sweep's size.
        for n in MIN_SWEEP..(MIN_SWEEP * 2) {
            buckets.take(format!("k{n}"), bucket);
        }
        let left = buckets.state.lock().unwrap().map.len();
        assert!(left <= MIN_SWEEP, "{left} entries kept");
    }
}
