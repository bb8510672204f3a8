//! Extractors that parse requests into typed values or refuse them with the
//! project's error format.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::body;
use super::error::ApiError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::credential::Via;
use crate::store::PageRequest;
use crate::store::types::Role;

/// A JSON body. Malformed JSON is 400 `malformed_json`; JSON of the wrong
/// shape is 422 `invalid` naming the field; an oversized body is 413. No
/// refusal quotes the body (see [`super::body`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        body::parse(&bytes).map(Json).map_err(|e| {
            if e.malformed {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.message)
            } else {
                ApiError::invalid(e.message)
            }
        })
    }
}

/// `application/json` or any `application/*+json`, as axum's own extractor.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::bad_request("the request body could not be read")
    }
}

/// The client's address: the TCP peer, or what trusted proxies say it is
/// (see [`crate::limits::address`]). A router driven without connect info
/// (a test's `oneshot`) counts every caller as one.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        use std::net::{IpAddr, Ipv4Addr, SocketAddr};
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let limits = state.limits.current();
        Ok(ClientIp(
            limits.trusted_proxies.client(peer, &parts.headers),
        ))
    }
}

/// Answers a JSON value.
pub type JsonOut<T> = axum::Json<T>;

/// The authenticated caller of an admin endpoint.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses with 403 unless the caller holds `role` (admin holds all).
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        if self.0.has(role) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role",
                serde_json::to_value(role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )))
        }
    }

    pub fn require_operator(&self) -> Result<&Principal, ApiError> {
        if self.0.is_operator() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "only the operator's bootstrap token may do this",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let via = Via::Request(&parts.method);
        Ok(Caller(state.auth.authenticate(&parts.headers, via).await?))
    }
}

/// A record id from the path. Anything that is not a UUID names no record,
/// so it is a 404 like any other unknown id.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        Uuid::parse_str(&raw)
            .map(Id)
            .map_err(|_| ApiError::not_found())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPaging {
    page_number: Option<u64>,
    page_size: Option<u64>,
}

pub const DEFAULT_PAGE_SIZE: u64 = 25;
pub const MAX_PAGE_SIZE: u64 = 100;

/// `?pageNumber=&pageSize=`: 1-based, pages of 1 to 100 (25 by default).
#[derive(Debug, Clone, Copy)]
pub struct Paging(pub PageRequest);

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        page_request(parts, state, MAX_PAGE_SIZE).await.map(Paging)
    }
}

/// `?pageNumber=&pageSize=` of the guest history endpoint: pages of 1 to
/// the node's `SWITCHBOARD_LIMIT_HISTORY_PAGE` (25 by default, or that
/// limit when it is lower).
#[derive(Debug, Clone, Copy)]
pub struct HistoryPaging(pub PageRequest);

impl FromRequestParts<AppState> for HistoryPaging {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let most = state.limits.current().history.page_size;
        page_request(parts, state, most).await.map(HistoryPaging)
    }
}

async fn page_request<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    most: u64,
) -> Result<PageRequest, ApiError> {
    let Query(raw) = Query::<RawPaging>::from_request_parts(parts, state)
        .await
        .map_err(|e: QueryRejection| ApiError::bad_request(body::redact(&e.body_text())))?;
    let number = raw.page_number.unwrap_or(1);
    let size = raw.page_size.unwrap_or(DEFAULT_PAGE_SIZE.min(most));
    if number == 0 {
        return Err(ApiError::bad_request("pageNumber starts at 1"));
    }
    if size == 0 || size > most {
        return Err(ApiError::bad_request(format!(
            "pageSize must be 1 to {most}"
        )));
    }
    Ok(PageRequest { number, size })
}
