//! The HTTP surface: routers, layers, errors and extractors.
//!
//! Each admin resource owns its routes and request/response types in
//! `admin/`; this module merges them with the public and operational routes
//! and applies the layers every request passes: request ids, a span and an
//! access log line per request (matched route, never the raw path, query
//! string or credentials), metrics by matched route, a body limit, and a
//! panic guard that answers 500 instead of dropping the connection.

pub mod admin;
mod attachments;
pub mod body;
mod cors;
mod describe;
pub mod error;
pub mod extract;
mod guest_token;
mod history;
mod ops;
pub use ops::metrics_router;
mod public;
mod push;
mod setup;
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
use tracing::Instrument;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::store::{Listing, PageRequest};
use crate::telemetry::{self, HttpLabels, Metrics};

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
        .merge(attachments::router())
        .merge(staff::router())
        .merge(setup::router())
        .split_for_parts();
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    describe::finish(&mut document);
    Router::new()
        .merge(api)
        .merge(ops::router(Arc::new(document)))
        .merge(web::router())
        .merge(history::router())
        .merge(attachments::preflights())
        .merge(setup::pages())
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
    let request_id = HeaderName::from_static(REQUEST_ID);
    let hsts = hsts(&state);
    // Admin and token request bodies are small; anything bigger is a
    // mistake or an attack (SWITCHBOARD_LIMIT_MAX_BODY_BYTES, read here
    // once, when the node starts).
    let max_body = state.limits.current().max_body_bytes;
    routes
        .fallback(|| async {
            error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
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
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(error::ApiError::internal())
        }))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            observe,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(state)
}

/// The request id header: taken from the client (or the proxy in front)
/// when it is a usable token, made up otherwise, and sent back.
const REQUEST_ID: &str = "x-request-id";
/// A request id longer than this is replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Whether a client's request id may be logged and echoed as it is: 1 to
/// [`MAX_REQUEST_ID_CHARS`] ASCII letters, digits and `-_.:` (UUIDs, the
/// hex ids of nginx and the ids of common tracers), nothing that could
/// forge a log field or smuggle a secret-sized blob into every line.
pub fn usable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// Removes a request id that is not [`usable_request_id`], so that the
/// request-id layer makes a new one.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let values = headers.get_all(REQUEST_ID);
    let mut values = values.iter();
    let usable = match (values.next(), values.next()) {
        (None, _) => true,
        (Some(one), None) => usable_request_id(one.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !usable {
        headers.remove(REQUEST_ID);
    }
    request
}

/// The span of a request and its access log line; records request count
/// and latency by method and matched route, logs the internal cause of a
/// failed request once, and counts token endpoint outcomes.
///
/// Every event the request causes (a socket it opens included) happens in
/// the `http` span and so carries its `request_id`. Labels come from closed
/// sets: a made-up method is `other`, an unmatched path `unmatched`.
async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = telemetry::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| telemetry::UNMATCHED_ROUTE.to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "http",
        request_id = %request_id,
        method,
        route = %route,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    telemetry::traces::adopt_request(&span, || format!("{method} {route}"), request.headers());
    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        if telemetry::traces::exporting() {
            let span = tracing::Span::current();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
        }
        if let Some(cause) = response.extensions().get::<error::Cause>() {
            cause.log(status);
        }
        if let Some(outcome) = response.extensions().get::<TokenOutcome>() {
            metrics.token_exchange(outcome.endpoint, outcome.outcome);
        }
        let elapsed = started.elapsed();
        tracing::info!(
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
        metrics.observe_http(
            HttpLabels {
                method,
                route,
                status,
            },
            elapsed,
        );
        response
    }
    .instrument(span)
    .await
}

/// A token endpoint's outcome, left on its response for [`observe`] to
/// count: `ok` or the answer's error code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenOutcome {
    pub endpoint: &'static str,
    pub outcome: &'static str,
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
    use super::usable_request_id;

    #[test]
    fn only_sane_request_ids_are_kept() {
        assert!(usable_request_id(b"6f1c2d9e-3b1a-4c8e-9f00-0123456789ab"));
        assert!(usable_request_id(b"0a1b2c3d4e5f"));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id("x".repeat(129).as_bytes()));
        assert!(!usable_request_id(b"a b"));
        assert!(!usable_request_id(b"id\"injected\":1"));
        assert!(!usable_request_id("é".as_bytes()));
    }
}
