//! What browsers load from switchboard: the web snippet's widget script,
//! the page the IdP sends the widget's sign-in popup back to, a demo page
//! hosting a deployment's snippet, and the agent console.
//!
//! The front-end lives in `web-snippet/`: the loader a site pastes
//! (`loader.html`, rendered by [`snippet`] into every deployment's
//! `snippet` field), the callback and demo pages, the widget, built by
//! esbuild into `web-snippet/dist/widget.js`, and the console
//! (`web-snippet/console/`, built into `dist/console.js` and
//! `dist/console.css`). The built files are committed and embedded here, so
//! building switchboard needs no Node.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::AppState;
use crate::store::records::Deployment;
use crate::store::types::DeploymentStatus;

const WIDGET_JS: &[u8] = include_bytes!("../../web-snippet/dist/widget.js");
const CONSOLE_JS: &[u8] = include_bytes!("../../web-snippet/dist/console.js");
const CONSOLE_CSS: &[u8] = include_bytes!("../../web-snippet/dist/console.css");
const CONSOLE_PAGE: &str = include_str!("../../web-snippet/console/index.html");
const LOADER: &str = include_str!("../../web-snippet/loader.html");
const CALLBACK_PAGE: &str = include_str!("../../web-snippet/callback.html");
const DEMO_PAGE: &str = include_str!("../../web-snippet/demo.html");
const DEMO_JS: &[u8] = include_bytes!("../../web-snippet/demo.js");
const DEMO_CSS: &[u8] = include_bytes!("../../web-snippet/demo.css");

/// Where the IdP sends the widget's sign-in popup back (relative to the
/// public URL); the IdP client must list it as a redirect URI.
pub(super) const CALLBACK_PATH: &str = "/web-snippet/callback";

/// Strong validators of the embedded files, so revalidation is cheap.
static WIDGET_ETAG: LazyLock<String> = LazyLock::new(|| etag(WIDGET_JS));
static CONSOLE_JS_ETAG: LazyLock<String> = LazyLock::new(|| etag(CONSOLE_JS));
static CONSOLE_CSS_ETAG: LazyLock<String> = LazyLock::new(|| etag(CONSOLE_CSS));
static DEMO_JS_ETAG: LazyLock<String> = LazyLock::new(|| etag(DEMO_JS));
static DEMO_CSS_ETAG: LazyLock<String> = LazyLock::new(|| etag(DEMO_CSS));

/// A digest of the console's script and stylesheet, which the page puts in
/// their URLs (`?v=`), so a new build is never mixed with a cached old one
/// and a URL with it can be cached for good.
static CONSOLE_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    digest.update(CONSOLE_JS);
    digest.update(CONSOLE_CSS);
    let version = hex::encode(digest.finalize());
    version.get(..16).unwrap_or(&version).to_owned()
});

static CONSOLE_HTML: LazyLock<String> =
    LazyLock::new(|| CONSOLE_PAGE.replace("{{VERSION}}", &CONSOLE_VERSION));

/// How long caches keep a file whose URL does not change with its content
/// (the widget: sites paste its URL), revalidating with the ETag after.
const REVALIDATE: &str = "public, max-age=300";
/// A file whose URL names its content's digest never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What the console page may load and do: its own script, stylesheet, API
/// and socket, nothing inline, and no framing (clickjacking).
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/web-snippet/widget.js", get(widget_js))
        .route(CALLBACK_PATH, get(callback))
        .route("/demo", get(demo))
        .route("/demo/demo.js", get(demo_js))
        .route("/demo/demo.css", get(demo_css))
        .route("/console", get(console_page))
        .route("/console/", get(console_page))
        .route("/console/console.js", get(console_js))
        .route("/console/console.css", get(console_css))
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(bytes)))
}

/// The HTML a site pastes to embed deployment `deployment`: the loader of
/// `web-snippet/loader.html` with switchboard's public URL and the id.
pub(super) fn snippet(public_url: &url::Url, deployment: Uuid) -> String {
    let base = js_string_content(public_url.as_str().trim_end_matches('/'));
    LOADER
        .replace("{{ENDPOINT}}", &base)
        .replace("{{DEPLOYMENT_ID}}", &deployment.to_string())
        .trim_end()
        .to_owned()
}

