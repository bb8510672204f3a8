//! `GET /api/v2/webmessaging/messages?pageNumber=&pageSize=`: a guest
//! session's transcript, newest first, with the bearer token of `getJwt`.
//!
//! A guest sees its session's current conversation; an authenticated
//! visitor also every earlier conversation of theirs, from any session or
//! device. Entities are `StructuredMessage`s with their sequences. Browsers
//! call this from the deployment's origins: the preflight is answered for
//! any origin (it cannot carry the token that names the deployment), the
//! request itself only for the deployment's origins and app hosts.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::cors;
use super::error::ApiError;
use super::extract::HistoryPaging;
use crate::app::AppState;
use crate::auth::credential::bearer;
use crate::gateway::guest::messages::{self, StructuredMessage};
use crate::gateway::guest::socket::{HISTORY_AUDIENCE, parse_history_subject};
use crate::http::PagedList;
use crate::routing::Routing;
use crate::store::PageRequest;
use crate::store::records::Deployment;
use crate::store::types::OrgId;
use secrecy::ExposeSecret;
use uuid::Uuid;

pub(super) const HISTORY_PATH: &str = "/api/v2/webmessaging/messages";
/// The most log entries read at once while looking for a page.
const READ_BATCH: usize = 100;

pub(super) fn router() -> Router<AppState> {
    Router::new().route(
        HISTORY_PATH,
        get(history)
            .options(|headers: HeaderMap| async move { cors::preflight(&headers, "GET, OPTIONS") }),
    )
}

async fn history(
    State(state): State<AppState>,
    HistoryPaging(page): HistoryPaging,
    headers: HeaderMap,
) -> Response {
    match answer(&state, page, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    page: PageRequest,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("a bearer token from getJwt is required"))?;
    let token = token.expose_secret();
    let (org, session, family) = state
        .auth
        .verify_scoped(HISTORY_AUDIENCE, token)
        .ok()
        .and_then(|subject| parse_history_subject(&subject))
        .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired"))?;
    let session = state
        .routing
        .session(org, session)
        .await
        .map_err(|_| ApiError::unavailable())?
        .ok_or_else(|| ApiError::unauthorized("the session no longer exists"))?;
    // A signed-in session's history is readable only while the sign-in the
    // token was issued under lasts (the session's current one for a token
    // issued before it signed in): logout, or a reused refresh token, ends
    // it at once, not when the token expires.
    if let Some(sign_in) = family.or(session.token_family) {
        let revoked = state
            .visitor_tokens
            .family_revoked(sign_in)
            .await
            .map_err(|_| ApiError::unavailable())?;
        if revoked {
            return Err(ApiError::unauthorized(
                "the session was signed out; sign in again",
            ));
        }
    }
    let deployment = state
        .store
        .find::<Deployment>(org, session.deployment_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session's deployment no longer exists"))?;
    // Browsers send their origin; the Transport SDK sends the bare domain it
    // is configured with, admitted when the deployment lists it.
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| deployment.admits_origin(o))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin is not one the deployment allows",
        ));
    }
    let read_only = match deployment.configuration_version() {
        Some(version) => state
            .store
            .published_version(deployment.org_id, deployment.configuration.id, version)
            .await
            .map(|c| {
                Routing::read_only_after_end(
                    &c.content
                        .messenger
                        .apps
                        .conversations
                        .conversation_disconnect,
                )
            })
            .unwrap_or(false),
        None => false,
    };

    // Oldest first, the current conversation last.
    let mut conversations = match session.visitor_id {
        Some(visitor) => state
            .routing
            .visitor_conversations(org, visitor)
            .await
            .map_err(|_| ApiError::unavailable())?,
        None => Vec::new(),
    };
    if let Some(current) = session.conversation_id {
        conversations.retain(|c| *c != current);
        conversations.push(current);
    }
    // The most conversations one answer looks at, the newest: a bound on
    // the work one request can cause (SWITCHBOARD_LIMIT_HISTORY_CONVERSATIONS).
    let bounds = state.limits.current().history;
    let skip = conversations.len().saturating_sub(bounds.conversations);
    let newest_first: Vec<Uuid> = conversations.into_iter().skip(skip).rev().collect();
    let (body, read) = read_page(state, org, &newest_first, page, bounds.depth, read_only).await?;
    state.metrics.history_entries_read(read);
    let mut response = axum::Json(body).into_response();
    cors::allow_deployment_origin(&deployment, headers, response.headers_mut());
    Ok(response)
}

/// Reads one page of messages, newest first, walking the conversations'
/// logs backwards from their newest entry and stopping as soon as the page
/// is full: entries older than the page are never read, and entries newer
/// than it are counted, not kept. Answers the page and how many log entries
/// were read.
///
/// `total` is exact when the walk reached the oldest entry of every
/// conversation; otherwise it counts the messages seen plus every entry not
/// read (events that are not messages included), an upper bound that
/// becomes exact on the page that reaches the start. A client that pages
/// until it has `total` messages therefore sees them all.
async fn read_page(
    state: &AppState,
    org: OrgId,
    newest_first: &[Uuid],
    page: PageRequest,
    depth: u64,
    read_only: bool,
) -> Result<(PagedList<StructuredMessage>, usize), ApiError> {
    let skip = page.offset();
    // The deepest message a page reaches (newest first): pages beyond it
    // are empty, so no request reads more than this many messages' entries
    // (SWITCHBOARD_LIMIT_HISTORY_DEPTH).
    let wanted = skip.saturating_add(page.size).min(depth);
    let mut seen: u64 = 0;
    let mut unread: u64 = 0;
    let mut read = 0;
    let mut entities: Vec<StructuredMessage> = Vec::new();
    for &conversation in newest_first {
        if seen >= wanted {
            // Full: what this conversation holds is only counted.
            unread = unread.saturating_add(
                state
                    .routing
                    .last_seq(conversation)
                    .await
                    .map_err(|_| ApiError::unavailable())?,
            );
            continue;
        }
        let mut before = u64::MAX;
        loop {
            let missing = usize::try_from(wanted - seen).unwrap_or(usize::MAX);
            let (events, got, oldest) = state
                .routing
                .events_before(conversation, before, missing.clamp(1, READ_BATCH))
                .await
                .map_err(|_| ApiError::unavailable())?;
            read += got;
            let Some(oldest) = oldest else {
                break;
            };
            for mut message in events
                .iter()
                .filter_map(|e| messages::from_log(e, read_only))
            {
                if seen >= skip && seen < wanted {
                    state
                        .attachments
                        .refresh(org, &mut message.content, chrono::Utc::now());
                    entities.push(message);
                }
                seen += 1;
            }
            before = oldest;
            if seen >= wanted {
                // Sequences are gapless from 1: what is below is unread.
                unread = unread.saturating_add(oldest.saturating_sub(1));
                break;
            }
        }
    }
    let total = seen.saturating_add(unread);
    Ok((
        PagedList {
            entities,
            page_number: page.number,
            page_size: page.size,
            total,
            page_count: total.div_ceil(page.size.max(1)),
        },
        read,
    ))
}
