//! Revoked visitor sessions, told to every node.

use super::Routing;
use super::model::{Notice, SessionEndReason};
use crate::auth::visitor_token::RevokedSession;
use crate::engine::Channel;

impl Routing {
    /// Tells the sockets of a revoked session (logout, a reused refresh
    /// token), on every node, to send `LogoutEvent` and close. A lost notice
    /// is caught by the sockets' periodic re-verification.
    pub async fn session_revoked(&self, revoked: RevokedSession) {
        let notice = Notice::SessionEnded {
            reason: SessionEndReason::Logout,
            except_socket: None,
        };
        self.notify(&Channel::TokenFamily(revoked.sid), &notice)
            .await;
    }
}
