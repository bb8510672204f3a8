//! The attachment URLs: `PUT /api/v1/attachments/{ref}` receives an
//! upload, `GET /api/v1/attachments/{ref}` (and `/thumbnail`) serves one.
//! Both are capabilities signed by [`crate::attachments`] (`exp` and `sig`
//! in the query), so they take no other credential and answer any origin.
//!
//! Files are never served as something a browser renders: always as a
//! download (`Content-Disposition: attachment`), with `nosniff` and a
//! sandboxing CSP, whatever their type. An `<img>` still shows an image.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use crate::app::AppState;
use crate::attachments::{AttachmentError, LinkParams, MAX_UPLOAD_BYTES, Owner, Refused};
use crate::engine::Channel;
use crate::routing::model::{Notice, UploadOutcome};

pub(super) fn router() -> OpenApiRouter<AppState> {
    let max = usize::try_from(MAX_UPLOAD_BYTES).unwrap_or(usize::MAX);
    OpenApiRouter::new()
        .routes(routes!(upload, download))
        .routes(routes!(thumbnail))
        .layer(DefaultBodyLimit::max(max))
}

/// The preflight of a browser's upload (a PUT with its headers): any
/// origin, as the URL is the credential.
pub(super) fn preflights() -> axum::Router<AppState> {
    async fn preflight(headers: HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let out = response.headers_mut();
        if headers.contains_key(header::ORIGIN) {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, PUT, OPTIONS"),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type, x-attachment-id"),
            );
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        response
    }
    axum::Router::new().route(
        "/api/v1/attachments/{ref}",
        axum::routing::options(preflight),
    )
}

/// A refusal, as the project's error body, with the SDK's code in
/// `details.errorCode`.
fn refusal(error: &AttachmentError) -> ApiError {
    let (status, code) = match error {
        AttachmentError::NotFound | AttachmentError::Sent => (StatusCode::NOT_FOUND, "not_found"),
        AttachmentError::Expired => (StatusCode::FORBIDDEN, "expired"),
        AttachmentError::Size(_) | AttachmentError::Quota { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        AttachmentError::TypeNotAllowed(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "type_refused"),
        AttachmentError::Content(_) => (StatusCode::UNPROCESSABLE_ENTITY, "content_refused"),
        AttachmentError::Unavailable => return ApiError::unavailable(),
        _ => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    ApiError::new(status, code, error.to_string())
        .with_details(serde_json::json!({ "errorCode": error.code() }))
}

fn link(
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkParams>, QueryRejection>,
) -> Result<(Uuid, LinkParams), ApiError> {
    let Path(reference) = path.map_err(|_| ApiError::not_found())?;
    let reference = Uuid::parse_str(&reference).map_err(|_| ApiError::not_found())?;
    let Query(params) = query.map_err(|_| ApiError::not_found())?;
    Ok((reference, params))
}

/// Any origin may PUT and GET: the URL itself is the credential.
fn open_cors(response: &mut Response) {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// Receives an upload's bytes.
#[utoipa::path(put, path = "/api/v1/attachments/{ref}", tag = "attachments",
    params(
        ("ref" = Uuid, Path, description = "the attachment, from the upload URL"),
        ("exp" = i64, Query, description = "when the URL expires, seconds since the epoch"),
        ("sig" = String, Query, description = "the URL's signature"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file, at most the declared size"),
    responses(
        (status = 200, description = "kept; the uploader's socket is told UploadSuccessEvent"),
        (status = 403, body = super::error::ErrorBody, description = "expired: the URL is past its time"),
        (status = 404, body = super::error::ErrorBody, description = "not_found: no such upload, a wrong signature, or already uploaded"),
        (status = 413, body = super::error::ErrorBody, description = "too_large: more (or fewer) bytes than declared"),
        (status = 415, body = super::error::ErrorBody, description = "type_refused: an active type"),
        (status = 422, body = super::error::ErrorBody, description = "content_refused: the bytes are not the declared type, or are markup"),
    ))]
#[tracing::instrument(name = "attachment_upload", skip_all)]
async fn upload(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (reference, params) = match link(path, query) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let error =
                AttachmentError::Size(format!("the upload is too large: {}", e.body_text()));
            return refusal(&error).into_response();
        }
    };
    let now = Utc::now();
    let outcome = state
        .attachments
        .receive(reference, &params, body, now)
        .await;
    let (record, error) = match outcome {
        Ok(record) => (Some(record), None),
        Err(Refused { error, record }) => (record, Some(error)),
    };
    if let Some(record) = &record
        && let Owner::Session { session, .. } = record.owner
    {
        let notice = Notice::Upload(UploadOutcome {
            attachment_id: record.client_id.clone(),
            reference: record.reference,
            error: error.as_ref().map(|e| (e.code(), e.to_string())),
            thumbnail: error.is_none() && record.thumbnail,
            time: now,
        });
        state
            .routing
            .notify(&Channel::Session(session), &notice)
            .await;
    }
    let mut response = match (&record, error) {
        (_, Some(error)) => refusal(&error).into_response(),
        (Some(record), None) => {
            let mut body = serde_json::json!({
                "attachmentId": record.client_id,
                "downloadUrl": state.attachments.download_url(record.org_id, record.reference, now),
                "fileSize": record.size,
                "fileType": record.mime,
            });
            if record.thumbnail
                && let Some(fields) = body.as_object_mut()
            {
                let url = state
                    .attachments
                    .thumbnail_url(record.org_id, record.reference, now);
                fields.insert("thumbnailUrl".to_owned(), url.into());
            }
            axum::Json(body).into_response()
        }
        (None, None) => ApiError::internal().into_response(),
    };
    open_cors(&mut response);
    response
}

/// Serves an attachment, as a download.
#[utoipa::path(get, path = "/api/v1/attachments/{ref}", tag = "attachments",
    params(
        ("ref" = Uuid, Path, description = "the attachment"),
        ("exp" = i64, Query, description = "when the URL expires, seconds since the epoch"),
        ("sig" = String, Query, description = "the URL's signature"),
    ),
    responses(
        (status = 200, description = "the file, as a download (Content-Disposition: attachment, nosniff)"),
        (status = 403, body = super::error::ErrorBody, description = "expired: ask for a fresh URL (getAttachment, history)"),
        (status = 404, body = super::error::ErrorBody, description = "not_found"),
    ))]
