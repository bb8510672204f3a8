//! Rate buckets: what [`super::Engine::throttle`] keeps per key, and the
//! step both engines take (the embedded engine runs [`gcra`]; Redis runs
//! `redis/throttle.lua`, its mirror).

/// A token bucket, kept as GCRA (the generic cell rate algorithm): one
/// number per bucket, the theoretical arrival time of the next event. An
/// event is admitted when, after it, the bucket would be at most `burst`
/// events ahead of the clock; the stored time then expires by itself when
/// the bucket is full again, so an idle bucket costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// One event's share of time: the unit divided by the count.
    pub interval_micros: u64,
    /// How many events may come at once (at least 1).
    pub burst: u32,
}

/// What [`Engine::throttle`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The bucket is empty; one event more fits after `retry_after`.
    Refused {
        retry_after: std::time::Duration,
    },
}

/// The bucket's step at `now` (microseconds) given its stored arrival time:
/// the decision and, when admitted, the new time to store and for how long
/// (microseconds). The embedded engine runs this; `throttle.lua` is the
/// same on Redis.
pub(crate) fn gcra(
    stored: Option<u64>,
    now: u64,
    bucket: Bucket,
) -> (Admission, Option<(u64, u64)>) {
    let interval = bucket.interval_micros.max(1);
    let tolerance = interval.saturating_mul(u64::from(bucket.burst.max(1)));
    let next = stored.unwrap_or(now).max(now).saturating_add(interval);
    let ahead = next - now;
    if ahead > tolerance {
        let retry_after = std::time::Duration::from_micros(ahead - tolerance);
        return (Admission::Refused { retry_after }, None);
    }
    (Admission::Allowed, Some((next, ahead)))
}
