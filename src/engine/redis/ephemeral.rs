//! Ephemeral values on Redis: one string key with a TTL each, so Redis
//! expires them itself. Every operation is one command or script on one key,
//! and so atomic.

use std::time::Duration;

use super::{RedisEngine, keys, scripts, unavailable};
use crate::engine::{Admission, Bucket, EngineResult, Home, Lease, Meter, Space, StashMode};

/// The longest TTL sent to Redis (about 285,000 years): Redis refuses an
/// expiry that overflows its clock, and nothing here needs more.
const MAX_TTL_MILLIS: u64 = 1 << 53;

impl RedisEngine {
    /// `SET` with `PX`, and `NX` for [`StashMode::IfAbsent`]: Redis decides
    /// atomically whether a live value exists (expired keys count as absent).
    pub async fn stash(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
        ttl: Duration,
        mode: StashMode,
    ) -> EngineResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(keys::ephemeral(&self.prefix, space, id))
            .arg(value)
            .arg("PX")
            .arg(ttl_millis(ttl));
        if mode == StashMode::IfAbsent {
            cmd.arg("NX");
        }
        let mut conn = self.conn.clone();
        // "OK" when written, nil when NX found a live value.
        let reply: Option<String> = cmd.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(reply.is_some())
    }

    pub async fn peek(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `GETDEL`: one command, so of concurrent takers exactly one gets it.
    pub async fn take(&self, space: Space, id: &str) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("GETDEL")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `SET XX KEEPTTL GET` (Redis 7): replaces only an existing value, keeps
    /// its expiry and answers the previous value, all in one command.
    pub async fn swap(
        &self,
        space: Space,
        id: &str,
        value: &[u8],
    ) -> EngineResult<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .arg(value)
            .arg("XX")
            .arg("KEEPTTL")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `lease.lua`: the holder check and the write in one atomic step.
    pub async fn lease(
        &self,
        space: Space,
        id: &str,
        holder: &[u8],
        ttl: Duration,
    ) -> EngineResult<Lease> {
        let mut conn = self.conn.clone();
        let left: i64 = scripts::LEASE
            .key(keys::ephemeral(&self.prefix, space, id))
            .arg(holder)
            .arg(ttl_millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match u64::try_from(left) {
            Ok(left) => Lease::Busy {
                remaining: Duration::from_millis(left),
            },
            Err(_) => Lease::Held,
        })
    }

    /// `release.lua`: removes the lease only when `holder` holds it.
    pub async fn release(&self, space: Space, id: &str, holder: &[u8]) -> EngineResult<bool> {
        let mut conn = self.conn.clone();
        let removed: i64 = scripts::RELEASE
            .key(keys::ephemeral(&self.prefix, space, id))
            .arg(holder)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    /// `remember.lua`: the read, the change and the write in one atomic
    /// step, so concurrent additions all land.
    pub async fn remember(
        &self,
        space: Space,
        id: &str,
        item: &str,
        ttl: Duration,
        cap: usize,
    ) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        scripts::REMEMBER
            .key(keys::ephemeral(&self.prefix, space, id))
            .arg(item)
            .arg(ttl_millis(ttl))
            .arg(cap.max(1))
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn discard(&self, space: Space, id: &str) -> EngineResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(keys::ephemeral(&self.prefix, space, id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// `count.lua`: the increment and the start of the window in one
    /// atomic step, so a crash between them cannot leave a counter forever.
    pub async fn count(&self, space: Space, id: &str, window: Duration) -> EngineResult<u64> {
        let mut conn = self.conn.clone();
        scripts::COUNT
            .key(keys::ephemeral(&self.prefix, space, id))
            .arg(ttl_millis(window))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}

impl RedisEngine {
    /// `throttle.lua`: the bucket's read, decision and write in one atomic
    /// step, on Redis's clock, which every node shares.
    pub async fn throttle(
        &self,
        space: Space,
        id: &str,
        bucket: Bucket,
    ) -> EngineResult<Admission> {
        self.throttle_key(keys::ephemeral(&self.prefix, space, id), bucket)
            .await
    }

    pub async fn throttle_all(
        &self,
        space: Space,
        home: Home,
        meters: &[Meter<'_>],
    ) -> EngineResult<Option<(usize, Admission)>> {
        let mut invocation = scripts::THROTTLE_ALL.prepare_invoke();
        for meter in meters {
            let interval = meter.bucket.interval_micros.max(1);
            invocation
                .key(keys::ephemeral_in(&self.prefix, home, space, meter.id))
                .arg(interval)
                .arg(interval.saturating_mul(u64::from(meter.bucket.burst.max(1))));
        }
        let mut conn = self.conn.clone();
        let (wait, by): (i64, usize) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match admission(wait) {
            Admission::Allowed => None,
            refused => Some((by.saturating_sub(1), refused)),
        })
    }

    /// `throttle.lua` on the bucket kept at `key`.
    pub(super) async fn throttle_key(
        &self,
        key: String,
        bucket: Bucket,
    ) -> EngineResult<Admission> {
        let mut conn = self.conn.clone();
        let interval = bucket.interval_micros.max(1);
        let wait: i64 = scripts::THROTTLE
            .key(key)
            .arg(interval)
            .arg(interval.saturating_mul(u64::from(bucket.burst.max(1))))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(admission(wait))
    }
}

/// What a throttle script answered: 0 admitted, else the microseconds to
/// wait.
fn admission(wait: i64) -> Admission {
    match u64::try_from(wait) {
        Ok(wait) if wait > 0 => Admission::Refused {
            retry_after: Duration::from_micros(wait),
        },
        _ => Admission::Allowed,
    }
}

/// A TTL in whole milliseconds, at least 1 (Redis refuses 0) and at most
/// [`MAX_TTL_MILLIS`].
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MILLIS)
}