/// The widget script. Its URL is not versioned, so caches keep it for five
/// minutes and revalidate with the ETag; any site may load it.
async fn widget_js(headers: HeaderMap) -> Response {
    let mut response = asset(
        &headers,
        WIDGET_JS,
        &WIDGET_ETAG,
        "text/javascript; charset=utf-8",
        REVALIDATE,
    );
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    out.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// The console's script and stylesheet: cached for good under the URL
/// the page names them by (with the current digest), revalidated like the
/// widget under any other.
async fn console_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    asset(
        &headers,
        CONSOLE_JS,
        &CONSOLE_JS_ETAG,
        "text/javascript; charset=utf-8",
        console_caching(query.as_deref()),
    )
}

async fn console_css(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    asset(
        &headers,
        CONSOLE_CSS,
        &CONSOLE_CSS_ETAG,
        "text/css; charset=utf-8",
        console_caching(query.as_deref()),
    )
}

fn console_caching(query: Option<&str>) -> &'static str {
    match query.and_then(|q| param(q, "v")) {
        Some(v) if v == *CONSOLE_VERSION => IMMUTABLE,
        _ => REVALIDATE,
    }
}

/// The demo page's script and stylesheet (the page has none inline).
async fn demo_js(headers: HeaderMap) -> Response {
    asset(
        &headers,
        DEMO_JS,
        &DEMO_JS_ETAG,
        "text/javascript; charset=utf-8",
        REVALIDATE,
    )
}

async fn demo_css(headers: HeaderMap) -> Response {
    asset(
        &headers,
        DEMO_CSS,
        &DEMO_CSS_ETAG,
        "text/css; charset=utf-8",
        REVALIDATE,
    )
}

/// `GET /console`: the agent console. The page itself holds nothing
/// secret; it signs staff in through `/auth/login` and then works on the
/// session cookie.
async fn console_page() -> Response {
    let mut response = html(StatusCode::OK, CONSOLE_HTML.clone());
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// An embedded file with its ETag, answered 304 when the client has it.
fn asset(
    headers: &HeaderMap,
    body: &'static [u8],
    etag: &str,
    content_type: &'static str,
    cache_control: &'static str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| matches!(t.trim(), "*") || t.trim() == etag)
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, bytes::Bytes::from_static(body)).into_response()
    };
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The sign-in popup's landing page. It posts the authorization response
/// (`code`, `state`, `iss`, or `error`) to the window that opened it, and
/// only to the origin of the page that started the login (bound to the
/// login's `state` at start, and still one the deployment allows), never to
/// any origin: a page that opens the popup for someone else's login gets
/// nothing, even when the deployment allows all domains. A login started
/// without an `Origin` (by a server) is posted to the deployment's listed
/// origins, and to none with "allow all". The page strips the code from its
/// address.
async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let login_state = query.as_deref().and_then(|q| param(q, "state"));
    let mut targets: Vec<String> = Vec::new();
    if let Some(login_state) = login_state
        && let Some((id, origin)) = super::guest_token::login_origin(&state, &login_state).await
        && let Ok(Some(deployment)) = state.store.locate::<Deployment>(id).await
    {
        match origin {
            Some(origin) if deployment.allows_origin(&origin) => targets.push(origin),
            // Started on an origin the deployment no longer allows.
            Some(_) => {}
            None if !deployment.allow_all_domains => targets.extend(
                deployment
                    .allowed_domains
                    .iter()
                    .filter(|o| !o.is_wildcard())
                    .map(|o| o.as_str().to_owned()),
            ),
            None => {}
        }
    }
    let nonce = Uuid::new_v4().simple().to_string();
    let page = CALLBACK_PAGE
        .replace("{{NONCE}}", &nonce)
        .replace("{{TARGETS}}", &json_in_html(&targets));
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut response = html(StatusCode::OK, page);
    let out = response.headers_mut();
    // The address carries an authorization code: keep it out of caches
    // and Referer headers.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        out.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `GET /demo?deploymentId=<uuid>`: a plain page hosting the deployment's