#[tracing::instrument(name = "attachment_download", skip_all)]
async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkParams>, QueryRejection>,
) -> Response {
    serve(&state, path, query, false).await
}

/// Serves an image's preview: a PNG of at most 256x256 pixels, or the
/// file itself when none was made.
#[utoipa::path(get, path = "/api/v1/attachments/{ref}/thumbnail", tag = "attachments",
    params(
        ("ref" = Uuid, Path, description = "the attachment"),
        ("exp" = i64, Query, description = "when the URL expires, seconds since the epoch"),
        ("sig" = String, Query, description = "the URL's signature"),
    ),
    responses(
        (status = 200, description = "the preview (image/png), or the file when it has none; as a download, like the file"),
        (status = 403, body = super::error::ErrorBody, description = "expired"),
        (status = 404, body = super::error::ErrorBody, description = "not_found"),
    ))]
#[tracing::instrument(name = "attachment_thumbnail", skip_all)]
async fn thumbnail(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkParams>, QueryRejection>,
) -> Response {
    serve(&state, path, query, true).await
}

async fn serve(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LinkParams>, QueryRejection>,
    thumbnail: bool,
) -> Response {
    let (reference, params) = match link(path, query) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let (record, bytes) = match state
        .attachments
        .open(reference, &params, thumbnail, Utc::now())
        .await
    {
        Ok(found) => found,
        Err(e) => {
            let mut response = refusal(&e).into_response();
            open_cors(&mut response);
            return response;
        }
    };
    let content_type = if thumbnail && record.thumbnail {
        crate::attachments::thumbnail::CONTENT_TYPE.to_owned()
    } else {
        record.mime.clone()
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    out.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition(&record.filename))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    open_cors(&mut response);
    response
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback
/// without quotes or controls, and the exact name percent-encoded.
fn disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dispositions_are_downloads_with_safe_names() {
        assert_eq!(
            super::disposition("a \"b\".png"),
            "attachment; filename=\"a _b_.png\"; filename*=UTF-8''a%20%22b%22.png"
        );
        assert_eq!(
            super::disposition("é\r\n.txt"),
            "attachment; filename=\"___.txt\"; filename*=UTF-8''%C3%A9%0D%0A.txt"
        );
    }
}
