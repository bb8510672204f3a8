//! Sizes: what one message may carry, and how much one guest history
//! request may read. Node-wide settings (not per organization): they bound
//! the node's memory and the frame every message must fit in, which are
//! the operator's, not a tenant's.

/// What one message may carry, on the guest and the agent socket alike.
/// The guest protocol advertises the text and custom attribute limits to
/// clients (`maxTextLength`, `maxCustomDataBytes`), so clients that read
/// them follow a changed setting on their next `configureSession`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Longest text of one message, in characters (guest 4011 past it;
    /// agent `bad_request`).
    pub text_chars: usize,
    /// Largest custom attributes (and string `message.metadata`), in UTF-8
    /// bytes of keys and values, the SDK's measure (4013 past it).
    pub custom_data_bytes: usize,
    /// Most quick replies one message offers.
    pub quick_replies: usize,
    /// Most buttons on one card.
    pub card_actions: usize,
    /// Most cards in one carousel.
    pub carousel_cards: usize,
}

impl Default for MessageLimits {
    /// What the guest protocol always allowed: Genesys's own limits, which
    /// Genesys clients are written against.
    fn default() -> Self {
        Self {
            text_chars: 4000,
            custom_data_bytes: 2048,
            quick_replies: 11,
            card_actions: 3,
            carousel_cards: 10,
        }
    }
}

/// What one guest history request (`GET /api/v2/webmessaging/messages`)
/// may ask for and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The largest `pageSize` (400 past it).
    pub page_size: u64,
    /// The most conversations (a signed-in visitor's newest) one answer
    /// looks at.
    pub conversations: usize,
    /// The deepest message a page reaches, newest first: pages beyond it
    /// are empty, so no request reads more than this many messages' entries.
    pub depth: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            page_size: 100,
            conversations: 50,
            depth: 10_000,
        }
    }
}
