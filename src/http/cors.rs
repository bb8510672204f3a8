//! CORS for the endpoints browsers call from a deployment's sites (token
//! endpoints, history, `config.json`).
//!
//! A preflight cannot carry what names the deployment (a body, a bearer
//! token), so it is answered for any origin; the request itself gets an
//! `Access-Control-Allow-Origin` only when the deployment allows its origin.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::records::Deployment;

/// Echoes the request's origin back when `deployment` allows it.
pub(super) fn allow_deployment_origin(
    deployment: &Deployment,
    request: &HeaderMap,
    response: &mut HeaderMap,
) {
    response.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = request.get(header::ORIGIN)
        && origin.to_str().is_ok_and(|o| deployment.allows_origin(o))
    {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
}

/// The answer to a preflight for an endpoint taking `methods`.
pub(super) fn preflight(request: &HeaderMap, methods: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = request.get(header::ORIGIN) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
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
