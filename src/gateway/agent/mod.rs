//! The agent WebSocket protocol (`/api/v2/agent/ws`): the console and bots
//! go on queue, take offers, answer, transfer and end conversations.
//!
//! The caller is authenticated before the upgrade, so a bad credential is a
//! plain HTTP 401/403 and never a socket. Browsers cannot set headers on a
//! WebSocket, so the bearer may also travel as the subprotocol list
//! `bearer, <token>` (the server answers with the `bearer` subprotocol), and
//! the console's members use their staff session cookie.
//!
//! - [`protocol`]: the frames, parsed at the edge into typed values;
//! - `socket`: the task behind one socket;
//! - `requests`: what the agent asks of it.

pub mod protocol;
mod requests;
mod socket;

/// Parses one agent frame as the socket does: the request (with its
/// `requestId`), or the error answer (with the `requestId` it carried).
/// Public for the fuzz harness (tests/fuzz).
#[doc(hidden)]
pub use self::requests::parse as parse_frame;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use crate::app::AppState;
use crate::auth::credential::{BEARER_PROTOCOL, Via};
use crate::auth::{AuthError, PrincipalKind};
use crate::http::error::ApiError;
use crate::routing::AgentIdentity;
use crate::store::records::{ApiClient, Member};
use crate::store::types::Role;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v2/agent/ws", get(connect))
}

/// An authenticated agent, as the socket needs it.
#[derive(Clone, Debug)]
pub struct AgentCaller {
    pub identity: AgentIdentity,
    /// May read the conversations of the agent's queues, not only its own.
    pub supervisor: bool,
}

async fn connect(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let caller = match authenticate(&parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                "bad_request",
                "expected a WebSocket upgrade",
            )
            .into_response();
        }
    };
    let max_frame = state.limits.current().max_frame_bytes;
    crate::gateway::limited(upgrade, max_frame)
        // Chosen only when the client offered it (it carried the token).
        .protocols([BEARER_PROTOCOL])
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "agent socket upgrade failed"))
        // The socket's events carry the request's id: its task runs in the
        // request's span.
        .on_upgrade({
            let span = tracing::Span::current();
            move |ws| socket::run(ws, state, caller).instrument(span)
        })
}

/// Authenticates an agent socket: 401 without a valid credential, 403
/// without the agent role (admin holds every role).
///
/// Whatever the credential (a bearer token in the header or the
/// subprotocol, or the console's cookie), the agent is the API client
/// or member it names, in that principal's organization.
#[tracing::instrument(name = "authenticate_agent", skip_all)]
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<AgentCaller, ApiError> {
    let own_origin = state.config.public_url.origin().ascii_serialization();
    let principal = state
        .auth
        .authenticate(
            &parts.headers,
            Via::Socket {
                own_origin: &own_origin,
            },
        )
        .await?;
    if !principal.has(Role::Agent) {
        return Err(ApiError::forbidden("this needs the agent role"));
    }
    let identity = match principal.kind {
        PrincipalKind::ApiClient { id } => {
            let client = state
                .store
                .find::<ApiClient>(principal.org, id)
                .await
                .map_err(AuthError::from)?
                .ok_or(AuthError::Invalid)?;
            AgentIdentity {
                id,
                org: principal.org,
                name: client.name,
                is_member: false,
            }
        }
        PrincipalKind::Member { id } => {
            let member = state
                .store
                .find::<Member>(principal.org, id)
                .await
                .map_err(AuthError::from)?
                .ok_or(AuthError::Invalid)?;
            AgentIdentity {
                id,
                org: principal.org,
                name: member.display_name,
                is_member: true,
            }
        }
        // The bootstrap token is nobody in particular: conversations need an
        // agent someone can be held to.
        PrincipalKind::Operator => {
            return Err(ApiError::forbidden(
                "the bootstrap token cannot answer conversations; use an API client or member with the agent role",
            ));
        }
    };
    Ok(AgentCaller {
        identity,
        supervisor: principal.has(Role::Supervisor),
    })
}
