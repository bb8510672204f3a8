//! What an append announces, and appends metered by a rate bucket.
//!
//! Every append announces its entry on the log's channel
//! ([`Channel::Conversation`]) itself, in the same step as it logs it (on
//! Redis, inside the append script): the notice is an [`EntryNotice`], the
//! entry's sequence followed by its body exactly as logged. A subscriber
//! reads the sequence without decoding anything, so what it has already (its
//! own message, which it answered; a duplicate) is dropped unread, and the
//! body is decoded only by those that show it. Nothing is encoded twice or
//! copied to publish.
//!
//! A metered append ([`Engine::append_metered`]) also takes one event from a
//! rate bucket kept beside the log, in the same step: a visitor's message
//! costs one round trip to Redis, the rate, the dedup check, the append and
//! the notice together. The bucket lives under the log's hash tag, so on a
//! Redis Cluster all of it is one slot.
//!
//! [`Channel::Conversation`]: super::Channel::Conversation

use std::time::Duration;

use super::{Admission, Appended, Bucket, Engine, EngineResult};

/// The first byte of an [`EntryNotice`]. Every other notice on a
/// conversation's channel is a JSON object, which starts with `{`.
const ENTRY_MARK: u8 = b'#';

/// An appended entry as its log's channel announces it: `#<seq>\n<body>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryNotice<'a> {
    pub seq: u64,
    /// The entry's body as logged.
    pub body: &'a [u8],
}

impl<'a> EntryNotice<'a> {
    /// The notice's bytes, as the embedded engine publishes them (Redis's
    /// append script spells the same).
    pub fn encode(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 22);
        out.push(ENTRY_MARK);
        out.extend_from_slice(seq.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    /// The entry a payload announces; `None` for any other notice (or a
    /// malformed one).
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let rest = payload.strip_prefix(&[ENTRY_MARK])?;
        let newline = rest.iter().position(|&b| b == b'\n')?;
        let (seq, body) = rest.split_at(newline);
        let seq = std::str::from_utf8(seq).ok()?.parse().ok()?;
        Some(Self {
            seq,
            body: body.get(1..)?,
        })
    }
}

/// The rate bucket a metered append takes from: an id chosen by switchboard
/// (never raw input) and its rate.
#[derive(Clone, Copy, Debug)]
pub struct Meter<'a> {
    pub id: &'a str,
    pub bucket: Bucket,
}

/// What [`Engine::append_metered`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metered {
    Appended(Appended),
    /// The bucket is empty: nothing was appended; one event more fits
    /// after `retry_after`.
    Refused {
        retry_after: Duration,
    },
}

impl Engine {
    /// Takes one event from the bucket `meter` names, kept beside `log`,
    /// then appends as [`Engine::append`] does; all in one atomic step. A
    /// resend (a `dedup` id seen before) costs a token too, as any request
    /// does.
    pub async fn append_metered(
        &self,
        log: uuid::Uuid,
        body: &[u8],
        dedup: Option<&str>,
        meter: Meter<'_>,
    ) -> EngineResult<Metered> {
        let dedup = dedup.filter(|id| !id.is_empty());
        dispatch!(self, "append", e => e.append_metered(log, body, dedup, meter).await)
    }

    /// Takes one event from the bucket `meter` names, kept beside `log`: the
    /// same bucket [`Engine::append_metered`] takes from, for what a sender
    /// does in a conversation without logging it (typing).
    pub async fn throttle_beside(
        &self,
        log: uuid::Uuid,
        meter: Meter<'_>,
    ) -> EngineResult<Admission> {
        dispatch!(self, e => e.throttle_beside(log, meter).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_notices_round_trip_and_json_is_not_one() {
        let payload = EntryNotice::encode(42, b"{\"a\":1}\n");
        assert_eq!(payload, b"#42\n{\"a\":1}\n");
        let notice = EntryNotice::parse(&payload).unwrap();
        assert_eq!(notice.seq, 42);
        assert_eq!(notice.body, b"{\"a\":1}\n");
        assert_eq!(EntryNotice::parse(b"#7\n").unwrap().body, b"");
        for other in [&b"{\"notice\":\"changed\"}"[..], b"#x\n{}", b"#12", b""] {
            assert_eq!(EntryNotice::parse(other), None, "{other:?}");
        }
    }
}
