//! `GET /api/v2/webmessaging/messages?pageNumber=&pageSize=`: a guest
//! session's transcript, newest first, with the bearer token of `getJwt`.
//!
//! A guest sees its session's current conversation; an authenticated
//! visitor also every earlier conversation of theirs, from any session or
//! device. Entities are `StructuredMessage`s with their sequences. Browsers
//! call this from the deployment's origins: the preflight is answered for
//! any origin (it cannot carry the token that names the deployment), the
//! request itself only for the deployment's.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use uuid::Uuid;

use super::messages::{self, StructuredMessage};
use super::socket::HISTORY_AUDIENCE;
use crate::http::AppState;
use crate::http::PagedList;
use crate::http::admin::configurations::published_version;
use crate::http::error::ApiError;
use crate::routing::Routing;
use crate::store::records::Deployment;

pub const HISTORY_PATH: &str = "/api/v2/webmessaging/messages";
pub const DEFAULT_PAGE_SIZE: u64 = 25;
pub const MAX_PAGE_SIZE: u64 = 100;
/// The most conversations and events one history answer looks at: a bound
/// on the work one request can cause.
const MAX_CONVERSATIONS: usize = 50;
const MAX_EVENTS: usize = 10_000;
const READ_BATCH: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new().route(HISTORY_PATH, get(history).options(preflight))
}

fn page_param(
    query: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be a number from 1 to {max}"
            ))),
        },
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn history(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match answer(&state, &query, &headers).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let page_number = page_param(query, "pageNumber", 1, u64::from(u32::MAX))?;
    let page_size = page_param(query, "pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("a bearer token from getJwt is required"))?;
    let session = state
        .auth
        .verify_scoped(HISTORY_AUDIENCE, token)
        .ok()
        .and_then(|subject| Uuid::parse_str(&subject).ok())
        .ok_or_else(|| ApiError::unauthorized("the token is invalid or expired"))?;
    let session = state
        .routing
        .session(session)
        .await
        .map_err(|_| ApiError::unavailable())?
        .ok_or_else(|| ApiError::unauthorized("the session no longer exists"))?;
    let deployment = state
        .store
        .find::<Deployment>(session.deployment_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session's deployment no longer exists"))?;
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| deployment.allows_origin(o))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin is not one the deployment allows",
        ));
    }
    let read_only = match deployment.configuration_version() {
        Some(version) => published_version(
            state,
            deployment.org_id,
            deployment.configuration.id,
            version,
        )
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
            .visitor_conversations(visitor)
            .await
            .map_err(|_| ApiError::unavailable())?,
        None => Vec::new(),
    };
    if let Some(current) = session.conversation_id {
        conversations.retain(|c| *c != current);
        conversations.push(current);
    }
    let skip = conversations.len().saturating_sub(MAX_CONVERSATIONS);
    let mut entities: Vec<StructuredMessage> = Vec::new();
    // Newest conversations first, so the bound drops the oldest events.
    'conversations: for conversation in conversations.into_iter().skip(skip).rev() {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let batch = state
                .routing
                .events_after(conversation, after, READ_BATCH)
                .await
                .map_err(|_| ApiError::unavailable())?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            after = last;
            let full = batch.len() == READ_BATCH;
            events.extend(
                batch
                    .iter()
                    .filter_map(|e| messages::from_log(e, read_only)),
            );
            if !full {
                break;
            }
            if events.len() + entities.len() >= MAX_EVENTS {
                break;
            }
        }
        entities.extend(events.into_iter().rev());
        if entities.len() >= MAX_EVENTS {
            entities.truncate(MAX_EVENTS);
            break 'conversations;
        }
    }
    let total = u64::try_from(entities.len()).unwrap_or(u64::MAX);
    let offset = usize::try_from(page_number.saturating_sub(1).saturating_mul(page_size))
        .unwrap_or(usize::MAX);
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let page: Vec<StructuredMessage> = entities.into_iter().skip(offset).take(size).collect();
    let body = PagedList {
        entities: page,
        page_number,
        page_size,
        total,
        page_count: total.div_ceil(page_size),
    };
    let mut response = axum::Json(body).into_response();
    cors(&deployment, headers, response.headers_mut());
    Ok(response)
}

/// CORS for the session's deployment: the origin is echoed back only when
/// the deployment allows it.
fn cors(deployment: &Deployment, request: &HeaderMap, response: &mut HeaderMap) {
    response.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = request.get(header::ORIGIN)
        && origin.to_str().is_ok_and(|o| deployment.allows_origin(o))
    {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
}

/// CORS preflight: any origin may ask; the request itself is held to the
/// session's deployment's origins.
async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = headers.get(header::ORIGIN) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, OPTIONS"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}
