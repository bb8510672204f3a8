//! The delivery cursor: what a socket has delivered of one conversation's
//! log, and what a new sequence means for it.
//!
//! Live notices are hints and the log is the truth: a notice with the next
//! sequence is delivered as is; one further ahead means notices were lost,
//! so the log is read from the cursor; one at or below it was delivered
//! already (by a catch-up, or by the socket answering its own event). The
//! cursor only decides; the socket does the reading and the sending, so the
//! rules are testable without a socket or an engine.

/// What a socket does with an event it was told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delivered already: drop it.
    Duplicate,
    /// The next one: deliver it.
    Deliver,
    /// Further ahead than the next one: read the log from the cursor first.
    CatchUp,
}

/// The last sequence of one conversation delivered to the client. Sequences
/// start at 1, so 0 means nothing was delivered yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    last: u64,
}

impl Cursor {
    /// A cursor that has delivered everything up to `last`.
    pub const fn after(last: u64) -> Self {
        Self { last }
    }

    /// Where a resuming client stands in its session's current
    /// conversation, whose newest sequence is `top`: after what it says it
    /// saw (never beyond `top`), from the start when it names another
    /// conversation, and at `top` (nothing to replay) when it says nothing.
    pub fn resume(
        current: uuid::Uuid,
        top: u64,
        client_conversation: Option<uuid::Uuid>,
        client_seen: Option<u64>,
    ) -> Self {
        let last = match (client_conversation, client_seen) {
            (Some(c), _) if c != current => 0,
            (_, Some(seen)) => seen.min(top),
            (_, None) => top,
        };
        Self { last }
    }

    /// The last sequence delivered: a log read starts after it.
    pub const fn last(self) -> u64 {
        self.last
    }

    /// What to do with a notice of event `seq`.
    pub fn step(self, seq: u64) -> Step {
        if seq <= self.last {
            Step::Duplicate
        } else if seq == self.last.saturating_add(1) {
            Step::Deliver
        } else {
            Step::CatchUp
        }
    }

    /// Records that event `seq` is being delivered. Answers whether it is
    /// new: an old one must not be sent again.
    pub fn advance(&mut self, seq: u64) -> bool {
        if seq <= self.last {
            return false;
        }
        self.last = seq;
        true
    }

    /// How many events a catch-up reads next, in pages of at most `page`:
    /// up to `upto` when given (an event the socket is about to answer
    /// itself), else whatever there is. `None` when there is nothing to read.
    pub fn to_read(self, upto: Option<u64>, page: usize) -> Option<usize> {
        match upto {
            Some(upto) if upto <= self.last => None,
            Some(upto) => Some(usize::try_from(upto - self.last).map_or(page, |n| n.min(page))),
            None => Some(page),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_next_sequence_is_delivered_and_older_ones_are_duplicates() {
        let cursor = Cursor::after(4);
        assert_eq!(cursor.step(5), Step::Deliver);
        assert_eq!(cursor.step(4), Step::Duplicate);
        assert_eq!(cursor.step(1), Step::Duplicate);
        assert_eq!(cursor.step(0), Step::Duplicate);
        assert_eq!(Cursor::default().step(1), Step::Deliver);
    }

    #[test]
    fn a_gap_asks_for_a_catch_up() {
        assert_eq!(Cursor::after(4).step(6), Step::CatchUp);
        assert_eq!(Cursor::default().step(2), Step::CatchUp);
        assert_eq!(Cursor::after(u64::MAX).step(u64::MAX), Step::Duplicate);
    }

    #[test]
    fn advancing_never_goes_back_nor_repeats() {
        let mut cursor = Cursor::default();
        assert!(cursor.advance(1));
        assert!(cursor.advance(3));
        assert_eq!(cursor.last(), 3);
        assert!(!cursor.advance(3));
        assert!(!cursor.advance(2));
        assert_eq!(cursor.last(), 3);
        assert_eq!(cursor.step(4), Step::Deliver);
    }

    #[test]
    fn catch_up_reads_pages_up_to_the_target() {
        let cursor = Cursor::after(10);
        assert_eq!(cursor.to_read(None, 200), Some(200));
        assert_eq!(cursor.to_read(Some(15), 200), Some(5));
        assert_eq!(cursor.to_read(Some(1000), 200), Some(200));
        assert_eq!(cursor.to_read(Some(10), 200), None);
        assert_eq!(cursor.to_read(Some(3), 200), None);
    }

    #[test]
    fn a_resuming_client_gets_what_it_has_not_seen() {
        let current = Uuid::new_v4();
        let other = Uuid::new_v4();
        // Says what it saw of the current conversation.
        assert_eq!(Cursor::resume(current, 9, Some(current), Some(4)).last(), 4);
        assert_eq!(Cursor::resume(current, 9, None, Some(4)).last(), 4);
        // Never beyond the log's end.
        assert_eq!(Cursor::resume(current, 9, None, Some(50)).last(), 9);
        // Knew another conversation: this one from its start.
        assert_eq!(Cursor::resume(current, 9, Some(other), Some(4)).last(), 0);
        assert_eq!(Cursor::resume(current, 9, Some(other), None).last(), 0);
        // Says nothing: live events only.
        assert_eq!(Cursor::resume(current, 9, None, None).last(), 9);
    }

    /// Whatever order and repetition notices arrive in, a socket that
    /// follows the cursor delivers every event once, in order.
    #[test]
    fn delivery_is_in_order_without_gaps_or_repeats() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let newest = next() % 40 + 1;
            let mut cursor = Cursor::after(next() % 5);
            let start = cursor.last();
            let mut delivered = Vec::new();
            for _ in 0..120 {
                // Notices out of order, repeated, some lost.
                let seq = next() % newest + 1;
                match cursor.step(seq) {
                    Step::Duplicate => {}
                    Step::Deliver => {
                        assert!(cursor.advance(seq));
                        delivered.push(seq);
                    }
                    Step::CatchUp => {
                        // The log holds everything up to `newest`.
                        let limit = cursor.to_read(None, 7).unwrap_or(0) as u64;
                        let from = cursor.last() + 1;
                        for logged in from..=(cursor.last() + limit).min(newest) {
                            if cursor.advance(logged) {
                                delivered.push(logged);
                            }
                        }
                    }
                }
            }
            let expected: Vec<u64> = (start + 1..=cursor.last()).collect();
            assert_eq!(delivered, expected);
        }
    }
}
