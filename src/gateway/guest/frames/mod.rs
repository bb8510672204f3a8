//! The guest protocol's frames: requests parsed at the edge into
//! [`Request`] (`request`; a message and its content and attributes in
//! `message`), and the server's `response`/`message` frames (`reply`).
//!
//! Parsing never panics and never gives up on the socket: malformed JSON or
//! an unknown action is a 400 error frame, a missing required field 4020, a
//! field of the wrong type 400 naming it, and the limits of the protocol
//! (text length, custom attributes, attachments) their own codes. The
//! `tracingId` of a request is echoed on its answer even when the rest of
//! the request is refused.

mod message;
#[cfg(test)]
mod property_tests;
mod reply;
mod request;

use std::borrow::Cow;

pub use self::message::{GuestEvent, GuestMessage, MessageKind};
pub use self::reply::{
    AllowedMedia, AttachmentDeletedResponse, BLOCKED_EXTENSIONS, ConfigurationResponse,
    ConnectionClosed, Empty, GenerateUrlError, InboundMedia, JwtResponse, PresignedUrlResponse,
    RATE_RETRY_AFTER_SECONDS, SessionResponse, UploadFailureEvent, UploadSuccessEvent, error,
    own_message, push, response,
};
pub use self::request::{AttachmentUpload, Configure, Parsed, Rejected, Request, parse};

/// Longest session token a client may present.
pub const MAX_TOKEN_CHARS: usize = 2048;
/// Longest client message id (it becomes a dedup key).
pub const MAX_CLIENT_ID_CHARS: usize = 256;
/// Longest `tracingId` echoed back; a longer one is not echoed.
pub const MAX_TRACING_ID_CHARS: usize = 256;

/// The default limits' text length and custom attribute size, and a parse
/// within the default limits, for the parsers' tests.
#[cfg(test)]
mod defaults {
    use crate::limits::MessageLimits;

    pub(super) const MAX_TEXT_CHARS: usize = 4000;
    pub(super) const MAX_CUSTOM_DATA_BYTES: usize = 2048;

    pub(super) fn parse(text: &str) -> Result<super::Parsed, super::Rejected> {
        assert_eq!(MessageLimits::default().text_chars, MAX_TEXT_CHARS);
        assert_eq!(
            MessageLimits::default().custom_data_bytes,
            MAX_CUSTOM_DATA_BYTES
        );
        super::parse(text, &MessageLimits::default())
    }
}

/// An error answered on the socket, which stays usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestError {
    pub code: u16,
    pub message: Cow<'static, str>,
    /// For 4029: how long the client should wait, when a limit knows.
    pub retry_after: Option<std::time::Duration>,
}

impl GuestError {
    pub fn new(code: u16, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, message)
    }

    pub fn missing(field: &str) -> Self {
        Self::new(4020, format!("missing parameter: {field}"))
    }

    /// A session JWT that can never authenticate this session: revoked,
    /// forged, of another deployment or visitor. 403 with this prefix is
    /// what makes the Transport SDK ask the user to sign in again (it does
    /// not refresh).
    pub fn auth_failed(reason: &str) -> Self {
        Self::new(403, format!("Session authentication failed: {reason}"))
    }

    /// An expired session JWT: 401, on which the SDK refreshes and
    /// configures again.
    pub fn auth_expired() -> Self {
        Self::new(
            401,
            "Session authentication failed: the session token has expired",
        )
    }

    pub fn auth_required() -> Self {
        Self::new(401, "authentication required")
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(403, message)
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(4000, message)
    }

    pub fn not_configured() -> Self {
        Self::new(4007, "session not found: send configureSession first")
    }

    pub fn too_many() -> Self {
        Self::new(4029, "Message rate too high for this session")
    }

    /// 4029 from a limit that knows when the client may try again.
    pub fn too_many_for(
        message: impl Into<Cow<'static, str>>,
        retry_after: std::time::Duration,
    ) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(4029, message)
        }
    }

    /// Storage is unavailable or too contended. 503, not Genesys's 5000:
    /// the SDK ignores 5000 (a configure would hang in `Connected`), and
    /// turns 503 into an error state or event the app can retry from.
    pub fn try_again() -> Self {
        Self::new(503, "Service temporarily unavailable, try again")
    }

    /// The same for a message: as 4029, on which the SDK fails the message
    /// it is sending (the app can resend) instead of leaving it pending.
    pub fn message_try_again() -> Self {
        Self::new(4029, "Service temporarily unavailable, try again")
    }

    /// `Clear` when the configuration does not enable it: Genesys's
    /// refusal, which the SDK reports as `ClearConversationFailure`.
    pub fn clear_disabled() -> Self {
        Self::forbidden("Presence events Conversation Clear are not supported")
    }
}