/// snippet, to try it out. It warns when the deployment is unknown or
/// inactive, or does not allow switchboard's own origin (the widget on
/// this page could not connect), and says so when config.json cannot be
/// read from the page.
async fn demo(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let raw = query.as_deref().and_then(|q| param(q, "deploymentId"));
    let Some(id) = raw.as_deref().and_then(|r| Uuid::parse_str(r.trim()).ok()) else {
        return html(
            StatusCode::BAD_REQUEST,
            simple_page(
                "switchboard demo",
                "Name a deployment: /demo?deploymentId=<the deployment's id, a UUID>.",
            ),
        );
    };
    let public_url = &state.config.public_url;
    let own_origin = public_url.origin().ascii_serialization();
    let (status, warning) = match state.store.locate::<Deployment>(id).await {
        Ok(Some(d)) if d.status != DeploymentStatus::Active => (
            StatusCode::OK,
            Some(
                "This deployment is Inactive: the widget does not start until it is Active."
                    .to_owned(),
            ),
        ),
        Ok(Some(d)) if !d.allows_origin(&own_origin) => (
            StatusCode::OK,
            Some(format!(
                "This deployment does not allow the origin {own_origin}, so the widget on this page \
                 cannot connect. Add {own_origin} to the deployment's allowedDomains to try it here."
            )),
        ),
        Ok(Some(_)) => (StatusCode::OK, None),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Some("No deployment has this id.".to_owned()),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "demo page: cannot read the deployment");
            (
                StatusCode::OK,
                Some("The deployment cannot be read right now.".to_owned()),
            )
        }
    };
    let snippet = snippet(public_url, id);
    let base = public_url.as_str().trim_end_matches('/');
    let config_url = format!("{base}/webdeployments/v1/deployments/{id}/config.json");
    let warning = warning
        .map(|w| {
            format!(
                "<p class=\"problem\" role=\"alert\">{}</p>",
                escape_html(&w)
            )
        })
        .unwrap_or_default();
    let page = DEMO_PAGE
        .replace("{{DEPLOYMENT_ID}}", &id.to_string())
        .replace("{{WARNING}}", &warning)
        .replace("{{SNIPPET_TEXT}}", &escape_html(&snippet))
        .replace("{{CONFIG_URL}}", &escape_html(&config_url))
        .replace("{{ENDPOINT}}", &escape_html(base));
    let mut response = html(status, page);
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&demo_csp(public_url)) {
        out.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// What the demo page may load and do: its own script and stylesheet and
/// the widget's, from switchboard's public origin (which may differ from
/// the address the page was opened at); the widget's calls and socket to
/// that origin; images anywhere over https (structured messages carry
/// them). Nothing inline, and no framing (clickjacking).
fn demo_csp(public_url: &url::Url) -> String {
    let origin = public_url.origin().ascii_serialization();
    let socket = origin.replacen("http", "ws", 1);
    format!(
        "default-src 'none'; script-src 'self' {origin}; style-src 'self' {origin}; \
         img-src 'self' {origin} data: https:; connect-src 'self' {origin} {socket}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn simple_page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><main><h1>{}</h1><p>{}</p></main></body></html>\n",
        escape_html(title),
        escape_html(title),
        escape_html(text)
    )
}

/// The first value of `name` in a query string.
fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text safe inside a quoted JavaScript string in an HTML `<script>`:
/// everything but a plain URL's characters as `\uXXXX`.
fn js_string_content(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || ":/.-_~%?#[]@!$&()*+,;=".contains(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// JSON inside an HTML `<script>` data block: no `<`, `>` or `&` that could
/// end it.
fn json_in_html<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "[]".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_is_the_loader_with_the_url_and_id() {
        let url = url::Url::parse("https://chat.example.com/").unwrap();
        let id = Uuid::parse_str("7d0e0a4e-1111-4222-8333-944455556666").unwrap();
        let snippet = snippet(&url, id);
        assert!(snippet.starts_with("<script>\n"), "{snippet}");
        assert!(snippet.ends_with("</script>"), "{snippet}");
        assert!(snippet.contains("'https://chat.example.com/web-snippet/widget.js'"));
        assert!(snippet.contains("deploymentId: '7d0e0a4e-1111-4222-8333-944455556666'"));
        assert!(snippet.contains("endpoint: 'https://chat.example.com'"));
        assert!(!snippet.contains("{{"));
    }

    #[test]
    fn values_cannot_break_out_of_their_context() {
        assert_eq!(
            js_string_content("https://x.example/a'</script>"),
            "https://x.example/a\\u0027\\u003c/script\\u003e"
        );
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            json_in_html(&["</script><b>&"]),
            "[\"\\u003c/script\\u003e\\u003cb\\u003e\\u0026\"]"
        );
    }

    #[test]
    fn the_embedded_widget_is_a_built_bundle() {
        let text = String::from_utf8_lossy(WIDGET_JS);
        assert!(
            text.starts_with("/* switchboard web snippet"),
            "dist/widget.js is not esbuild's output"
        );
    }
}
