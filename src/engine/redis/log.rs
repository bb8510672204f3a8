//! Conversation event logs on Redis: one Stream per conversation.
//!
//! Stream entry ids are `<seq>-1`, so reading "everything after seq n" is a
//! plain `XRANGE` and the stream itself says which sequences exist. Appends
//! go through one Lua script ([`scripts::APPEND`]) that takes the sender's
//! rate token (when metered), checks the dedup map, takes the next sequence
//! from the counter, adds the entry and publishes its notice, atomically: of
//! any number of concurrent appenders on any number of nodes, each gets its
//! own sequence, without gaps, a resent message gets its first one, and a
//! visitor's message costs one round trip.

use std::time::Duration;

use super::{RedisEngine, keys, scripts, unavailable};
use crate::engine::{
    Admission, Appended, Channel, EngineError, EngineResult, LogEntry, Meter, Metered,
};

impl RedisEngine {
    pub async fn append(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
    ) -> EngineResult<Appended> {
        match self.append_script(log, body, dedup, None).await? {
            Metered::Appended(appended) => Ok(appended),
            // No bucket, no refusal.
            Metered::Refused { .. } => Err(EngineError::Unavailable(
                "the append script refused an unmetered append".into(),
            )),
        }
    }

    /// `append.lua` with the bucket: rate, dedup, append and notice in one
    /// round trip.
    pub async fn append_metered(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
        meter: Meter<'_>,
    ) -> EngineResult<Metered> {
        self.append_script(log, body, dedup, Some(meter)).await
    }

    /// The bucket an append of `log` metered by `meter` takes from, alone.
    pub async fn throttle_beside(
        &self,
        log: uuid::Uuid,
        meter: Meter<'_>,
    ) -> EngineResult<Admission> {
        self.throttle_key(
            keys::conversation_rate(&self.prefix, log, meter.id),
            meter.bucket,
        )
        .await
    }

    async fn append_script(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
        meter: Option<Meter<'_>>,
    ) -> EngineResult<Metered> {
        let verb = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        let mut invocation = scripts::APPEND.prepare_invoke();
        invocation
            .key(keys::conversation_log(&self.prefix, log))
            .key(keys::conversation_dedup(&self.prefix, log))
            .key(keys::conversation_seq(&self.prefix, log))
            .arg(body)
            .arg(keys::bus_channel(&self.prefix, &Channel::Conversation(log)))
            .arg(verb)
            .arg(dedup.unwrap_or_default());
        if let Some(meter) = meter {
            let interval = meter.bucket.interval_micros.max(1);
            invocation
                .key(keys::conversation_rate(&self.prefix, log, meter.id))
                .arg(interval)
                .arg(interval.saturating_mul(u64::from(meter.bucket.burst.max(1))));
        }
        let mut conn = self.conn.clone();
        let (seq, duplicate, wait): (u64, u8, u64) = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if wait > 0 {
            return Ok(Metered::Refused {
                retry_after: Duration::from_micros(wait),
            });
        }
        // A resend waits too: the first attempt may have failed here.
        if let Some((replicas, timeout)) = self.wait {
            let key = keys::conversation_log(&self.prefix, log);
            let acknowledged = self
                .conn
                .wait_replicas(&key, replicas, timeout)
                .await
                .map_err(unavailable)?;
            if acknowledged < u64::from(replicas) {
                return Err(EngineError::Unavailable(format!(
                    "{acknowledged} of {replicas} Redis replicas acknowledged the append within {}ms",
                    timeout.as_millis()
                )));
            }
        }
        Ok(Metered::Appended(Appended {
            seq,
            duplicate: duplicate != 0,
        }))
    }

    pub async fn read_log(
        &self,
        log: uuid::Uuid,
        after: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.entries("XRANGE", log, &format!("{first}-0"), "+", limit)
            .await
    }

    pub async fn read_log_before(
        &self,
        log: uuid::Uuid,
        before: u64,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        let Some(last) = before.checked_sub(1).filter(|last| *last > 0) else {
            return Ok(Vec::new());
        };
        // An id without its sequence part means "any entry of that
        // sequence" as the upper end of a range.
        self.entries("XREVRANGE", log, &last.to_string(), "-", limit)
            .await
    }

    /// Up to `limit` entries of `log` from `start` to `end`, in the order
    /// `range` (`XRANGE` or `XREVRANGE`) lists them.
    async fn entries(
        &self,
        range: &str,
        log: uuid::Uuid,
        start: &str,
        end: &str,
        limit: usize,
    ) -> EngineResult<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd(range)
            .arg(keys::conversation_log(&self.prefix, log))
            .arg(start)
            .arg(end)
            .arg("COUNT")
            // Redis refuses a count beyond i64; no log is that long anyway.
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        entries
            .into_iter()
            .map(|(id, fields)| {
                Ok(LogEntry {
                    seq: parse_seq(&id)?,
                    body: event_body(fields),
                })
            })
            .collect()
    }

    /// The counter, not the stream: one `GET`, and it is written in the same
    /// script step as the newest entry.
    pub async fn last_seq(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let mut conn = self.conn.clone();
        let seq: Option<u64> = redis::cmd("GET")
            .arg(keys::conversation_seq(&self.prefix, log))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(seq.unwrap_or(0))
    }
}

impl RedisEngine {
    /// The stream, its dedup hash and its counter in one `MULTI`: a reader
    /// sees the whole log or none of it.
    pub async fn delete_log(&self, log: uuid::Uuid) -> EngineResult<u64> {
        let mut conn = self.conn.clone();
        let (entries, _deleted): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(keys::conversation_log(&self.prefix, log))
            .cmd("DEL")
            .arg(keys::conversation_log(&self.prefix, log))
            .arg(keys::conversation_dedup(&self.prefix, log))
            .arg(keys::conversation_seq(&self.prefix, log))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(entries)
    }
}

/// The sequence of a stream entry id `<seq>-1`.
fn parse_seq(id: &str) -> EngineResult<u64> {
    id.split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| EngineError::Unavailable(format!("corrupt log entry id {id:?} in Redis")))
}

/// The body among an entry's `[field, value, ...]`; empty if absent, which
/// only an entry written by something else could be.
fn event_body(fields: Vec<Vec<u8>>) -> Vec<u8> {
    let mut fields = fields.into_iter();
    while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
        if field == keys::EVENT_BODY.as_bytes() {
            return value;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_share_one_tag_per_conversation() {
        let id = uuid::Uuid::new_v4();
        let tag = format!("sb:{{c:{id}}}:");
        for name in [
            keys::conversation_log("sb:", id),
            keys::conversation_dedup("sb:", id),
            keys::conversation_seq("sb:", id),
            keys::conversation_rate("sb:", id, "gm:x"),
        ] {
            assert!(name.starts_with(&tag), "{name}");
        }
    }

    #[test]
    fn entry_ids_and_bodies_parse() {
        assert_eq!(parse_seq("42-1").unwrap(), 42);
        assert!(parse_seq("x-1").is_err());
        assert!(parse_seq("42").is_err());
        let fields = vec![
            b"other".to_vec(),
            b"1".to_vec(),
            b"b".to_vec(),
            b"hi".to_vec(),
        ];
        assert_eq!(event_body(fields), b"hi");
        assert_eq!(event_body(vec![b"b".to_vec()]), b"");
    }
}
