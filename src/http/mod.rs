//! The HTTP surface: routers, layers, errors and extractors.
//!
//! Each admin resource owns its routes and request/response types in
//! `admin/`; this module merges them with the public and operational routes
//! and applies the layers every request passes: request ids, tracing without
//! query strings or credentials, metrics by matched route, a body limit, and
//! a panic guard that answers 500 instead of dropping the connection.

pub mod admin;
mod cors;
pub mod error;
pub mod extract;
mod guest_token;
mod history;
mod ops;
mod public;
mod push;
pub mod staff;
mod token;
mod web;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::store::{Listing, PageRequest};
use crate::telemetry::{HttpLabels, Metrics};

/// Admin and token request bodies are small; anything bigger is a mistake
/// or an attack.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "Admin, token and public endpoints of switchboard. Errors answer {code, message, details?}."
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The HTTP routes: admin API, tokens, guest token endpoints, public and
/// operational endpoints, the console and the snippet's pages.
pub fn router() -> Router<AppState> {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin::router())
        .merge(token::router())
        .merge(guest_token::router())
        .merge(public::router())
        .merge(push::router())
        .merge(staff::router())
        .split_for_parts();
    Router::new()
        .merge(api)
        .merge(ops::router(Arc::new(openapi)))
        .merge(web::router())
        .merge(history::router())
}

/// gzip or brotli, as the client accepts, for every HTTP answer big
/// enough to gain (the widget goes from 31 KB to about 10 KB on the wire).
pub fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .br(true)
}

/// The `Strict-Transport-Security` value when the node is reached over
/// https: browsers then refuse a downgrade to http for that long.
fn hsts(state: &AppState) -> Option<HeaderValue> {
    let max_age = state.config.serve.hsts_max_age?;
    (state.config.public_url.scheme() == "https")
        .then(|| HeaderValue::from_str(&format!("max-age={max_age}")).ok())
        .flatten()
}

/// Puts `routes` behind the layers every request passes, and answers
/// unknown routes and methods in the project's error format.
pub fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let hsts = hsts(&state);
    routes
        .fallback(|| async { error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(move |mut response: Response| {
            let hsts = hsts.clone();
            async move {
                if let Some(value) = hsts {
                    response
                        .headers_mut()
                        .insert(axum::http::header::STRICT_TRANSPORT_SECURITY, value);
                }
                response
            }
        }))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), observe))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal())
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // The path only: query strings carry OAuth codes and state.
                let path = loggable_path(request.uri().path());
                tracing::info_span!("http", method = %request.method(), path = %path, request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// The request path as logs show it: a guest session token, which push
/// device paths carry as their last segment, is cut off.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const PUSH_DEVICES: &str = "/pushdevices/";
    match path.find(PUSH_DEVICES).and_then(|at| path.get(..at)) {
        Some(before) => format!("{before}{PUSH_DEVICES}{{token}}").into(),
        None => path.into(),
    }
}

/// Records request count and latency by matched route, and logs the
/// internal cause of a failed request once.
async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    if let Some(cause) = response.extensions().get::<error::Cause>() {
        cause.log(response.status().as_u16());
    }
    metrics.observe_http(
        HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        },
        started.elapsed(),
    );
    response
}

/// One page of a list, in the shape Genesys clients know.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagedList<T> {
    pub entities: Vec<T>,
    pub page_number: u64,
    pub page_size: u64,
    pub total: u64,
    pub page_count: u64,
}

impl<T> PagedList<T> {
    pub fn new<R>(listing: Listing<R>, page: PageRequest, f: impl FnMut(R) -> T) -> Self {
        Self {
            entities: listing.entities.into_iter().map(f).collect(),
            page_number: page.number,
            page_size: page.size,
            total: listing.total,
            page_count: listing.total.div_ceil(page.size),
        }
    }

    /// One page of a list held whole in memory.
    pub fn of_all(all: Vec<T>, page: PageRequest) -> Self {
        let total = u64::try_from(all.len()).unwrap_or(u64::MAX);
        let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
        let take = usize::try_from(page.size).unwrap_or(usize::MAX);
        Self::new(
            Listing {
                total,
                entities: all.into_iter().skip(skip).take(take).collect(),
            },
            page,
            |entity| entity,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn session_tokens_in_paths_are_not_logged() {
        assert_eq!(
            loggable_path("/api/v2/webmessaging/deployments/d1/pushdevices/secret-token"),
            "/api/v2/webmessaging/deployments/d1/pushdevices/{token}"
        );
        assert_eq!(
            loggable_path("/api/v2/webmessaging/messages"),
            "/api/v2/webmessaging/messages"
        );
    }
}
